package trace

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// A live trace's Go memory is held near what it uses. By default (GOGC
// 100) the heap grows to twice what is live before the collector runs, and
// pages freed stay mapped a while: tracing a flood, where the stitcher
// holds up to its caps (stitch.DefaultMaxActive, DefaultMaxHeldHops),
// 14–21 MB were live and the process's resident memory reached 75–90 MiB
// (docs/BENCHMARKS.md, Memory), of which 16 MiB were the ring buffer
// (mapped twice then, once since: loader.Ring) and 18 MiB the binary's pages. A soft memory limit of
// max(memFloor, memLiveFactor × live heap), set again after each
// collection, has the collector run earlier and return freed pages, where
// a fixed limit would have it run without pause on a node whose live heap
// outgrows it (a large cluster's pods and Services): the limit follows the
// live heap, as GOGC=50 would above the floor. GOMEMLIMIT in the
// environment is the operator's choice and is left alone. The floor is the bench's: with 32
// MiB three floods of 30–60 s peaked at 62–65 MiB, with 28 MiB (as
// GOMEMLIMIT) three at 59–60 MiB, for a little more of the flood lost
// (0.4–0.6% of its events against 0.05–0.6%; the flood is more than the
// reader keeps up with either way).
const (
	memFloor      = 28 << 20
	memLiveFactor = 1.5
)

var memLimit struct {
	sync.Mutex
	traces int    // live traces in this process
	run    uint64 // counts the starts of the limit: afterGC's chain follows one
}

// limitMemory starts holding the process's Go memory near its live heap,
// for as long as some live trace runs; release ends it for this trace.
// The limit is set again after every collection, when the live heap is
// known anew: loading the programs makes about 25 MB live at once (the
// kernel's BTF), and a limit that followed it only once a second would
// have the collector run without pause meanwhile.
func limitMemory() (release func()) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	memLimit.Lock()
	defer memLimit.Unlock()
	memLimit.traces++
	if memLimit.traces == 1 {
		memLimit.run++
		setMemoryLimit()
		afterGC(memLimit.run)
	}
	return sync.OnceFunc(func() {
		memLimit.Lock()
		defer memLimit.Unlock()
		memLimit.traces--
		if memLimit.traces == 0 {
			debug.SetMemoryLimit(math.MaxInt64)
		}
	})
}

// gcSentinel is garbage made to be collected: its finalizer runs after
// the collection that found it unreachable. Big enough to stay out of
// the tiny allocator, whose blocks are freed with their neighbours.
type gcSentinel struct{ _ [32]byte }

// afterGC sets the limit after the next collection, and again after the
// one after, as long as this run of the limit lasts.
func afterGC(run uint64) {
	runtime.SetFinalizer(new(gcSentinel), func(*gcSentinel) {
		memLimit.Lock()
		defer memLimit.Unlock()
		if memLimit.traces == 0 || memLimit.run != run { // released meanwhile
			return
		}
		setMemoryLimit()
		afterGC(run)
	})
}

// setMemoryLimit sets the limit from the live heap the last collection
// found.
func setMemoryLimit() {
	debug.SetMemoryLimit(memoryLimitFor(liveHeap()))
}

func memoryLimitFor(live uint64) int64 {
	return max(memFloor, int64(float64(live)*memLiveFactor))
}

func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
