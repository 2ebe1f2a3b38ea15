package doctor

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Where kube-proxy writes its rules for Service ports without endpoints:
// iptables mode in the filter table's service chains (pkg/proxy/iptables),
// nftables mode in two verdict maps of its own table (pkg/proxy/nftables),
// with "goto reject-chain" or "drop" as the verdict.
const (
	kubeExternalServicesChain = "KUBE-EXTERNAL-SERVICES"
	kubeNodePortsChain        = "KUBE-NODEPORTS"
	noEndpointServicesMap     = "no-endpoint-services"
	noEndpointNodePortsMap    = "no-endpoint-nodeports"
	kubeRejectChain           = "reject-chain"
	// The comments kube-proxy gives its iptables rules, after the Service
	// port's name.
	noEndpointsComment      = " has no endpoints"
	noLocalEndpointsComment = " has no local endpoints"
)

// kubeFilterChains are the filter table's chains that hold kube-proxy's
// rules for Service ports without endpoints.
var kubeFilterChains = []string{kubeServicesChain, kubeExternalServicesChain, kubeNodePortsChain}

// ProtocolName names an IP protocol as Kubernetes and IPVS do ("TCP",
// "UDP", "SCTP"); "" for others.
func ProtocolName(proto uint8) string {
	switch proto {
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 132:
		return "SCTP"
	}
	return ""
}

// noEndpoints reads kube-proxy's rules for Service ports without endpoints
// from every place a mode writes them: the filter table of iptables-nft
// (nf_tables) and of iptables-legacy (x_tables), and the kube-proxy tables
// of nftables mode (families). tables are the nf_tables tables, tablesErr
// why they could not be listed.
func (c *collector) noEndpoints(tables []NFTable, tablesErr error, families []string) ([]NoEndpointsRule, Item) {
	it := Item{ID: "kube_proxy.no_endpoints", Name: "Services without endpoints", Status: StatusInfo}
	var rules []NoEndpointsRule
	var sources, checks, problems []string

	if tablesErr != nil {
		problems = append(problems, tablesErr.Error())
	}
	for _, t := range tables {
		if t.Family != "ip" || t.Name != "filter" {
			continue
		}
		chains := slices.DeleteFunc(slices.Clone(kubeFilterChains), func(ch string) bool { return !slices.Contains(t.Chains, ch) })
		if len(chains) == 0 {
			continue
		}
		sources = append(sources, "nf_tables netlink: table ip filter")
		checks = append(checks, "iptables-save -t filter | grep 'has no'")
		rs, err := c.net.NFTRules(t.Family, t.Name, chains)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		rules = append(rules, iptablesNoEndpoints(rs, "iptables-nft filter ")...)
	}
	for _, fam := range families {
		sources = append(sources, "nf_tables netlink: table "+fam+" kube-proxy")
		for _, m := range []string{noEndpointServicesMap, noEndpointNodePortsMap} {
			checks = append(checks, "nft list map "+fam+" "+kubeProxyTable+" "+m)
			els, err := c.net.NFTMap(fam, kubeProxyTable, m)
			if err != nil {
				problems = append(problems, err.Error())
				continue
			}
			rules = append(rules, nftablesNoEndpoints(els, fam, m)...)
		}
	}
	for _, fam := range xtFamilies {
		if !c.hasLegacy(fam, "filter") {
			continue
		}
		sources = append(sources, fam.source("filter"))
		checks = append(checks, fam.tool+"-save -t filter | grep 'has no'")
		rs, err := c.net.LegacyRules(fam.name, "filter")
		if err != nil {
			problems = append(problems, err.Error())
		} else {
			rules = append(rules, iptablesNoEndpoints(rs, fam.tool+" filter ")...)
		}
	}

	rules = sortNoEndpoints(rules)
	if len(checks) == 0 {
		checks = []string{"iptables-save -t filter | grep 'has no'", "nft list map ip " + kubeProxyTable + " " + noEndpointServicesMap}
	}
	it.Check = strings.Join(checks, "; ")
	it.Source = strings.Join(append(sources, problems...), "; ")
	switch {
	case len(rules) > 0:
		it.Status = StatusWarn
		var names []string
		for _, r := range rules[:min(len(rules), 5)] {
			names = append(names, r.String())
		}
		it.Value = plural(len(rules), "Service port", "Service ports") + ": " + strings.Join(names, ", ")
		if len(rules) > 5 {
			it.Value += fmt.Sprintf(" and %d more", len(rules)-5)
		}
		it.Explain = "kube-proxy rejects (ICMP port unreachable) packets to a Service port without ready endpoints, and drops them when its traffic policy is Local and no endpoint is on this node"
	case len(problems) > 0:
		it.Value, it.Status = "unknown", StatusUnknown
		it.Explain = "cannot read kube-proxy's rules for Services without endpoints (needs CAP_NET_ADMIN)"
	default:
		it.Value = "none"
		if len(sources) == 0 {
			it.Source = "no kube-proxy filter chains, no kube-proxy table"
		}
		it.Explain = "kube-proxy rejects or drops packets to Service ports without ready endpoints; it has no such rule here"
	}
	return rules, it
}

