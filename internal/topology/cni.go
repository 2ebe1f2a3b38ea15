package topology

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// CNI is the pod network a cluster is built with: how pods attach to their
// node and how pod traffic crosses to the other node.
type CNI uint8

const (
	// CNIFlannel is flannel's VXLAN backend (the default): pods on the
	// cni0 bridge, flannel.1 (VNI 1, UDP 8472) between the nodes.
	CNIFlannel CNI = iota
	// CNICalicoIPIP is Calico in IPIP mode: routed veths (CalicoVeths)
	// and the ipip module's tunl0 between the nodes, a route per peer
	// block via the peer's underlay address. Build fails with ErrNoIPIP
	// where the kernel has no ipip.
	CNICalicoIPIP
	// CNICalicoVXLAN is Calico in VXLAN mode: routed veths (CalicoVeths)
	// and vxlan.calico (VNI 4096, UDP 4789) between the nodes.
	CNICalicoVXLAN
	// CNIGeneve is a Geneve overlay, as OVN-Kubernetes and Antrea carry
	// pod traffic: pods on the cni0 bridge, genev_sys_6081 (VNI 10, UDP
	// 6081) between the nodes. Build fails with ErrNoGeneve where the
	// kernel has no geneve.
	CNIGeneve
)

func (c CNI) String() string {
	switch c {
	case CNIFlannel:
		return "flannel-vxlan"
	case CNICalicoIPIP:
		return "calico-ipip"
	case CNICalicoVXLAN:
		return "calico-vxlan"
	case CNIGeneve:
		return "geneve"
	}
	return fmt.Sprintf("cni(%d)", uint8(c))
}

// Routed reports whether pods attach by routed veths (Calico: no bridge)
// rather than to the cni0 bridge.
func (c CNI) Routed() bool { return c == CNICalicoIPIP || c == CNICalicoVXLAN }

// TunnelDev is the node's overlay device.
func (c CNI) TunnelDev() string {
	switch c {
	case CNICalicoIPIP:
		return IPIPDev
	case CNICalicoVXLAN:
		return CalicoVXLANDev
	case CNIGeneve:
		return GeneveDev
	}
	return VXLANDev
}

// modules are the kernel modules the CNI's devices need, and br_netfilter
// (kubeadm wants it on every node; the nodes set its sysctl).
func (c CNI) modules() []string {
	switch c {
	case CNICalicoIPIP:
		return []string{"veth", "br_netfilter", "ipip"}
	case CNICalicoVXLAN:
		return []string{"veth", "br_netfilter", "vxlan"}
	case CNIGeneve:
		return []string{"veth", "bridge", "br_netfilter", "geneve"}
	}
	return []string{"veth", "bridge", "br_netfilter", "vxlan"}
}

// Interface names and parameters of the other CNIs.
const (
	IPIPDev         = "tunl0"          // the ipip module's fallback device, Calico's IPIP device
	CalicoVXLANDev  = "vxlan.calico"   // Calico's VXLAN device
	CalicoVXLANID   = 4096             // Calico's default VNI
	CalicoVXLANPort = 4789             // Calico's VXLAN port (IANA's)
	GeneveDev       = "genev_sys_6081" // the name OVS gives its Geneve port's device
	GeneveID        = 10
	GenevePort      = 6081
	// IPIPMTU is Calico's tunl0 MTU: the underlay's less the outer IPv4
	// header.
	IPIPMTU = 1480
)

// CalicoGateway is the default gateway of a Calico pod: an address no
// device has, which the host end of the pod's veth answers for (proxy ARP).
var CalicoGateway = netip.MustParseAddr("169.254.1.1")

// ErrNoIPIP and ErrNoGeneve are returned by Build, wrapped, when the
// kernel has no ipip (tunl0) or geneve devices.
var (
	ErrNoIPIP   = errors.New("IPIP (tunl0) not available on this kernel")
	ErrNoGeneve = errors.New("Geneve not available on this kernel")
)

// hostVethName is the host end of a pod's veth: "veth" and 8 hex
// characters for the bridge plugin, "cali" and 11 for Calico.
func hostVethName(cni CNI, sum [32]byte) string {
	const hexdigits = "0123456789abcdef"
	n, prefix := 8, "veth"
	if cni.Routed() {
		n, prefix = 11, "cali"
	}
	b := []byte(prefix)
	for i := range n {
		v := sum[i/2]
		if i%2 == 0 {
			v >>= 4
		}
		b = append(b, hexdigits[v&0x0f])
	}
	return string(b)
}

