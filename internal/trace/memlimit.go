package trace

import (
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// A live trace's Go memory is held near what it uses. By default (GOGC
// 100) the heap grows to twice what is live before the collector runs, and
// pages freed stay mapped a while: tracing a flood, where the stitcher
// holds up to its caps (stitch.DefaultMaxActive, DefaultMaxHeldHops),
// 14–21 MB were live and the process's resident memory reached 75–90 MiB
// (docs/BENCHMARKS.md, Memory), of which 16 MiB are the ring buffer
// (mapped twice) and 18 MiB the binary's pages. A soft memory limit of
// max(memFloor, memLiveFactor × live heap), set again once a second, has
// the collector run earlier and return freed pages, where a fixed limit
// would have it run without pause on a node whose live heap outgrows it
// (a large cluster's pods and Services): the limit follows the live heap,
// as GOGC=50 would above the floor. GOMEMLIMIT in the environment is the
// operator's choice and is left alone. The floor is the bench's: with 32
// MiB three floods of 30–60 s peaked at 62–65 MiB, with 28 MiB (as
// GOMEMLIMIT) three at 59–60 MiB, for a little more of the flood lost
// (0.4–0.6% of its events against 0.05–0.6%; the flood is more than the
// reader keeps up with either way).
const (
	memFloor      = 28 << 20
	memLiveFactor = 1.5
	memEvery      = time.Second
)

var memLimit struct {
	sync.Mutex
	traces int // live traces in this process
	stop   chan struct{}
}

// limitMemory starts holding the process's Go memory near its live heap,
// for as long as some live trace runs; release ends it for this trace.
func limitMemory() (release func()) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	memLimit.Lock()
	defer memLimit.Unlock()
	memLimit.traces++
	if memLimit.traces == 1 {
		stop := make(chan struct{})
		memLimit.stop = stop
		setMemoryLimit()
		go func() {
			t := time.NewTicker(memEvery)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					memLimit.Lock()
					if memLimit.stop == stop { // not released meanwhile
						setMemoryLimit()
					}
					memLimit.Unlock()
				}
			}
		}()
	}
	return sync.OnceFunc(func() {
		memLimit.Lock()
		defer memLimit.Unlock()
		memLimit.traces--
		if memLimit.traces == 0 {
			close(memLimit.stop)
			memLimit.stop = nil
			debug.SetMemoryLimit(math.MaxInt64)
		}
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