// String is the rule for people: "default/web:http 10.96.0.11:80/TCP
// reject", "default/web NodePort 30080/TCP drop".
func (r NoEndpointsRule) String() string {
	where := fmt.Sprintf("%s:%d", r.Address, r.Port)
	switch {
	case r.NodePort:
		where = fmt.Sprintf("NodePort %d", r.Port)
	case strings.Contains(r.Address, ":"):
		where = fmt.Sprintf("[%s]:%d", r.Address, r.Port)
	}
	return fmt.Sprintf("%s %s/%s %s", cmp.Or(r.Service, "(unnamed)"), where, r.Protocol, r.Action)
}

// iptablesNoEndpoints picks kube-proxy's rules for Service ports without
// endpoints out of iptables rules: in its filter chains, with its comment,
// one protocol and port, an address (or any local one, for a NodePort),
// and REJECT or DROP. where prefixes the chain in NoEndpointsRule.Rule.
func iptablesNoEndpoints(rs []Rule, where string) []NoEndpointsRule {
	var out []NoEndpointsRule
	for _, r := range rs {
		if r.Other || !slices.Contains(kubeFilterChains, r.Chain) || r.DPort == 0 {
			continue
		}
		comment := strings.Trim(r.Comment, `"`)
		svc, ok := strings.CutSuffix(comment, noEndpointsComment)
		if !ok {
			svc, ok = strings.CutSuffix(comment, noLocalEndpointsComment)
		}
		proto := ProtocolName(r.Proto)
		if !ok || proto == "" || (r.Verdict != VerdictReject && r.Verdict != VerdictDrop) {
			continue
		}
		ne := NoEndpointsRule{Service: svc, Protocol: proto, Port: r.DPort, Action: r.Verdict, Rule: where + r.Chain}
		switch {
		case r.Dst.IsValid() && r.Dst.IsSingleIP() && !r.DstLocal:
			ne.Address = r.Dst.Addr().String()
		case !r.Dst.IsValid() && r.DstLocal:
			ne.NodePort = true
		default:
			continue
		}
		out = append(out, ne)
	}
	return out
}

// nftablesNoEndpoints reads the elements of nftables mode's no-endpoint map
// m of family fam: "goto reject-chain" rejects, "drop" drops; the comment
// names the Service port.
func nftablesNoEndpoints(els []MapElement, fam, m string) []NoEndpointsRule {
	var out []NoEndpointsRule
	for _, el := range els {
		ne := NoEndpointsRule{Service: strings.Trim(el.Comment, `"`), Protocol: ProtocolName(el.Proto), Port: el.Port,
			NodePort: m == noEndpointNodePortsMap, Rule: "nftables " + fam + " " + kubeProxyTable + " " + m}
		switch el.Verdict {
		case VerdictDrop:
			ne.Action = ActionDrop
		case "goto " + kubeRejectChain, "jump " + kubeRejectChain:
			ne.Action = ActionReject
		default:
			continue
		}
		if ne.Protocol == "" || ne.Port == 0 || ne.NodePort == el.Addr.IsValid() {
			continue
		}
		if el.Addr.IsValid() {
			ne.Address = el.Addr.String()
		}
		out = append(out, ne)
	}
	return out
}

// sortNoEndpoints sorts the rules, drops repeats and keeps the first
// MaxVirtualServices.
func sortNoEndpoints(rules []NoEndpointsRule) []NoEndpointsRule {
	slices.SortFunc(rules, func(a, b NoEndpointsRule) int {
		return cmp.Or(cmp.Compare(a.Address, b.Address), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port),
			boolCompare(a.NodePort, b.NodePort), cmp.Compare(a.Service, b.Service), cmp.Compare(a.Action, b.Action), cmp.Compare(a.Rule, b.Rule))
	})
	rules = slices.Compact(rules)
	if len(rules) > MaxVirtualServices {
		rules = rules[:MaxVirtualServices]
	}
	return rules
}

func boolCompare(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
