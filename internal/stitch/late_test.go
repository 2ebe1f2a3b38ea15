package stitch

import (
	"slices"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
)

// quietForward is a forwarded packet that leaves its last event in node1's
// POSTROUTING toward eth0, as one waiting for ARP on its next hop does.
func quietForward(skb uint64) *seq {
	s := newSeq(skb, 0, tcp("10.244.1.5:40312", "10.244.9.9:80"))
	return s.dev(decode.KindTx, nsClient, "eth0").dev(decode.KindRx, nsNode1, "veth1a2b3c4d").
		hook(hop.Prerouting, nsNode1, "cni0", "", nil).
		hook(hop.Forward, nsNode1, "cni0", "eth0", nil).
		hook(hop.Postrouting, nsNode1, "", "eth0", nil)
}

// lateStitcher is a stitcher with a 10ms idle timeout that keeps copies
// of the paths it emits in paths.
func lateStitcher(paths *[]*Path) *Stitcher {
	return New(Config{Names: freeNames{}, Idle: 10 * time.Millisecond, Grace: time.Millisecond}, func(p *Path) error {
		*paths = append(*paths, p.Clone())
		return nil
	})
}

// lateFree is a free of s's packet at ts, with no device.
func lateFree(s *seq, kind decode.Kind, reason uint32, at uint64, ts time.Duration) decode.Event {
	ev := decode.Event{Kind: kind, SKB: s.skb, TS: uint64(ts), Outer: s.tuple, DropReason: reason, Location: at,
		Flags: decode.FlagL3 | decode.FlagL4 | decode.FlagReason}
	ev.Backend = decode.BackendOf(ev.Kind, ev.Flags)
	return ev
}

func TestLateFreeOfEmittedPath(t *testing.T) {
	var paths []*Path
	var shown uint64 = 41
	s := New(Config{Names: freeNames{}, Idle: 10 * time.Millisecond, Grace: time.Millisecond}, func(p *Path) error {
		shown++
		p.ID = shown // as the pipeline numbers what it shows
		paths = append(paths, p.Clone())
		return nil
	})
	pkt := quietForward(0xa00)
	for i := range pkt.events {
		s.Add(&pkt.events[i])
	}
	if err := s.Flush(uint64(50 * time.Millisecond)); err != nil || len(paths) != 1 {
		t.Fatalf("%d paths after the packet went quiet (err %v)", len(paths), err)
	}
	// ARP gave up 3 s after the packet was queued.
	ev := lateFree(pkt, decode.KindDrop, 12, 0x5000, 3*time.Second)
	s.Add(&ev)
	if err := s.Close(); err != nil || len(paths) != 2 {
		t.Fatalf("%d paths (err %v)", len(paths), err)
	}
	first, late := paths[0], paths[1]
	if first.Late != nil || first.Verdict != VerdictUnknown {
		t.Errorf("quiet path: late %+v, verdict %s", first.Late, first.Verdict)
	}
	want := Late{Of: 42, After: 3*time.Second - time.Duration(pkt.ts), Verdict: VerdictUnknown}
	if late.Late == nil || *late.Late != want {
		t.Fatalf("late end %+v, want %+v\n%s", late.Late, want, kinds(late))
	}
	h := late.Hops[0]
	if len(late.Hops) != 1 || late.Verdict != VerdictDropped || h.Dev != "eth0" || h.Netns != "node1" || !h.LastSeen {
		t.Errorf("late end: verdict %s, %d hops, first at %s in %s (last seen %v)\n%s", late.Verdict, len(late.Hops), h.Dev, h.Netns, h.LastSeen, kinds(late))
	}
}

