package doctor

import (
	"cmp"
	"slices"
	"strconv"
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
// name and lists the addresses and ports they send to each Service port
// (KubeProxy.ServicePorts), from the nat KUBE-SERVICES and KUBE-NODEPORTS
// chains of iptables-nft (tables ip nat and ip6 nat), iptables-legacy and
// ip6tables-legacy,
// the service maps of the kube-proxy tables (families) and the rules for
// ports without endpoints. IPVS mode's rules name none.
func (c *collector) services(tables []NFTable, families []string, noEndpoints []NoEndpointsRule) (int, []ServicePort, Item) {
	it := Item{ID: "kube_proxy.services", Name: "Services in kube-proxy's rules", Status: StatusInfo,
		Explain: "the Services (with or without endpoints) kube-proxy has programmed: a Service missing here gets no DNAT on this node"}
	names := map[string]bool{}
	add := func(portName string) {
		if svc, ok := serviceOf(portName); ok {
			names[svc] = true
		}
	}
	ports := map[ServicePort]bool{}
	natRules := func(rs []Rule) {
		for _, r := range rs {
			add(firstField(r.Comment))
			if sp, ok := natServicePort(r); ok {
				ports[sp] = true
			}
		}
	}
	var sources, checks, problems []string
	for _, t := range tables {
		if (t.Family != "ip" && t.Family != "ip6") || t.Name != "nat" || !slices.Contains(t.Chains, kubeServicesChain) {
			continue
		}
		sources = append(sources, "nf_tables netlink: table "+t.Family+" nat KUBE-SERVICES")
		tool := map[string]string{"ip": "iptables", "ip6": "ip6tables"}[t.Family]
		checks = append(checks, tool+" -t nat -S KUBE-SERVICES")
		chains := []string{kubeServicesChain}
		if slices.Contains(t.Chains, kubeNodePortsChain) {
			chains = append(chains, kubeNodePortsChain)
		}
		rs, err := c.net.NFTRules(t.Family, t.Name, chains)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		natRules(rs)
	}
	for _, fam := range xtFamilies {
		if !c.hasLegacy(fam, "nat") {
			continue
		}
		rs, err := c.net.LegacyRules(fam.name, "nat")
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		sources = append(sources, fam.source("nat"))
		checks = append(checks, fam.tool+" -t nat -S KUBE-SERVICES")
		natRules(slices.DeleteFunc(rs, func(r Rule) bool {
			return r.Chain != kubeServicesChain && r.Chain != kubeNodePortsChain
		}))
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
				sp, ok := mapServicePort(el, m == serviceNodePortsMap)
				if ok {
					ports[sp] = true
				}
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
	return len(names), servicePorts(ports), it
}

// serviceOf is the Service ("namespace/name") of a Service port's name as
// kube-proxy writes it ("namespace/name:port" or "namespace/name"); ok is
// false when portName is no such name.
func serviceOf(portName string) (string, bool) {
	svc, _, _ := strings.Cut(portName, ":")
	ns, name, ok := strings.Cut(svc, "/")
	ok = ok && ns != "" && name != "" && !strings.Contains(name, "/") && !strings.ContainsAny(svc, " \t\"")
	return svc, ok
}

// natKinds are the kinds of Service address kube-proxy's nat KUBE-SERVICES
// rules name after the Service port ("default/web:http cluster IP").
var natKinds = map[string]string{
	"cluster IP":      KindClusterIP,
	"external IP":     KindExternalIP,
	"loadbalancer IP": KindLoadBalancerIP,
}

// natServicePort reads the Service port of one of kube-proxy's nat rules:
// in KUBE-SERVICES "-d VIP -p tcp --dport 80 -m comment --comment
// "NS/NAME:PORT cluster IP"" (or external IP, loadbalancer IP); in
// KUBE-NODEPORTS "-p tcp --dport 30080 -m comment --comment "NS/NAME:PORT"".
// Other rules (the jump to KUBE-NODEPORTS, masquerade rules, ...) are not
// one.
func natServicePort(r Rule) (ServicePort, bool) {
	comment := strings.TrimSpace(strings.Trim(r.Comment, `"`))
	name, what, _ := strings.Cut(comment, " ")
	if _, ok := serviceOf(name); !ok || r.Proto == 0 || r.DPort == 0 {
		return ServicePort{}, false
	}
	sp := ServicePort{Service: name, Proto: r.Proto, Port: r.DPort}
	switch r.Chain {
	case kubeServicesChain:
		kind, ok := natKinds[what]
		if !ok || !r.Dst.IsValid() || !r.Dst.IsSingleIP() {
			return ServicePort{}, false
		}
		sp.Kind, sp.Addr = kind, r.Dst.Addr().Unmap()
	case kubeNodePortsChain:
		if what != "" {
			return ServicePort{}, false
		}
		sp.Kind = KindNodePort
	default:
		return ServicePort{}, false
	}
	return sp, true
}

// mapServicePort reads the Service port of an element of nftables mode's
// service-ips map (nodePorts false: a cluster IP when it goes to a
// service- chain, an external IP when to an external- chain) or
// service-nodeports map (a node port). The element's comment names the
// port when it has one, else the chain does.
func mapServicePort(el MapElement, nodePorts bool) (ServicePort, bool) {
	_, chain, _ := strings.Cut(el.Verdict, " ")
	name, _ := serviceChain(el.Verdict)
	if c := strings.Trim(el.Comment, `"`); c != "" {
		name = firstField(c)
	}
	external := strings.HasPrefix(chain, "external-")
	if _, named := serviceOf(name); !named || el.Proto == 0 || el.Port == 0 ||
		!external && !strings.HasPrefix(chain, "service-") {
		return ServicePort{}, false
	}
	sp := ServicePort{Service: name, Proto: el.Proto, Port: el.Port}
	switch {
	case nodePorts:
		sp.Kind = KindNodePort
	case !el.Addr.IsValid():
		return ServicePort{}, false
	case external:
		sp.Kind, sp.Addr = KindExternalIP, el.Addr.Unmap()
	default:
		sp.Kind, sp.Addr = KindClusterIP, el.Addr.Unmap()
	}
	return sp, true
}

// servicePorts sorts the Service ports found, names an unnamed port by its
// number, and keeps the first MaxServicePorts.
func servicePorts(found map[ServicePort]bool) []ServicePort {
	// An unnamed port is a Service's only port: its number is the port of
	// the Service's addresses (not of its node port).
	number := map[string]uint16{}
	for sp := range found {
		if sp.Kind != KindNodePort && !strings.Contains(sp.Service, ":") {
			number[sp.Service+" "+ProtocolName(sp.Proto)] = sp.Port
		}
	}
	out := make([]ServicePort, 0, len(found))
	for sp := range found {
		if !strings.Contains(sp.Service, ":") {
			if sp.Kind != KindNodePort {
				sp.Service += ":" + strconv.Itoa(int(sp.Port))
			} else if n, ok := number[sp.Service+" "+ProtocolName(sp.Proto)]; ok {
				sp.Service += ":" + strconv.Itoa(int(n))
			}
		}
		out = append(out, sp)
	}
	slices.SortFunc(out, compareServicePorts)
	out = slices.Compact(out)
	if len(out) == 0 {
		return nil
	}
	return out[:min(len(out), MaxServicePorts)]
}

func compareServicePorts(a, b ServicePort) int {
	return cmp.Or(strings.Compare(a.Service, b.Service), strings.Compare(a.Kind, b.Kind),
		a.Addr.Compare(b.Addr), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port))
}

// firstField is the first word of an iptables comment (its quotes gone).
func firstField(comment string) string {
	f, _, _ := strings.Cut(strings.TrimSpace(strings.Trim(comment, `"`)), " ")
	return f
}

// serviceOfChain is the Service ("namespace/name") of an nftables-mode
// service chain a verdict goes to (serviceChain); "" for other verdicts.
func serviceOfChain(verdict string) string {
	portName, ok := serviceChain(verdict)
	if !ok {
		return ""
	}
	svc, _, _ := strings.Cut(portName, ":")
	return svc
}

// serviceChain reads the chain of an nftables-mode verdict "goto
// service-HASH-NS/NAME/PROTO/PORT" or "goto external-HASH-NS/NAME/PROTO/PORT":
// the Service port's name ("NS/NAME:PORT", or "NS/NAME" for an unnamed
// port, as kube-proxy's iptables comments name it). ok is false for other
// verdicts.
func serviceChain(verdict string) (portName string, ok bool) {
	_, chain, ok := strings.Cut(verdict, " ")
	if !ok {
		return "", false
	}
	for _, prefix := range []string{"service-", "external-"} {
		if rest, ok := strings.CutPrefix(chain, prefix); ok {
			_, svcPort, ok := strings.Cut(rest, "-")
			if f := strings.Split(svcPort, "/"); ok && len(f) == 4 && f[0] != "" && f[1] != "" {
				portName = f[0] + "/" + f[1]
				if f[3] != "" {
					portName += ":" + f[3]
				}
				return portName, true
			}
		}
	}
	return "", false
}
