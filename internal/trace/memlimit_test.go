package trace

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
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

// The limit follows the live heap from one collection to the next: 64 MiB
// made live while tracing raise it above them at once.
func TestMemoryLimitAfterCollection(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	defer debug.SetMemoryLimit(math.MaxInt64)
	release := limitMemory()
	defer release()
	live := make([]byte, 64<<20)
	for i := range live {
		live[i] = 1
	}
	var l int64
	for range 100 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond) // the finalizer's goroutine
		if l = debug.SetMemoryLimit(-1); l >= 96<<20 {
			break
		}
	}
	runtime.KeepAlive(live)
	if l < 96<<20 {
		t.Errorf("limit %d MiB with 64 MiB live, want at least 96 MiB", l>>20)
	}
}