// setupTunnel creates and configures the node's overlay device for cni.
func setupTunnel(h *netlink.Handle, n *Node, eth0 netlink.Link, cni CNI) error {
	var l netlink.Link
	switch cni {
	case CNIFlannel, CNICalicoVXLAN:
		id, port := VXLANID, VXLANPort
		if cni == CNICalicoVXLAN {
			id, port = CalicoVXLANID, CalicoVXLANPort
		}
		l = &netlink.Vxlan{
			LinkAttrs:    netlink.LinkAttrs{Name: cni.TunnelDev(), MTU: PodMTU, HardwareAddr: n.VXLANMAC, TxQLen: -1},
			VxlanId:      id,
			VtepDevIndex: eth0.Attrs().Index,
			SrcAddr:      net.IP(n.UnderlayIP.AsSlice()),
			Port:         port,
			Learning:     false,
		}
	case CNIGeneve:
		// Two nodes: a point-to-point Geneve device to the peer.
		l = &netlink.Geneve{
			LinkAttrs: netlink.LinkAttrs{Name: GeneveDev, MTU: PodMTU, HardwareAddr: n.VXLANMAC, TxQLen: -1},
			ID:        GeneveID,
			Remote:    net.IP(n.peerUnderlay.AsSlice()),
			Dport:     GenevePort,
		}
	case CNICalicoIPIP:
		// tunl0 is there once the ipip module is: every namespace gets
		// its fallback device.
		t, err := h.LinkByName(IPIPDev)
		if err != nil {
			return fmt.Errorf("%w: find %s: %v", ErrNoIPIP, IPIPDev, err)
		}
		if err := h.LinkSetMTU(t, IPIPMTU); err != nil {
			return fmt.Errorf("set %s MTU: %w", IPIPDev, err)
		}
		l = t
	default:
		return fmt.Errorf("unknown CNI %s", cni)
	}
	if cni != CNICalicoIPIP {
		if err := h.LinkAdd(l); err != nil {
			if cni == CNIGeneve {
				return fmt.Errorf("%w: add geneve %s: %v", ErrNoGeneve, GeneveDev, err)
			}
			return fmt.Errorf("add vxlan %s: %w", cni.TunnelDev(), err)
		}
	}
	if err := addAddr(h, l, netip.PrefixFrom(n.VXLANIP, 32)); err != nil {
		return err
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", cni.TunnelDev(), err)
	}
	return nil
}

// addTunnelPeer installs what the CNI installs for a remote node: for VXLAN
// and Geneve flannel's route, neighbour (and fdb) entries (addVXLANPeer);
// for Calico IPIP a route to the peer's pod block via its underlay address
// on tunl0 (onlink), the outer destination tunl0 takes from the route.
func addTunnelPeer(h *netlink.Handle, peer *Node, cni CNI) error {
	if cni != CNICalicoIPIP {
		return addVXLANPeer(h, peer, cni.TunnelDev(), cni != CNIGeneve)
	}
	t, err := h.LinkByName(IPIPDev)
	if err != nil {
		return fmt.Errorf("find %s: %w", IPIPDev, err)
	}
	route := &netlink.Route{
		LinkIndex: t.Attrs().Index,
		Dst:       prefixNet(peer.PodCIDR),
		Gw:        net.IP(peer.UnderlayIP.AsSlice()),
		Flags:     int(netlink.FLAG_ONLINK),
	}
	if err := h.RouteAdd(route); err != nil {
		return fmt.Errorf("add route %s via %s: %w", peer.PodCIDR, IPIPDev, err)
	}
	return nil
}

// setupRoutedPod creates a Calico pod's veth pair (host end caliXXX in the
// node, no bridge, proxy ARP on) and configures both sides: in the node a
// /32 route to the pod through its veth; in the pod its address as a /32,
// a link route to CalicoGateway and the default route via it. The pod's
// neighbour entry for the gateway is the host end's MAC: what proxy ARP
// answers on a node with a default route (these nodes have none).
func setupRoutedPod(h *netlink.Handle, p *Pod) error {
	if err := addPodVeth(h, p, 0); err != nil {
		return err
	}
	if err := p.Node.SetSysctl("net.ipv4.conf."+p.HostVeth+".proxy_arp", "1"); err != nil {
		return err
	}
	if err := linkUp(h, p.HostVeth); err != nil {
		return err
	}
	host, err := h.LinkByName(p.HostVeth)
	if err != nil {
		return fmt.Errorf("find %s: %w", p.HostVeth, err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: host.Attrs().Index, Dst: prefixNet(netip.PrefixFrom(p.IP, 32)), Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("add route %s dev %s: %w", p.IP, p.HostVeth, err)
	}

	ph, err := p.NewHandle()
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer ph.Close()
	eth0, err := upEth0(ph, netip.PrefixFrom(p.IP, 32))
	if err != nil {
		return err
	}
	gw := net.IP(CalicoGateway.AsSlice())
	if err := ph.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: prefixNet(netip.PrefixFrom(CalicoGateway, 32)), Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("add route %s: %w", CalicoGateway, err)
	}
	def := &netlink.Route{
		LinkIndex: eth0.Attrs().Index,
		Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		Gw:        gw,
	}
	if err := ph.RouteAdd(def); err != nil {
		return fmt.Errorf("add default route via %s: %w", CalicoGateway, err)
	}
	neigh := &netlink.Neigh{LinkIndex: eth0.Attrs().Index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT, IP: gw, HardwareAddr: hostVethMAC(p)}
	if err := ph.NeighSet(neigh); err != nil {
		return fmt.Errorf("add neighbour %s: %w", CalicoGateway, err)
	}
	return nil
}

// HostNetworkPod is a pod with hostNetwork on the node: its sockets are
// the node's, in the node's namespace, and its address the node's (what
// the node's routes choose as the source of each connection). Valid while
// the cluster is.
func (n *Node) HostNetworkPod() *Pod {
	return &Pod{Name: n.Name + "-hostnetwork", NetnsName: n.NetnsName, NetnsPath: n.NetnsPath, IP: n.UnderlayIP, Node: n, ns: n.ns}
}
