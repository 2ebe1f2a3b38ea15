package record

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/bits"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Errors of the reader. Every error it returns for bad input wraps one of
// them, with the file offset and a description.
var (
	// ErrNotPathtrace: the file is not pcapng, or a pcapng file not
	// written by pathtrace (tcpdump, Wireshark, ...).
	ErrNotPathtrace = errors.New("not a pathtrace recording")
	// ErrCorrupt: the file is a pathtrace recording, damaged.
	ErrCorrupt = errors.New("corrupt recording")
	// ErrTruncated: the recording ends early (pathtrace stopped before
	// closing it, or the copy is incomplete). It wraps ErrCorrupt.
	ErrTruncated = fmt.Errorf("%w: truncated", ErrCorrupt)
	// ErrVersion: the recording is in a format this pathtrace cannot read;
	// the error is a *VersionError when the version is newer.
	ErrVersion = errors.New("unsupported recording format")
	// ErrByteOrder: the recording was made on a machine of the other byte
	// order; its records can only be replayed on such a machine.
	ErrByteOrder = errors.New("recording byte order differs from this machine's")
)

// VersionError is returned for a recording newer than this package reads.
// It matches ErrVersion with errors.Is.
type VersionError struct{ Version int }

func (e *VersionError) Error() string {
	return fmt.Sprintf("recording format version %d is newer than this pathtrace supports (%d); upgrade pathtrace",
		e.Version, FormatVersion)
}

func (e *VersionError) Is(target error) bool { return target == ErrVersion }

// maxNames bounds the entries of the name tables a reader accepts.
const maxNames = 1 << 20

// Reader reads a recording as a stream: records in order, with the names
// they need before them and the trailer after them; a recording in several
// files (Rotation) is read as one. It is not safe for concurrent use.
type Reader struct {
	br *bufio.Reader
	c  io.Closer

	ctx   context.Context
	stop  func() bool // stops ctx's interruption of the current file
	name  string      // of the current file; "" for Open's reader
	files []string    // the files after the current one, in order

	meta   Meta
	nodes  map[uint32]bool
	prefix int // record prefix length in this file
	data   int // size of a record's data[] in this file

	off     int64 // file offset of the next block
	hdr     [8]byte
	blk     []byte
	opt     ours
	rec     []byte
	nif     uint32
	records uint64

	pending bool // rec holds a record Open read ahead
	done    bool // the trailer was read
	err     error

	onChange func() // see OnChange
}

// OpenFile opens the recording at path. Close closes the file.
func OpenFile(path string) (*Reader, error) {
	return OpenFiles(context.Background(), path)
}

// ErrNotOneTrace: files given together are not consecutive files of one
// trace.
var ErrNotOneTrace = errors.New("not consecutive files of one trace")

// OpenFiles opens a recording in one file or in several: files of one
// trace (Rotation), in any order; they are read in the order they were
// written, as one recording, and must follow each other (the oldest may be
// gone). Each of several files is opened twice: first for its header. When
// ctx ends, an open or a read that waits (a FIFO, a stalled pipe) returns
// with an error. Close closes the file being read.
func OpenFiles(ctx context.Context, paths ...string) (*Reader, error) {
	switch len(paths) {
	case 0:
		return nil, errors.New("open recording: no file")
	case 1:
		return openFile(ctx, paths[0])
	}
	type file struct {
		path string
		meta Meta
	}
	files := make([]file, 0, len(paths))
	for _, p := range paths {
		r, err := openFile(ctx, p)
		if err != nil {
			return nil, err
		}
		files = append(files, file{p, r.Meta()})
		r.Close()
	}
	slices.SortStableFunc(files, func(a, b file) int { return a.meta.FileIndex - b.meta.FileIndex })
	for i := 1; i < len(files); i++ {
		a, b := &files[i-1], &files[i]
		switch {
		case !sameTrace(&a.meta, &b.meta):
			return nil, fmt.Errorf("open recording: %w: %s and %s were recorded by different traces", ErrNotOneTrace, a.path, b.path)
		case b.meta.FileIndex == a.meta.FileIndex:
			return nil, fmt.Errorf("open recording: %w: %s and %s are the same file %d of the trace", ErrNotOneTrace, a.path, b.path, a.meta.FileIndex)
		case b.meta.FileIndex != a.meta.FileIndex+1:
			return nil, fmt.Errorf("open recording: %w: %s is file %d of the trace, %s file %d: the files between are missing",
				ErrNotOneTrace, a.path, a.meta.FileIndex, b.path, b.meta.FileIndex)
		}
	}
	r, err := openFile(ctx, files[0].path)
	if err != nil {
		return nil, err
	}
	for _, f := range files[1:] {
		r.files = append(r.files, f.path)
	}
	return r, nil
}

