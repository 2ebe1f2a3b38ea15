package topology

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// setupLinks creates and configures every link of the cluster, all inside the namespaces:
// nothing is ever created in the caller's namespace.
func (c *Cluster) setupLinks(dual bool) error {
	handles := map[string]*netlink.Handle{}
	defer func() {
		for _, h := range handles {
			h.Close()
		}
	}()
	for _, n := range c.Nodes {
		h, err := n.NewHandle()
		if err != nil {
			return fmt.Errorf("node %s: open netlink: %w", n.Name, err)
		}
		handles[n.Name] = h
	}

	n1, n2 := c.Node(Node1), c.Node(Node2)
	if c.External == nil {
		if err := addUnderlay(handles[n1.Name], n1, n2); err != nil {
			return fmt.Errorf("underlay: %w", err)
		}
	} else {
		if err := c.addSwitch(); err != nil {
			return fmt.Errorf("underlay switch: %w", err)
		}
		if err := setupExternal(c.External); err != nil {
			return fmt.Errorf("host %s: %w", c.External.Name, err)
		}
	}
	for _, n := range c.Nodes {
		h := handles[n.Name]
		if err := setupNode(h, n, c.CNI); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		for _, p := range n.Pods {
			setup := setupPod
			if c.CNI.Routed() {
				setup = setupRoutedPod
			}
			if err := setup(h, p); err != nil {
				return fmt.Errorf("pod %s: %w", p.Name, err)
			}
		}
		if dual {
			if err := setupNode6(h, n); err != nil {
				return fmt.Errorf("node %s: IPv6: %w", n.Name, err)
			}
		}
	}
	// The CNI's per-peer state: for flannel route, neighbour and fdb entry
	// for every other node.
	for _, n := range c.Nodes {
		for _, peer := range c.Nodes {
			if peer == n {
				continue
			}
			if err := addTunnelPeer(handles[n.Name], peer, c.CNI); err != nil {
				return fmt.Errorf("node %s: peer %s: %w", n.Name, peer.Name, err)
			}
			if !dual {
				continue
			}
			if err := addVXLANPeer6(handles[n.Name], peer); err != nil {
				return fmt.Errorf("node %s: peer %s: IPv6: %w", n.Name, peer.Name, err)
			}
		}
	}
	return nil
}

// addUnderlay joins two nodes with a veth pair named eth0 on both ends, created in a and
// with its peer created directly in b.
func addUnderlay(h *netlink.Handle, a, b *Node) error {
	veth := netlink.NewVeth(netlink.LinkAttrs{
		Name:         UnderlayDev,
		HardwareAddr: mac(macUnderlay, 0, a.UnderlayIP.As4()[3]),
		TxQLen:       -1,
	})
	veth.PeerName = UnderlayDev
	veth.PeerHardwareAddr = mac(macUnderlay, 0, b.UnderlayIP.As4()[3])
	veth.PeerNamespace = netlink.NsFd(int(b.ns))
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s: %w", UnderlayDev, err)
	}
	return nil
}

// upEth0 sets lo up, and eth0 up with address a; it returns eth0.
func upEth0(h *netlink.Handle, a netip.Prefix) (netlink.Link, error) {
	if err := linkUp(h, "lo"); err != nil {
		return nil, err
	}
	eth0, err := h.LinkByName(UnderlayDev)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", UnderlayDev, err)
	}
	if err := addAddr(h, eth0, a); err != nil {
		return nil, err
	}
	if err := h.LinkSetUp(eth0); err != nil {
		return nil, fmt.Errorf("set %s up: %w", UnderlayDev, err)
	}
	return eth0, nil
}

// setupNode configures lo, eth0, cni0 (not with routed veths) and the
// CNI's tunnel device (flannel.1 by default) in a node.
func setupNode(h *netlink.Handle, n *Node, cni CNI) error {
	eth0, err := upEth0(h, netip.PrefixFrom(n.UnderlayIP, UnderlayNet.Bits()))
	if err != nil {
		return err
	}
	if cni.Routed() {
		return setupTunnel(h, n, eth0, cni)
	}

	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{
		Name:         BridgeDev,
		MTU:          PodMTU,
		HardwareAddr: mac(macBridge, 0, n.PodCIDR.Addr().As4()[2]),
		TxQLen:       -1,
	}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge %s: %w", BridgeDev, err)
	}
	if err := addAddr(h, br, netip.PrefixFrom(n.BridgeIP, n.PodCIDR.Bits())); err != nil {
		return err
	}
	if err := h.LinkSetUp(br); err != nil {
		return fmt.Errorf("set %s up: %w", BridgeDev, err)
	}
	return setupTunnel(h, n, eth0, cni)
}

