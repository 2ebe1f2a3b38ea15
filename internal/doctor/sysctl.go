package doctor

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Conntrack table fill thresholds, in percent.
const (
	conntrackWarnPercent = 80
	conntrackBadPercent  = 95
	// Below this an established TCP entry may expire under a long idle
	// flow; kube-proxy sets 86400.
	conntrackMinEstablished = 3600
)

// sysctl reads a sysctl of the inspected netns by its dotted name.
func (c *collector) sysctl(name string) (string, bool) {
	return c.sysctlPath(strings.ReplaceAll(name, ".", "/"))
}

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

func (c *collector) sysctlItems(nw Network, mode string) []Item {
	var items []Item

	bnf := []struct {
		name, what string
		warn       bool
	}{
		{"net.bridge.bridge-nf-call-iptables", "iptables", true},
		{"net.bridge.bridge-nf-call-ip6tables", "ip6tables", true},
		{"net.bridge.bridge-nf-call-arptables", "arptables", false},
	}
	for _, b := range bnf {
		it := sysctlItem(b.name, "")
		v, ok := c.sysctl(b.name)
		switch {
		case !ok:
			it.Value = "absent"
			it.Explain = "br_netfilter not loaded: bridged pod-to-pod traffic bypasses " + b.what
			it.Status = StatusInfo
			if b.warn {
				it.Status = StatusWarn
			}
		case v == "1":
			it.Value, it.Status = v, StatusOK
			it.Explain = "bridged pod-to-pod traffic passes " + b.what + " rules"
			if !b.warn {
				it.Status = StatusInfo
			}
		default:
			it.Value = v
			it.Explain = "bridged pod-to-pod traffic skips " + b.what + ": kube-proxy DNAT and NetworkPolicy never see it"
			it.Status = StatusWarn
			if !b.warn {
				it.Status = StatusInfo
				it.Explain = "bridged ARP skips arptables; Kubernetes does not need it"
			}
		}
		items = append(items, it)
	}

	fw := sysctlItem("net.ipv4.ip_forward", "")
	switch v, ok := c.sysctl("net.ipv4.ip_forward"); {
	case !ok:
		fw.Value, fw.Status, fw.Explain = "absent", StatusUnknown, "cannot read it"
	case v == "1":
		fw.Value, fw.Status, fw.Explain = v, StatusOK, "the node routes between pods, overlay and uplink"
	default:
		fw.Value, fw.Status, fw.Explain = v, StatusBad, "the node drops every packet it should route between pods, overlay and uplink"
	}
	items = append(items, fw)

	fw6 := sysctlItem("net.ipv6.conf.all.forwarding", "")
	switch v, ok := c.sysctl("net.ipv6.conf.all.forwarding"); {
	case !ok:
		fw6.Value, fw6.Status, fw6.Explain = "absent", StatusInfo, "IPv6 disabled: no IPv6 pod traffic"
	case v == "1":
		fw6.Value, fw6.Status, fw6.Explain = v, StatusOK, "the node routes IPv6 pod traffic"
	default:
		fw6.Value, fw6.Status, fw6.Explain = v, StatusInfo, "IPv6 pod traffic is not routed; matters only for IPv6 or dual-stack clusters"
	}
	items = append(items, fw6)

	items = append(items, c.conntrackItems()...)

	vs := sysctlItem("net.ipv4.vs.conntrack", "")
	switch v, ok := c.sysctl("net.ipv4.vs.conntrack"); {
	case !ok:
		vs.Value, vs.Status, vs.Explain = "absent", StatusInfo, "no IPVS in this kernel or netns"
	case v == "1":
		vs.Value, vs.Status, vs.Explain = v, StatusOK, "IPVS connections are in conntrack: masquerade and NetworkPolicy see them"
	default:
		vs.Value, vs.Status = v, StatusInfo
		vs.Explain = "IPVS connections are not in conntrack: iptables masquerade and NetworkPolicy miss them"
		if mode == ModeIPVS {
			vs.Status = StatusWarn
		}
	}
	items = append(items, vs)

	return append(items, c.rpFilterItems(nw)...)
}

