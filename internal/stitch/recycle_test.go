package stitch

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
)

// TestRecycleEmitsTheSamePaths feeds the same events to a stitcher that
// recycles paths and to one that does not: what emit sees must not differ,
// and nothing of one path may show up in another.
func TestRecycleEmitsTheSamePaths(t *testing.T) {
	var evs []decode.Event
	for i := range 300 {
		evs = append(evs, crossNode(uint64(0x10000+i%23), uint64(i)*uint64(200*time.Microsecond)).events...)
		if i%7 == 0 { // a short path among the long ones
			evs = append(evs, newSeq(uint64(0x90000+i), uint64(i)*uint64(200*time.Microsecond)+1,
				tcp("10.244.1.5:40000", "10.244.1.6:8080")).
				dev(decode.KindTx, nsClient, "eth0").
				dev(decode.KindRx, nsNode1, "veth1a2b3c4d").events...)
		}
	}
	slices.SortStableFunc(evs, func(a, b decode.Event) int { return int(int64(a.TS) - int64(b.TS)) })
	run := func(recycle bool) []*Path {
		var paths []*Path
		s := New(Config{Names: testNames{}, Idle: 2 * time.Millisecond, Grace: time.Millisecond, Recycle: recycle},
			func(p *Path) error {
				c := p.Clone()
				if recycle {
					// Scribble on what the stitcher will reuse.
					p.Warnings = append(p.Warnings, "scribble")
					for i := range p.Hops {
						p.Hops[i].Advice = "scribble"
					}
				}
				paths = append(paths, c)
				return nil
			})
		for i := range evs {
			s.Add(&evs[i])
			if i%50 == 0 {
				if err := s.Flush(evs[i].TS); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return paths
	}
	want, got := run(false), run(true)
	if len(want) < 300 {
		t.Fatalf("only %d paths", len(want))
	}
	if len(got) != len(want) {
		t.Fatalf("recycling: %d paths, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("path %d differs with recycling:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func TestCloneIsDeep(t *testing.T) {
	paths, _ := collect(t, Config{}, crossNode(0x1000, 0).events)
	p := paths[0]
	c := p.Clone()
	if !reflect.DeepEqual(c, p) {
		t.Fatal("clone differs")
	}
	for i := range p.Hops {
		h, ch := &p.Hops[i], &c.Hops[i]
		if &h.Dev == &ch.Dev || (h.Outer != nil && h.Outer == ch.Outer) || (h.NAT != nil && h.NAT == ch.NAT) {
			t.Fatalf("hop %d shares memory with its clone", i)
		}
	}
}

// BenchmarkStitchRecycle is the stitcher as live tracing runs it: paths
// recycled, emitted within a millisecond of their end (internal/trace
// flushes every few milliseconds).
func BenchmarkStitchRecycle(b *testing.B) {
	var evs []decode.Event
	for i := range 1000 {
		evs = append(evs, crossNode(uint64(0x10000+i%64), uint64(i)*uint64(50*time.Microsecond)).events...)
	}
	span := evs[len(evs)-1].TS + uint64(time.Second)
	s := New(Config{Names: testNames{}, Idle: time.Millisecond, Grace: time.Millisecond, Recycle: true},
		func(*Path) error { return nil })
	b.ReportAllocs()
	n := 0
	var base uint64
	for b.Loop() {
		ev := evs[n]
		ev.TS += base
		s.Add(&ev)
		if n%1024 == 0 {
			if err := s.Flush(ev.TS); err != nil {
				b.Fatal(err)
			}
		}
		if n++; n == len(evs) {
			n = 0
			base += span
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