// setupPod creates the pod's veth pair from the node (host end on cni0, eth0 in the pod) and
// configures the pod side: address, default route via cni0, lo.
func setupPod(h *netlink.Handle, p *Pod) error {
	br, err := h.LinkByName(BridgeDev)
	if err != nil {
		return fmt.Errorf("find %s: %w", BridgeDev, err)
	}
	if err := addPodVeth(h, p, br.Attrs().Index); err != nil {
		return err
	}
	if err := linkUp(h, p.HostVeth); err != nil {
		return err
	}

	ph, err := p.NewHandle()
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer ph.Close()
	eth0, err := upEth0(ph, netip.PrefixFrom(p.IP, p.Node.PodCIDR.Bits()))
	if err != nil {
		return err
	}
	def := &netlink.Route{
		LinkIndex: eth0.Attrs().Index,
		Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		Gw:        net.IP(p.Node.BridgeIP.AsSlice()),
	}
	if err := ph.RouteAdd(def); err != nil {
		return fmt.Errorf("add default route via %s: %w", p.Node.BridgeIP, err)
	}
	return nil
}

// addPodVeth creates the pod's veth pair from the node: the host end enslaved to master (0:
// none), eth0 in the pod.
func addPodVeth(h *netlink.Handle, p *Pod, master int) error {
	veth := netlink.NewVeth(netlink.LinkAttrs{
		Name:         p.HostVeth,
		MTU:          PodMTU,
		HardwareAddr: hostVethMAC(p),
		MasterIndex:  master,
		TxQLen:       -1,
	})
	veth.PeerName = UnderlayDev
	veth.PeerMTU = PodMTU
	veth.PeerHardwareAddr = p.MAC
	veth.PeerNamespace = netlink.NsFd(int(p.ns))
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s: %w", p.HostVeth, err)
	}
	return nil
}

func hostVethMAC(p *Pod) net.HardwareAddr {
	return mac(macHostVeth, p.Node.PodCIDR.Addr().As4()[2], p.IP.As4()[3])
}

// addVXLANPeer installs what flanneld installs for a remote node on the tunnel device dev
// (flannel.1): a route to its pod subnet via its tunnel address (onlink), a permanent
// neighbour entry for that address and, with fdb, an fdb entry sending its tunnel MAC to its
// underlay IP (a point-to-point Geneve device has its one remote instead).
func addVXLANPeer(h *netlink.Handle, peer *Node, dev string, fdb bool) error {
	vx, err := h.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("find %s: %w", dev, err)
	}
	idx := vx.Attrs().Index
	if err := routeVia(h, idx, peer.PodCIDR, peer.VXLANIP, peer.VXLANMAC); err != nil {
		return err
	}
	if !fdb {
		return nil
	}
	entry := &netlink.Neigh{
		LinkIndex:    idx,
		Family:       unix.AF_BRIDGE,
		Flags:        netlink.NTF_SELF,
		State:        netlink.NUD_PERMANENT,
		IP:           net.IP(peer.UnderlayIP.AsSlice()),
		HardwareAddr: peer.VXLANMAC,
	}
	if err := h.NeighSet(entry); err != nil {
		return fmt.Errorf("add fdb %s: %w", peer.VXLANMAC, err)
	}
	return nil
}

// routeVia routes dst via gw (onlink) on link idx, with a permanent
// neighbour entry for gw at mac: IPv4 or IPv6, by gw's family.
func routeVia(h *netlink.Handle, idx int, dst netip.Prefix, gw netip.Addr, mac net.HardwareAddr) error {
	route := &netlink.Route{
		LinkIndex: idx,
		Dst:       prefixNet(dst),
		Gw:        net.IP(gw.AsSlice()),
		Flags:     int(netlink.FLAG_ONLINK),
	}
	if err := h.RouteAdd(route); err != nil {
		return fmt.Errorf("add route %s: %w", dst, err)
	}
	family := unix.AF_INET
	if gw.Is6() {
		family = unix.AF_INET6
	}
	neigh := &netlink.Neigh{
		LinkIndex:    idx,
		Family:       family,
		State:        netlink.NUD_PERMANENT,
		IP:           net.IP(gw.AsSlice()),
		HardwareAddr: mac,
	}
	if err := h.NeighSet(neigh); err != nil {
		return fmt.Errorf("add neighbour %s: %w", gw, err)
	}
	return nil
}

func linkUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

func addAddr(h *netlink.Handle, l netlink.Link, p netip.Prefix) error {
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: prefixNet(p)}); err != nil {
		return fmt.Errorf("add address %s to %s: %w", p, l.Attrs().Name, err)
	}
	return nil
}

// prefixNet converts p to a *net.IPNet keeping the address bits (not masked).
func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
