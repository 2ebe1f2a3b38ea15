package topology

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Dual-stack addresses (Options.DualStack): each node's pods get an IPv6
// address in the node's /64 next to their IPv4 one, IPv6 between nodes
// goes inside the IPv4 VXLAN underlay of flannel.1, and kube-proxy's
// ip6tables rules DNAT ClusterIP6 to ServerAddr6.
var (
	ClusterCIDR6  = netip.MustParsePrefix("fd77::/16")
	Node1PodCIDR6 = netip.MustParsePrefix("fd77:1::/64")
	Node2PodCIDR6 = netip.MustParsePrefix("fd77:2::/64")

	ClientIP6 = netip.MustParseAddr("fd77:1::5")
	PeerIP6   = netip.MustParseAddr("fd77:1::6")
	ServerIP6 = netip.MustParseAddr("fd77:2::7")

	// ClusterIP6 is the service's IPv6 ClusterIP, DNATed to ServerAddr6.
	ClusterIP6  = netip.MustParseAddrPort("[fd96::10]:80")
	ServerAddr6 = netip.AddrPortFrom(ServerIP6, ServerPort)
	PeerAddr6   = netip.AddrPortFrom(PeerIP6, ServerPort)
)

// ip6Of is the IPv6 address of a pod of the demo cluster by its IPv4 one:
// the same last byte in its node's /64.
func ip6Of(n *Node, ip4 netip.Addr) netip.Addr {
	b := n.PodCIDR6.Addr().As16()
	b[15] = ip4.As4()[3]
	return netip.AddrFrom16(b)
}

// nodad turns off duplicate address detection in a namespace (do runs in
// it), so that addresses are usable at once, as a test wants them.
func nodad(do func(func() error) error) error {
	for _, key := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
		if err := writeSysctl(do, key, "0"); err != nil {
			return err
		}
	}
	return nil
}

// addAddr6 adds an IPv6 address without duplicate address detection.
func addAddr6(h *netlink.Handle, l netlink.Link, p netip.Prefix) error {
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: prefixNet(p), Flags: unix.IFA_F_NODAD}); err != nil {
		return fmt.Errorf("add address %s to %s: %w", p, l.Attrs().Name, err)
	}
	return nil
}

// setupNode6 gives cni0 and flannel.1 their IPv6 addresses (flannel's
// subnet-router address on flannel.1, as for IPv4) and the node's pods
// theirs, with a default route via cni0.
func setupNode6(h *netlink.Handle, n *Node) error {
	for _, a := range []struct {
		dev string
		p   netip.Prefix
	}{{BridgeDev, netip.PrefixFrom(n.BridgeIP6, n.PodCIDR6.Bits())}, {VXLANDev, netip.PrefixFrom(n.VXLANIP6, 128)}} {
		l, err := h.LinkByName(a.dev)
		if err != nil {
			return fmt.Errorf("find %s: %w", a.dev, err)
		}
		if err := addAddr6(h, l, a.p); err != nil {
			return err
		}
	}
	for _, p := range n.Pods {
		if err := setupPod6(p); err != nil {
			return fmt.Errorf("pod %s: %w", p.Name, err)
		}
	}
	return nil
}

func setupPod6(p *Pod) error {
	h, err := p.NewHandle()
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer h.Close()
	eth0, err := h.LinkByName(UnderlayDev)
	if err != nil {
		return fmt.Errorf("find %s: %w", UnderlayDev, err)
	}
	if err := addAddr6(h, eth0, netip.PrefixFrom(p.IP6, p.Node.PodCIDR6.Bits())); err != nil {
		return err
	}
	def := &netlink.Route{
		LinkIndex: eth0.Attrs().Index,
		Dst:       &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
		Gw:        net.IP(p.Node.BridgeIP6.AsSlice()),
	}
	if err := h.RouteAdd(def); err != nil {
		return fmt.Errorf("add default route via %s: %w", p.Node.BridgeIP6, err)
	}
	return nil
}

// addVXLANPeer6 is addVXLANPeer for the peer's IPv6 pod subnet: a route
// via its flannel.1 IPv6 address (onlink) and a permanent neighbour entry
// for it; the fdb entry is the IPv4 one's.
func addVXLANPeer6(h *netlink.Handle, peer *Node) error {
	vx, err := h.LinkByName(VXLANDev)
	if err != nil {
		return fmt.Errorf("find %s: %w", VXLANDev, err)
	}
	return routeVia(h, vx.Attrs().Index, peer.PodCIDR6, peer.VXLANIP6, peer.VXLANMAC)
}

// setup6 sets a dual-stack node's IPv6 sysctls and loads kube-proxy's
// ip6tables rules for the service's IPv6 ClusterIP.
func (n *Node) setup6(ctx context.Context, bridgeNF string) error {
	if err := n.SetSysctl("net.ipv6.conf.all.forwarding", "1"); err != nil {
		return err
	}
	if err := n.SetSysctl("net.bridge.bridge-nf-call-ip6tables", bridgeNF); err != nil {
		return err
	}
	if _, err := runInNetns(ctx, n.NetnsName, []byte(ip6tablesRules()), "ip6tables-restore"); err != nil {
		return fmt.Errorf("load ip6tables rules: %w", err)
	}
	return nil
}

// ip6tablesRules is the ip6tables-restore input of a dual-stack node:
// kube-proxy's IPv6 proxier writes the same chains for the service, its
// endpoint chain hashed with the IPv6 endpoint.
func ip6tablesRules() string {
	return nodeRulesFor(ClusterCIDR6, nil, nil, ServerAddr6, ClusterIP6)
}
