package doctor

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

const (
	kubeServicesChain = "KUBE-SERVICES"
	kubeProxyTable    = "kube-proxy"
	kubeIPVSDevice    = "kube-ipvs0"
)

// kubeProxy reads the kube-proxy mode from the kernel: rules and devices, not
// userspace tools.
func (c *collector) kubeProxy() (KubeProxy, []Item) {
	kp := KubeProxy{KubeServicesNFT: Unsure, KubeServicesLegacy: Unsure, KubeIPVS0: Unsure, NFTablesFamilies: []string{}}
	var items []Item

	// nf_tables: iptables-nft's "ip nat" KUBE-SERVICES and nftables-mode
	// "kube-proxy" tables.
	nftItem := Item{ID: "kube_proxy.kube_services_nft", Name: "iptables-nft nat KUBE-SERVICES",
		Check: "nft list chain ip nat KUBE-SERVICES | head", Status: StatusInfo}
	tblItem := Item{ID: "kube_proxy.nftables_table", Name: "nftables table kube-proxy",
		Check: "nft list tables | grep kube-proxy", Status: StatusInfo}
	tables, tablesErr := c.net.NFTables()
	if err := tablesErr; err != nil {
		for _, it := range []*Item{&nftItem, &tblItem} {
			it.Value, it.Status, it.Source = "unknown", StatusUnknown, err.Error()
			it.Explain = "cannot list nf_tables over netlink (needs CAP_NET_ADMIN)"
		}
	} else {
		kp.KubeServicesNFT = Absent
		for _, t := range tables {
			// ip6 too: a node of an IPv6-only cluster has only that.
			if (t.Family == "ip" || t.Family == "ip6") && t.Name == "nat" && slices.Contains(t.Chains, kubeServicesChain) {
				kp.KubeServicesNFT = Present
			}
			if t.Name == kubeProxyTable && !slices.Contains(kp.NFTablesFamilies, t.Family) {
				kp.NFTablesFamilies = append(kp.NFTablesFamilies, t.Family)
			}
		}
		slices.Sort(kp.NFTablesFamilies)
		nftItem.Value, nftItem.Source = string(kp.KubeServicesNFT), "nf_tables netlink: tables ip nat, ip6 nat"
		nftItem.Explain = "kube-proxy iptables mode (iptables-nft backend) sends Service traffic through this chain"
		tblItem.Source = "nf_tables netlink"
		tblItem.Explain = "kube-proxy nftables mode does Service DNAT in this table"
		if len(kp.NFTablesFamilies) > 0 {
			tblItem.Value = "present (" + strings.Join(kp.NFTablesFamilies, ", ") + ")"
		} else {
			tblItem.Value = "absent"
		}
	}

	legItem := c.legacyKubeServices(&kp)

	ipvsDev := Item{ID: "kube_proxy.kube_ipvs0", Name: "kube-ipvs0 device", Check: "ip -d link show kube-ipvs0",
		Status: StatusInfo, Explain: "kube-proxy IPVS mode binds every ClusterIP to this dummy device"}
	if c.linkErr != nil {
		ipvsDev.Value, ipvsDev.Status, ipvsDev.Source = "unknown", StatusUnknown, c.linkErr.Error()
	} else {
		kp.KubeIPVS0 = Absent
		if c.linkByName(kubeIPVSDevice) != nil {
			kp.KubeIPVS0 = Present
		}
		ipvsDev.Value, ipvsDev.Source = string(kp.KubeIPVS0), "rtnetlink"
	}

	ipvsItem := Item{ID: "kube_proxy.ipvs", Name: "IPVS virtual services", Check: "ipvsadm -Ln; cat /proc/net/ip_vs",
		Status: StatusInfo, Source: "IPVS generic netlink"}
	ipvsUnknown := false
	st, err := c.net.IPVS()
	kp.IPVS = st
	switch {
	case errors.Is(err, ErrIPVSUnavailable):
		kp.IPVS = IPVS{}
		ipvsItem.Value = "ip_vs not available"
		ipvsItem.Explain = "the kernel has no IPVS: kube-proxy cannot run in IPVS mode here"
	case err != nil:
		kp.IPVS.Error = err.Error()
		ipvsItem.Value, ipvsItem.Status, ipvsItem.Source = "unknown", StatusUnknown, err.Error()
		ipvsItem.Explain = "cannot list IPVS services"
		ipvsUnknown = true
	default:
		ipvsItem.Value = plural(st.Services, "service", "services") + ", " + plural(st.RealServers, "real server", "real servers")
		if len(st.Schedulers) > 0 {
			ipvsItem.Value += " (" + strings.Join(st.Schedulers, ", ") + ")"
		}
		ipvsItem.Explain = "IPVS picks a real server per connection for kube-proxy IPVS mode"
		var empty []string
		for _, vs := range st.VirtualServices {
			if vs.RealServers == 0 {
				empty = append(empty, vs.Protocol+" "+vs.Address)
			}
		}
		if len(empty) > 0 {
			ipvsItem.Status = StatusWarn
			ipvsItem.Value += "; without real servers: " + strings.Join(empty[:min(len(empty), 5)], ", ")
			if len(empty) > 5 {
				ipvsItem.Value += fmt.Sprintf(" and %d more", len(empty)-5)
			}
			ipvsItem.Explain = "IPVS drops connections to a virtual service without real servers (ICMP port unreachable): a Service without ready endpoints"
		}
	}

	var noEndpoints Item
	kp.NoEndpoints, noEndpoints = c.noEndpoints(tables, tablesErr, kp.NFTablesFamilies)
	var services Item
	kp.Services, kp.ServicePorts, services = c.services(tables, kp.NFTablesFamilies, kp.NoEndpoints)

	kp.Mode = kubeProxyMode(kp, ipvsUnknown)
	mode := Item{ID: "kube_proxy.mode", Name: "kube-proxy mode", Value: kp.Mode, Status: StatusInfo,
		Check:  "curl -s localhost:10249/proxyMode",
		Source: "kernel rules and devices (KUBE-SERVICES chain, kube-proxy table, kube-ipvs0, IPVS services)"}
	switch kp.Mode {
	case ModeIPTables:
		mode.Explain = "Service traffic is DNATed by iptables nat KUBE-SERVICES → KUBE-SVC-* → KUBE-SEP-*"
	case ModeIPVS:
		mode.Explain = "ClusterIPs live on kube-ipvs0; IPVS picks and NATs to a real server"
	case ModeNFTables:
		mode.Explain = "Service traffic is DNATed in the nftables kube-proxy table"
	case ModeNone:
		mode.Explain = "no kube-proxy rules: no kube-proxy, or a CNI replaces it (e.g. cilium kube-proxy replacement)"
	default:
		mode.Status = StatusUnknown
		mode.Explain = "no kube-proxy rules found, but some sources could not be read"
	}
	if mixed := mixedModes(kp); mixed != "" {
		mode.Status = StatusWarn
		mode.Explain = "rules of more than one mode (" + mixed + "): leftovers of a mode switch can still catch Service traffic"
	}
	items = append(items, mode, nftItem, legItem, tblItem, ipvsDev, ipvsItem, services, noEndpoints)
	return kp, items
}

