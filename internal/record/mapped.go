package record

import (
	"bufio"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// source is what a Reader reads blocks from: a bufio.Reader over the input,
// or a regular file mapped (mapped).
type source interface {
	io.Reader
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
	// Size is how many bytes Peek can return; readRest reads a longer
	// block with Read, into a buffer of its own.
	Size() int
}

// readBuffer is the size of the read buffer for input that is not mapped.
const readBuffer = 64 << 10

// newSource reads f through a mapping of it when it is a regular file and
// can be mapped, else through a read buffer.
func newSource(f *os.File) source {
	if m := mapFile(f); m != nil {
		return m
	}
	return bufio.NewReaderSize(f, readBuffer)
}

// mapped reads a regular file through a read-only mapping of it: blocks
// are read in place, without the read system call's copy out of the page
// cache (a third of replay's reading, docs/BENCHMARKS.md 2026-12-03 and
// 12-05). Where the mapping ends (the size of the file when it was opened)
// it reads on with pread, so a file that grew meanwhile is read as far as
// a read buffer would. A file truncated under the mapping faults when the
// bytes gone are read: Reader.guard turns that into an error.
type mapped struct {
	b       []byte // the mapping
	off     int    // the next byte to read
	dropped int    // b[:dropped] is released (dropBehind)
	f       *os.File
	rest    *bufio.Reader // past the mapping, once reached: the file from there
}

// dropEvery is how many bytes the reader reads between releases of the
// pages it read (madvise MADV_DONTNEED: the page cache keeps them, the
// process's RSS does not), so a long recording's replay does not count
// the whole file in its RSS.
const dropEvery = 8 << 20

// mapFile maps f, or returns nil when it is not a regular file of at least
// one byte, or cannot be mapped.
func mapFile(f *os.File) *mapped {
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() <= 0 || fi.Size() > math.MaxInt {
		return nil
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil
	}
	_ = unix.Madvise(b, unix.MADV_SEQUENTIAL) // a hint: more readahead
	m := &mapped{b: b, f: f}
	m.populate(0)
	return m
}

func (m *mapped) Size() int {
	if m.rest != nil {
		return m.rest.Size()
	}
	return len(m.b) - m.off
}

func (m *mapped) Peek(n int) ([]byte, error) {
	if m.rest == nil {
		if n <= len(m.b)-m.off {
			return m.b[m.off : m.off+n], nil
		}
		m.spill()
	}
	return m.rest.Peek(n)
}

func (m *mapped) Discard(n int) (int, error) {
	if m.rest != nil {
		return m.rest.Discard(n)
	}
	k := min(n, len(m.b)-m.off)
	m.off += k
	if m.off-m.dropped >= dropEvery {
		m.dropBehind()
	}
	if k == n {
		return n, nil
	}
	m.spill()
	d, err := m.rest.Discard(n - k)
	return k + d, err
}

func (m *mapped) Read(p []byte) (int, error) {
	if m.rest != nil {
		return m.rest.Read(p)
	}
	if m.off == len(m.b) && len(p) > 0 {
		m.spill()
		return m.rest.Read(p)
	}
	n := copy(p, m.b[m.off:])
	m.off += n
	return n, nil
}

// spill goes on past the mapping: with read calls from the next byte.
func (m *mapped) spill() {
	m.rest = bufio.NewReaderSize(io.NewSectionReader(m.f, int64(m.off), math.MaxInt64-int64(m.off)), readBuffer)
}

// dropBehind releases the pages of the mapping before the current one.
// A fault maps a large folio of the page cache whole, the part before the
// fault too: the release starts half a dropEvery before the last one's
// end, where the fault after it mapped its folio again.
func (m *mapped) dropBehind() {
	page := os.Getpagesize()
	end := m.off / page * page
	from := max(0, m.dropped-dropEvery/2) / page * page
	if end > m.dropped {
		_ = unix.Madvise(m.b[from:end], unix.MADV_DONTNEED)
		m.dropped = end
	}
	m.populate(end)
}

// populate maps the pages from from on, up to where the next release
// will end, in one call instead of a fault every few pages
// (MADV_POPULATE_READ, Linux 5.14; before, the faults map them).
func (m *mapped) populate(from int) {
	to := min(len(m.b), from+dropEvery)
	if from < to {
		_ = unix.Madvise(m.b[from:to], unix.MADV_POPULATE_READ)
	}
}

// close unmaps the file; what was read from it must not be used after.
func (m *mapped) close() error {
	b := m.b
	m.b, m.off, m.dropped = nil, 0, 0
	return unix.Munmap(b)
}

// guard runs step, a read of the reader's file ((*Reader).advance: a
// method expression, not a closure), and returns its error. On a mapped
// file a read of a page the file no longer has (truncated after it was
// mapped) faults, as does one its storage fails to read; guard returns
// ErrTruncated for it instead of letting the process die.
func (r *Reader) guard(step func(*Reader) error) (err error) {
	if _, ok := r.br.(*mapped); !ok {
		return step(r)
	}
	defer r.recoverFault(&err, debug.SetPanicOnFault(true))
	return step(r)
}

// recoverFault, deferred by guard, restores the goroutine's panic-on-fault
// setting and turns a fault into *err.
func (r *Reader) recoverFault(err *error, was bool) {
	debug.SetPanicOnFault(was)
	p := recover()
	if p == nil {
		return
	}
	if re, ok := p.(runtime.Error); ok && isFault(re) {
		// A page the file no longer has, or one its storage failed to
		// read (EIO on a mapping is a fault too).
		*err = r.truncated(r.off, "the file shrank while it was read, or a read of it failed")
		return
	}
	panic(p)
}

// isFault reports whether a runtime error is a memory fault
// (SetPanicOnFault): such errors tell the faulting address.
func isFault(err runtime.Error) bool {
	_, ok := err.(interface{ Addr() uintptr })
	return ok
}