// sameTrace reports whether two files' headers are of one trace.
func sameTrace(a, b *Meta) bool {
	return a.Hostname == b.Hostname && a.StartWall.Equal(b.StartWall) && a.StartMono == b.StartMono
}

func openFile(ctx context.Context, path string) (*Reader, error) {
	f, stop, err := openCtx(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("open recording %s: %w", path, err)
	}
	r, err := open(f)
	if err != nil {
		stop()
		f.Close()
		return nil, fmt.Errorf("open recording %s: %w", path, err)
	}
	r.c, r.stop, r.ctx, r.name = f, stop, ctx, path
	return r, nil
}

// openCtx opens path for reading. When ctx ends, an open that waits (a
// FIFO without a writer) returns, and so does a read that waits on the
// file (a FIFO or pipe: Go's poller reads those); stop ends that.
func openCtx(ctx context.Context, path string) (*os.File, func() bool, error) {
	type opened struct {
		f   *os.File
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		f, err := os.Open(path)
		ch <- opened{f, err}
	}()
	select {
	case o := <-ch:
		if o.err != nil {
			var pe *fs.PathError
			if errors.As(o.err, &pe) {
				o.err = pe.Err // the caller names the file
			}
			return nil, nil, o.err
		}
		stop := context.AfterFunc(ctx, func() { o.f.SetReadDeadline(time.Now()) })
		return o.f, stop, nil
	case <-ctx.Done():
		go func() {
			if o := <-ch; o.f != nil {
				o.f.Close()
			}
		}()
		return nil, nil, ctx.Err()
	}
}

// Open reads the header of the recording in in and the blocks up to its
// first record, so that Meta has the start-up names.
func Open(in io.Reader) (*Reader, error) {
	r, err := open(in)
	if err != nil {
		return nil, fmt.Errorf("open recording: %w", err)
	}
	return r, nil
}

func open(in io.Reader) (*Reader, error) {
	r := &Reader{
		br:    bufio.NewReaderSize(in, 64<<10),
		nodes: make(map[uint32]bool),
		rec:   make([]byte, recordSize),
		meta: Meta{
			Netns:       make(map[uint32]string),
			DropReasons: make(map[uint32]string),
			Symbols:     make(map[uint64]string),
		},
	}
	if err := r.readSHB(); err != nil {
		return nil, err
	}
	switch err := r.advance(); err {
	case nil:
		r.pending = true
	case io.EOF:
		r.err = io.EOF
	default:
		return nil, err
	}
	return r, nil
}

// Close closes the file opened by OpenFile or OpenFiles; otherwise it does
// nothing.
func (r *Reader) Close() error {
	if r.stop != nil {
		r.stop()
		r.stop = nil
	}
	if r.c == nil {
		return nil
	}
	c := r.c
	r.c = nil
	return c.Close()
}

