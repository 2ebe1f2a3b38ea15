package stitch

import "github.com/pathtrace/pathtrace/internal/decode"

// quote sets Answers on the path of an ICMP error from the first of its
// events whose captured bytes hold the packet the error quotes. An
// encapsulated event's bytes start at the outer header: a later one shows
// the error itself.
func quote(p *Path, ev *decode.Event) {
	if !decode.IsICMP(p.Proto) || p.Answers != nil || len(ev.Data) == 0 || ev.Encapsulated() ||
		!decode.ICMPErrorOf(p.Proto, uint8(p.Src.Port())) {
		return
	}
	if q, ok := decode.ICMPQuote(ev.Data); ok {
		p.Answers = &q
	}
}
