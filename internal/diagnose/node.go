package diagnose

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/kernel"
)

// node is what the advisor needs from one node report, read once. Its
// facts come from the report's Facts; a fact the report lacks stays
// unknown and the advice says less.
type node struct {
	netns string // the report's Netns: "", a name under /run/netns, or a path

	facts     doctor.Facts // all unknown when the report has none
	overlays  []doctor.Overlay
	bridges   []doctor.Bridge
	legacyIPT bool // kube-proxy's rules are in legacy x_tables
	// ipvs holds the IPVS virtual services by "PROTO addr:port" ("TCP
	// 10.96.0.10:80"); nil when the report has none.
	ipvs map[string]doctor.VirtualService
	// noEndpoints holds kube-proxy's rules for Service ports without
	// endpoints by noEndpointsKey; nil when the report has none.
	noEndpoints map[string]doctor.NoEndpointsRule
	// servicePorts holds the Service ports kube-proxy's rules have at an
	// address (cluster, external and load-balancer IPs), in the report's
	// order; nil when the report has none.
	servicePorts map[netip.Addr][]doctor.ServicePort
}

// noEndpointsKey is "PROTO addr:port" ("TCP 10.96.0.11:80") for a Service
// address, "PROTO NodePort port" for a NodePort.
func noEndpointsKey(proto string, addr netip.Addr, port uint16, nodePort bool) string {
	if nodePort {
		return fmt.Sprintf("%s NodePort %d", proto, port)
	}
	return proto + " " + netip.AddrPortFrom(addr, port).String()
}

// noEndpointsRule returns kube-proxy's rule for packets of protocol proto
// to dst, as the report saw it: the rule for the Service address dst, else,
// when dst is (or may be) an address of the node itself (local), the rule
// for a NodePort.
func (n *node) noEndpointsRule(proto uint8, dst netip.AddrPort, local bool) (doctor.NoEndpointsRule, bool) {
	name := doctor.ProtocolName(proto)
	if n == nil || n.noEndpoints == nil || name == "" || !dst.IsValid() {
		return doctor.NoEndpointsRule{}, false
	}
	if r, ok := n.noEndpoints[noEndpointsKey(name, dst.Addr(), dst.Port(), false)]; ok {
		return r, true
	}
	if !local {
		return doctor.NoEndpointsRule{}, false
	}
	r, ok := n.noEndpoints[noEndpointsKey(name, netip.Addr{}, dst.Port(), true)]
	return r, ok
}

// virtualService returns the IPVS virtual service at addr for protocol
// proto (an IP protocol number), as the report saw it.
func (n *node) virtualService(proto uint8, addr netip.AddrPort) (doctor.VirtualService, bool) {
	if n == nil || n.ipvs == nil {
		return doctor.VirtualService{}, false
	}
	name := map[uint8]string{6: "TCP", 17: "UDP", 132: "SCTP"}[proto]
	vs, ok := n.ipvs[name+" "+addr.String()]
	return vs, ok
}

func newNode(r *doctor.Report) *node {
	n := &node{netns: r.Netns}
	if r.Facts != nil {
		n.facts = *r.Facts
	}
	n.overlays = r.Network.Overlays
	n.bridges = r.Network.Bridges
	n.legacyIPT = r.KubeProxy.KubeServicesLegacy == doctor.Present && r.KubeProxy.KubeServicesNFT != doctor.Present
	for _, r := range r.KubeProxy.NoEndpoints {
		addr, err := netip.ParseAddr(r.Address)
		if err != nil && !r.NodePort {
			continue
		}
		if n.noEndpoints == nil {
			n.noEndpoints = make(map[string]doctor.NoEndpointsRule)
		}
		n.noEndpoints[noEndpointsKey(r.Protocol, addr, r.Port, r.NodePort)] = r
	}
	for _, sp := range r.KubeProxy.ServicePorts {
		if sp.Kind == doctor.KindNodePort || !sp.Addr.IsValid() {
			continue
		}
		if n.servicePorts == nil {
			n.servicePorts = make(map[netip.Addr][]doctor.ServicePort)
		}
		a := sp.Addr.Unmap()
		n.servicePorts[a] = append(n.servicePorts[a], sp)
	}
	for _, vs := range r.KubeProxy.IPVS.VirtualServices {
		if n.ipvs == nil {
			n.ipvs = make(map[string]doctor.VirtualService)
		}
		n.ipvs[vs.Protocol+" "+vs.Address] = vs
	}
	return n
}

// conntrack is the conntrack table's count, maximum and fill in percent
// when the report tells them.
func (n *node) conntrack() (count, limit int64, pct float64, ok bool) {
	ct := n.facts.Conntrack
	count, _ = ct.Count.Int()
	limit, _ = ct.Max.Int()
	pct, ok = ct.Percent()
	return count, limit, pct, ok
}

func (n *node) overlay(name string) *doctor.Overlay {
	for i := range n.overlays {
		if n.overlays[i].Name == name {
			return &n.overlays[i]
		}
	}
	return nil
}

func (n *node) isOverlay(dev string) bool { return n.overlay(dev) != nil }

func (n *node) isUnderlay(dev string) bool {
	for _, o := range n.overlays {
		if o.Underlay == dev {
			return true
		}
	}
	return false
}

func (n *node) bridge(name string) *doctor.Bridge {
	for i := range n.bridges {
		if n.bridges[i].Name == name {
			return &n.bridges[i]
		}
	}
	return nil
}

// bridgeOf returns the pod bridge dev is a port of, when the report lists it.
func (n *node) bridgeOf(dev string) *doctor.Bridge {
	for i := range n.bridges {
		for _, p := range n.bridges[i].Ports {
			if p == dev {
				return &n.bridges[i]
			}
		}
	}
	return nil
}

// iptables is the iptables command that shows this node's rules.
func (n *node) iptables() string {
	if n != nil && n.legacyIPT {
		return "iptables-legacy"
	}
	return "iptables"
}

// inNetns is the prefix that runs a command in a namespace given as a name
// under /run/netns, a path, or "" (own). hopName is the resolved name of the
// hop's namespace, used when no report tells how the namespace was given.
func inNetns(n *node, hopName string) string {
	spec := hopName
	if n != nil {
		spec = n.netns
	} else if hopName == "host" || strings.HasPrefix(hopName, "netns:") {
		// The tracer's own namespace, or one nobody named: nothing to
		// prefix that would work.
		spec = ""
	}
	return kernel.NetnsExec(spec)
}
