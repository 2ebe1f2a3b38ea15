package diagnose

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/kernel"
)

// node is what the advisor needs from one node report, parsed once. The
// values come from the report items by their stable ids (docs/doctor.md);
// a fact the report lacks stays unknown and the advice says less.
type node struct {
	netns string // the report's Netns: "", a name under /run/netns, or a path

	ipForward string // net.ipv4.ip_forward: "0", "1" or "" (unknown)
	bridgeNF  string // net.bridge.bridge-nf-call-iptables: "0", "1", "absent" or ""

	ctKnown        bool
	ctCount, ctMax uint64

	rpAll     int            // net.ipv4.conf.all.rp_filter; -1 unknown
	rp        map[string]int // per device as reported (not yet max'ed with all)
	overlays  []doctor.Overlay
	bridges   []doctor.Bridge
	legacyIPT bool // kube-proxy's rules are in legacy x_tables
	// ipvs holds the IPVS virtual services by "PROTO addr:port" ("TCP
	// 10.96.0.10:80"); nil when the report has none.
	ipvs map[string]doctor.VirtualService
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
	n := &node{netns: r.Netns, rpAll: -1, rp: map[string]int{}}
	if it := r.Item("sysctl.net.ipv4.ip_forward"); it != nil && (it.Value == "0" || it.Value == "1") {
		n.ipForward = it.Value
	}
	if it := r.Item("sysctl.net.bridge.bridge-nf-call-iptables"); it != nil {
		n.bridgeNF = it.Value
	}
	if it := r.Item("sysctl.net.netfilter.nf_conntrack_usage"); it != nil {
		// "count / max (p% full)"
		var c, m uint64
		if k, _ := fmt.Sscanf(it.Value, "%d / %d", &c, &m); k == 2 && m > 0 {
			n.ctKnown, n.ctCount, n.ctMax = true, c, m
		}
	}
	const rpPrefix, rpSuffix = "sysctl.net.ipv4.conf.", ".rp_filter"
	for _, s := range r.Sections {
		for _, it := range s.Items {
			if !strings.HasPrefix(it.ID, rpPrefix) || !strings.HasSuffix(it.ID, rpSuffix) {
				continue
			}
			dev := strings.TrimSuffix(strings.TrimPrefix(it.ID, rpPrefix), rpSuffix)
			// "1 (strict)", "0 (effective 1: strict, from all)": the
			// device's own value comes first.
			v, err := strconv.Atoi(strings.Fields(it.Value + " ")[0])
			if err != nil {
				continue
			}
			if dev == "all" {
				n.rpAll = v
			} else {
				n.rp[dev] = v
			}
		}
	}
	n.overlays = r.Network.Overlays
	n.bridges = r.Network.Bridges
	n.legacyIPT = r.KubeProxy.KubeServicesLegacy == doctor.Present && r.KubeProxy.KubeServicesNFT != doctor.Present
	for _, vs := range r.KubeProxy.IPVS.VirtualServices {
		if n.ipvs == nil {
			n.ipvs = make(map[string]doctor.VirtualService)
		}
		n.ipvs[vs.Protocol+" "+vs.Address] = vs
	}
	return n
}

// ctPercent is how full the conntrack table is, in percent.
func (n *node) ctPercent() float64 {
	return float64(n.ctCount) * 100 / float64(n.ctMax)
}

// rpFilter returns the effective rp_filter of dev (the kernel applies
// max(all, dev)) and whether the report told it.
func (n *node) rpFilter(dev string) (eff int, devKnown bool) {
	v, ok := n.rp[dev]
	if !ok {
		return n.rpAll, false
	}
	return max(v, n.rpAll), true
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
