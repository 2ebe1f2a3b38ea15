package topology

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// A host outside the cluster (Options.External): on the underlay next to
// the nodes, joined to them by a switch, a NodePort of the service
// reachable on every node's underlay address, and a server to egress to.
const (
	HostExternal = "external" // the host's name; its namespace is <prefix>-external
	SwitchName   = "underlay" // the switch's namespace, <prefix>-underlay
	SwitchDev    = "br0"      // the switch's bridge
	// NodePort is the service's port on the nodes' addresses, as
	// kube-proxy opens it (iptables mode: KUBE-NODEPORTS).
	NodePort = 30080
)

var (
	// ExternalIP is the external host's address on the underlay.
	ExternalIP = netip.MustParseAddr("192.168.50.100")
	// NodePortAddr is the service's NodePort on node1.
	NodePortAddr = netip.AddrPortFrom(Node1UnderlayIP, NodePort)
	// ExternalChain is kube-proxy's chain for the service's external
	// traffic (NodePort): masquerade, then the service.
	ExternalChain = kubeChainName("KUBE-EXT-", ServicePortName+"tcp")
)

// addSwitch builds the underlay as a switch: a bridge in the switch
// namespace with a port for each node's eth0 and the external host's.
// Without Options.External the two nodes' eth0 are one veth pair.
func (c *Cluster) addSwitch() error {
	h, err := netlink.NewHandleAt(c.switchNs)
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer h.Close()
	if err := linkUp(h, "lo"); err != nil {
		return err
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: SwitchDev, TxQLen: -1}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge %s: %w", SwitchDev, err)
	}
	ports := []struct {
		name string
		ns   netns.NsHandle
		ip   netip.Addr
	}{{Node1, c.Node(Node1).ns, Node1UnderlayIP}, {Node2, c.Node(Node2).ns, Node2UnderlayIP}, {HostExternal, c.External.ns, ExternalIP}}
	for _, p := range ports {
		veth := netlink.NewVeth(netlink.LinkAttrs{
			Name:        "to-" + p.name,
			MasterIndex: br.Attrs().Index,
			TxQLen:      -1,
		})
		veth.PeerName = UnderlayDev
		veth.PeerHardwareAddr = mac(macUnderlay, 0, p.ip.As4()[3])
		veth.PeerNamespace = netlink.NsFd(int(p.ns))
		if err := h.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s: %w", veth.Name, err)
		}
		if err := linkUp(h, veth.Name); err != nil {
			return err
		}
	}
	return h.LinkSetUp(br)
}

// setupExternal configures the external host's side: lo, and eth0 on the
// underlay.
func setupExternal(p *Pod) error {
	h, err := p.NewHandle()
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer h.Close()
	_, err = upEth0(h, netip.PrefixFrom(p.IP, UnderlayNet.Bits()))
	return err
}

// nodePortRules are kube-proxy's rules (iptables mode) for the service's
// NodePort: on a local address, KUBE-NODEPORTS sends it to the service's
// external chain, which marks it for masquerade and then load-balances it
// as the ClusterIP.
func nodePortRules() (chains, rules []string) {
	spn := ServicePortName
	return []string{"KUBE-NODEPORTS", ExternalChain}, []string{
		`-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`,
		fmt.Sprintf(`-A KUBE-NODEPORTS -p tcp -m comment --comment "%s" -m tcp --dport %d -j %s`, spn, NodePort, ExternalChain),
		fmt.Sprintf(`-A %s -m comment --comment "masquerade traffic for %s external destinations" -j KUBE-MARK-MASQ`, ExternalChain, spn),
		fmt.Sprintf(`-A %s -j %s`, ExternalChain, ServiceChain),
	}
}