// nextFile goes on to the next file of the recording: it reads its header,
// with every name known when it started, and checks that it follows.
func (r *Reader) nextFile() error {
	r.changing()
	prev := r.meta.clone()
	name := r.files[0]
	r.files = r.files[1:]
	r.Close()
	f, stop, err := openCtx(r.ctx, name)
	if err != nil {
		return fmt.Errorf("open recording %s: %w", name, err)
	}
	r.c, r.stop, r.name = f, stop, name
	r.br.Reset(f)
	r.off, r.nif, r.records, r.done = 0, 0, 0, false
	r.opt.reset()
	if err := r.readSHB(); err != nil {
		return fmt.Errorf("open recording %s: %w", name, err)
	}
	if !sameTrace(&prev, &r.meta) || r.meta.FileIndex != prev.FileIndex+1 {
		return fmt.Errorf("open recording %s: %w: it is not the file after file %d of the trace", name, ErrNotOneTrace, prev.FileIndex)
	}
	// The totals of the files read so far go on.
	r.meta.Records, r.meta.Lost, r.meta.LostPerCPU, r.meta.Missed = prev.Records, prev.Lost, prev.LostPerCPU, prev.Missed
	return nil
}

// OnChange sets a function that Next calls before it changes what Meta,
// NetnsName, IsNode, DropReason, Symbol and KubernetesUpdates return (a
// block of names, the trailer, the next file of the recording). A caller
// whose other goroutine still works on the records before, and looks up
// their names meanwhile, waits there until it is done (replay's stitcher:
// internal/trace). nil: none.
func (r *Reader) OnChange(fn func()) { r.onChange = fn }

func (r *Reader) changing() {
	if r.onChange != nil {
		r.onChange()
	}
}

// Meta returns a copy of the metadata read so far: the header and the
// names before the last record returned. After Next returned io.EOF it is
// complete, with the trailer (Records, Lost, LostPerCPU, Missed, Report,
// Connections, EndWall).
func (r *Reader) Meta() Meta { return r.meta.clone() }

// NetnsName returns the name of a network namespace, as known at the last
// record returned.
func (r *Reader) NetnsName(inode uint32) (string, bool) {
	s, ok := r.meta.Netns[inode]
	return s, ok
}

// IsNode reports whether a network namespace is a traced node, as known at
// the last record returned.
func (r *Reader) IsNode(inode uint32) bool { return r.nodes[inode] }

// DropReason returns the recording kernel's name of a drop-reason code.
func (r *Reader) DropReason(code uint32) (string, bool) {
	s, ok := r.meta.DropReasons[code]
	return s, ok
}

// Symbol returns the name of a kernel text address, as known at the last
// record returned.
func (r *Reader) Symbol(addr uint64) (string, bool) {
	s, ok := r.meta.Symbols[addr]
	return s, ok
}

// Next returns the next record: decode.RecordSize bytes, as the ring buffer
// delivered them, except that data[] past cap_len is zero. The slice is
// valid until the next call to Next. At the end it returns io.EOF; any
// other error is final.
func (r *Reader) Next() ([]byte, error) {
	if r.pending {
		r.pending = false
		return r.rec, nil
	}
	if r.err != nil {
		return nil, r.err
	}
	if err := r.advance(); err != nil {
		if err != io.EOF {
			err = fmt.Errorf("read recording%s: %w", r.label(), err)
		}
		r.err = err
		return nil, err
	}
	return r.rec, nil
}

// label names the file being read in errors: " NAME", or "".
func (r *Reader) label() string {
	if r.name == "" {
		return ""
	}
	return " " + r.name
}

func (r *Reader) corrupt(at int64, format string, args ...any) error {
	return fmt.Errorf("offset %d: %w: %s", at, ErrCorrupt, fmt.Sprintf(format, args...))
}

func (r *Reader) truncated(at int64, format string, args ...any) error {
	return fmt.Errorf("offset %d: %w: %s", at, ErrTruncated, fmt.Sprintf(format, args...))
}

func (r *Reader) notPathtrace(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotPathtrace, fmt.Sprintf(format, args...))
}

