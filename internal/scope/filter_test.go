package scope

import (
	"errors"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
)

func TestFilter(t *testing.T) {
	scans := 0
	inScope := map[uint32]bool{1: true, 2: true}
	f, err := NewFilter(func() (map[uint32]bool, error) {
		scans++
		m := map[uint32]bool{}
		for k, v := range inScope {
			m[k] = v
		}
		return m, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(100, 0)
	f.now = func() time.Time { return now }
	f.scanned = now
	ev := func(skb uint64, ns uint32) *decode.Event { return &decode.Event{SKB: skb, Netns: ns} }

	for _, c := range []struct {
		ev   *decode.Event
		keep bool
		what string
	}{
		{ev(10, 1), true, "a node's event"},
		{ev(10, 0), true, "a free on its skb, no namespace: the skb's last was the node's"},
		{ev(10, 3), false, "the same skb in another node"},
		{ev(10, 0), false, "a free after it left"},
		{ev(11, 0), true, "a free of an skb never seen with a namespace"},
		{ev(12, 2), true, "a pod's event"},
	} {
		if got := f.Keep(c.ev); got != c.keep {
			t.Errorf("%s: keep %v, want %v", c.what, got, c.keep)
		}
	}
	if scans != 1 || f.Dropped != 2 {
		t.Errorf("%d scans, %d dropped; want 1 (no rescan within a second), 2", scans, f.Dropped)
	}
	// A pod created during the trace: found by the next rescan, a
	// second on.
	inScope[4] = true
	if f.Keep(ev(13, 4)) {
		t.Error("kept a namespace before the rescan")
	}
	now = now.Add(2 * time.Second)
	if f.Keep(ev(13, 4)) || scans != 1 {
		t.Errorf("a namespace seen out of scope made a rescan within 10s (%d scans)", scans)
	}
	inScope[5] = true
	if !f.Keep(ev(14, 5)) || scans != 2 {
		t.Errorf("a new namespace's event dropped: no rescan after a second (%d scans)", scans)
	}
	if !f.Keep(ev(13, 4)) {
		t.Error("the rescan did not bring namespace 4 in")
	}
}

func TestFilterScanError(t *testing.T) {
	want := errors.New("no netlink")
	if _, err := NewFilter(func() (map[uint32]bool, error) { return nil, want }); !errors.Is(err, want) {
		t.Errorf("error %v, want %v", err, want)
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]Scope{"": Kernel, "kernel": Kernel, "node": Node} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := Parse("cluster"); err == nil {
		t.Error("Parse(cluster) took it")
	}
}