// What is emitted does not depend on whether the quiet path was emitted
// when its late free came (Flush ran in between, as live) or still waited
// (no Flush, as a replay may).
func TestLateEndIndependentOfFlush(t *testing.T) {
	pkt := quietForward(0xb00)
	other := newSeq(0xb80, uint64(2*time.Second), tcp("10.244.1.6:1234", "10.244.2.7:80")).dev(decode.KindTx, nsClient, "eth0")
	evs := append(append(pkt.events, other.events...), lateFree(pkt, decode.KindDrop, 12, 0x5000, 3*time.Second))
	type out struct {
		id      uint64
		verdict Verdict
		late    Late
	}
	run := func(flush bool) []out {
		var got []out
		s := New(Config{Names: freeNames{}, Idle: 10 * time.Millisecond, Grace: time.Millisecond}, func(p *Path) error {
			o := out{id: p.ID, verdict: p.Verdict}
			if p.Late != nil {
				o.late = *p.Late
			}
			got = append(got, o)
			return nil
		})
		for i := range evs {
			s.Add(&evs[i])
			if flush {
				if err := s.Flush(evs[i].TS); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return got
	}
	want := []out{
		{1, VerdictUnknown, Late{}},
		{2, VerdictUnknown, Late{}},
		{3, VerdictDropped, Late{Of: 1, After: 3*time.Second - time.Duration(pkt.ts), Verdict: VerdictUnknown}},
	}
	for _, flush := range []bool{false, true} {
		if got := run(flush); !slices.Equal(got, want) {
			t.Errorf("flushing %v: got %+v, want %+v", flush, got, want)
		}
	}
}

// A free stamped within the idle timeout that comes after Flush completed
// its path (later than the grace) joins the path still waiting.
func TestLateFreeInIdleTimeJoins(t *testing.T) {
	var paths []*Path
	s := lateStitcher(&paths)
	pkt := quietForward(0xb00)
	for i := range pkt.events {
		s.Add(&pkt.events[i])
	}
	// Completed at its last event + 10ms, not emitted before 11ms.
	if err := s.Flush(pkt.ts + uint64(10500*time.Microsecond)); err != nil || len(paths) != 0 {
		t.Fatalf("%d paths (err %v)", len(paths), err)
	}
	ev := lateFree(pkt, decode.KindDrop, 12, 0x5000, time.Duration(pkt.ts)+5*time.Millisecond)
	s.Add(&ev)
	if err := s.Close(); err != nil || len(paths) != 1 {
		t.Fatalf("%d paths (err %v), want 1", len(paths), err)
	}
	p := paths[0]
	if p.Late != nil || p.Verdict != VerdictDropped || kinds(p) != "tx:eth0 rx:veth1a2b3c4d netfilter:PREROUTING netfilter:FORWARD netfilter:POSTROUTING drop:eth0" {
		t.Errorf("verdict %s, late %+v, hops %s", p.Verdict, p.Late, kinds(p))
	}
}

func TestLateNormalFreeOfDeliveredPath(t *testing.T) {
	// A datagram that reached the server's socket and waited unread in
	// its queue until the socket was closed.
	var paths []*Path
	s := lateStitcher(&paths)
	pkt := newSeq(0xc00, 0, tcp("10.244.1.5:40312", "10.244.2.7:7000"))
	pkt.tuple.Proto = decode.ProtoUDP
	pkt.dev(decode.KindTx, nsClient, "eth0").dev(decode.KindRx, nsNode1, "veth1a2b3c4d").
		dev(decode.KindTx, nsNode1, "veth5e6f7a8b").dev(decode.KindRx, nsServer, "eth0")
	for i := range pkt.events {
		s.Add(&pkt.events[i])
	}
	if err := s.Flush(uint64(50 * time.Millisecond)); err != nil || len(paths) != 1 || paths[0].Verdict != VerdictDelivered {
		t.Fatalf("paths %v (err %v)", paths, err)
	}
	ev := lateFree(pkt, decode.KindDrop, 2, 0xa000, 2*time.Second)
	s.Add(&ev)
	if err := s.Close(); err != nil || len(paths) != 1 {
		t.Fatalf("%d paths (err %v), want the delivered one only", len(paths), err)
	}
	if st := s.Stats(); st.Freed != 1 {
		t.Errorf("stats %+v, want the late free counted as freed", st)
	}
}

func TestLateFreeNotOfTheQuietPacket(t *testing.T) {
	for _, tc := range []struct {
		name string
		mid  func(pkt *seq) []decode.Event // between the quiet path and the free
		free func(pkt *seq) decode.Event
	}{
		{"another packet's free", nil, func(pkt *seq) decode.Event {
			ev := lateFree(pkt, decode.KindDrop, 12, 0x5000, 3*time.Second)
			ev.Outer.IPID++
			return ev
		}},
		{"a packet on the skb since", func(pkt *seq) []decode.Event {
			// The same flow's next packet (an IPv6 one would carry the
			// same identity) reuses the skb and is delivered.
			next := newSeq(pkt.skb, uint64(time.Second), pkt.tuple)
			next.dev(decode.KindTx, nsClient, "eth0").dev(decode.KindRx, nsServer, "eth0").
				add(decode.Event{Kind: decode.KindConsume, Netns: nsServer, Dev: "eth0"})
			return next.events
		}, func(pkt *seq) decode.Event { return lateFree(pkt, decode.KindDrop, 12, 0x5000, 3*time.Second) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var paths []*Path
			s := lateStitcher(&paths)
			pkt := quietForward(0xd00)
			for i := range pkt.events {
				s.Add(&pkt.events[i])
			}
			if err := s.Flush(uint64(50 * time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			var evs []decode.Event
			if tc.mid != nil {
				evs = tc.mid(pkt)
			}
			evs = append(evs, tc.free(pkt))
			for i := range evs {
				s.Add(&evs[i])
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			for _, p := range paths {
				if p.Late != nil {
					t.Errorf("path #%d marked the late end of #%d\n%s", p.ID, p.Late.Of, kinds(p))
				}
			}
			if last := paths[len(paths)-1]; last.Verdict != VerdictDropped || last.Hops[0].Dev != "" {
				t.Errorf("the free's path: %s, at %q\n%s", last.Verdict, last.Hops[0].Dev, kinds(last))
			}
		})
	}
}

// A packet that waited for its neighbour longer than the idle timeout and
// was then sent: the rest of its way, from where it waited, is the quiet
// path's late end, resumed, whether Flush ran in between or not. A packet
// of the flow on the skb elsewhere (in the pod) is not.
func TestLateContinuation(t *testing.T) {
	pkt := quietForward(0xe00)
	rest := newSeq(pkt.skb, uint64(2*time.Second), pkt.tuple)
	rest.dev(decode.KindTx, nsNode1, "eth0").dev(decode.KindRx, nsNode2, "eth0").
		hook(hop.Prerouting, nsNode2, "eth0", "", nil)
	rest.events[0].Flags &^= decode.FlagNew
	for _, flush := range []bool{false, true} {
		var paths []*Path
		s := lateStitcher(&paths)
		evs := slices.Concat(pkt.events, rest.events)
		for i := range evs {
			s.Add(&evs[i])
			if flush {
				if err := s.Flush(evs[i].TS); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := s.Close(); err != nil || len(paths) != 2 {
			t.Fatalf("flushing %v: %d paths (err %v)", flush, len(paths), err)
		}
		want := Late{Of: 1, After: time.Duration(rest.events[0].TS - pkt.ts), Verdict: VerdictUnknown, Resumed: true}
		if l := paths[1].Late; l == nil || *l != want || kinds(paths[1]) != "tx:eth0 rx:eth0 netfilter:PREROUTING" {
			t.Errorf("flushing %v: rest %+v, want %+v\n%s", flush, l, want, kinds(paths[1]))
		}
	}

	// The same flow's next packet, reusing the skb, sent by the pod.
	next := newSeq(pkt.skb, uint64(2*time.Second), pkt.tuple)
	next.dev(decode.KindTx, nsClient, "eth0").dev(decode.KindRx, nsNode1, "veth1a2b3c4d")
	next.events[0].Flags &^= decode.FlagNew
	var paths []*Path
	s := lateStitcher(&paths)
	evs := slices.Concat(pkt.events, next.events)
	for i := range evs {
		s.Add(&evs[i])
	}
	if err := s.Close(); err != nil || len(paths) != 2 || paths[1].Late != nil {
		t.Errorf("%d paths (err %v), the second marked late: want none marked", len(paths), err)
	}
}
