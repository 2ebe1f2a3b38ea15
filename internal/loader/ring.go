package loader

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// Ring reads the events ring buffer, mapping its data pages once.
//
// The kernel lays a BPF ring buffer's data pages out twice in a row, so
// that a record running past the end can be read in one piece, and
// cilium/ebpf's ringbuf.Reader maps both copies. The kernel fills the page
// tables of such a mapping when it is made (remap_vmalloc_range), so the
// second copy counts in the process's RSS at once: an 8 MiB ring showed as
// 16 MiB, a quarter of pathtrace's resident memory under a flood
// (docs/BENCHMARKS.md, Memory), for pages that exist once. Ring maps the
// data once and copies the rare record that wraps around the end.
//
// A record Read returns points into the ring: it stays valid until the next
// Read or Close, which is when the ring's space is given back to the kernel.
// One goroutine reads; Close may be called from another.
type Ring struct {
	mu       sync.Mutex
	cons     []byte // the consumer page, writable
	prod     []byte // the producer page, then the data pages once
	consPos  *uintptr
	prodPos  *uintptr
	data     []byte
	mask     uintptr
	next     uintptr // the consumer position after the record last returned
	wrapped  []byte  // holds a record that wraps around the end
	epfd     int
	events   [2]unix.EpollEvent
	wake     int // an eventfd that Close writes to end a wait
	closed   atomic.Bool
	deadline time.Time
}

// errRingEmpty and errRingBusy end a pass over the ring: nothing is left
// to read, or the next record is reserved and not yet committed.
var (
	errRingEmpty = errors.New("ring buffer empty")
	errRingBusy  = errors.New("ring buffer record busy")
)

// OpenRing maps the BPF ring buffer m for reading.
func OpenRing(m *ebpf.Map) (_ *Ring, err error) {
	if m.Type() != ebpf.RingBuf {
		return nil, fmt.Errorf("map %s is a %s, not a ring buffer", m, m.Type())
	}
	size := int(m.MaxEntries())
	page := os.Getpagesize()
	if size < page || size&(size-1) != 0 {
		return nil, fmt.Errorf("ring buffer of %d bytes: not a power of two multiple of the page size", size)
	}
	r := &Ring{epfd: -1, wake: -1}
	defer func() {
		if err != nil {
			r.release()
		}
	}()
	// Offset 0: the consumer page, the only one user space may write.
	// Offset 1 page: the producer page, then the data pages (and again).
	if r.cons, err = unix.Mmap(m.FD(), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("map the ring buffer's consumer page: %w", err)
	}
	if r.prod, err = unix.Mmap(m.FD(), int64(page), page+size, unix.PROT_READ, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("map the ring buffer's data pages: %w", err)
	}
	r.consPos = (*uintptr)(unsafe.Pointer(&r.cons[0]))
	r.prodPos = (*uintptr)(unsafe.Pointer(&r.prod[0]))
	r.data = r.prod[page:]
	r.mask = uintptr(size - 1)
	r.next = atomic.LoadUintptr(r.consPos)

	if r.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll for the ring buffer: %w", err)
	}
	if r.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("eventfd for the ring buffer: %w", err)
	}
	for _, fd := range []int{m.FD(), r.wake} {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return nil, fmt.Errorf("epoll for the ring buffer: %w", err)
		}
	}
	return r, nil
}

// Size is the ring's data size in bytes.
func (r *Ring) Size() int { return len(r.data) }

// SetDeadline bounds the Reads that follow: once d has passed and the ring
// is empty, Read returns os.ErrDeadlineExceeded. The zero time waits
// without end.
func (r *Ring) SetDeadline(d time.Time) {
	r.mu.Lock()
	r.deadline = d
	r.mu.Unlock()
}

