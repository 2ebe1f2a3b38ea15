package render

import (
	"net/netip"
	"strconv"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// appendHopWhat appends what happened at hop i of p, as the "what" column
// of the text timeline says it (docs/output.md), without colors: the hook,
// the NAT, the outer header, the drop, then what changed since the hop
// before (tuple, outer header, mark).
func appendHopWhat(b []byte, p *stitch.Path, i int) []byte {
	h := &p.Hops[i]
	start := len(b)
	proto := hopProto(p, h)
	tupleShown := false
	switch h.Kind {
	case hop.Netfilter:
		b = appendText(b, h.Hook.String())
		b = append(b, " in="...)
		b = appendTextOr(b, h.In)
		b = append(b, " out="...)
		b = appendTextOr(b, h.Out)
		if h.Dur > 0 {
			b = append(b, " ("...)
			b = appendDur(b, h.Dur)
			b = append(b, " in hook)"...)
		}
		if h.Partial {
			b = append(b, " [partial]"...)
		}
	case hop.NAT:
		if h.NAT != nil {
			b = appendNATText(b, h.NAT)
		} else {
			b = append(b, "NAT "...)
			b = appendTuple(b, h.Src, h.Dst, proto)
		}
		if h.Hook != hop.NoHook && (i == 0 || p.Hops[i-1].Kind != hop.Netfilter || p.Hops[i-1].Hook != h.Hook) {
			b = append(b, " in "...)
			b = appendText(b, h.Hook.String())
		}
		tupleShown = true
	case hop.Encap, hop.Decap:
		if h.Outer != nil {
			b = appendOuter(b, h.Outer)
		}
	case hop.Drop:
		b = append(b, "DROPPED"...)
		if h.Reason != "" {
			b = append(b, " reason="...)
			b = appendText(b, h.Reason)
		} else if h.ReasonCode != 0 {
			b = append(b, " reason=#"...)
			b = strconv.AppendUint(b, uint64(h.ReasonCode), 10)
		}
		if i > 0 {
			if prev := &p.Hops[i-1]; prev.Hook != hop.NoHook && inHook(prev) {
				b = append(b, " in "...)
				b = appendText(b, prev.Hook.String())
			}
		}
		if fn := h.FuncName(); fn != "" {
			b = append(b, " by "...)
			b = appendText(b, fn)
		}
	case hop.Consume:
		b = append(b, "consumed"...)
	case hop.Bridge:
		if br := h.Bridge; br != nil {
			b = appendTextOr(b, br.In)
			b = append(b, " → "...)
			b = appendTextOr(b, br.Out)
		}
	case hop.Table:
		if tb := h.Table; tb != nil {
			b = appendTableText(b, tb)
		}
	case hop.IPVS:
		if v := h.IPVS; v != nil && v.Verdict != hop.NoVerdict {
			b = append(b, "IPVS verdict "...)
			b = appendText(b, v.Verdict.String())
			if h.Hook != hop.NoHook {
				b = append(b, " in "...)
				b = appendText(b, h.Hook.String())
			}
		} else if v != nil {
			b = appendIPVS(b, v)
		}
	}

	// What changed since the hop before.
	lastSrc, lastDst, lastProto := p.Src, p.Dst, p.Proto
	var lastOuter *stitch.Outer
	var lastMark uint32
	for j := i - 1; j >= 0; j-- {
		if q := &p.Hops[j]; q.Src.Addr().IsValid() {
			lastSrc, lastDst, lastProto = q.Src, q.Dst, hopProto(p, q)
			break
		}
	}
	if i > 0 {
		lastOuter, lastMark = p.Hops[i-1].Outer, p.Hops[i-1].Mark
	}
	sep := func(b []byte) []byte {
		if len(b) > start {
			b = append(b, "  "...)
		}
		return b
	}
	if h.Src.Addr().IsValid() && !tupleShown && (h.Src != lastSrc || h.Dst != lastDst || proto != lastProto) {
		b = appendTuple(sep(b), h.Src, h.Dst, proto)
	}
	if h.Outer != nil && h.Kind != hop.Encap && h.Kind != hop.Decap && (lastOuter == nil || *h.Outer != *lastOuter) {
		b = append(sep(b), "in "...)
		b = appendOuter(b, h.Outer)
	}
	if h.Mark != 0 && h.Mark != lastMark {
		b = append(sep(b), "mark="...)
		b = appendHex(b, uint64(h.Mark))
	}
	return b
}

// appendNATText appends "DNAT 10.96.0.10:80 → 10.244.2.7:8080".
func appendNATText(b []byte, n *stitch.NAT) []byte {
	b = appendUpper(b, n.Type.String())
	b = append(b, ' ')
	b = appendAddrPort(b, n.From)
	b = append(b, " → "...)
	return appendAddrPort(b, n.To)
}

// appendOuter appends "VXLAN vni=1 192.168.50.11 → 192.168.50.12:8472".
func appendOuter(b []byte, o *stitch.Outer) []byte {
	b = appendUpper(b, o.Tunnel.String())
	b = append(b, " vni="...)
	b = strconv.AppendUint(b, uint64(o.VNI), 10)
	b = append(b, ' ')
	b = appendAddrOr(b, o.Src)
	b = append(b, " → "...)
	b = appendAddrOr(b, o.Dst)
	if o.DPort != 0 {
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(o.DPort), 10)
	}
	return b
}

func appendAddrOr(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return append(b, '?')
	}
	return a.AppendTo(b)
}

// appendIPVS appends "IPVS 10.96.0.10:80 → 10.244.1.8:8080 (rr, masq)".
func appendIPVS(b []byte, v *stitch.IPVS) []byte {
	b = append(b, "IPVS "...)
	b = appendAddrPort(b, v.Service)
	b = append(b, " → "...)
	b = appendAddrPort(b, v.RealServer)
	b = append(b, " ("...)
	if v.Scheduler != "" {
		b = appendText(b, v.Scheduler)
		b = append(b, ", "...)
	}
	b = appendText(b, v.Method.String())
	return append(b, ')')
}

// appendTableText appends "ip filter FORWARD: drop (nftables)".
func appendTableText(b []byte, tb *stitch.Table) []byte {
	start := len(b)
	for _, part := range []string{tb.Family.String(), tb.Name, tb.Chain} {
		if part != "" {
			if len(b) > start {
				b = append(b, ' ')
			}
			b = appendText(b, part)
		}
	}
	b = append(b, ": "...)
	b = appendText(b, tb.Verdict.String())
	b = append(b, " ("...)
	b = appendText(b, tb.Engine.String())
	return append(b, ')')
}
