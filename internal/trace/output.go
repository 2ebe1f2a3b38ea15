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
// goroutine. While the queue is full, Write waits, until Stop: from then on
// what does not fit is dropped, and counted. Close waits until everything
// is written, or, once stopped, at most a grace period; what is left then
// is dropped too.
type Output struct {
	w       io.Writer
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

// NewOutput starts writing to w.
func NewOutput(w io.Writer) *Output {
	o := &Output{w: w, q: make(chan []byte, outputQueue), free: make(chan []byte, outputFree),
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
	case <-o.stopped:
		o.pending.Add(-int64(len(c)))
		o.dropped.Add(int64(len(c)))
	}
	return len(b), nil
}

// Stop makes Write drop what does not fit in the queue instead of waiting,
// and Close wait at most its grace period. Safe for concurrent use.
func (o *Output) Stop() { o.stop.Do(func() { close(o.stopped) }) }

// Close waits until everything queued is written, or, once stopped, for
// at most grace; it returns the bytes dropped, and the first write error.
// The writer goroutine may still be blocked in a write when it returns.
func (o *Output) Close(grace time.Duration) (dropped int64, err error) {
	if !o.closed.Swap(true) {
		close(o.q)
	}
	select {
	case <-o.done:
	case <-o.stopped:
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-o.done:
		case <-t.C:
		}
	}
	return o.dropped.Load() + max(o.pending.Load(), 0), o.error()
}
