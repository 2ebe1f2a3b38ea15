package trace

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestMemoryLimitFollowsLiveHeap(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int64
	}{
		{0, memFloor},
		{16 << 20, memFloor}, // a flood within the stitcher's caps
		{100 << 20, 150 << 20},
	} {
		if got := memoryLimitFor(c.live); got != c.want {
			t.Errorf("live %d MiB: limit %d MiB, want %d MiB", c.live>>20, got>>20, c.want>>20)
		}
	}
}

// The limit holds while a live trace runs, and is lifted when the last
// one ends; GOMEMLIMIT set by the operator wins.
func TestMemoryLimitWhileTracing(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	defer debug.SetMemoryLimit(math.MaxInt64)
	a := limitMemory()
	b := limitMemory()
	if l := debug.SetMemoryLimit(-1); l < memFloor || l == math.MaxInt64 {
		t.Fatalf("limit %d while tracing", l)
	}
	a()
	a() // once
	if l := debug.SetMemoryLimit(-1); l == math.MaxInt64 {
		t.Fatalf("limit lifted while a trace still runs")
	}
	b()
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		t.Fatalf("limit %d after the last trace", l)
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	limitMemory()()
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		t.Errorf("limit %d set over GOMEMLIMIT", l)
	}
}