func (c *collector) conntrackItems() []Item {
	ct := sysctlItem("net.netfilter.nf_conntrack_max", "")
	ct.Name = "net.netfilter.nf_conntrack_count / nf_conntrack_max"
	ct.ID = "sysctl.net.netfilter.nf_conntrack_usage"
	ct.Check = "sysctl net.netfilter.nf_conntrack_count net.netfilter.nf_conntrack_max"
	ct.Source = "/proc/sys/net/netfilter/nf_conntrack_{count,max}"
	maxS, okMax := c.sysctl("net.netfilter.nf_conntrack_max")
	cntS, okCnt := c.sysctl("net.netfilter.nf_conntrack_count")
	maxV, errMax := strconv.ParseUint(maxS, 10, 64)
	cntV, errCnt := strconv.ParseUint(cntS, 10, 64)
	switch {
	case !okMax && !okCnt:
		ct.Value, ct.Status, ct.Explain = "absent", StatusInfo, "nf_conntrack not loaded: no Service NAT yet"
	case !okMax || !okCnt || errMax != nil || errCnt != nil:
		ct.Value, ct.Status = fmt.Sprintf("count %q, max %q", cntS, maxS), StatusUnknown
		ct.Explain = "cannot tell how full the conntrack table is"
	default:
		ct.Value, ct.Status, ct.Explain = conntrackUsage(cntV, maxV)
	}

	to := sysctlItem("net.netfilter.nf_conntrack_tcp_timeout_established", "")
	switch v, ok := c.sysctl("net.netfilter.nf_conntrack_tcp_timeout_established"); {
	case !ok:
		to.Value, to.Status, to.Explain = "absent", StatusInfo, "nf_conntrack not loaded"
	default:
		n, err := strconv.ParseUint(v, 10, 64)
		switch {
		case err != nil:
			to.Value, to.Status, to.Explain = v, StatusUnknown, "not a number of seconds"
		case n < conntrackMinEstablished:
			to.Value, to.Status = v+"s", StatusWarn
			to.Explain = "idle established TCP flows lose their entry early: NAT replies break (kube-proxy sets 86400)"
		default:
			to.Value, to.Status = v+"s", StatusOK
			to.Explain = "established TCP entries outlive idle flows (kube-proxy sets 86400)"
		}
	}
	return []Item{ct, to}
}

// conntrackUsage grades how full the conntrack table is.
func conntrackUsage(count, limit uint64) (string, Status, string) {
	if limit == 0 {
		return fmt.Sprintf("%d / 0", count), StatusUnknown, "nf_conntrack_max is 0"
	}
	pct := float64(count) * 100 / float64(limit)
	v := fmt.Sprintf("%d / %d (%.1f%% full)", count, limit, pct)
	switch {
	case pct >= conntrackBadPercent:
		return v, StatusBad, "table (nearly) full: new connections are dropped (\"nf_conntrack: table full\")"
	case pct >= conntrackWarnPercent:
		return v, StatusWarn, "table filling up: when full, new connections are dropped"
	}
	return v, StatusOK, "room for new connections; when full, new ones are dropped"
}

// rpFilterItems reports rp_filter for all, default and the bridge, overlay
// and underlay devices. The kernel applies max(all, device).
func (c *collector) rpFilterItems(nw Network) []Item {
	var devs []string
	for _, b := range nw.Bridges {
		devs = append(devs, b.Name)
	}
	for _, o := range nw.Overlays {
		devs = append(devs, o.Name)
		if o.Underlay != "" {
			devs = append(devs, o.Underlay)
		}
	}
	slices.Sort(devs)
	devs = slices.Compact(devs)

	all, allOK := c.sysctlPath("net/ipv4/conf/all/rp_filter")
	allN, _ := strconv.Atoi(all)
	var items []Item
	for _, dev := range append([]string{"all", "default"}, devs...) {
		// sysctl(8) writes a dot inside a device name as "/".
		name := "net.ipv4.conf." + strings.ReplaceAll(dev, ".", "/") + ".rp_filter"
		it := Item{ID: "sysctl.net.ipv4.conf." + dev + ".rp_filter", Name: name, Check: "sysctl " + name,
			Source: "/proc/sys/net/ipv4/conf/" + dev + "/rp_filter"}
		v, ok := c.sysctlPath("net/ipv4/conf/" + dev + "/rp_filter")
		if !ok {
			it.Value, it.Status, it.Explain = "absent", StatusUnknown, "cannot read it"
			items = append(items, it)
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			it.Value, it.Status, it.Explain = v, StatusUnknown, "not a number"
			items = append(items, it)
			continue
		}
		eff := n
		it.Value = v + " (" + rpName(n) + ")"
		if dev != "all" && dev != "default" && allOK {
			eff = max(n, allN)
			if eff != n {
				it.Value = fmt.Sprintf("%s (effective %d: %s, from all)", v, eff, rpName(eff))
			}
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

func rpName(n int) string {
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
