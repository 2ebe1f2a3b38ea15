package trace

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Output is what the renderers write to stdout through, so that a reader
// that does not read (a full pipe, a stopped terminal) can slow a trace
// down but never hold its end. Writes are queued and written by a
// goroutine. While the queue is full, Write waits. After Stop it waits only
// while the reader reads: once a grace period passes without a write
// completing, the reader is taken to be gone, and from then on what does
// not fit is dropped, and counted. Close waits the same way until
// everything is written. So a reader that keeps reading (a file, a pipe
// into jq, /dev/null) gets everything a stopped trace still renders, its
// open paths flushed all at once, and one that does not costs the end of
// the command one grace period.
type Output struct {
	w       io.Writer
	grace   time.Duration
	q       chan []byte
	free    chan []byte // buffers written, for the next writes to reuse
	stopped chan struct{}
	done    chan struct{}
	stop    sync.Once

	mu  sync.Mutex
	err error // the first error of w

	pending atomic.Int64 // bytes queued, not yet written
	dropped atomic.Int64 // bytes dropped
	kept    atomic.Int64 // capacity of the buffers in free
	closed  atomic.Bool
	written atomic.Int64 // writes of w completed: the reader's progress
	stuck   atomic.Bool  // stopped, and a grace period passed without progress
}

// outputQueue is how many writes (a rendered path each) wait at most.
const outputQueue = 256

// Buffers kept for reuse: as many as the queue holds, each of at most
// outputFreeMax bytes, together at most outputKeep. A copy per write kept
// the GC, and its write barriers, busy for every path. As many as the
// queue: when the writer waits for a CPU (replay keeps both of two busy),
// the queue fills, and the writer then returns its buffers all at once;
// with 16 kept, 15 of 16 paths of a replay went to new buffers: 24
// collections in a 1M-event replay, 2 with as many kept as queued.
const (
	outputFree    = outputQueue
	outputFreeMax = 64 << 10
	outputKeep    = 2 << 20
)

// ErrOutputClosed is returned by a Write after Close.
var ErrOutputClosed = errors.New("output closed")

// NewOutput starts writing to w. Once stopped, a grace period without a
// write of w completing ends the wait for it.
func NewOutput(w io.Writer, grace time.Duration) *Output {
	o := &Output{w: w, grace: grace, q: make(chan []byte, outputQueue), free: make(chan []byte, outputFree),
		stopped: make(chan struct{}), done: make(chan struct{})}
	go o.run()
	return o
}

func (o *Output) run() {
	defer close(o.done)
	for b := range o.q {
		if o.error() == nil {
			if _, err := o.w.Write(b); err != nil {
				o.mu.Lock()
				o.err = err
				o.mu.Unlock()
			}
		}
		o.pending.Add(-int64(len(b)))
		o.written.Add(1)
		if n := int64(cap(b)); n <= outputFreeMax && o.kept.Load()+n <= outputKeep {
			select {
			case o.free <- b[:0]:
				o.kept.Add(n)
			default:
			}
		}
	}
}

func (o *Output) error() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// Write queues a copy of b (in a buffer written before, where one is free). It returns the error of an earlier write (the
// reader went away: EPIPE), so that the writer stops.
func (o *Output) Write(b []byte) (int, error) {
	if o.closed.Load() {
		return 0, ErrOutputClosed
	}
	if err := o.error(); err != nil {
		return 0, err
	}
	var c []byte
	select {
	case c = <-o.free:
		o.kept.Add(-int64(cap(c)))
	default:
	}
	c = append(c, b...)
	o.pending.Add(int64(len(c)))
	select {
	case o.q <- c:
		return len(b), nil
	default:
	}
	select {
	case o.q <- c:
		return len(b), nil
	case <-o.stopped:
	}
	if o.whileReading(func(t <-chan time.Time) bool {
		select {
		case o.q <- c:
			return true
		case <-t:
			return false
		}
	}) {
		return len(b), nil
	}
	o.pending.Add(-int64(len(c)))
	o.dropped.Add(int64(len(c)))
	return len(b), nil
}

// whileReading runs wait, with a grace period's timer, until it reports
// true or the reader is stuck: a timer fired with no write of w completed
// since it was set. It reports whether wait did.
func (o *Output) whileReading(wait func(<-chan time.Time) bool) bool {
	for !o.stuck.Load() {
		seen := o.written.Load()
		t := time.NewTimer(o.grace)
		done := wait(t.C)
		t.Stop()
		if done {
			return true
		}
		if o.written.Load() == seen {
			o.stuck.Store(true)
		}
	}
	return false
}

// Stop makes Write and Close wait for the reader only while it reads (see
// Output). Safe for concurrent use.
func (o *Output) Stop() { o.stop.Do(func() { close(o.stopped) }) }

// Close waits until everything queued is written, or, once stopped, until
// the reader is stuck; it returns the bytes dropped, and the first write
// error. The writer goroutine may still be blocked in a write when it
// returns.
func (o *Output) Close() (dropped int64, err error) {
	if !o.closed.Swap(true) {
		close(o.q)
	}
	select {
	case <-o.done:
	case <-o.stopped:
		o.whileReading(func(t <-chan time.Time) bool {
			select {
			case <-o.done:
				return true
			case <-t:
				return false
			}
		})
	}
	return o.dropped.Load() + max(o.pending.Load(), 0), o.error()
}