// Read stores the next record in rec, waiting for one as long as the
// deadline allows. rec.RawSample points into the ring (see Ring).
// It returns os.ErrDeadlineExceeded when the deadline has passed and
// nothing is left, and ringbuf.ErrClosed after Close.
func (r *Ring) Read(rec *ringbuf.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		return ringbuf.ErrClosed
	}
	// Give back the space of the record returned last: the kernel's wakeup
	// and poll look at the consumer position, which must not lag behind
	// what was read before this waits.
	atomic.StoreUintptr(r.consPos, r.next)
	expired := false
	for {
		switch err := r.readRecord(rec); err {
		case errRingBusy:
			// Reserved and not yet committed: a producer is between the
			// two, on another CPU, without sleeping.
			continue
		case errRingEmpty:
		default:
			return err // nil: a record
		}
		if expired {
			return os.ErrDeadlineExceeded
		}
		switch err := r.wait(); {
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Looked at once more: a record committed as the wait timed
			// out is read before the deadline is reported.
			expired = true
		case err != nil:
			return err
		}
	}
}

// readRecord takes the next committed record, skipping discarded ones.
func (r *Ring) readRecord(rec *ringbuf.Record) error {
	prod := atomic.LoadUintptr(r.prodPos)
	cons := r.next
	for {
		if prod == cons {
			return errRingEmpty
		}
		if prod-cons < unix.BPF_RINGBUF_HDR_SZ {
			return fmt.Errorf("read ring buffer record header: %w", io.ErrUnexpectedEOF)
		}
		// Records are 8-byte aligned, so a header never wraps. Loaded
		// atomically: the kernel clears the busy bit with an exchange
		// after it has written the record.
		off := cons & r.mask
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[off])))
		if hdr&unix.BPF_RINGBUF_BUSY_BIT != 0 {
			return errRingBusy
		}
		n := uintptr(hdr &^ (unix.BPF_RINGBUF_BUSY_BIT | unix.BPF_RINGBUF_DISCARD_BIT))
		total := (unix.BPF_RINGBUF_HDR_SZ + n + 7) &^ 7
		if prod-cons < total {
			return fmt.Errorf("read ring buffer record of %d bytes: %w", n, io.ErrUnexpectedEOF)
		}
		start := (cons + unix.BPF_RINGBUF_HDR_SZ) & r.mask
		cons += total
		if hdr&unix.BPF_RINGBUF_DISCARD_BIT != 0 {
			r.next = cons
			atomic.StoreUintptr(r.consPos, cons)
			continue
		}
		if end := start + n; end <= uintptr(len(r.data)) {
			rec.RawSample = r.data[start:end:end]
		} else {
			if uintptr(cap(r.wrapped)) < n {
				r.wrapped = make([]byte, n)
			}
			w := r.wrapped[:n]
			k := copy(w, r.data[start:])
			copy(w[k:], r.data)
			rec.RawSample = w
		}
		r.next = cons
		rec.Remaining = int(prod - cons)
		return nil
	}
}

// wait blocks until the kernel wakes the ring's readers, the deadline
// passes or Close is called.
func (r *Ring) wait() error {
	for {
		timeout := -1
		if !r.deadline.IsZero() {
			left := time.Until(r.deadline)
			if left <= 0 {
				return os.ErrDeadlineExceeded
			}
			// Rounded up: epoll counts whole milliseconds.
			timeout = int((left + time.Millisecond - 1) / time.Millisecond)
		}
		n, err := unix.EpollWait(r.epfd, r.events[:], timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for the ring buffer: %w", err)
		}
		if r.closed.Load() {
			return ringbuf.ErrClosed
		}
		if n > 0 {
			return nil
		}
	}
}

// Close wakes a waiting Read and unmaps the ring. It is safe to call more
// than once.
func (r *Ring) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	// Any non-zero count makes the eventfd readable, which ends the wait.
	one := [8]byte{1}
	_, _ = unix.Write(r.wake, one[:])
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.release()
}

func (r *Ring) release() error {
	var errs []error
	for _, b := range [][]byte{r.prod, r.cons} {
		if b != nil {
			errs = append(errs, unix.Munmap(b))
		}
	}
	r.prod, r.cons, r.data = nil, nil, nil
	for _, fd := range []int{r.epfd, r.wake} {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
		}
	}
	r.epfd, r.wake = -1, -1
	return errors.Join(errs...)
}
