package diagnose

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/kernel"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// drop is one drop hop being explained.
type drop struct {
	a    *Advisor
	p    *stitch.Path
	i    int
	h    *stitch.Hop
	n    *node    // the report of the drop's node; nil when it has none
	in   string   // command prefix for the drop's namespace
	ns   string   // the namespace's name for people
	hook hop.Hook // the netfilter hook it died in, or hop.NoHook
	nf   *stitch.Hop
	// by is the table or IPVS hop that returned the drop, where the
	// kernel lets it be seen (function hops).
	by *stitch.Hop
	// inferred says, on a kernel without drop reasons, why the advice
	// names the cause it does (inferReason); "" when the kernel named it.
	inferred string
}

// inferReason stands in for the drop reason the kernel gives since Linux
// 5.17, where it gives none (Debian 11's 5.10): the function that freed the
// packet, with the node report, where together they point at one cause.
// Returns that cause as the reason the kernel would give, and a sentence
// that says it was inferred and from what; "" for both where they do not.
func (d *drop) inferReason() (reason, why string) {
	fn := d.h.FuncName()
	const before = "This kernel gives no drop reason (before Linux 5.17)"
	switch {
	case d.ipv6() || fn == "":
	case strings.HasPrefix(fn, "ip_rcv_finish"):
		// ip_rcv_finish_core frees what the input route lookup
		// refuses: a reverse-path check, or a martian source.
		if d.n == nil {
			break
		}
		if mode, ok := d.n.facts.RPFilter.Effective(d.h.Dev); ok && (mode == 1 || mode == 2) {
			return "IP_RPFILTER", fmt.Sprintf("%s; %s frees a packet whose input route lookup failed, and reverse-path filtering is on for %s, the likely cause (a martian source address is the other).",
				before, fn, dashOr(d.h.Dev))
		}
	case fn == "ip_error":
		// The route found is an error route: none (net unreachable),
		// or an unreachable or prohibit one. Forwarding turned off is
		// forwardingOff's, before.
		return "IP_INNOROUTES", fmt.Sprintf("%s; ip_error frees a packet whose route lookup found no usable route: most often none at all (an unreachable or prohibit route is the other case, answered with ICMP host unreachable or administratively prohibited instead).", before)
	case fn == "ip_forward":
		// ip_forward frees a packet it will not forward: one too big
		// for its route with DF set, an expired TTL, a policy.
		if l := d.a.ipLen(d.p, d.i); d.smallOverlay(l) != nil {
			return "PKT_TOO_BIG", fmt.Sprintf("%s; ip_forward frees a packet it will not forward, and this one is larger than an overlay's MTU here, the likely cause (an expired TTL is another).", before)
		}
	}
	return "", ""
}

func (a *Advisor) advise(p *stitch.Path, i int) string {
	h := &p.Hops[i]
	d := &drop{a: a, p: p, i: i, h: h, n: a.nodes[h.NetnsInode], ns: nodeLabel(h)}
	d.in = inNetns(d.n, h.Netns)
	d.hook, d.nf, d.by = hookOf(p, i)

	if d.by != nil && d.by.IPVS != nil {
		return d.ipvs()
	}
	if d.by != nil || h.Reason == "NETFILTER_DROP" || (noReason(h) && netfilterFunc(h)) {
		if s := d.noEndpoints(); s != "" {
			return s
		}
		return d.netfilter()
	}
	if d.forwardingOff() {
		return d.ipForward()
	}
	reason := h.Reason
	if noReason(h) {
		reason, d.inferred = d.inferReason()
	}
	switch reason {
	case "IP_RPFILTER":
		return d.rpFilter()
	case "IP_INNOROUTES", "IP_OUTNOROUTES":
		return d.noRoute()
	case "IP_INADDRERRORS":
		return d.addrError()
	case "PKT_TOO_BIG":
		return d.tooBig()
	case "NO_SOCKET":
		return d.noSocket()
	case "NOT_SPECIFIED", "":
		if s := d.hairpin(); s != "" {
			return s
		}
		if s := d.vethXmit(); s != "" {
			return s
		}
		if s := d.synCopy(); s != "" {
			return s
		}
		if s := d.synTimeWait(); s != "" {
			return s
		}
	}
	return d.generic()
}

// dst and src are the addresses at the drop (after any NAT).
func (d *drop) dst() string { return addrOr(d.h.Dst.Addr().String(), d.p.Dst.Addr().String()) }
func (d *drop) src() string { return addrOr(d.h.Src.Addr().String(), d.p.Src.Addr().String()) }

