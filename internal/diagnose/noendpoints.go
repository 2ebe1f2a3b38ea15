package diagnose

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// noEndpoints explains a netfilter drop of a packet to a Service port the
// node's report lists among kube-proxy's rules for Services without
// endpoints: by the report alone, so also where the kernel does not show
// table verdicts. "" when the packet was not such a packet.
func (d *drop) noEndpoints() string {
	if d.n == nil || d.n.noEndpoints == nil {
		return ""
	}
	// kube-proxy's rules run in the filter hooks: iptables mode's from
	// INPUT, FORWARD and OUTPUT, nftables mode's filter-* chains.
	switch d.hook {
	case hop.Forward, hop.Input, hop.Output, hop.NoHook:
	default:
		return ""
	}
	if d.by != nil && d.by.Table != nil && d.by.Table.Name != "" && d.by.Table.Name != "filter" && d.by.Table.Name != "kube-proxy" {
		return ""
	}
	proto := d.h.Proto
	if proto == 0 {
		proto = d.p.Proto
	}
	// A NodePort rule matches the node's own addresses: INPUT, or a hook
	// the trace does not tell.
	local := d.hook == hop.Input || d.hook == hop.NoHook
	var r doctor.NoEndpointsRule
	var dst netip.AddrPort
	ok := false
	for _, cand := range []netip.AddrPort{d.h.Dst, d.firstDst(), d.p.Dst} {
		if r, ok = d.n.noEndpointsRule(proto, cand, local); ok {
			dst = cand
			break
		}
	}
	if !ok {
		return ""
	}
	var s note
	svc := serviceName(r)
	what := fmt.Sprintf("The Service %s (%s, %s)", svc, dst, r.Protocol)
	if r.NodePort {
		what = fmt.Sprintf("The Service %s, NodePort %d (%s, here %s)", svc, r.Port, r.Protocol, dst)
	}
	hook := hookOr(d.hook.String(), "its hook")
	switch r.Action {
	case doctor.ActionDrop:
		s.say("%s has no ready endpoints on %s: its traffic policy is Local (internalTrafficPolicy for the ClusterIP, externalTrafficPolicy for external addresses and NodePorts) and none of its ready endpoints runs on this node, so kube-proxy's rule (%s) dropped the packet in %s without an answer; the client sees a timeout.",
			what, d.ns, r.Rule, hook)
		s.say("Run a ready endpoint on this node, or use the Cluster policy.")
	default:
		s.say("%s has no ready endpoints: kube-proxy's rule for it (%s) rejected the packet in %s on %s and sent ICMP port unreachable back to %s; a TCP client sees \"connection refused\".",
			what, r.Rule, hook, d.ns, d.src())
		s.say("Give the Service ready endpoints: its selector must match running pods that pass their readiness probes.")
	}
	for _, c := range serviceChecks(r, dst, r.Action == doctor.ActionDrop) {
		s.run(c)
	}
	if c := ruleCheck(r); c != "" {
		s.run(d.in + c)
	}
	return s.String()
}

// firstDst is the packet's destination at its first hop in the drop's
// namespace: before any DNAT there.
func (d *drop) firstDst() netip.AddrPort {
	for j := range d.i {
		if h := &d.p.Hops[j]; h.NetnsInode == d.h.NetnsInode {
			return h.Dst
		}
	}
	return netip.AddrPort{}
}

// serviceName is the rule's Service port for people.
func serviceName(r doctor.NoEndpointsRule) string {
	if r.Service == "" {
		return "(the rule names none)"
	}
	return r.Service
}

// serviceChecks are the kubectl commands that show a Service's endpoints
// (nodes: where each runs).
func serviceChecks(r doctor.NoEndpointsRule, dst netip.AddrPort, nodes bool) []string {
	ns, name, ok := r.NamespaceName()
	if !ok {
		return []string{"kubectl get services -A -o wide | grep -w " + dst.Addr().String()}
	}
	sel := " -n " + ns + " -l kubernetes.io/service-name=" + name
	if nodes {
		return []string{"kubectl describe endpointslices" + sel + "   # NodeName and Ready of each endpoint"}
	}
	return []string{"kubectl get endpointslices" + sel, "kubectl describe service -n " + ns + " " + name + "   # its selector"}
}

// ruleCheck is the command that lists the rule, from where the report
// found it.
func ruleCheck(r doctor.NoEndpointsRule) string {
	f := strings.Fields(r.Rule)
	switch {
	case len(f) == 3 && (f[0] == "iptables-nft" || f[0] == "iptables-legacy" || f[0] == "ip6tables-legacy"):
		cmd := "iptables"
		if f[0] != "iptables-nft" {
			cmd = f[0]
		}
		return fmt.Sprintf("%s -t %s -S %s | grep -F '%s has no'", cmd, f[1], f[2], r.Service)
	case len(f) == 4 && f[0] == "nftables":
		return fmt.Sprintf("nft list map %s %s %s | grep -F '\"%s\"'", f[1], f[2], f[3], r.Service)
	}
	return ""
}

