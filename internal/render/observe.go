package render

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/hop"
)

// A point of the map, as the report explains it: how an operator can watch
// packets there by hand, and the modules and sysctls of the node report that
// shape what happens there, with their values.

// observation is one way to watch a point by hand.
type observation struct {
	How string // "tcpdump", "iptables counters", "conntrack", "NFLOG", ...
	Cmd string
}

// nsShell is how to run a command in a namespace: a prefix, and what to
// fill in where the prefix needs a process ID.
type nsShell struct {
	prefix, hint string
}

// shell says how to run commands in a namespace: the node report's netns
// for a node (as internal/diagnose prefixes its checks), else the name the
// paths give it.
func (pg *page) shell(ns *pageNS) nsShell {
	if n := pg.node(ns); n != nil && n.Report != nil {
		switch dir := filepath.Dir(n.Report.Netns); {
		case n.Report.Netns == "":
			return nsShell{}
		case dir == "/run/netns" || dir == "/var/run/netns":
			return nsShell{prefix: "ip netns exec " + filepath.Base(n.Report.Netns) + " "}
		default:
			return nsShell{prefix: "nsenter --net=" + n.Report.Netns + " "}
		}
	}
	name := ns.name
	switch {
	case name == "host" || name == "-":
		return nsShell{}
	case strings.HasPrefix(name, "netns:"):
		return nsShell{prefix: "nsenter -n -t PID ", hint: "PID: a process in network namespace " + strings.TrimPrefix(name, "netns:") + " (lsns -t net)"}
	case strings.Contains(name, "/"):
		return nsShell{prefix: "nsenter -n -t PID ", hint: "PID: a process of " + name + " (crictl inspect)"}
	}
	return nsShell{prefix: "ip netns exec " + name + " "}
}

// devRole is what a device is on its node, from the node report where there
// is one, else from its name and what was seen on it.
type devRole uint8

const (
	roleOther   devRole = iota
	roleBridge          // a pod bridge (cni0)
	rolePort            // a veth, a pod's host side
	roleOverlay         // a tunnel device (flannel.1)
)

func (pg *page) role(pt *point, r *doctor.Report) (devRole, *doctor.Overlay) {
	dev := pt.key.dev
	if r != nil {
		for i := range r.Network.Overlays {
			if o := &r.Network.Overlays[i]; o.Name == dev {
				return roleOverlay, o
			}
		}
		for _, b := range r.Network.Bridges {
			if b.Name == dev {
				return roleBridge, nil
			}
		}
	}
	switch {
	case pt.hasMark(markTunnel):
		return roleOverlay, nil
	case pt.hasMark(markBridge):
		return roleBridge, nil
	case strings.HasPrefix(dev, "veth"):
		return rolePort, nil
	case dev == "cni0" || dev == "cbr0" || dev == "docker0":
		return roleBridge, nil
	}
	return roleOther, nil
}

// hostFilter is the tcpdump filter of the trace's pod IPs: "host A or host B".
func (pg *page) hostFilter() string {
	var parts []string
	for _, a := range pg.info.PodIPs {
		parts = append(parts, "host "+a.String())
	}
	return strings.Join(parts, " or ")
}

// iptables is the iptables command of the node: iptables-legacy where
// kube-proxy's rules are only in the legacy tables.
func iptables(r *doctor.Report) string {
	if r != nil && r.KubeProxy.KubeServicesLegacy == doctor.Present && r.KubeProxy.KubeServicesNFT != doctor.Present {
		return "iptables-legacy"
	}
	return "iptables"
}

// hookTables are the tables whose counters say most at a hook in a
// Kubernetes node: kube-proxy's NAT, and the filter rules of NetworkPolicy.
var hookTables = map[hop.Hook][]string{
	hop.Prerouting:  {"nat"},
	hop.Input:       {"filter"},
	hop.Forward:     {"filter"},
	hop.Output:      {"nat", "filter"},
	hop.Postrouting: {"nat"},
}