func addrOr(a, b string) string {
	if a != "" && a != "invalid IP" {
		return a
	}
	return b
}

func (d *drop) netfilter() string {
	var s note
	// A table graded bad is (nearly) full: conntrack drops at its hooks
	// are blamed on it.
	if d.n != nil && d.n.facts.Conntrack.Grade() == doctor.StatusBad &&
		(d.hook == hop.Prerouting || d.hook == hop.Output || d.hook == hop.NoHook) {
		count, limit, pct, _ := d.n.conntrack()
		s.say("The conntrack table of %s was %d/%d (%.0f%% full) when the trace started: nf_conntrack drops packets of new connections at %s before any rule sees them (dmesg: \"nf_conntrack: table full, dropping packet\").",
			d.ns, count, limit, pct, hookOr(d.hook.String(), "PREROUTING/OUTPUT"))
		s.say("Raise net.netfilter.nf_conntrack_max (in the host namespace: it is global, read-only in other namespaces) or find what fills the table.")
		s.run(d.in + "sysctl net.netfilter.nf_conntrack_count net.netfilter.nf_conntrack_max")
		s.run(d.in + "conntrack -C")
		s.run(d.in + "conntrack -S   # drop, early_drop, insert_failed")
		return s.String()
	}
	ipt := d.n.iptables()
	where := d.ns
	if d.nf != nil && (d.nf.In != "" || d.nf.Out != "") {
		where = fmt.Sprintf("%s (in=%s out=%s)", d.ns, dashOr(d.nf.In), dashOr(d.nf.Out))
	}
	if d.by != nil {
		return d.table(where)
	}
	switch d.hook {
	case hop.Forward:
		s.say("A netfilter rule in FORWARD on %s dropped or rejected it: a NetworkPolicy chain (KUBE-FORWARD, KUBE-NWPLCY-*, cali-*, ...) or a firewall rule. Find the rule whose counters grow.", where)
		if d.bridged() {
			s.say("It was called by br_netfilter for a bridged packet.")
		}
		s.run(d.in + ipt + " -L FORWARD -v -n --line-numbers")
		s.run(d.in + "nft list ruleset")
	case hop.Input:
		s.say("A netfilter rule in INPUT on %s dropped or rejected it: the node's firewall (KUBE-FIREWALL, a host firewall) for traffic to the node itself.", where)
		s.run(d.in + ipt + " -L INPUT -v -n --line-numbers")
		s.run(d.in + "nft list ruleset")
	case hop.Output:
		s.say("A netfilter rule in OUTPUT on %s dropped or rejected it (raw, mangle, nat or filter table), or conntrack refused it (an invalid or unroutable connection).", where)
		s.run(d.in + ipt + " -L OUTPUT -v -n --line-numbers")
		s.run(d.in + "nft list ruleset")
		s.run(d.in + "conntrack -S")
	case hop.Prerouting:
		s.say("A netfilter rule in PREROUTING on %s dropped it (raw, mangle or nat table), or conntrack refused it (table full, invalid packet).", where)
		if d.n != nil {
			if count, limit, pct, ok := d.n.conntrack(); ok {
				s.say("The conntrack table was %.0f%% full (%d/%d) at the start.", pct, count, limit)
			}
		}
		s.run(d.in + ipt + " -t raw -L PREROUTING -v -n")
		s.run(d.in + ipt + " -t mangle -L PREROUTING -v -n")
		s.run(d.in + "conntrack -S")
	case hop.Postrouting:
		s.say("A netfilter rule in POSTROUTING on %s dropped it (mangle or nat table), or source NAT found no free port.", where)
		s.run(d.in + ipt + " -t nat -L POSTROUTING -v -n")
		s.run(d.in + "conntrack -S")
	default:
		s.say("A netfilter hook on %s dropped it; the trace does not tell which.", d.ns)
		s.run(d.in + "nft list ruleset")
		s.run(d.in + ipt + "-save -c")
	}
	return s.String()
}