// icmpUnreachablePort explains an ICMP port unreachable: by the packet it
// answers where the error's quote was captured (q), else in general. It
// ends the sentence, with the check to run where there is one.
func (a *Advisor) icmpUnreachablePort(p *stitch.Path, q *decode.Tuple) string {
	const head = "destination unreachable (port unreachable)"
	if q == nil {
		return head + ": no socket took an earlier packet of " + p.Dst.Addr().String() +
			" (a UDP port nothing listened on), or a REJECT rule refused it (kube-proxy's, for a Service without ready endpoints)."
	}
	about := head + " answering " + answered(q)
	if r, ok := a.answeredRule(p, q); ok {
		return fmt.Sprintf("%s: the Service %s has no ready endpoints, and kube-proxy's rule for it (%s) rejects its packets. Check: %s",
			about, serviceName(r), r.Rule, serviceChecks(r, q.Dst, false)[0])
	}
	if vs, ok := a.answeredVirtualService(p, q); ok {
		return fmt.Sprintf("%s: IPVS had no real server for the virtual service %s (%s when the trace started): in Kubernetes, the Service has no ready endpoints. Check: ipvsadm -Ln -t %s",
			about, vs.Address, plural(vs.RealServers, "real server", "real servers"), vs.Address)
	}
	switch q.Proto {
	case decode.ProtoUDP:
		return fmt.Sprintf("%s: nothing listened on UDP port %d at %s, or a REJECT rule refused the datagram.", about, q.Dst.Port(), q.Dst.Addr())
	case decode.ProtoTCP:
		return about + ": a REJECT rule refused it, or IPVS for a virtual service without real servers (TCP itself answers a closed port with a reset, not with ICMP)."
	}
	return about + ": nothing took it at that port, or a REJECT rule refused it."
}

// answered names the packet an ICMP error answers: "TCP 10.96.0.11:80
// from 10.244.1.5:40312"; ICMP as "ICMP type 8 10.244.2.7 from
// 10.244.1.5".
func answered(q *decode.Tuple) string {
	switch {
	case q.Proto == decode.ProtoICMP && q.HasPorts:
		return fmt.Sprintf("ICMP type %d %s from %s", q.Src.Port(), q.Dst.Addr(), q.Src.Addr())
	case q.Proto == decode.ProtoICMPv6 && q.HasPorts:
		return fmt.Sprintf("ICMPv6 type %d %s from %s", q.Src.Port(), q.Dst.Addr(), q.Src.Addr())
	case !q.HasPorts:
		name := doctor.ProtocolName(q.Proto)
		if name == "" {
			name = fmt.Sprintf("proto=%d", q.Proto)
		}
		return fmt.Sprintf("%s %s from %s", name, q.Dst.Addr(), q.Src.Addr())
	}
	return fmt.Sprintf("%s %s from %s", doctor.ProtocolName(q.Proto), q.Dst, q.Src)
}

// answeredRule finds the kube-proxy rule for a Service without endpoints
// that matches the packet an ICMP error answers: in the reports of the
// nodes the error crossed first, then of the others. A NodePort's rule
// matches when the error comes from the address the packet was sent to,
// as it does when the node itself rejected it.
func (a *Advisor) answeredRule(p *stitch.Path, q *decode.Tuple) (doctor.NoEndpointsRule, bool) {
	if !q.HasPorts {
		return doctor.NoEndpointsRule{}, false
	}
	local := p.Src.Addr() == q.Dst.Addr()
	for _, ino := range a.inodesFor(p) {
		if r, ok := a.nodes[ino].noEndpointsRule(q.Proto, q.Dst, local); ok {
			return r, true
		}
	}
	return doctor.NoEndpointsRule{}, false
}

// answeredVirtualService finds the IPVS virtual service the packet an ICMP
// error answers was sent to, in the reports as answeredRule looks.
func (a *Advisor) answeredVirtualService(p *stitch.Path, q *decode.Tuple) (doctor.VirtualService, bool) {
	if !q.HasPorts {
		return doctor.VirtualService{}, false
	}
	for _, ino := range a.inodesFor(p) {
		if vs, ok := a.nodes[ino].virtualService(q.Proto, q.Dst); ok {
			return vs, true
		}
	}
	return doctor.VirtualService{}, false
}

// inodesFor lists the reported nodes, those p crossed first.
func (a *Advisor) inodesFor(p *stitch.Path) []uint32 {
	inodes := a.crossed(p)
	for _, ino := range sortedInodes(a.nodes) {
		if !slices.Contains(inodes, ino) {
			inodes = append(inodes, ino)
		}
	}
	return inodes
}
