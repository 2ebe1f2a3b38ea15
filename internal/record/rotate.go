package record

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/pathtrace/pathtrace/internal/outfile"
)

// Rotation says when a recording goes on in a new file, as tcpdump's -C,
// -G and -W do. Each file is a complete recording (header with every name
// known so far and the node reports, records, trailer), replayable alone;
// the files of one trace replay together in order (OpenFiles).
type Rotation struct {
	// Size starts a new file before a record once the file holds this
	// many bytes (tcpdump -C); 0: no limit.
	Size int64
	// Every starts a new file before a record stamped this long after the
	// file's start (tcpdump -G); 0: never.
	Every time.Duration
	// Keep keeps the last Keep files (tcpdump -W): their names are reused
	// in turn, each new file replacing the oldest. 0 keeps every file.
	Keep int
}

// Rotates reports whether the recording may go on in more than one file.
func (r Rotation) Rotates() bool { return r.Size > 0 || r.Every > 0 }

// FileName returns the name of file i (from 0) of a recording named base,
// as tcpdump names them: base for the first and base1, base2, ... after
// it; with Keep, base0 to base<Keep-1> in turn, zero-padded to the width
// of Keep-1.
func (r Rotation) FileName(base string, i int) string {
	switch {
	case !r.Rotates():
		return base
	case r.Keep > 0:
		return fmt.Sprintf("%s%0*d", base, len(strconv.Itoa(r.Keep-1)), i%r.Keep)
	case i == 0:
		return base
	}
	return base + strconv.Itoa(i)
}

// Files is a recording on disk: its first file, created by Prepare before
// the header is known, then each file Rotation asks for.
type Files struct {
	base  string
	rot   Rotation
	index int           // of the current file
	f     *outfile.File // nil for a stream
	w     *countingWriter
}

// Stream is a recording written to out as it goes (pathtrace -w -, as
// tcpdump -w -): one file, never rotated, named "standard output" in
// errors. Closing the recording does not close out.
func Stream(out io.Writer) *Files {
	return &Files{base: "-", w: &countingWriter{w: out}}
}

// Prepare creates the first file of a recording named path (mode 0600,
// since it holds packet bytes), so that a path that cannot be written is
// known before a trace starts; the name keeps what it had until Start has
// written the header. Files are created without following links
// (internal/outfile): an existing file is replaced, as tcpdump does.
func Prepare(path string, rot Rotation) (*Files, error) {
	if rot.Size < 0 || rot.Every < 0 || rot.Keep < 0 {
		return nil, fmt.Errorf("rotate recording: size %d, interval %s, keep %d: negative", rot.Size, rot.Every, rot.Keep)
	}
	fs := &Files{base: path, rot: rot}
	if err := fs.create(); err != nil {
		return nil, err
	}
	return fs, nil
}

func (fs *Files) create() error {
	f, err := outfile.Create(fs.rot.FileName(fs.base, fs.index), 0o600)
	if err != nil {
		return err
	}
	fs.f, fs.w = f, &countingWriter{w: f}
	return nil
}

// Name returns the name of the current file.
func (fs *Files) Name() string {
	if fs.base == "-" {
		return "standard output"
	}
	return fs.f.Name()
}

// Start writes the header of the first file and gives it its name. On
// error the file is removed.
func (fs *Files) Start(meta Meta) (*Writer, error) {
	meta.FileIndex = 0
	w, err := newWriter(fs.w, meta, fs)
	if err == nil && fs.f != nil {
		err = fs.f.Publish()
	}
	if err != nil {
		fs.Discard()
		return nil, err
	}
	return w, nil
}

// Discard closes a recording never started, leaving its name as it was.
func (fs *Files) Discard() {
	if fs.f != nil {
		fs.f.Close()
		fs.f = nil
	}
}

// close closes the current file.
func (fs *Files) close() error {
	if fs.f == nil {
		return nil
	}
	err := fs.f.Close()
	fs.f = nil
	if err != nil {
		return fmt.Errorf("close recording %s: %w", fs.rot.FileName(fs.base, fs.index), err)
	}
	return nil
}

// countingWriter counts the bytes written to a file.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// rotateDue reports whether the record stamped ts starts a new file.
func (w *Writer) rotateDue(ts uint64) bool {
	if w.files == nil || w.records == 0 {
		return false // every file holds at least one record
	}
	r := &w.files.rot
	if r.Size > 0 && w.files.w.n+int64(w.w.Buffered()) >= r.Size {
		return true
	}
	// An event may be stamped before the trace's start (the programs run
	// before the clocks are read): it is in the first file's time.
	return r.Every > 0 && ts > w.fileStart && ts-w.fileStart >= uint64(r.Every)
}

// rotate ends the current file with its trailer and starts the next one
// at ts, with every name known so far in its header.
func (w *Writer) rotate(ts uint64) error {
	var final Meta
	if w.lost != nil {
		final.LostPerCPU = w.lost()
		for _, n := range final.LostPerCPU {
			final.Lost += n
		}
	}
	if w.missed != nil {
		final.Missed = w.missed()
	}
	final.EndWall = time.Unix(0, int64(w.wall(ts))).UTC()
	err := w.finish(final)
	w.lostBase = final.LostPerCPU
	w.missedBase = final.Missed
	if cerr := w.files.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return w.fail(err)
	}
	fs := w.files
	fs.index++
	if err := fs.create(); err != nil {
		return w.fail(err)
	}
	w.w.Reset(fs.w)
	w.meta.FileIndex = fs.index
	w.fileStart = ts
	w.records = 0
	clear(w.ifaces)
	w.pend = names{
		Netns:       maps.Clone(w.netns),
		Nodes:       slices.Clone(w.nodeOrder),
		DropReasons: maps.Clone(w.reasons),
		Symbols:     maps.Clone(w.symbols),
	}
	if w.kube != nil {
		w.pend.Kubernetes = []KubeUpdate{*w.kube}
	}
	if err := w.writeSHB(); err != nil {
		return w.fail(err)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := fs.f.Publish(); err != nil {
		return w.fail(err)
	}
	return nil
}

// CountLost gives the writer the events lost by CPU since the trace
// started. It asks when a file of a rotated recording ends, so that the
// file's trailer counts its own; without it, every loss is counted in the
// last file, from what Close is given.
func (w *Writer) CountLost(lost func() []uint64) { w.lost = lost }

// CountMissed gives the writer the program runs the kernel skipped since
// the trace started (Meta.Missed), asked as CountLost's function is.
func (w *Writer) CountMissed(missed func() uint64) { w.missed = missed }

// fail makes err the writer's sticky error.
func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return w.err
}

// lostSince returns the lost counts of final less those of base, the
// counts when the current file started.
func lostSince(final Meta, base []uint64) (uint64, []uint64) {
	if len(base) == 0 {
		return final.Lost, final.LostPerCPU
	}
	per := slices.Clone(final.LostPerCPU)
	var sum uint64
	for i := range per {
		if i < len(base) && base[i] <= per[i] {
			per[i] -= base[i]
		}
		sum += per[i]
	}
	return sum, per
}