// readSHB reads and checks the section header and the pathtrace header in
// its comment.
func (r *Reader) readSHB() error {
	var h [12]byte
	n, err := io.ReadFull(r.br, h[:])
	if n == 0 && err != nil {
		if err == io.EOF {
			return r.notPathtrace("empty file")
		}
		return fmt.Errorf("read header: %w", err)
	}
	var shb [4]byte
	ne.PutUint32(shb[:], blockSHB)
	if n < 4 {
		if bytes.HasPrefix(shb[:], h[:n]) {
			return r.truncated(0, "ends inside the section header")
		}
		return r.notPathtrace("not a pcapng file")
	}
	if typ := ne.Uint32(h[:]); typ != blockSHB {
		switch typ {
		case 0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1:
			return r.notPathtrace("a pcap file, not pcapng")
		}
		return r.notPathtrace("not a pcapng file")
	}
	if err != nil {
		return r.truncated(0, "ends inside the section header")
	}
	switch bom := ne.Uint32(h[8:]); bom {
	case byteOrderMagic:
	case bits.ReverseBytes32(byteOrderMagic):
		return fmt.Errorf("%w: the section is in the other byte order than this machine's, and so are its records", ErrByteOrder)
	default:
		return r.notPathtrace("not a pcapng file (byte-order magic %#08x)", bom)
	}
	size := ne.Uint32(h[4:])
	if err := checkSize(size); err != "" {
		return r.corrupt(0, "section header: %s", err)
	}
	if size < 28 {
		return r.corrupt(0, "section header of %d bytes is too short", size)
	}
	body, err := r.readRest(size, 12)
	if err != nil {
		return err
	}
	major, minor := ne.Uint16(body), ne.Uint16(body[2:])
	if major != 1 {
		return r.notPathtrace("pcapng version %d.%d", major, minor)
	}
	r.off = int64(size)

	var hdr, appl string
	opts := options{b: body[12:]}
	for code, val, ok := opts.next(); ok; code, val, ok = opts.next() {
		switch code {
		case optComment:
			if hdr == "" && strings.HasPrefix(string(val), marker) {
				hdr = string(val)
			}
		case shbUserAppl:
			appl = string(val)
		case optCustom:
			r.opt.add(val)
		}
	}
	if opts.err != "" {
		return r.corrupt(0, "section header: %s", opts.err)
	}
	if hdr == "" {
		if appl == "" {
			return r.notPathtrace("a pcapng file without pathtrace's header")
		}
		return r.notPathtrace("a pcapng file written by %q", appl)
	}
	if err := r.parseHeader(hdr[len(marker):]); err != nil {
		return err
	}
	if r.opt.records != 0 || r.opt.hasTrailer {
		return r.corrupt(0, "section header with a record or trailer")
	}
	if len(r.opt.reports) > 0 {
		if !json.Valid(r.opt.reports) {
			return r.corrupt(0, "node reports are not valid JSON")
		}
		r.meta.Reports = slices.Clone(r.opt.reports)
	}
	if len(r.opt.kube) > 0 {
		if !json.Valid(r.opt.kube) {
			return r.corrupt(0, "Kubernetes names are not valid JSON")
		}
		r.meta.Kubernetes = slices.Clone(r.opt.kube)
	}
	return r.applyNames(0)
}

