package trace

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/stitch"
)

func TestConnLimit(t *testing.T) {
	c := connLimit{max: 2}
	a := netip.MustParseAddrPort("10.244.1.5:40000")
	b := netip.MustParseAddrPort("10.96.0.10:80")
	other := netip.MustParseAddrPort("10.244.2.7:80")
	path := func(src, dst netip.AddrPort) *stitch.Path {
		return &stitch.Path{Proto: 6, Src: src, Dst: dst}
	}
	for i, tc := range []struct {
		p    *stitch.Path
		want bool
	}{
		{path(a, b), true},
		{path(b, a), true}, // the reply: the same connection
		{path(a, b), false},
		{path(a, other), true}, // another connection
		{&stitch.Path{Proto: 17, Src: a, Dst: b}, true},
	} {
		if got := c.allow(tc.p); got != tc.want {
			t.Errorf("path %d: allow %v, want %v", i, got, tc.want)
		}
	}
	if none := (connLimit{}); !none.allow(path(a, b)) || !none.allow(path(a, b)) {
		t.Error("no limit: a path refused")
	}
}

// TestConnLimitDatagramParts checks that the paths of one fragmented
// datagram (the datagram split on output, its fragments, the one
// reassembled from them), rendered in any order and across a DNAT, are
// shown or hidden together and counted once.
func TestConnLimitDatagramParts(t *testing.T) {
	at := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	ep := netip.MustParseAddrPort
	type part struct {
		name     string
		src, dst string
		id       uint16
		kind     string // "frag" (with ports), "later" (no ports), "reasm", "split"
		dsrc     string // a later fragment's datagram endpoints ("": not known)
		after    time.Duration
		want     bool
	}
	mk := func(pt part) *stitch.Path {
		p := &stitch.Path{Proto: 17, Src: ep(pt.src), Dst: ep(pt.dst), IPID: pt.id, Start: at.Add(pt.after), Verdict: stitch.VerdictDelivered}
		switch pt.kind {
		case "frag":
			p.Fragment, p.Verdict = true, stitch.VerdictReassembled
		case "later":
			p.Fragment, p.Verdict = true, stitch.VerdictReassembled
			if pt.dsrc != "" {
				p.DatagramSrc, p.DatagramDst = ep(pt.dsrc), ep(pt.dst[:strings.LastIndex(pt.dst, ":")]+":7100")
			}
		case "reasm":
			p.FirstSeen, p.Verdict = stitch.FirstSeenReassembled, stitch.VerdictFragmented
		case "split":
			p.Verdict = stitch.VerdictFragmented
		}
		return p
	}
	for _, tc := range []struct {
		name  string
		parts []part
	}{
		{"ipv4", []part{
			// The request: its last fragment's path ends first (its skb
			// goes on as the reassembled datagram).
			{"request last fragment", "10.244.1.5:0", "10.244.2.7:0", 100, "later", "10.244.1.5:40000", 0, true},
			{"request reassembled", "10.244.1.5:40000", "10.244.2.7:7100", 100, "reasm", "", 1 * time.Millisecond, true},
			{"request first fragment", "10.244.1.5:40000", "10.244.2.7:7100", 100, "frag", "", 2 * time.Millisecond, true},
			// The reply: the connection's second packet.
			{"reply fragment", "10.244.2.7:7100", "10.244.1.5:40000", 200, "frag", "", 10 * time.Millisecond, false},
			{"reply later fragment", "10.244.2.7:0", "10.244.1.5:0", 200, "later", "10.244.2.7:7100", 11 * time.Millisecond, false},
			// The request's fragment delivered in the server pod, its
			// path completed after the reply's.
			{"request delivered", "10.244.1.5:0", "10.244.2.7:0", 100, "later", "", 1200 * time.Millisecond, true},
			{"reply reassembled", "10.244.2.7:7100", "10.244.1.5:40000", 200, "reasm", "", 12 * time.Millisecond, false},
			// Another connection of the same pods: its own count.
			{"other connection", "10.244.1.5:0", "10.244.2.7:0", 101, "later", "10.244.1.5:40001", 20 * time.Millisecond, true},
			{"other split", "10.244.1.5:40001", "10.244.2.7:7100", 101, "split", "", 21 * time.Millisecond, true},
			// The id again, long after: another datagram, refused.
			{"id reused", "10.244.1.5:40000", "10.244.2.7:7100", 100, "frag", "", 10 * time.Second, false},
		}},
		{"ipv4 translated", []part{
			// Two datagrams to a Service address, the first shown: each
			// one's paths after the DNAT (another connection) follow it
			// by its source and id, those after an SNAT by its
			// destination and id.
			{"first", "10.244.1.5:40000", "10.96.0.71:7100", 300, "split", "", 0, true},
			{"first after DNAT", "10.244.1.5:40000", "10.244.2.7:7100", 300, "frag", "", 1 * time.Millisecond, true},
			{"first after SNAT", "10.0.0.1:0", "10.96.0.71:0", 300, "later", "", 2 * time.Millisecond, true},
			{"second", "10.244.1.5:40000", "10.96.0.71:7100", 301, "split", "", 5 * time.Millisecond, false},
			{"second after DNAT", "10.244.1.5:40000", "10.244.2.7:7100", 301, "frag", "", 6 * time.Millisecond, false},
			{"second after SNAT", "10.0.0.1:0", "10.96.0.71:0", 301, "later", "", 7 * time.Millisecond, false},
		}},
		{"ipv6", []part{
			{"request split", "[fd00:10:244:1::5]:40000", "[fd00:10:244:2::7]:7100", 0, "split", "", 0, true},
			{"request later fragment", "[fd00:10:244:1::5]:0", "[fd00:10:244:2::7]:0", 0, "later", "[fd00:10:244:1::5]:40000", 1 * time.Millisecond, true},
			{"request first fragment", "[fd00:10:244:1::5]:40000", "[fd00:10:244:2::7]:7100", 0, "frag", "", 2 * time.Millisecond, true},
			{"reply first fragment", "[fd00:10:244:2::7]:7100", "[fd00:10:244:1::5]:40000", 0, "frag", "", 5 * time.Millisecond, false},
			{"reply later fragment", "[fd00:10:244:2::7]:0", "[fd00:10:244:1::5]:0", 0, "later", "[fd00:10:244:2::7]:7100", 6 * time.Millisecond, false},
			{"request reassembled", "[fd00:10:244:1::5]:40000", "[fd00:10:244:2::7]:7100", 0, "reasm", "", 7 * time.Millisecond, true},
			// A datagram of the connection two seconds on: counted.
			{"next datagram", "[fd00:10:244:1::5]:40000", "[fd00:10:244:2::7]:7100", 0, "split", "", 2 * time.Second, false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := connLimit{max: 1}
			for _, pt := range tc.parts {
				if got := c.allow(mk(pt)); got != pt.want {
					t.Errorf("%s: allow %v, want %v", pt.name, got, pt.want)
				}
			}
		})
	}
}
