package doctor

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Below this an established TCP entry may expire under a long idle flow;
// kube-proxy sets 86400.
const conntrackMinEstablished = 3600

// sysctlPath reads proc/sys/<rel>; rel keeps device names with dots intact.
func (c *collector) sysctlPath(rel string) (string, bool) {
	b, err := c.read("proc/sys/" + rel)
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

func sysctlItem(name, explain string) Item {
	return Item{ID: "sysctl." + name, Name: name, Explain: explain, Check: "sysctl " + name,
		Source: "/proc/sys/" + strings.ReplaceAll(name, ".", "/")}
}

// grade is an item's status and what it means.
type grade struct {
	status  Status
	explain string
}

// switchItem is the item of a sysctl that is on at 1: graded absent, on,
// or anything else.
func switchItem(name string, s Sysctl, absent, on, other grade) Item {
	it := sysctlItem(name, "")
	it.Value = s.String()
	g := other
	switch {
	case s.State == Absent:
		g = absent
	case s.Is(1):
		g = on
	}
	it.Status, it.Explain = g.status, g.explain
	return it
}

// sysctlItems makes the sysctls section from the facts.
func sysctlItems(f *Facts, mode string) []Item {
	var items []Item
	for _, b := range []struct {
		name, what string
		fact       Sysctl
	}{
		{"net.bridge.bridge-nf-call-iptables", "iptables", f.BridgeNFCallIPTables},
		{"net.bridge.bridge-nf-call-ip6tables", "ip6tables", f.BridgeNFCallIP6Tables},
	} {
		items = append(items, switchItem(b.name, b.fact,
			grade{StatusWarn, "br_netfilter not loaded: bridged pod-to-pod traffic bypasses " + b.what},
			grade{StatusOK, "bridged pod-to-pod traffic passes " + b.what + " rules"},
			grade{StatusWarn, "bridged pod-to-pod traffic skips " + b.what + ": kube-proxy DNAT and NetworkPolicy never see it"}))
	}
	items = append(items,
		switchItem("net.bridge.bridge-nf-call-arptables", f.BridgeNFCallARPTables,
			grade{StatusInfo, "br_netfilter not loaded: bridged pod-to-pod traffic bypasses arptables"},
			grade{StatusInfo, "bridged pod-to-pod traffic passes arptables rules"},
			grade{StatusInfo, "bridged ARP skips arptables; Kubernetes does not need it"}),
		switchItem("net.ipv4.ip_forward", f.IPForward,
			grade{StatusUnknown, "cannot read it"},
			grade{StatusOK, "the node routes between pods, overlay and uplink"},
			grade{StatusBad, "the node drops every packet it should route between pods, overlay and uplink"}),
		switchItem("net.ipv6.conf.all.forwarding", f.IPv6Forwarding,
			grade{StatusInfo, "IPv6 disabled: no IPv6 pod traffic"},
			grade{StatusOK, "the node routes IPv6 pod traffic"},
			grade{StatusInfo, "IPv6 pod traffic is not routed; matters only for IPv6 or dual-stack clusters"}),
		conntrackItem(f.Conntrack),
		conntrackTimeoutItem(f.ConntrackTCPEstablished))

	vsOff := grade{StatusInfo, "IPVS connections are not in conntrack: iptables masquerade and NetworkPolicy miss them"}
	if mode == ModeIPVS {
		vsOff.status = StatusWarn
	}
	items = append(items, switchItem("net.ipv4.vs.conntrack", f.IPVSConntrack,
		grade{StatusInfo, "no IPVS in this kernel or netns"},
		grade{StatusOK, "IPVS connections are in conntrack: masquerade and NetworkPolicy see them"},
		vsOff))

	return append(items, rpFilterItems(f.RPFilter)...)
}

func conntrackItem(ct Conntrack) Item {
	it := sysctlItem("net.netfilter.nf_conntrack_max", "")
	it.Name = "net.netfilter.nf_conntrack_count / nf_conntrack_max"
	it.ID = "sysctl.net.netfilter.nf_conntrack_usage"
	it.Check = "sysctl net.netfilter.nf_conntrack_count net.netfilter.nf_conntrack_max"
	it.Source = "/proc/sys/net/netfilter/nf_conntrack_{count,max}"
	count, okCount := ct.Count.Int()
	limit, okMax := ct.Max.Int()
	switch {
	case ct.Count.State == Absent && ct.Max.State == Absent:
		it.Value, it.Status, it.Explain = "absent", StatusInfo, "nf_conntrack not loaded: no Service NAT yet"
	case !okCount || !okMax || count < 0 || limit < 0:
		// What was read: a number, its text, or nothing.
		text := func(s Sysctl) string {
			if s.State == Absent {
				return ""
			}
			return s.String()
		}
		it.Value, it.Status = fmt.Sprintf("count %q, max %q", text(ct.Count), text(ct.Max)), StatusUnknown
		it.Explain = "cannot tell how full the conntrack table is"
	case limit == 0:
		it.Value, it.Status, it.Explain = fmt.Sprintf("%d / 0", count), StatusUnknown, "nf_conntrack_max is 0"
	default:
		pct, _ := ct.Percent()
		it.Value = fmt.Sprintf("%d / %d (%.1f%% full)", count, limit, pct)
		switch it.Status = ct.Grade(); it.Status {
		case StatusBad:
			it.Explain = "table (nearly) full: new connections are dropped (\"nf_conntrack: table full\")"
		case StatusWarn:
			it.Explain = "table filling up: when full, new connections are dropped"
		default:
			it.Explain = "room for new connections; when full, new ones are dropped"
		}
	}
	return it
}

func conntrackTimeoutItem(s Sysctl) Item {
	it := sysctlItem("net.netfilter.nf_conntrack_tcp_timeout_established", "")
	n, ok := s.Int()
	switch {
	case s.State == Absent:
		it.Value, it.Status, it.Explain = "absent", StatusInfo, "nf_conntrack not loaded"
	case !ok || n < 0:
		it.Value, it.Status, it.Explain = s.String(), StatusUnknown, "not a number of seconds"
	case n < conntrackMinEstablished:
		it.Value, it.Status = s.String()+"s", StatusWarn
		it.Explain = "idle established TCP flows lose their entry early: NAT replies break (kube-proxy sets 86400)"
	default:
		it.Value, it.Status = s.String()+"s", StatusOK
		it.Explain = "established TCP entries outlive idle flows (kube-proxy sets 86400)"
	}
	return it
}

// rpFilterItems reports rp_filter for all, default and the bridge, overlay
// and underlay devices. The kernel applies max(all, device).
func rpFilterItems(rp RPFilter) []Item {
	var items []Item
	devs := append([]string{"all", "default"}, slices.Sorted(maps.Keys(rp.Devices))...)
	for _, dev := range devs {
		// sysctl(8) writes a dot inside a device name as "/".
		name := "net.ipv4.conf." + strings.ReplaceAll(dev, ".", "/") + ".rp_filter"
		it := Item{ID: "sysctl." + rpFilterName(dev), Name: name, Check: "sysctl " + name,
			Source: "/proc/sys/net/ipv4/conf/" + dev + "/rp_filter"}
		s, eff := rp.Devices[dev], int64(0)
		switch dev {
		case "all":
			s = rp.All
			eff, _ = s.Int()
		case "default":
			s = rp.Default
			eff, _ = s.Int()
		default:
			eff, _ = rp.Effective(dev)
		}
		n, ok := s.Int()
		switch {
		case s.State == Absent:
			it.Value, it.Status, it.Explain = "absent", StatusUnknown, "cannot read it"
			items = append(items, it)
			continue
		case !ok:
			it.Value, it.Status, it.Explain = s.String(), StatusUnknown, "not a number"
			items = append(items, it)
			continue
		}
		it.Value = s.String() + " (" + rpName(n) + ")"
		if eff != n {
			it.Value = fmt.Sprintf("%d (effective %d: %s, from all)", n, eff, rpName(eff))
		}
		switch {
		case eff == 1 && dev == "default":
			it.Status = StatusWarn
			it.Explain = "devices created from now on (pod veths, overlays) start in strict mode: asymmetric-routed packets dropped"
		case eff == 1:
			it.Status = StatusWarn
			it.Explain = "strict: packets whose source does not route back through this device are dropped (overlay, multi-NIC)"
		case eff == 2:
			it.Status = StatusOK
			it.Explain = "loose: drops only sources with no route at all"
		case eff == 0:
			it.Status = StatusOK
			it.Explain = "off: no reverse-path drops"
		default:
			it.Status, it.Explain = StatusUnknown, "unexpected value"
		}
		items = append(items, it)
	}
	return items
}

func rpName(n int64) string {
	switch n {
	case 0:
		return "off"
	case 1:
		return "strict"
	case 2:
		return "loose"
	}
	return "?"
}
