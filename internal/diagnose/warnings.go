package diagnose

import (
	"fmt"
	"slices"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// warnings lists what is worth knowing about p even without a drop, in a
// fixed order: bridged traffic netfilter cannot see, packets too large for
// the overlay or the underlay, a conntrack table filling up, ICMP errors.
func (a *Advisor) warnings(p *stitch.Path) []string {
	var ws []string
	nodes := a.crossed(p)
	for _, inode := range nodes {
		ws = append(ws, a.bridgedBypass(p, inode)...)
	}
	for _, inode := range nodes {
		ws = append(ws, a.mtu(p, inode)...)
	}
	for _, inode := range nodes {
		n := a.nodes[inode]
		// From doctor's warn grade on, the table is filling up.
		if g := n.facts.Conntrack.Grade(); g == doctor.StatusWarn || g == doctor.StatusBad {
			count, limit, pct, _ := n.conntrack()
			ws = append(ws, fmt.Sprintf("The conntrack table of %s was %.0f%% full (%d/%d) when the trace started: once full, packets of new connections are dropped. Check: %sconntrack -C",
				a.label(p, inode), pct, count, limit, inNetns(n, "")))
		}
	}
	if w := a.icmpError(p); w != "" {
		ws = append(ws, w)
	}
	return ws
}

// crossed lists the reported nodes the path has hops in, in order of the
// first hop in each.
func (a *Advisor) crossed(p *stitch.Path) []uint32 {
	var out []uint32
	for i := range p.Hops {
		ino := p.Hops[i].NetnsInode
		if _, ok := a.nodes[ino]; ok && !slices.Contains(out, ino) {
			out = append(out, ino)
		}
	}
	return out
}

// label names a node by the first hop of the path in it.
func (a *Advisor) label(p *stitch.Path, inode uint32) string {
	for i := range p.Hops {
		if p.Hops[i].NetnsInode == inode {
			return nodeLabel(&p.Hops[i])
		}
	}
	return fmt.Sprintf("netns:%d", inode)
}

// bridgedBypass finds pod-to-pod traffic the node's bridge switched from one
// port to another without netfilter hops in between (rx on a pod veth, then
// tx on another, no rx on the bridge device itself: not routed), and warns
// when the report says br_netfilter would not show it to iptables.
func (a *Advisor) bridgedBypass(p *stitch.Path, inode uint32) []string {
	n := a.nodes[inode]
	bnf, sysctl := n.facts.BridgeNFCallIPTables, "net.bridge.bridge-nf-call-iptables"
	if p.Src.Addr().Is6() {
		bnf, sysctl = n.facts.BridgeNFCallIP6Tables, "net.bridge.bridge-nf-call-ip6tables"
	}
	if bnf.Is(1) {
		return nil
	}
	podPort := func(h *stitch.Hop) bool {
		return h.Dev != "" && n.bridge(h.Dev) == nil && !n.isOverlay(h.Dev) && !n.isUnderlay(h.Dev)
	}
	for i := range p.Hops {
		rx := &p.Hops[i]
		if rx.NetnsInode != inode || rx.Kind != hop.Rx || !podPort(rx) {
			continue
		}
		for j := i + 1; j < len(p.Hops); j++ {
			h := &p.Hops[j]
			if h.NetnsInode != inode || h.Kind == hop.Netfilter || h.Kind == hop.NAT ||
				h.Kind == hop.Rx || h.Kind == hop.Drop {
				break
			}
			if h.Kind != hop.Tx {
				continue
			}
			if !podPort(h) || h.Dev == rx.Dev {
				break
			}
			br := "the pod bridge"
			if b := n.bridgeOf(rx.Dev); b != nil {
				br = b.Name
			} else if b := n.bridgeOf(h.Dev); b != nil {
				br = b.Name
			} else if len(n.bridges) == 1 {
				br = n.bridges[0].Name
			}
			why := sysctl + " is not 1"
			switch _, known := bnf.Int(); {
			case bnf.State == doctor.Absent:
				why = "br_netfilter is not loaded (" + sysctl + " is absent)"
			case known:
				why = sysctl + "=" + bnf.String()
			}
			return []string{fmt.Sprintf("Bridged pod-to-pod traffic on %s (%s → %s through %s) passed no netfilter hook: %s, so netfilter rules, kube-proxy and NetworkPolicy do not see it. Check: %ssysctl %s",
				nodeLabel(rx), rx.Dev, h.Dev, br, why, inNetns(n, rx.Netns), sysctl)}
		}
	}
	return nil
}

// mtu warns about a packet larger than an overlay's MTU on a path through
// that overlay, and about an encapsulated packet larger than the underlay's
// MTU. Not about a packet the node sent or received whole on that device:
// the kernel hands a device a packet larger than its MTU only as a GSO
// packet whose segments fit (ip_forward and ip_finish_output check them
// with skb_gso_validate_network_len), and GRO merges segments that came
// in. A packet too big for real never gets there: it is dropped
// (PKT_TOO_BIG) or fragmented, the original freed, before the device.
func (a *Advisor) mtu(p *stitch.Path, inode uint32) []string {
	n := a.nodes[inode]
	if len(n.overlays) == 0 {
		return nil
	}
	var ws []string
	// Named only for a warning: most paths get none.
	var in, node string
	names := func() {
		if node == "" {
			node = a.label(p, inode)
			in = inNetns(n, node)
		}
	}

	// A datagram conntrack reassembled on the node from the fragments its
	// sender made to fit has no inner size to warn about: it is no pod's
	// MTU, and the node fragments it again to fit the overlay.
	var inner uint32
	if p.FirstSeen != stitch.FirstSeenReassembled {
		for i := range p.Hops {
			h := &p.Hops[i]
			if h.NetnsInode != inode || h.Outer != nil || h.Kind == hop.Encap || h.Kind == hop.Consume {
				continue
			}
			inner = max(inner, a.ipLen(p, i))
		}
	}
	for k := range n.overlays {
		o := &n.overlays[k]
		if o.MTU <= 0 || inner <= uint32(o.MTU) || !a.uses(p, inode, o) || a.wholeOn(p, inode, o.Name, uint32(o.MTU), false) {
			continue
		}
		names()
		ws = append(ws, fmt.Sprintf("A %d-byte packet on its way through %s on %s, whose MTU is %d: with DF set it is dropped and ICMP fragmentation-needed is sent back, without DF it is fragmented. Pods should use an MTU ≤ %d. Check: %sip link show %s",
			inner, o.Name, node, o.MTU, o.MTU, in, o.Name))
	}

	var outer uint32
	var o *doctor.Overlay
	for i := range p.Hops {
		h := &p.Hops[i]
		if h.NetnsInode != inode || h.Outer == nil || h.Kind == hop.Rx || h.Kind == hop.Decap || h.Kind == hop.Consume {
			continue
		}
		if l := a.ipLen(p, i); l > outer {
			outer = l
			o = n.overlayFor(h.Outer)
		}
	}
	if o != nil && o.UnderlayMTU > 0 && outer > uint32(o.UnderlayMTU) && !a.wholeOn(p, inode, o.Underlay, uint32(o.UnderlayMTU), true) {
		names()
		ws = append(ws, fmt.Sprintf("The encapsulated packet (%d bytes) is larger than the MTU %d of %s, the underlay of %s on %s: the outer packet is fragmented (the inner DF bit does not reach the outer header) or dropped. %s's MTU %d should be ≤ %d. Check: %sip -d link show %s",
			outer, o.UnderlayMTU, o.Underlay, o.Name, node, o.Name, o.MTU, o.UnderlayMTU-o.Overhead, in, o.Name))
	}
	return ws
}

// wholeOn reports whether the path's packet, larger than mtu, was sent or
// received whole on dev in the node: a GSO or GRO packet (see mtu). outer
// tells which packet: the encapsulated one or the one inside.
func (a *Advisor) wholeOn(p *stitch.Path, inode uint32, dev string, mtu uint32, outer bool) bool {
	for i := range p.Hops {
		h := &p.Hops[i]
		if h.NetnsInode == inode && h.Dev == dev && (h.Kind == hop.Tx || h.Kind == hop.Rx) &&
			(h.Outer != nil) == outer && a.ipLen(p, i) > mtu {
			return true
		}
	}
	return false
}

// uses reports whether the path goes through overlay o of the node: a hop
// on it, a hook sending to it, or a drop for being too big in that node
// (before Linux 5.17, without a reason: one in ip_forward, which frees a
// packet too big for its route there).
func (a *Advisor) uses(p *stitch.Path, inode uint32, o *doctor.Overlay) bool {
	for i := range p.Hops {
		h := &p.Hops[i]
		if h.NetnsInode != inode {
			continue
		}
		tooBig := h.Reason == "PKT_TOO_BIG" || noReason(h) && h.FuncName() == "ip_forward"
		if h.Dev == o.Name || h.Out == o.Name || (h.Kind == hop.Drop && tooBig) {
			return true
		}
	}
	return false
}

// overlayFor picks the overlay an outer header belongs to: by UDP port,
// else the only one.
func (n *node) overlayFor(out *stitch.Outer) *doctor.Overlay {
	for i := range n.overlays {
		if n.overlays[i].Port != 0 && n.overlays[i].Port == out.DPort {
			return &n.overlays[i]
		}
	}
	if len(n.overlays) == 1 {
		return &n.overlays[0]
	}
	return nil
}

// smallBridge returns a pod bridge of any reported node whose MTU is below
// l, the first in inode order.
func (a *Advisor) smallBridge(l uint32) (*doctor.Bridge, *node) {
	for _, inode := range sortedInodes(a.nodes) {
		n := a.nodes[inode]
		for k := range n.bridges {
			if b := &n.bridges[k]; b.MTU > 0 && uint32(b.MTU) < l {
				return b, n
			}
		}
	}
	return nil, nil
}

func sortedInodes(m map[uint32]*node) []uint32 {
	ks := make([]uint32, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// icmpError explains a path that is itself an ICMP error, which answers an
// earlier packet: for ICMP the tuple's ports carry the type and the code.
// Where the error's quote was captured (Path.Answers) it names the packet
// it answers, and explains a port unreachable by it.
func (a *Advisor) icmpError(p *stitch.Path) string {
	if p.Proto != decode.ProtoICMP && p.Proto != decode.ProtoICMPv6 {
		return ""
	}
	typ, code := p.Src.Port(), p.Dst.Port()
	q := p.Answers
	if q != nil && !q.Valid() {
		q = nil
	}
	from := "This is an ICMP error from "
	if p.Proto == decode.ProtoICMPv6 {
		from = "This is an ICMPv6 error from "
	}
	// head names the error; why explains it, %s standing for the packet it
	// answers.
	head, why, port := icmpErrorText(p.Proto, typ, code)
	if port {
		return from + p.Src.Addr().String() + ", " + a.icmpUnreachablePort(p, q)
	}
	if head == "" {
		return ""
	}
	it := "an earlier packet of " + p.Dst.Addr().String()
	if q != nil {
		head += " answering " + answered(q)
		it = "it"
	}
	switch {
	case why != "":
		head += ": " + fmt.Sprintf(why, it)
	case q == nil:
		head += " for " + it
	}
	noRoute := p.Proto == decode.ProtoICMP && typ == 3 && code == 0 || p.Proto == decode.ProtoICMPv6 && typ == 1 && code == 0
	if noRoute && q != nil {
		// A Service address at a port the Service lacks: routed as
		// the address itself, for which nodes have no route.
		for _, ino := range a.inodesFor(p) {
			if m, ok := a.nodes[ino].serviceMiss(q.Dst, q.Proto); ok {
				head += ". " + m.is + ", and " + m.this + " is none of its ports: kube-proxy translates only a Service's own protocols and ports"
				break
			}
		}
	}
	return from + p.Src.Addr().String() + ", " + head + "."
}

// icmpErrorText names an ICMP (proto 1) or ICMPv6 (58) error by its type
// and code (head, empty for a message that is no error), and says why it
// was sent (why, %s standing for the packet it answers; empty when the
// code says nothing more); port: a port unreachable, which
// icmpUnreachablePort explains.
func icmpErrorText(proto uint8, typ, code uint16) (head, why string, port bool) {
	if proto == decode.ProtoICMPv6 {
		switch {
		case typ == 1 && code == 4:
			return "", "", true
		case typ == 1 && code == 0:
			return "destination unreachable (no route)", "it had no route for %s", false
		case typ == 1 && code == 3:
			return "destination unreachable (address unreachable)", "neighbour discovery found no host for the destination of %s", false
		case typ == 1 && (code == 1 || code == 5 || code == 6):
			return "destination unreachable (administratively prohibited)", "a REJECT rule or a reject route refused %s", false
		case typ == 1:
			return fmt.Sprintf("destination unreachable (code %d)", code), "", false
		case typ == 2:
			return "packet too big", "%s was larger than the MTU of its route (IPv6 routers never fragment); the sender should lower its path MTU", false
		case typ == 3 && code == 1:
			return "time exceeded (fragment reassembly)", "a fragment of %s never came, and its reassembly timed out", false
		case typ == 3:
			return "time exceeded", "%s ran out of hop limit (a routing loop?)", false
		}
		return "", "", false
	}
	switch {
	case typ == 3 && code == 3:
		return "", "", true
	case typ == 3 && code == 0:
		return "destination unreachable (net unreachable)", "it had no route for %s", false
	case typ == 3 && code == 1:
		return "destination unreachable (host unreachable)", "it could not reach the destination of %s", false
	case typ == 3 && code == 4:
		return "fragmentation needed", "%s had DF set and was larger than the MTU of its route; the sender should lower its path MTU", false
	case typ == 3 && (code == 9 || code == 10 || code == 13):
		return "destination unreachable (administratively prohibited)", "a REJECT rule refused %s", false
	case typ == 3:
		return fmt.Sprintf("destination unreachable (code %d)", code), "", false
	case typ == 11 && code == 1:
		return "time exceeded (fragment reassembly)", "a fragment of %s never came, and its reassembly timed out", false
	case typ == 11:
		return "time exceeded", "%s ran out of TTL (a routing loop?)", false
	}
	return "", "", false
}