// table explains a drop whose table verdict the trace saw: that table's
// chain is where to look.
func (d *drop) table(where string) string {
	var s note
	tb := d.by.Table
	chain := hookOr(tb.Chain, hookOr(d.hook.String(), "?"))
	name := tb.Name
	switch tb.Engine {
	case hop.EngineXTables:
		s.say("The iptables-legacy table %s, chain %s, on %s returned DROP: a rule in it or in a chain it jumps to, or the chain's policy.", hookOr(name, "(name not readable)"), chain, where)
		if name != "" {
			s.run(d.in + "iptables-legacy -t " + name + " -L " + chain + " -v -n --line-numbers")
		} else {
			s.run(d.in + "iptables-legacy-save -c")
		}
	default:
		s.say("The nftables chain %s of table %s %s on %s returned drop: a rule in it or in a chain it jumps to, or the chain's policy (iptables-nft rules live here too).", chain, hookOr(tb.Family.String(), "?"), hookOr(name, "(name not readable)"), where)
		if name != "" && tb.Family != hop.NoFamily && tb.Chain != "" {
			s.run(d.in + "nft -a list chain " + tb.Family.String() + " " + name + " " + tb.Chain)
		} else {
			s.run(d.in + "nft -a list ruleset")
		}
		if tb.Family == hop.FamilyIPv4 && name != "" {
			s.run(d.in + "iptables-nft -t " + name + " -L " + chain + " -v -n --line-numbers")
		}
	}
	if d.bridged() {
		s.say("It was called by br_netfilter for a bridged packet.")
	}
	return s.String()
}

// ipvs explains a drop by IPVS's own hook: a packet for a virtual service
// that had no real server to send it to.
func (d *drop) ipvs() string {
	var s note
	dst := d.h.Dst
	if !dst.IsValid() {
		dst = d.p.Dst
	}
	svc := dst.String()
	s.say("IPVS dropped it in %s on %s: the virtual service %s had no real server to send it to (none configured, all with weight 0, or all over their connection limits), so IPVS answered with ICMP port unreachable. In Kubernetes: the Service has no ready endpoints.", hookOr(d.hook.String(), "its hook"), d.ns, svc)
	proto := d.h.Proto
	if proto == 0 {
		proto = d.p.Proto
	}
	if vs, ok := d.n.virtualService(proto, dst); ok {
		s.say("When the trace started it had %s (scheduler %s).", plural(vs.RealServers, "real server", "real servers"), vs.Scheduler)
	}
	s.run(d.in + "ipvsadm -Ln -t " + svc)
	s.run("kubectl get services -A -o wide | grep -w " + dst.Addr().String() + "   # then: kubectl get endpointslices -n NAMESPACE -l kubernetes.io/service-name=NAME")
	return s.String()
}

func hookOr(h, or string) string {
	if h == "" {
		return or
	}
	return h
}

