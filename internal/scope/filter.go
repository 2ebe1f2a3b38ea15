package scope

import (
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
)

// Filter keeps the events of the namespaces in scope. The kernel programs
// still send every event their filter passes, whatever its namespace (the
// tracepoints fire in every namespace of the kernel): the events of other
// namespaces cost their ring-buffer room and their decoding, and are
// dropped here. A Filter is not safe for concurrent use.
type Filter struct {
	in map[uint32]bool // network namespaces in scope, by inode
	// out are the namespaces found out of scope since the last scan.
	out map[uint32]bool
	// skb is the namespace of each skb's newest event that had one, to
	// place the events that have none (a free after the device is gone).
	skb map[uint64]uint32

	scan    func() (map[uint32]bool, error) // nil: the scope never changes
	scanned time.Time
	now     func() time.Time

	// Dropped counts the events dropped as out of scope.
	Dropped uint64
}

// maxSKBs bounds the skbs whose namespace is remembered; past it the
// memory starts over.
const maxSKBs = 1 << 16

// rescanEvery bounds how often a namespace not known to be in scope makes
// the filter look again (a pod created during the trace); one found out of
// scope by the last look makes it look again after outRescanEvery only (a
// pod whose packets came before its veth was in place), so that the other
// nodes' steady traffic of a kernel shared by several (the demo) does not
// make it look every second.
const (
	rescanEvery    = time.Second
	outRescanEvery = 10 * time.Second
)

// NewFilter returns a filter of the namespaces scan finds, looked for
// again (at most once a second) when an event comes from a namespace not
// in scope; scan is called once now.
func NewFilter(scan func() (map[uint32]bool, error)) (*Filter, error) {
	f := &Filter{scan: scan, now: time.Now, skb: map[uint64]uint32{}, out: map[uint32]bool{}}
	in, err := scan()
	if err != nil {
		return nil, err
	}
	f.in, f.scanned = in, f.now()
	return f, nil
}

// Keep reports whether ev is in scope: its namespace, or for an event
// without one, its skb's latest namespace is. An event without a
// namespace on an skb not seen with one is kept: nothing tells where it
// is.
func (f *Filter) Keep(ev *decode.Event) bool {
	ns := ev.Netns
	if ns == 0 {
		ns = f.skb[ev.SKB]
	} else {
		if len(f.skb) >= maxSKBs {
			clear(f.skb)
		}
		f.skb[ev.SKB] = ns
	}
	if ns == 0 || f.in[ns] {
		return true
	}
	due := rescanEvery
	if f.out[ns] {
		due = outRescanEvery
	}
	if f.scan != nil && f.now().Sub(f.scanned) >= due {
		f.scanned = f.now()
		if in, err := f.scan(); err == nil {
			f.in = in
			clear(f.out)
			if in[ns] {
				return true
			}
		}
	}
	f.out[ns] = true
	f.Dropped++
	return false
}

// In returns the inodes in scope now.
func (f *Filter) In() map[uint32]bool { return f.in }
