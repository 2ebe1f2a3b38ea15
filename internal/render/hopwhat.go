package render

import (
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
	b, tupleShown := plain.appendWhat(b, p, i, proto)

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
		b = plain.appendOuter(b, h.Outer)
	}
	if h.Mark != 0 && h.Mark != lastMark {
		b = append(sep(b), "mark="...)
		b = appendHex(b, uint64(h.Mark))
	}
	return b
}

// plain is the palette of no styles: text without escape sequences, for
// the HTML report and the SVG.
var plain palette