// parseHeader parses "<version> <json>".
func (r *Reader) parseHeader(s string) error {
	vs, js, ok := strings.Cut(s, " ")
	v, err := strconv.Atoi(vs)
	if !ok || err != nil || v < 1 || len(vs) > 9 {
		return r.corrupt(0, "header: bad format version %q", vs)
	}
	if v > FormatVersion {
		return &VersionError{Version: v}
	}
	var h header
	if err := json.Unmarshal([]byte(js), &h); err != nil {
		return r.corrupt(0, "header: %v", err)
	}
	if h.FormatVersion != v {
		return r.corrupt(0, "header: format version %d in a version %d header", h.FormatVersion, v)
	}
	if v == 1 && h.RecordPrefix > v1Prefix {
		return r.corrupt(0, "header: record prefix of %d bytes in a version 1 recording", h.RecordPrefix)
	}
	if h.RecordPrefix > recordPrefix {
		return fmt.Errorf("%w: records carry %d bytes before their data, this pathtrace knows %d; upgrade pathtrace",
			ErrVersion, h.RecordPrefix, recordPrefix)
	}
	if h.RecordPrefix < capLenOff+2 {
		return r.corrupt(0, "header: record prefix of %d bytes", h.RecordPrefix)
	}
	data := h.RecordSize - h.RecordPrefix // bytes of data[] in a record
	switch {
	case h.RecordSize <= 0 || data < 0:
		return r.corrupt(0, "header: record size %d with a record prefix of %d bytes", h.RecordSize, h.RecordPrefix)
	case data > dataSize:
		return fmt.Errorf("%w: records carry up to %d bytes of packet, this pathtrace knows %d; upgrade pathtrace",
			ErrVersion, data, dataSize)
	}
	if err := h.check(data); err != "" {
		return r.corrupt(0, "header: %s", err)
	}
	r.prefix, r.data = h.RecordPrefix, data
	m := &r.meta
	m.FormatVersion = v
	m.PathtraceVersion = h.PathtraceVersion
	m.Kernel = h.Kernel
	m.Hostname = h.Hostname
	m.NodeName = h.NodeName
	m.Scope = h.Scope
	m.Arch = h.Arch
	m.Backend = h.Backend
	m.Filter = h.Filter
	m.StartWall = h.StartWall
	m.StartMono = h.StartMono
	m.FileIndex = h.FileIndex
	return nil
}

func checkSize(n uint32) string {
	switch {
	case n < minBlock || n%4 != 0:
		return fmt.Sprintf("block length %d is not a multiple of 4 of at least %d", n, minBlock)
	case n > maxBlock:
		return fmt.Sprintf("block length %d exceeds the %d-byte limit", n, maxBlock)
	}
	return ""
}

// readRest reads a block of the given total size whose first have bytes
// were read, checks its trailing length, and returns the bytes from have up
// to the trailing length. The slice is valid until the next read.
func (r *Reader) readRest(size uint32, have int) ([]byte, error) {
	rest := int(size) - have
	var b []byte
	var err error
	if rest <= r.br.Size() {
		// In place in the read buffer, without a copy: a record's
		// block is read once more, into the record.
		b, err = r.br.Peek(rest)
		r.br.Discard(len(b))
	} else {
		if cap(r.blk) < rest {
			r.blk = make([]byte, rest, max(rest, 4096))
		}
		b = r.blk[:rest]
		_, err = io.ReadFull(r.br, b)
	}
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, r.truncated(r.off, "ends inside a block of %d bytes", size)
		}
		return nil, fmt.Errorf("offset %d: %w", r.off, err)
	}
	if t := ne.Uint32(b[rest-4:]); t != size {
		return nil, r.corrupt(r.off, "block length %d and trailing length %d differ", size, t)
	}
	return b[:rest-4], nil
}

// advance reads blocks until it has a record in r.rec, or the end.
func (r *Reader) advance() error {
	for {
		at := r.off
		hdr, err := r.br.Peek(len(r.hdr))
		n := copy(r.hdr[:], hdr)
		r.br.Discard(n)
		if err == io.EOF && n > 0 {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			switch {
			case n == 0 && err == io.EOF && r.done && len(r.files) > 0:
				if err := r.nextFile(); err != nil {
					return err
				}
				continue
			case n == 0 && err == io.EOF && r.done:
				return io.EOF
			case n == 0 && err == io.EOF:
				return r.truncated(at, "ends before its trailer")
			case err == io.EOF || err == io.ErrUnexpectedEOF:
				return r.truncated(at, "ends inside a block header")
			}
			return fmt.Errorf("offset %d: %w", at, err)
		}
		typ, size := ne.Uint32(r.hdr[:]), ne.Uint32(r.hdr[4:])
		if e := checkSize(size); e != "" {
			return r.corrupt(at, "%s", e)
		}
		body, err := r.readRest(size, 8)
		if err != nil {
			return err
		}
		r.off += int64(size)
		if r.done {
			return r.corrupt(at, "block of type %#x after the trailer", typ)
		}
		switch typ {
		case blockEPB:
			return r.readEPB(at, body)
		case blockIDB:
			if len(body) < 8 {
				return r.corrupt(at, "interface block of %d bytes is too short", size)
			}
			r.nif++
		case blockISB:
			if err := r.readISB(at, body); err != nil {
				return err
			}
		case blockSHB:
			return r.corrupt(at, "a second section: a recording has one")
		}
		// Other blocks (name resolution, custom, ...) are skipped.
	}
}

