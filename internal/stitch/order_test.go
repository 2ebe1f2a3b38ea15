package stitch

import (
	"slices"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
)

// A path that ends early with a free waits for the paths that started
// before it; IDs follow the start order, without the gaps of paths that
// were never emitted.
func TestEmittedInStartOrder(t *testing.T) {
	var got []*Path
	s := New(Config{Names: testNames{}, Idle: time.Millisecond, Grace: 100 * time.Microsecond},
		func(p *Path) error { got = append(got, p); return nil })
	// A: starts first, ends only when idle (no free).
	a := newSeq(0x7100, 0, tcp("10.244.1.5:1", "10.244.1.6:2")).dev(decode.KindTx, nsClient, "eth0").dev(decode.KindRx, nsNode1, "veth1a2b3c4d")
	// A copy only freed: never emitted, takes no ID.
	c := newSeq(0x7200, 2500, tcp("10.244.1.5:1", "10.244.1.6:2")).add(decode.Event{Kind: decode.KindConsume, Netns: nsClient, Dev: "eth0"})
	// B: starts after A, freed at once.
	b := newSeq(0x7300, 3000, tcp("10.244.1.5:3", "10.244.1.6:4")).dev(decode.KindTx, nsClient, "eth0").
		add(decode.Event{Kind: decode.KindDrop, Netns: nsClient, Dev: "eth0", DropReason: 12, Flags: decode.FlagReason})
	evs := slices.Concat(a.events, c.events, b.events)
	slices.SortStableFunc(evs, func(x, y decode.Event) int { return int(int64(x.TS) - int64(y.TS)) })
	for i := range evs {
		s.Add(&evs[i])
	}
	// B ended at 5µs, long past its grace at 500µs; A is still followed.
	if err := s.Flush(uint64(500 * time.Microsecond)); err != nil || len(got) != 0 {
		t.Fatalf("emitted %d paths while an earlier one was followed (err %v)", len(got), err)
	}
	// A idles out at 1.003ms: both go, A first.
	if err := s.Flush(uint64(1200 * time.Microsecond)); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].SKB != 0x7100 || got[1].SKB != 0x7300 || got[0].ID != 1 || got[1].ID != 2 {
		for _, p := range got {
			t.Logf("#%d skb %#x start %d", p.ID, p.SKB, p.Mono)
		}
		t.Fatalf("want A (#1) then B (#2)")
	}
	if got[1].Verdict != VerdictDropped || got[0].Verdict != VerdictUnknown {
		t.Errorf("verdicts %s %s", got[0].Verdict, got[1].Verdict)
	}
	if st := s.Stats(); st.Freed != 1 || st.Paths != 2 {
		t.Errorf("stats %+v", st)
	}
}

// Completed paths waiting behind a path still followed are bounded: past
// MaxActive of them, the path they wait for is completed early.
func TestWaitingPathsAreBounded(t *testing.T) {
	var skbs, starts []uint64
	s := New(Config{Names: testNames{}, MaxActive: 8},
		func(p *Path) error { skbs, starts = append(skbs, p.SKB), append(starts, p.Mono); return nil })
	// A long-lived path: an event every 500µs, never idle for 1s.
	head := newSeq(0x8000, 0, tcp("10.244.1.5:1", "10.244.1.6:2")).dev(decode.KindTx, nsClient, "eth0")
	s.Add(&head.events[0])
	for i := range 20 {
		ts := uint64(i+1) * uint64(500*time.Microsecond)
		p := newSeq(uint64(0x9000+i), ts, tcp("10.244.1.5:3", "10.244.1.6:4")).dev(decode.KindTx, nsClient, "eth0").
			add(decode.Event{Kind: decode.KindDrop, Netns: nsClient, Dev: "eth0", DropReason: 12, Flags: decode.FlagReason})
		for j := range p.events {
			s.Add(&p.events[j])
		}
		ev := head.events[0]
		ev.Flags &^= decode.FlagNew
		ev.Kind, ev.TS = decode.KindRx, ts+10_000
		s.Add(&ev)
		if err := s.Flush(ts + 20_000); err != nil {
			t.Fatal(err)
		}
		if s.waiting > 8 {
			t.Fatalf("%d completed paths wait, bound 8", s.waiting)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	short := 0
	for _, skb := range skbs {
		if skb != 0x8000 {
			short++
		}
	}
	if short != 20 || skbs[0] != 0x8000 || s.Stats().Evicted == 0 {
		t.Errorf("emitted skbs %x, stats %+v: want the long path first, completed early, and the 20 short ones", skbs, s.Stats())
	}
	if !slices.IsSorted(starts) {
		t.Errorf("emitted out of start order: %v", starts)
	}
}
