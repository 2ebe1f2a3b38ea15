package stitch

import (
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
)

// TestFloodStaysBounded feeds a flood of packets that never end normally
// (no free event: the kernel freed them without a tracepoint) and checks
// that what the stitcher holds stays within MaxActive and MaxHeldHops the
// whole time, and that every packet is still emitted.
func TestFloodStaysBounded(t *testing.T) {
	const packets = 20000
	cfg := Config{Names: testNames{}, Recycle: true, MaxActive: 1000, MaxHeldHops: 4096}
	emitted := 0
	s := New(cfg, func(*Path) error { emitted++; return nil })
	maxActive, maxHeld := 0, 0
	for i := range packets {
		// Every skb address once: no reuse to end a path either.
		evs := crossNode(uint64(0x100000+i), uint64(i)*uint64(10*time.Microsecond)).events
		for j := range evs {
			s.Add(&evs[j])
			maxActive = max(maxActive, s.Active())
			maxHeld = max(maxHeld, s.held)
		}
		if i%100 == 0 {
			if err := s.Flush(evs[len(evs)-1].TS); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// One path can be over the budget on its own while it grows.
	if maxActive > cfg.MaxActive || maxHeld > cfg.MaxHeldHops+2*DefaultMaxHops {
		t.Errorf("held up to %d paths and %d hops, bounds %d and %d", maxActive, maxHeld, cfg.MaxActive, cfg.MaxHeldHops)
	}
	if emitted != packets {
		t.Errorf("emitted %d paths, want %d", emitted, packets)
	}
	if st := s.Stats(); st.Evicted == 0 {
		t.Errorf("nothing evicted: the flood did not reach the bounds (%+v)", st)
	}
	if s.held != 0 || s.Active() != 0 {
		t.Errorf("after Close: %d hops held, %d active", s.held, s.Active())
	}
}

// TestHeldHopsEvictsOldestFirst: past MaxHeldHops the least recently seen
// path is the one completed early.
func TestHeldHopsEvictsOldestFirst(t *testing.T) {
	var evs []decode.Event
	for i := range 3 {
		evs = append(evs, newSeq(uint64(0x1000+i), uint64(i)*1000, tcp("10.244.1.5:1", "10.244.1.6:2")).
			dev(decode.KindTx, nsClient, "eth0").events...)
	}
	// Each path has room for 16 hops: the third goes over 40.
	paths, s := collect(t, Config{MaxHeldHops: 40}, evs)
	if st := s.Stats(); st.Evicted != 1 {
		t.Fatalf("evicted %d, want 1", st.Evicted)
	}
	if len(paths) != 3 || paths[0].SKB != 0x1000 {
		t.Errorf("the first path emitted is skb %#x, want the oldest, 0x1000", paths[0].SKB)
	}
}