// legacyKubeServices looks for KUBE-SERVICES in the legacy nat tables,
// iptables-legacy's and, where the node has one, ip6tables-legacy's (an
// IPv6-only or dual-stack cluster on the legacy backend), without creating
// either table.
func (c *collector) legacyKubeServices(kp *KubeProxy) Item {
	it := Item{ID: "kube_proxy.kube_services_legacy", Name: "iptables-legacy nat KUBE-SERVICES",
		Check: "iptables-legacy -t nat -S KUBE-SERVICES | head", Status: StatusInfo,
		Explain: "kube-proxy iptables mode (legacy backend) sends Service traffic through this chain"}
	v4, v4Source, v4Err := c.legacyFamilyKubeServices(xtIPv4)
	state, source, err := v4, v4Source, v4Err
	if c.hasLegacy(xtIPv6, "nat") {
		it.Check += "; ip6tables-legacy -t nat -S KUBE-SERVICES | head"
		v6, v6Source, v6Err := c.legacyFamilyKubeServices(xtIPv6)
		source = strings.Join(slices.DeleteFunc([]string{source, v6Source}, func(s string) bool { return s == "" }), "; ")
		switch {
		case v4 == Present || v6 == Present:
			state, err = Present, nil
		case v6Err != nil:
			state, err = v6, errors.Join(v4Err, v6Err)
		}
	}
	if err != nil {
		it.Value, it.Status, it.Source = "unknown", StatusUnknown, err.Error()
		it.Explain = "the legacy nat table exists but its chains cannot be read (needs CAP_NET_ADMIN/CAP_NET_RAW)"
		return it
	}
	kp.KubeServicesLegacy = state
	it.Value, it.Source = string(state), source
	return it
}

// legacyFamilyKubeServices looks for KUBE-SERVICES in the legacy nat table
// of one family: Absent with why, Present, or an error (the state then
// stays Unsure).
func (c *collector) legacyFamilyKubeServices(fam xtFamily) (Presence, string, error) {
	tool := strings.TrimSuffix(fam.tool, "-legacy")
	names, err := c.read(fam.names)
	if err != nil {
		return Absent, "no /" + fam.names + ": legacy " + tool + " not in the kernel", nil
	}
	if !slices.Contains(strings.Fields(string(names)), "nat") {
		return Absent, "/" + fam.names + ": no legacy nat table", nil
	}
	chains, err := c.net.LegacyChains(fam.name, "nat")
	if err != nil {
		return Unsure, "", err
	}
	if slices.Contains(chains, kubeServicesChain) {
		return Present, fam.source("nat"), nil
	}
	return Absent, fam.source("nat"), nil
}

func kubeProxyMode(kp KubeProxy, ipvsUnknown bool) string {
	switch {
	case kp.KubeIPVS0 == Present || kp.IPVS.Services > 0:
		return ModeIPVS
	case len(kp.NFTablesFamilies) > 0:
		return ModeNFTables
	case kp.KubeServicesNFT == Present || kp.KubeServicesLegacy == Present:
		return ModeIPTables
	case kp.KubeServicesNFT == Unsure || kp.KubeServicesLegacy == Unsure || kp.KubeIPVS0 == Unsure || ipvsUnknown:
		return ModeUnknown
	}
	return ModeNone
}

// mixedModes names the modes whose rules coexist, or "". IPVS mode keeps a
// KUBE-SERVICES nat chain of its own, so IPVS plus one iptables backend is
// not mixed.
func mixedModes(kp KubeProxy) string {
	var parts, ipt []string
	ipvs := kp.KubeIPVS0 == Present || kp.IPVS.Services > 0
	if ipvs {
		parts = append(parts, ModeIPVS)
	}
	if len(kp.NFTablesFamilies) > 0 {
		parts = append(parts, ModeNFTables)
	}
	if kp.KubeServicesNFT == Present {
		ipt = append(ipt, "iptables-nft")
	}
	if kp.KubeServicesLegacy == Present {
		ipt = append(ipt, "iptables-legacy")
	}
	if !ipvs || len(ipt) > 1 {
		parts = append(parts, ipt...)
	}
	if len(parts) < 2 {
		return ""
	}
	return strings.Join(parts, " + ")
}