// observe lists how to watch a point by hand.
func (pg *page) observe(pt *point) []observation {
	ns := pg.ns[pt.key.ns]
	var r *doctor.Report
	if n := pg.node(ns); n != nil {
		r = n.Report
	}
	sh := pg.shell(ns)
	var obs []observation
	add := func(how, format string, args ...any) {
		obs = append(obs, observation{how, sh.prefix + fmt.Sprintf(format, args...)})
	}
	hosts := pg.hostFilter()
	dev := pt.key.dev
	if pt.key.hook == hop.NoHook {
		if dev == "" {
			return nil
		}
		role, ov := pg.role(pt, r)
		if hosts != "" {
			add("tcpdump", "tcpdump -eni %s %s", dev, hosts)
		} else {
			add("tcpdump", "tcpdump -eni %s", dev)
		}
		add("device counters", "ip -s link show %s", dev)
		switch role {
		case roleBridge:
			add("bridge ports", "bridge link show master %s", dev)
			add("bridge fdb", "bridge fdb show br %s", dev)
		case roleOverlay:
			add("tunnel device", "ip -d link show %s", dev)
			add("tunnel fdb", "bridge fdb show dev %s", dev)
			if ov != nil && ov.Underlay != "" && ov.Port != 0 {
				add("tcpdump", "tcpdump -ni %s udp port %d", ov.Underlay, ov.Port)
			}
		}
		return withHint(obs, sh)
	}
	hook := pt.key.hook.String()
	v6 := len(pg.info.PodIPs) > 0 && pg.info.PodIPs[0].Is6()
	if pt.key.hook.Known() {
		ipt := iptables(r)
		if v6 {
			ipt = strings.Replace(ipt, "iptables", "ip6tables", 1)
		}
		for _, table := range hookTables[pt.key.hook] {
			add("iptables counters", "%s -t %s -L %s -v -n --line-numbers", ipt, table, hook)
		}
		if r != nil && r.KubeProxy.Mode == doctor.ModeNFTables {
			add("nftables counters", "nft list table ip kube-proxy")
		}
		nflog := "-j NFLOG --nflog-group 42"
		if len(pg.info.PodIPs) > 0 {
			nflog = "-s " + pg.info.PodIPs[0].String() + " " + nflog
		}
		add("NFLOG", "%s -t mangle -I %s 1 %s; %stcpdump -ni nflog:42  # then -D %s 1", ipt, hook, nflog, sh.prefix, hook)
	}
	var natFrom []string
	ipvs := false
	for m := range pt.marks {
		switch m.kind {
		case markNAT:
			if from, _, ok := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(m.text, "DNAT "), "SNAT "), " → "); ok {
				natFrom = append(natFrom, from)
			}
		case markIPVS:
			ipvs = true
		}
	}
	switch {
	case pt.key.hook == hop.Prerouting || pt.key.hook == hop.Output || len(natFrom) > 0:
		switch {
		case v6:
			add("conntrack", "conntrack -L -f ipv6 -s %s", pg.info.PodIPs[0])
			add("conntrack events", "conntrack -E -f ipv6 -s %s", pg.info.PodIPs[0])
		case len(pg.info.PodIPs) > 0:
			add("conntrack", "conntrack -L -s %s", pg.info.PodIPs[0])
			add("conntrack events", "conntrack -E -s %s", pg.info.PodIPs[0])
		default:
			add("conntrack", "conntrack -L")
		}
	}
	if ipvs || r != nil && r.KubeProxy.Mode == doctor.ModeIPVS && pt.key.hook == hop.Input {
		add("IPVS services", "ipvsadm -Ln --stats")
		add("IPVS connections", "ipvsadm -Lnc")
	}
	return withHint(obs, sh)
}

func withHint(obs []observation, sh nsShell) []observation {
	if sh.hint != "" {
		obs = append(obs, observation{"where", sh.hint})
	}
	return obs
}