func (r *Reader) readEPB(at int64, b []byte) error {
	if len(b) < 20 {
		return r.corrupt(at, "packet block of %d bytes is too short", len(b)+12)
	}
	iface := ne.Uint32(b)
	capLen := int(ne.Uint32(b[12:]))
	if iface >= r.nif {
		return r.corrupt(at, "packet on interface %d of %d", iface, r.nif)
	}
	if capLen > r.data {
		return r.corrupt(at, "packet of %d bytes, more than a record holds (%d)", capLen, r.data)
	}
	if 20+pad4(capLen) > len(b) {
		return r.corrupt(at, "packet data runs past the block")
	}
	data := b[20 : 20+capLen]

	r.opt.reset()
	opts := options{b: b[20+pad4(capLen):]}
	for code, val, ok := opts.next(); ok; code, val, ok = opts.next() {
		if code == optCustom {
			r.opt.add(val)
		}
	}
	if opts.err != "" {
		return r.corrupt(at, "packet block: %s", opts.err)
	}
	prefix := r.opt.record
	switch {
	case r.opt.records == 0:
		return r.corrupt(at, "packet without its pathtrace record")
	case r.opt.records > 1:
		return r.corrupt(at, "packet with %d pathtrace records", r.opt.records)
	case r.opt.hasTrailer:
		return r.corrupt(at, "packet with a trailer")
	}
	if len(prefix) != r.prefix {
		return r.corrupt(at, "record of %d bytes, the header says %d", len(prefix), r.prefix)
	}
	rec := r.rec
	if r.meta.FormatVersion == 1 {
		clear(rec[:recordPrefix])
		fromV1(rec, prefix)
	} else {
		copy(rec, prefix)
		clear(rec[len(prefix):recordPrefix])
	}
	copy(rec[recordPrefix:], data)
	clear(rec[recordPrefix+capLen:])
	if c := int(ne.Uint16(rec[capLenOff:])); c != capLen {
		return r.corrupt(at, "record captured length %d, packet holds %d bytes", c, capLen)
	}
	if err := r.applyNames(at); err != nil {
		return err
	}
	r.records++
	return nil
}

// ours collects the pathtrace custom options of one block. Its buffers
// are reused from block to block.
type ours struct {
	record     []byte // value of the record option
	records    int    // number of record options
	names      []byte // JSON of the names options, joined
	trailer    []byte // JSON of the trailer options, joined
	reports    []byte // JSON of the reports options (section header only), joined
	kube       []byte // JSON of the Kubernetes names options (section header only), joined
	hasTrailer bool
}

func (o *ours) reset() {
	o.record, o.records, o.hasTrailer = nil, 0, false
	o.names, o.trailer, o.reports, o.kube = o.names[:0], o.trailer[:0], o.reports[:0], o.kube[:0]
}

// add takes one custom option value; other vendors' and unknown kinds are
// ignored (a newer pathtrace of the same format version may add kinds).
func (o *ours) add(val []byte) {
	if len(val) < 8 || ne.Uint32(val) != PEN {
		return
	}
	data := val[8:]
	switch ne.Uint32(val[4:]) {
	case customRecord:
		o.record = data
		o.records++
	case customNames:
		o.names = append(o.names, data...)
	case customTrailer:
		o.trailer = append(o.trailer, data...)
		o.hasTrailer = true
	case customReports:
		o.reports = append(o.reports, data...)
	case customKube:
		o.kube = append(o.kube, data...)
	}
}