func dashOr(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// bridged reports whether the netfilter hop before the drop ran from the
// bridge (br_netfilter): its input device is a pod bridge of the report.
func (d *drop) bridged() bool {
	return d.n != nil && d.nf != nil && d.n.bridge(d.nf.In) != nil && d.nf.In == d.nf.Out
}

// forwardingOff reports a routing drop on a node whose report says
// ip_forward=0: received in the node, never reached FORWARD nor INPUT.
func (d *drop) forwardingOff() bool {
	if d.n == nil {
		return false
	}
	if d.ipv6() {
		if !d.n.facts.IPv6Forwarding.Is(0) {
			return false
		}
	} else if !d.n.facts.IPForward.Is(0) {
		return false
	}
	switch d.h.Reason {
	case "IP_INADDRERRORS", "IP_INNOROUTES", "IPV6DISABLED", "NOT_SPECIFIED", "":
	default:
		return false
	}
	received := sameNetnsBefore(d.p, d.i, func(h *stitch.Hop) bool {
		return h.Kind == hop.Rx || (h.Kind == hop.Netfilter && h.Hook == hop.Prerouting)
	})
	passed := sameNetnsBefore(d.p, d.i, func(h *stitch.Hop) bool {
		return h.Kind == hop.Netfilter && (h.Hook == hop.Forward || h.Hook == hop.Input)
	})
	return received && !passed
}

// ipv6 reports whether the dropped packet is an IPv6 one.
func (d *drop) ipv6() bool {
	if a := d.h.Src.Addr(); a.IsValid() {
		return a.Is6()
	}
	return d.p.Src.Addr().Is6()
}

func (d *drop) ipForward() string {
	var s note
	sysctl, what := "net.ipv4.ip_forward", "Kubernetes nodes need 1"
	if d.ipv6() {
		sysctl, what = "net.ipv6.conf.all.forwarding", "Dual-stack and IPv6 Kubernetes nodes need 1"
	}
	s.say("%s=0 on %s: the node drops what it should route (%s → %s arrived on %s), without an ICMP error, so the sender only sees a timeout.",
		sysctl, d.ns, d.src(), d.dst(), dashOr(d.h.Dev))
	s.say("%s; find what reset it (a sysctl.d file, a firewall package).", what)
	s.run(d.in + "sysctl " + sysctl)
	s.run(d.in + "sysctl -w " + sysctl + "=1")
	return s.String()
}

func (d *drop) rpFilter() string {
	var s note
	if d.inferred != "" {
		s.say("%s", d.inferred)
	}
	dev := d.h.Dev
	sysDev := strings.ReplaceAll(dev, ".", "/")
	// The mode the kernel applied, max(all, dev), as far as the report
	// tells it; -1 when it does not.
	mode, own := int64(-1), doctor.Sysctl{}
	if d.n != nil {
		if m, ok := d.n.facts.RPFilter.Effective(dev); ok {
			mode = m
		}
		own = d.n.facts.RPFilter.Devices[dev]
	}
	switch mode {
	case 1:
		from := "all"
		if own.Is(1) {
			from = dev
		}
		s.say("Strict reverse-path filtering (rp_filter=1, from %s) on %s: the route back to %s does not leave through %s, where the packet came in. That is asymmetric routing: a pod CIDR routed via the underlay instead of the overlay, or a second NIC. The drop is silent (no ICMP).",
			from, d.ns, d.src(), dashOr(dev))
		s.say("Fix the route, or use loose mode (2).")
	case 2:
		s.say("Loose reverse-path filtering (rp_filter=2) on %s: there is no route at all back to %s.", d.ns, d.src())
	default:
		s.say("Reverse-path filtering on %s: the route back to %s does not leave through %s, where the packet came in (asymmetric routing); the report does not show rp_filter for it.", d.ns, d.src(), dashOr(dev))
	}
	s.run(d.in + "ip route get " + d.src() + "   # should leave through " + dashOr(dev))
	s.run(d.in + "sysctl net.ipv4.conf.all.rp_filter net.ipv4.conf." + sysDev + ".rp_filter")
	s.run(d.in + "nstat -az TcpExtIPReversePathFilter")
	return s.String()
}

func (d *drop) noRoute() string {
	var s note
	if d.inferred != "" {
		s.say("%s", d.inferred)
		s.say("No route to %s on %s, most likely: the kernel answers %s with ICMP net unreachable.", d.dst(), d.ns, d.src())
	} else if d.h.Reason == "IP_INNOROUTES" {
		s.say("No route to %s on %s: the kernel answers %s with ICMP net unreachable.", d.dst(), d.ns, d.src())
	} else {
		s.say("No route to %s on %s for a packet the node sends itself.", d.dst(), d.ns)
	}
	if svc := d.otherServicePort(); svc != "" {
		s.say("%s", svc)
		s.run(d.in + "ip route get " + d.dst())
		s.run("kubectl get services -A -o wide | grep -w " + d.dst())
		return s.String()
	}
	if d.n != nil && len(d.n.overlays) > 0 {
		o := d.n.overlays[0]
		s.say("If %s is a pod of another node: the CNI routes each other node's pod CIDR through %s (flanneld adds one route per node), so is that node's route missing? Any other address needs a route of its own, or the node's default route.", d.dst(), o.Name)
		s.run(d.in + "ip route get " + d.dst())
		s.run(d.in + "ip route show dev " + o.Name)
		return s.String()
	}
	s.run(d.in + "ip route get " + d.dst())
	s.run(d.in + "ip route show")
	return s.String()
}

// otherServicePort explains a packet to a Service address (a cluster,
// external or load-balancer IP in kube-proxy's rules on the drop's node)
// at a protocol or port the Service does not have: kube-proxy translates
// only the Service's own ports, and the rest is routed as the address
// itself, which no route leads to (a ping of a cluster IP, a UDP query of
// a TCP-only Service). "" when the destination is no Service address, or
// is one at this very port (a Service port whose translation did not
// happen is another fault).
func (d *drop) otherServicePort() string {
	dst := d.h.Dst
	proto := d.h.Proto
	if !dst.IsValid() {
		dst, proto = d.p.Dst, d.p.Proto
	}
	m, ok := d.n.serviceMiss(dst, proto)
	if !ok {
		return ""
	}
	ask := "Is the client using the Service's port and protocol?"
	if decode.IsICMP(proto) {
		ask = "A ping of a Service address goes unanswered where kube-proxy does not run in IPVS mode; test the Service on its port instead."
	}
	return fmt.Sprintf("%s; this packet is %s: kube-proxy translates only a Service's own protocols and ports, and any other packet to the address is routed as the address itself, for which %s has no route. %s",
		m.is, m.this, d.ns, ask)
}

// serviceMiss is a packet to a Service address at a protocol or port the
// Service does not have (node.serviceMiss): is says what the address is
// ("10.96.0.10 is the cluster IP of TCP 80 (default/web:http)"), this
// what the packet is ("UDP to port 80", "ICMP").
type serviceMiss struct{ is, this string }

// serviceMiss tells whether a packet of proto to dst is to a Service
// address in n's kube-proxy rules at a protocol or port the Service does
// not have; not when dst is no Service address, is one at this very port,
// or the packet's port is not known (a fragment without its ports). n may
// be nil.
func (n *node) serviceMiss(dst netip.AddrPort, proto uint8) (serviceMiss, bool) {
	if n == nil || n.servicePorts == nil {
		return serviceMiss{}, false
	}
	sps := n.servicePorts[dst.Addr().Unmap()]
	if len(sps) == 0 || (dst.Port() == 0 && !decode.IsICMP(proto) && doctor.ProtocolName(proto) != "") {
		return serviceMiss{}, false // a fragment without its ports: which port it is for is not known here
	}
	var has []string
	for _, sp := range sps {
		if sp.Proto == proto && sp.Port == dst.Port() && !decode.IsICMP(proto) {
			return serviceMiss{}, false
		}
		port := doctor.ProtocolName(sp.Proto) + " " + strconv.Itoa(int(sp.Port))
		if sp.Service != "" {
			port += " (" + sp.Service + ")"
		}
		if !slices.Contains(has, port) {
			has = append(has, port)
		}
	}
	this := doctor.ProtocolName(proto)
	switch {
	case proto == decode.ProtoICMPv6:
		this = "ICMPv6"
	case decode.IsICMP(proto):
		this = "ICMP"
	case this == "":
		this = fmt.Sprintf("protocol %d", proto)
	default:
		this = fmt.Sprintf("%s to port %d", this, dst.Port())
	}
	if len(has) > 1 {
		has[len(has)-2] += " and " + has[len(has)-1]
		has = has[:len(has)-1]
	}
	return serviceMiss{is: fmt.Sprintf("%s is the %s of %s", dst.Addr(), sps[0].Kind, strings.Join(has, ", ")), this: this}, true
}

func (d *drop) addrError() string {
	var s note
	dev := dashOr(d.h.Dev)
	fam, all := "ipv4", "net.ipv4.ip_forward"
	if d.ipv6() {
		fam, all = "ipv6", "net.ipv6.conf.all.forwarding"
	}
	s.say("%s is not a destination %s accepts from %s: forwarding is off for the input device (net.%s.conf.%s.forwarding=0) or the address is not routable (martian, broadcast).",
		d.dst(), d.ns, dev, fam, strings.ReplaceAll(dev, ".", "/"))
	s.run(d.in + "ip route get " + d.dst() + " from " + d.src() + " iif " + dev)
	s.run(d.in + "sysctl " + all + " net." + fam + ".conf." + strings.ReplaceAll(dev, ".", "/") + ".forwarding")
	return s.String()
}

func (d *drop) tooBig() string {
	var s note
	if d.inferred != "" {
		s.say("%s", d.inferred)
	}
	l := d.a.ipLen(d.p, d.i)
	o := d.smallOverlay(l)
	switch {
	case o != nil:
		s.say("A %d-byte packet with DF set does not fit the MTU %d of %s on %s: the kernel sent ICMP fragmentation-needed (mtu %d) back to %s and dropped it.",
			l, o.MTU, o.Name, d.ns, o.MTU, d.src())
		if o.UnderlayMTU > 0 {
			s.say("Pods must use an MTU ≤ the overlay's %d (%s MTU %d − %d bytes of %s headers); this sender's is larger.",
				o.MTU, o.Underlay, o.UnderlayMTU, o.Overhead, strings.ToUpper(o.Kind))
		} else {
			s.say("Pods must use an MTU ≤ the overlay's %d; this sender's is larger.", o.MTU)
		}
	case l > 0:
		s.say("A %d-byte packet with DF set is larger than the MTU of its route on %s: the kernel sent ICMP fragmentation-needed back to %s and dropped it.", l, d.ns, d.src())
	default:
		s.say("A packet with DF set is larger than the MTU of its route on %s: the kernel sent ICMP fragmentation-needed back to %s and dropped it.", d.ns, d.src())
	}
	s.run(d.in + "ip route get " + d.dst())
	if o != nil {
		s.run(d.in + "ip -d link show " + o.Name)
	}
	if pod := d.a.podHop(d.p); pod != nil {
		s.run(inNetns(nil, pod.Netns) + "ip link show " + dashOr(pod.Dev) + "   # the pod's MTU")
	}
	return s.String()
}

// smallOverlay is the overlay of the drop's node too small for l bytes:
// the one FORWARD would have sent to, else the smallest.
func (d *drop) smallOverlay(l uint32) *doctor.Overlay {
	if d.n == nil || l == 0 {
		return nil
	}
	var best *doctor.Overlay
	for i := range d.n.overlays {
		o := &d.n.overlays[i]
		if o.MTU <= 0 || uint32(o.MTU) >= l {
			continue
		}
		if best == nil || o.MTU < best.MTU {
			best = o
		}
	}
	return best
}

func (d *drop) noSocket() string {
	var s note
	what := "TCP answers with a reset"
	switch d.p.Proto {
	case 17:
		what = "UDP answers with ICMP port unreachable"
	case 1:
		what = "nothing is sent back"
	}
	port := ""
	if d.h.Dst.Port() != 0 {
		port = fmt.Sprintf(" port %d", d.h.Dst.Port())
	}
	s.say("Nothing listens on %s%s in %s: the packet reached its destination, but no socket took it (%s).", d.dst(), port, d.ns, what)
	s.run(d.in + "ss -lntu")
	return s.String()
}

// synTimeWait explains a TCP SYN that TCP's receive function freed without
// a specific reason: since Linux 5.17 a SYN without a listener is freed
// with NO_SOCKET, so one freed with NOT_SPECIFIED met the TIME_WAIT socket
// of an earlier connection with the same addresses and ports, which
// answered it with an ACK (tcp_timewait_state_process); before 5.17 the
// kernel names no reason, and it is that or no listener.
func (d *drop) synTimeWait() string {
	fn := d.h.FuncName()
	if d.p.Proto != 6 || d.h.TCPFlags&(tcpSYN|tcpACK) != tcpSYN || !tcpRcv(fn) {
		return ""
	}
	var s note
	tw := fmt.Sprintf("This SYN reached %s but met the TIME_WAIT socket of an earlier connection with the same addresses and ports, which answered it with an ACK: the client resets and sends the SYN again after about 1 s, its retransmission timeout (a slow connect, not a refused one). A client port is reused while the server still holds the old connection, which is common behind SNAT (NodePort, masquerade), where many clients share one source address.", d.ns)
	if d.h.Reason == "" {
		s.say("TCP freed this SYN in %s, in %s (no drop reason before Linux 5.17): either nothing listens on %s port %d (answered with a reset), or it met the TIME_WAIT socket of an earlier connection with the same addresses and ports (answered with an ACK; the client resets and sends the SYN again after about 1 s).", d.ns, fn, d.dst(), d.h.Dst.Port())
	} else {
		s.say("%s", tw)
	}
	s.run(d.in + fmt.Sprintf("ss -tan state time-wait '( sport = :%d )'", d.h.Dst.Port()))
	s.run(d.in + "ss -lnt")
	return s.String()
}

// hairpin explains a packet a Service sent back to the pod it came from
// (the DNAT's endpoint is the packet's own source) that the node dropped
// on the device it came in on: the bridge sends a frame back out its
// ingress port only where that port has hairpin mode.
func (d *drop) hairpin() string {
	if d.n == nil || d.h.Dev == "" || d.h.Dst.Addr() != d.p.Src.Addr() {
		return ""
	}
	var dnat *stitch.NAT
	cameIn := false
	for j := range d.i {
		h := &d.p.Hops[j]
		if h.NetnsInode != d.h.NetnsInode {
			continue
		}
		switch {
		case h.Kind == hop.Rx && h.Dev == d.h.Dev:
			cameIn = true
		case h.Kind == hop.NAT && h.NAT != nil && h.NAT.Type == hop.DNAT && !h.NAT.Reverse:
			dnat = h.NAT
		}
	}
	if !cameIn || dnat == nil {
		return ""
	}
	var s note
	svc := dnat.From.String()
	if dnat.Service != "" {
		svc += " (" + dnat.Service + ")"
	}
	s.say("%s sent this packet back to the pod it came from: DNAT %s → %s, the pod's own address (hairpin).", svc, dnat.From, dnat.To)
	s.say("The node dropped it on %s in %s, the bridge port it came in on: a bridge sends a frame back out its ingress port only when hairpin mode is on for that port, which kubelet (--hairpin-mode hairpin-veth) or the CNI bridge plugin (\"hairpinMode\": true) sets; kube-proxy then masquerades the hairpin connection so the reply comes back the same way.", d.h.Dev, d.ns)
	s.run(d.in + "bridge -d link show dev " + d.h.Dev + "   # hairpin on|off")
	return s.String()
}

// vethXmit explains a drop right after the packet was queued on a device
// in the same namespace: veth frees a frame its peer cannot take.
func (d *drop) vethXmit() string {
	if d.i == 0 {
		return ""
	}
	prev := &d.p.Hops[d.i-1]
	if prev.Kind != hop.Tx || prev.NetnsInode != d.h.NetnsInode || prev.Dev != d.h.Dev {
		return ""
	}
	var s note
	l := d.a.ipLen(d.p, d.i)
	s.say("Freed right after it was queued on %s in %s, without a reason: a veth drops a frame larger than its peer's MTU (this packet: %d bytes of IP) or sent while the peer is down.", dashOr(d.h.Dev), d.ns, l)
	if b, n := d.a.smallBridge(l); b != nil {
		s.say("The pod bridge %s has MTU %d on %s: a pod with a larger MTU sends frames its host-side veth refuses.", b.Name, b.MTU, netnsLabel(n))
	}
	s.run(d.in + "ip -d link show " + dashOr(d.h.Dev) + "   # compare the MTU with the peer's, on the node")
	return s.String()
}

// netnsLabel names a node by its report, for when no hop names it.
func netnsLabel(n *node) string {
	if n.netns == "" {
		return "the tracer's own namespace"
	}
	if name, ok := kernel.NetnsName(n.netns); ok {
		return name
	}
	return n.netns
}

func (d *drop) generic() string {
	var s note
	reason := d.h.Reason
	if reason == "" {
		reason = fmt.Sprintf("#%d", d.h.ReasonCode)
	}
	where := "in " + d.ns
	if d.hook != hop.NoHook {
		where = "in " + d.hook.String() + " on " + d.ns
	} else if d.h.Dev != "" {
		where = "at " + d.h.Dev + " on " + d.ns
	}
	switch fn := d.h.FuncName(); {
	case noReason(d.h) && fn != "":
		s.say("The kernel dropped it %s, in %s (it gives no drop reason before Linux 5.17).", where, fn)
	case noReason(d.h):
		s.say("The kernel dropped it %s (it gives no drop reason before Linux 5.17).", where)
	case fn != "":
		s.say("The kernel dropped it %s with reason %s, in %s.", where, reason, fn)
	default:
		s.say("The kernel dropped it %s with reason %s.", where, reason)
	}
	r, ok := reasons[d.h.Reason]
	if ok {
		s.say("%s", r.why)
	}
	dev := dashOr(d.h.Dev)
	if ok && r.check != "" {
		s.run(d.in + strings.ReplaceAll(r.check, "DEV", dev))
	}
	s.run(d.in + "ip -s -s link show " + dev)
	s.run(d.in + "nstat -az | grep -iE 'drop|discard|err|fail'")
	s.run("dropwatch -l kas   # or: perf record -e skb:kfree_skb -a -g")
	return s.String()
}

// reasons explains drop reasons by name (enum skb_drop_reason without its
// prefix, as the running kernel's BTF names them); numbers differ between
// kernels, names do not.
var reasons = map[string]struct{ why, check string }{
	"NOT_SPECIFIED":            {"The freeing code gave no reason; the device and the hop before it tell where.", ""},
	"OTHERHOST":                {"The frame was addressed to another MAC address (promiscuous device, stale neighbour entry).", "ip neigh show dev DEV"},
	"IP_CSUM":                  {"The IPv4 header checksum is wrong: a device or tunnel corrupted it.", ""},
	"IP_INHDR":                 {"The IPv4 header is invalid (length, version, options).", ""},
	"IP_INVALID_SOURCE":        {"The source address is invalid here (martian): loopback, multicast or zero.", "sysctl net.ipv4.conf.all.log_martians"},
	"IP_LOCAL_SOURCE":          {"The source address is one of this node's own: a loop or spoofing.", "ip addr"},
	"IP_LOCALNET":              {"A 127.0.0.0/8 address arrived on a device that does not allow it (route_localnet=0).", "sysctl net.ipv4.conf.DEV.route_localnet"},
	"IP_INVALID_DEST":          {"The destination address is invalid here (martian).", ""},
	"IP_NOPROTO":               {"No local handler for the IP protocol.", ""},
	"NEIGH_FAILED":             {"ARP for the next hop got no answer: the next hop is down or unreachable on that link.", "ip neigh show dev DEV"},
	"NEIGH_QUEUEFULL":          {"Too many packets waited for ARP resolution of the next hop.", "ip neigh show dev DEV"},
	"NEIGH_CREATEFAIL":         {"No neighbour entry could be made: the neighbour table is full (gc_thresh3).", "sysctl net.ipv4.neigh.default.gc_thresh3"},
	"QDISC_DROP":               {"The device's queueing discipline dropped it (queue full).", "tc -s qdisc show dev DEV"},
	"QDISC_OVERLIMIT":          {"The device's queueing discipline was over its limit.", "tc -s qdisc show dev DEV"},
	"TC_INGRESS":               {"A tc ingress filter or BPF program (a CNI datapath, a policy agent) dropped it.", "tc filter show dev DEV ingress"},
	"TC_EGRESS":                {"A tc egress filter or BPF program dropped it.", "tc filter show dev DEV egress"},
	"CPU_BACKLOG":              {"The per-CPU backlog was full (net.core.netdev_max_backlog).", "sysctl net.core.netdev_max_backlog"},
	"SOCKET_RCVBUFF":           {"The receiving socket's buffer was full: the application reads too slowly.", "ss -lmntu"},
	"SOCKET_FILTER":            {"A socket filter (BPF on the socket) dropped it.", ""},
	"TCP_LISTEN_OVERFLOW":      {"The listener's accept queue was full.", "nstat -az TcpExtListenOverflows"},
	"VXLAN_VNI_NOT_FOUND":      {"A VXLAN packet arrived for a VNI no device here has: the nodes' overlays disagree on the VNI.", "ip -d link show type vxlan"},
	"VXLAN_INVALID_HDR":        {"A packet on the VXLAN port had an invalid VXLAN header.", "ip -d link show type vxlan"},
	"MAC_INVALID_SOURCE":       {"The source MAC address is invalid (multicast or zero).", ""},
	"NO_TX_TARGET":             {"The tunnel had no destination for it: no fdb entry for the inner MAC.", "bridge fdb show dev DEV"},
	"FRAG_REASM_TIMEOUT":       {"IP reassembly timed out: a fragment was lost.", "nstat -az IpReasmTimeout"},
	"FRAG_TOO_FAR":             {"IP reassembly gave up: fragments too far out of order.", ""},
	"DUP_FRAG":                 {"A duplicate IP fragment.", ""},
	"QUEUE_PURGE":              {"Purged from a queue, usually when its socket closed or the device went down.", ""},
	"BRIDGE_INGRESS_STP_STATE": {"The bridge port is not forwarding (STP state).", "bridge link show"},
	"DEV_READY":                {"The device was not up or had no carrier.", "ip link show DEV"},
	"UNHANDLED_PROTO":          {"No handler for the frame's protocol.", ""},
	"RECURSION_LIMIT":          {"Too many nested transmits (a tunnel or routing loop).", ""},
}

// noReason reports whether a drop hop has no reason: the kernel has none
// (before 5.17).
func noReason(h *stitch.Hop) bool { return h.Reason == "" && h.ReasonCode == 0 }

// netfilterFunc reports whether a packet freed in this function was
// dropped by a netfilter hook: nf_hook_slow frees what a hook function
// dropped; nf_tables frees what its rules drop itself on newer kernels.
func netfilterFunc(h *stitch.Hop) bool {
	switch h.FuncName() {
	case "nf_hook_slow", "nft_do_chain":
		return true
	}
	return false
}

// plural says "1 real server", "0 real servers".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
