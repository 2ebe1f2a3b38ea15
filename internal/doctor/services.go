package doctor

import (
	"slices"
	"strings"
)

// kube-proxy names every Service port in its rules: iptables mode in the
// comments of the nat table's KUBE-SERVICES rules ("default/web:http
// cluster IP"), nftables mode in the chains its service maps' elements go
// to ("goto service-SUSTUHLJ-default/web/tcp/http", "goto
// external-SUSTUHLJ-default/web/tcp/http"; kube-proxy 1.37 gives these
// elements no comment); the rules for ports without endpoints name them
// too (noEndpoints).
const (
	serviceIPsMap       = "service-ips"
	serviceNodePortsMap = "service-nodeports"
)

// services counts the Services (namespace/name) that kube-proxy's rules
// name, from the nat KUBE-SERVICES chains of iptables-nft and
// iptables-legacy, the service maps of the kube-proxy tables (families)
// and the rules for ports without endpoints. IPVS mode's rules name none.
func (c *collector) services(tables []NFTable, families []string, noEndpoints []NoEndpointsRule) (int, Item) {
	it := Item{ID: "kube_proxy.services", Name: "Services in kube-proxy's rules", Status: StatusInfo,
		Explain: "the Services (with or without endpoints) kube-proxy has programmed: a Service missing here gets no DNAT on this node"}
	names := map[string]bool{}
	add := func(portName string) {
		svc, _, _ := strings.Cut(portName, ":")
		if strings.Count(svc, "/") == 1 && !strings.ContainsAny(svc, " \t") {
			names[svc] = true
		}
	}
	var sources, checks, problems []string
	for _, t := range tables {
		if t.Family != "ip" || t.Name != "nat" || !slices.Contains(t.Chains, kubeServicesChain) {
			continue
		}
		sources = append(sources, "nf_tables netlink: table ip nat KUBE-SERVICES")
		checks = append(checks, "iptables -t nat -S KUBE-SERVICES")
		rs, err := c.net.NFTRules(t.Family, t.Name, []string{kubeServicesChain})
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		for _, r := range rs {
			add(firstField(r.Comment))
		}
	}
	if legacy, err := c.read("proc/net/ip_tables_names"); err == nil && slices.Contains(strings.Fields(string(legacy)), "nat") {
		rs, err := c.net.LegacyRules("nat")
		if err != nil {
			problems = append(problems, err.Error())
		} else {
			sources = append(sources, "IPT_SO_GET_ENTRIES on the legacy nat table")
			checks = append(checks, "iptables-legacy -t nat -S KUBE-SERVICES")
			for _, r := range rs {
				if r.Chain == kubeServicesChain {
					add(firstField(r.Comment))
				}
			}
		}
	}
	for _, fam := range families {
		sources = append(sources, "nf_tables netlink: table "+fam+" kube-proxy")
		for _, m := range []string{serviceIPsMap, serviceNodePortsMap} {
			checks = append(checks, "nft list map "+fam+" "+kubeProxyTable+" "+m)
			els, err := c.net.NFTMap(fam, kubeProxyTable, m)
			if err != nil {
				problems = append(problems, err.Error())
				continue
			}
			for _, el := range els {
				if el.Comment != "" {
					add(strings.Trim(el.Comment, `"`))
				} else {
					add(serviceOfChain(el.Verdict))
				}
			}
		}
	}
	for _, ne := range noEndpoints {
		add(ne.Service)
	}
	it.Check = strings.Join(checks, "; ")
	it.Source = strings.Join(append(sources, problems...), "; ")
	switch {
	case len(sources) == 0 && len(problems) == 0:
		it.Value, it.Source = "none", "no kube-proxy nat chain or table"
		if it.Check == "" {
			it.Check = "iptables -t nat -S KUBE-SERVICES; nft list map ip kube-proxy service-ips"
		}
	case len(names) == 0 && len(problems) > 0:
		it.Value, it.Status = "unknown", StatusUnknown
	default:
		it.Value = plural(len(names), "Service", "Services")
	}
	return len(names), it
}

// firstField is the first word of an iptables comment (its quotes gone).
func firstField(comment string) string {
	f, _, _ := strings.Cut(strings.TrimSpace(strings.Trim(comment, `"`)), " ")
	return f
}

// serviceOfChain is the Service ("namespace/name") of an nftables-mode
// service chain a verdict goes to: "goto service-HASH-NS/NAME/PROTO/PORT"
// or "goto external-HASH-NS/NAME/PROTO/PORT"; "" for other verdicts.
func serviceOfChain(verdict string) string {
	_, chain, ok := strings.Cut(verdict, " ")
	if !ok {
		return ""
	}
	for _, prefix := range []string{"service-", "external-"} {
		if rest, ok := strings.CutPrefix(chain, prefix); ok {
			_, svcPort, ok := strings.Cut(rest, "-")
			if f := strings.Split(svcPort, "/"); ok && len(f) == 4 {
				return f[0] + "/" + f[1]
			}
		}
	}
	return ""
}