// applyNames merges the names of the current block into the tables.
func (r *Reader) applyNames(at int64) error {
	if len(r.opt.names) == 0 {
		return nil
	}
	var nm names
	if err := json.Unmarshal(r.opt.names, &nm); err != nil {
		return r.corrupt(at, "names: %v", err)
	}
	if err := nm.check(); err != "" {
		return r.corrupt(at, "names: %s", err)
	}
	if len(r.meta.Netns)+len(r.meta.Nodes)+len(r.meta.DropReasons)+len(r.meta.Symbols)+len(r.meta.KubernetesUpdates)+nm.len() > maxNames {
		return r.corrupt(at, "more than %d names", maxNames)
	}
	r.changing()
	for k, v := range nm.Netns {
		r.meta.Netns[k] = v
	}
	for _, ino := range nm.Nodes {
		if !r.nodes[ino] {
			r.nodes[ino] = true
			r.meta.Nodes = append(r.meta.Nodes, ino)
		}
	}
	for k, v := range nm.DropReasons {
		r.meta.DropReasons[k] = v
	}
	for k, v := range nm.Symbols {
		r.meta.Symbols[k] = v
	}
	r.meta.KubernetesUpdates = append(r.meta.KubernetesUpdates, nm.Kubernetes...)
	return nil
}

// KubernetesUpdates returns the Kubernetes names updates read so far (see
// Meta.KubernetesUpdates), without copying them: the caller must not
// change them.
func (r *Reader) KubernetesUpdates() []KubeUpdate { return r.meta.KubernetesUpdates }

// readISB reads an Interface Statistics Block: pathtrace's last block
// carries the trailer (and the last names) in custom options; other
// statistics are skipped.
func (r *Reader) readISB(at int64, b []byte) error {
	if len(b) < 12 {
		return r.corrupt(at, "statistics block of %d bytes is too short", len(b)+12)
	}
	r.opt.reset()
	opts := options{b: b[12:]}
	for code, val, ok := opts.next(); ok; code, val, ok = opts.next() {
		if code == optCustom {
			r.opt.add(val)
		}
	}
	if opts.err != "" {
		return r.corrupt(at, "statistics block: %s", opts.err)
	}
	if !r.opt.hasTrailer && len(r.opt.names) == 0 && r.opt.records == 0 {
		return nil // someone else's
	}
	if r.opt.records != 0 {
		return r.corrupt(at, "statistics block with a record")
	}
	if iface := ne.Uint32(b); iface >= r.nif {
		return r.corrupt(at, "statistics of interface %d of %d", iface, r.nif)
	}
	if err := r.applyNames(at); err != nil {
		return err
	}
	if !r.opt.hasTrailer {
		return nil
	}
	var t trailer
	if err := json.Unmarshal(r.opt.trailer, &t); err != nil {
		return r.corrupt(at, "trailer: %v", err)
	}
	if t.Records != r.records {
		return r.corrupt(at, "trailer counts %d records, the file holds %d", t.Records, r.records)
	}
	if err := t.check(); err != "" {
		return r.corrupt(at, "trailer: %s", err)
	}
	// The totals of every file read: one recording may be several.
	r.changing()
	m := &r.meta
	m.Records += t.Records
	m.Lost += t.Lost
	m.Missed += t.Missed
	for i, n := range t.LostPerCPU {
		if i == len(m.LostPerCPU) {
			m.LostPerCPU = append(m.LostPerCPU, 0)
		}
		m.LostPerCPU[i] += n
	}
	m.Report = t.Report
	m.Connections = t.Connections
	if t.EndWall != nil {
		m.EndWall = *t.EndWall
	}
	r.done = true
	return nil
}