// governs lists the node report's items that shape what happens at a
// point, with their values: nil when the namespace has no report (a pod).
func (pg *page) governs(pt *point) []doctor.Item {
	ns := pg.ns[pt.key.ns]
	n := pg.node(ns)
	if n == nil || n.Report == nil {
		return nil
	}
	r := n.Report
	dev := pt.key.dev
	var ids []string
	if pt.key.hook == hop.NoHook {
		role, ov := pg.role(pt, r)
		switch role {
		case roleBridge:
			ids = append(ids, "module.bridge", "module.br_netfilter", "sysctl.net.bridge.bridge-nf-call-iptables", "network.bridge."+dev)
		case roleOverlay:
			kind := "vxlan"
			if ov != nil && ov.Kind != "" {
				kind = ov.Kind
			}
			ids = append(ids, "module."+kind, "network.overlay."+dev, "network.overlay."+dev+".mtu")
		case rolePort:
			ids = append(ids, "module.veth")
		}
		for _, o := range r.Network.Overlays {
			if o.Underlay == dev {
				ids = append(ids, "network.overlay."+o.Name+".mtu")
			}
		}
		ids = append(ids, "sysctl.net.ipv4.conf."+dev+".rp_filter", "sysctl.net.ipv4.conf.all.rp_filter")
	} else {
		ids = append(ids, "module.nf_conntrack")
		switch pt.key.hook {
		case hop.Prerouting, hop.Output:
			ids = append(ids, "module.nf_nat", "kube_proxy.mode", "kube_proxy.kube_services_nft", "kube_proxy.kube_services_legacy", "kube_proxy.nftables_table", "sysctl.net.netfilter.nf_conntrack_usage")
		case hop.Input:
			ids = append(ids, "kube_proxy.mode")
		case hop.Forward:
			ids = append(ids, "sysctl.net.ipv4.ip_forward")
		case hop.Postrouting:
			ids = append(ids, "module.nf_nat", "sysctl.net.netfilter.nf_conntrack_usage")
		}
		if role, _ := pg.role(&point{key: pointKey{pt.key.ns, dev, hop.NoHook}}, r); role == roleBridge && pt.key.hook != hop.Output {
			ids = append(ids, "module.br_netfilter", "sysctl.net.bridge.bridge-nf-call-iptables")
		}
		ids = append(ids, "module.nf_tables", "module.ip_tables")
		if r.KubeProxy.Mode == doctor.ModeIPVS || pt.hasMark(markIPVS) {
			ids = append(ids, "module.ip_vs", "kube_proxy.ipvs", "sysctl.net.ipv4.vs.conntrack")
			for _, s := range r.KubeProxy.IPVS.Schedulers {
				ids = append(ids, "module.ip_vs_"+s)
			}
		}
	}
	var items []doctor.Item
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		if it := r.Item(id); it != nil && !absentKubeProxy(it) {
			items = append(items, *it)
		}
	}
	return items
}

// absentKubeProxy leaves out kube-proxy's rule sets the node does not have:
// only the one in use says something at a hook.
func absentKubeProxy(it *doctor.Item) bool {
	return strings.HasPrefix(it.ID, "kube_proxy.") && it.ID != "kube_proxy.mode" && it.Value == string(doctor.Absent)
}

func (pt *point) hasMark(k markKind) bool {
	for m := range pt.marks {
		if m.kind == k {
			return true
		}
	}
	return false
}

// statusRank orders the grades worst last; info and unknown grade nothing.
func statusRank(s doctor.Status) int {
	switch s {
	case doctor.StatusOK:
		return 1
	case doctor.StatusWarn:
		return 2
	case doctor.StatusBad:
		return 3
	}
	return 0
}

// worst is the worst grade among items, "" when none is graded.
func worst(items []doctor.Item) doctor.Status {
	var w doctor.Status
	for _, it := range items {
		if statusRank(it.Status) > statusRank(w) {
			w = it.Status
		}
	}
	return w
}
