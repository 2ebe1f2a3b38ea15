package record

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pathtrace/pathtrace/internal/decode"
)

// maxComment bounds an EPB comment (pcapng options hold at most 65535 bytes).
const maxComment = 4096

// ErrClosed is returned by a Writer used after Close.
var ErrClosed = errors.New("recording writer closed")

// Writer writes one recording. It is not safe for concurrent use.
type Writer struct {
	w     *bufio.Writer
	files *Files // set by Files.Start; closed by Close
	meta  Meta

	ifaces    map[ifaceKey]uint32 // of the current file
	netns     map[uint32]string   // names written so far
	nodes     map[uint32]bool
	nodeOrder []uint32 // nodes in the order added
	reasons   map[uint32]string
	symbols   map[uint64]string
	kube      *KubeUpdate // the last Kubernetes names update
	pend      names       // names set since the last names block

	fileStart uint64   // CLOCK_MONOTONIC time the current file started
	lostBase  []uint64 // lost events by CPU when the current file started
	lost      func() []uint64
	// missedBase is Meta.Missed when the current file started.
	missedBase uint64
	missed     func() uint64

	buf     []byte
	records uint64
	err     error // sticky: the first error writing to w
	closed  bool
}

// ifaceKey is a pcapng interface: a device, and the IP version of the
// packets on it (one link type per interface).
type ifaceKey struct {
	netns, ifindex uint32
	dev            string
	ipv6           bool
}

// Create starts a recording in one file at path (see Prepare and Start).
// Close closes the file.
func Create(path string, meta Meta) (*Writer, error) {
	fs, err := Prepare(path, Rotation{})
	if err != nil {
		return nil, err
	}
	return fs.Start(meta)
}

// NewWriter starts a recording on out: it writes the section header, with
// the names in meta, and flushes it. meta.StartWall must be set.
func NewWriter(out io.Writer, meta Meta) (*Writer, error) {
	return newWriter(out, meta, nil)
}

func newWriter(out io.Writer, meta Meta, files *Files) (*Writer, error) {
	if meta.StartWall.IsZero() {
		return nil, errors.New("start recording: meta has no start time")
	}
	meta = meta.clone()
	meta.FormatVersion = FormatVersion
	if meta.Arch == "" {
		meta.Arch = runtime.GOARCH
	}
	w := &Writer{
		w:       bufio.NewWriterSize(out, 64<<10),
		meta:    meta,
		ifaces:  make(map[ifaceKey]uint32),
		netns:   make(map[uint32]string),
		nodes:   make(map[uint32]bool),
		reasons: make(map[uint32]string),
		symbols: make(map[uint64]string),
		buf:     make([]byte, 0, 2048),

		files:     files,
		fileStart: meta.StartMono,
	}
	for ino, name := range meta.Netns {
		w.SetNetnsName(ino, name)
	}
	for _, ino := range meta.Nodes {
		w.AddNode(ino)
	}
	for code, name := range meta.DropReasons {
		w.SetDropReason(code, name)
	}
	for addr, name := range meta.Symbols {
		w.SetSymbol(addr, name)
	}
	if err := w.writeSHB(); err != nil {
		return nil, err
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) writeSHB() error {
	m := &w.meta
	h, err := json.Marshal(header{
		FormatVersion:    FormatVersion,
		PathtraceVersion: printable(m.PathtraceVersion, maxText),
		Kernel:           printable(m.Kernel, maxText),
		Hostname:         printable(m.Hostname, maxText),
		NodeName:         printable(m.NodeName, maxText),
		Scope:            printable(m.Scope, maxText),
		Arch:             printable(m.Arch, maxText),
		Backend:          printable(m.Backend, maxText),
		Filter:           m.Filter,
		StartWall:        m.StartWall.UTC(),
		StartMono:        m.StartMono,
		RecordSize:       recordSize,
		RecordPrefix:     recordPrefix,
		FileIndex:        m.FileIndex,
	})
	if err != nil {
		return fmt.Errorf("start recording: encode header: %w", err)
	}
	hdr := marker + strconv.Itoa(FormatVersion) + " " + string(h)
	if len(hdr) > 0xffff {
		return fmt.Errorf("start recording: header of %d bytes exceeds the 65535-byte option limit", len(hdr))
	}

	b, start := beginBlock(w.buf[:0], blockSHB)
	b = ne.AppendUint32(b, byteOrderMagic)
	b = ne.AppendUint16(b, 1) // major
	b = ne.AppendUint16(b, 0) // minor
	b = ne.AppendUint64(b, ^uint64(0))
	b = appendOpt(b, optComment, "pathtrace recording: replay with `pathtrace replay FILE`; layout in docs/recording.md")
	b = appendOpt(b, optComment, hdr)
	b = appendOpt(b, shbHardware, clip(m.Arch))
	b = appendOpt(b, shbOS, clip("Linux "+m.Kernel))
	b = appendOpt(b, shbUserAppl, clip("pathtrace "+m.PathtraceVersion))
	b, err = w.appendNames(b)
	if err != nil {
		return err
	}
	if len(m.Reports) > 0 {
		if !json.Valid(m.Reports) {
			return fmt.Errorf("start recording: node reports are not valid JSON")
		}
		b = appendJSONOpts(b, customReports, m.Reports)
	}
	if len(m.Kubernetes) > 0 {
		if !json.Valid(m.Kubernetes) {
			return fmt.Errorf("start recording: Kubernetes names are not valid JSON")
		}
		b = appendJSONOpts(b, customKube, m.Kubernetes)
	}
	b = appendOptEnd(b)
	b = endBlock(b, start)
	if len(b) > maxBlock {
		return fmt.Errorf("start recording: section header of %d bytes exceeds %d (node reports or Kubernetes names too large)", len(b), maxBlock)
	}
	w.buf = b
	return w.emit(b)
}

// clip bounds s to what one option holds.
func clip(s string) string {
	if len(s) > maxComment {
		s = s[:maxComment]
	}
	return strings.ToValidUTF8(s, "?")
}

// label names the file being written in errors: " NAME", or "" when the
// writer writes to an io.Writer.
func (w *Writer) label() string {
	if w.files == nil || w.files.f == nil {
		return ""
	}
	return " " + w.files.Name()
}

// unwrapPath drops the path of an *fs.PathError: label names the file.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (w *Writer) emit(b []byte) error {
	if w.err != nil {
		return w.err
	}
	if len(b) > maxBlock {
		return fmt.Errorf("write recording: block of %d bytes exceeds the %d-byte limit", len(b), maxBlock)
	}
	if _, err := w.w.Write(b); err != nil {
		w.err = fmt.Errorf("write recording%s: %w", w.label(), unwrapPath(err))
	}
	return w.err
}

// SetNetnsName names a network namespace. The name reaches the file before
// the next record, so call it before writing the first record that needs it.
// Setting a name again replaces it from the next record on.
func (w *Writer) SetNetnsName(inode uint32, name string) {
	setName(w.netns, &w.pend.Netns, inode, printable(name, maxName))
}

// AddNode marks a network namespace as a traced node, from the next record on.
func (w *Writer) AddNode(inode uint32) {
	if inode == 0 || w.nodes[inode] {
		return
	}
	w.nodes[inode] = true
	w.nodeOrder = append(w.nodeOrder, inode)
	w.pend.Nodes = append(w.pend.Nodes, inode)
}

// SetDropReason names a drop-reason code of the recording kernel, from the
// next record on.
func (w *Writer) SetDropReason(code uint32, name string) {
	setName(w.reasons, &w.pend.DropReasons, code, printable(name, maxText))
}

// SetSymbol names a kernel text address (a drop location) of the recording
// kernel, from the next record on.
func (w *Writer) SetSymbol(addr uint64, name string) {
	setName(w.symbols, &w.pend.Symbols, addr, printable(name, maxSymbolName))
}

// MaxKubeUpdate bounds the JSON of a Kubernetes names update: it rides
// in the block of the next record, which must stay under 1 MiB.
const MaxKubeUpdate = 512 << 10

// AddKubernetes records Kubernetes names (JSON of internal/k8s.Names)
// looked up again while tracing, in effect from fromMono
// (CLOCK_MONOTONIC) on; they reach the file before the next record, and
// the header of each later file of a rotated recording.
func (w *Writer) AddKubernetes(fromMono uint64, js []byte) error {
	if !json.Valid(js) || len(js) > MaxKubeUpdate {
		return fmt.Errorf("write recording: Kubernetes names update of %d bytes is not valid JSON of at most %d", len(js), MaxKubeUpdate)
	}
	u := KubeUpdate{FromMono: fromMono, Names: slices.Clone(js)}
	w.kube = &u
	w.pend.Kubernetes = append(w.pend.Kubernetes, u)
	return nil
}

// setName records a name in known and, when new or changed, in the names
// pending for the next block. An empty name is no name.
func setName[K comparable](known map[K]string, pend *map[K]string, k K, name string) {
	if old, ok := known[k]; name == "" || ok && old == name {
		return
	}
	known[k] = name
	if *pend == nil {
		*pend = make(map[K]string)
	}
	(*pend)[k] = name
}

// appendNames appends the names set since the last call as custom options.
func (w *Writer) appendNames(b []byte) ([]byte, error) {
	if w.pend.len() == 0 {
		return b, nil
	}
	js, err := json.Marshal(&w.pend)
	if err != nil {
		return b, fmt.Errorf("write recording: encode names: %w", err)
	}
	w.pend = names{}
	return appendJSONOpts(b, customNames, js), nil
}

// iface returns the interface of ev, writing its description block the
// first time it is seen.
func (w *Writer) iface(ev *decode.Event) (uint32, error) {
	k := ifaceKey{ev.Netns, ev.Ifindex, ev.Dev, ev.Outer.Src.Addr().Is6()}
	if id, ok := w.ifaces[k]; ok {
		return id, nil
	}
	id := uint32(len(w.ifaces))

	ns, ok := w.netns[k.netns]
	if !ok || ns == "" {
		ns = "netns-" + strconv.FormatUint(uint64(k.netns), 10)
	}
	dev := k.dev
	switch {
	case dev == "" && k.ifindex != 0:
		dev = "if" + strconv.FormatUint(uint64(k.ifindex), 10)
	case dev == "":
		dev = "-"
	}
	desc := fmt.Sprintf("netns %d (%s) ifindex %d device %q", k.netns, ns, k.ifindex, k.dev)
	link := linkTypeIPv4
	if k.ipv6 {
		desc += " IPv6"
		link = linkTypeIPv6
	}

	b, start := beginBlock(w.buf[:0], blockIDB)
	b = ne.AppendUint16(b, link)
	b = ne.AppendUint16(b, 0)
	b = ne.AppendUint32(b, uint32(max(w.meta.Filter.Snaplen, 0)))
	b = appendOpt(b, ifName, clip(ns+"/"+dev))
	b = appendOpt(b, ifDescription, clip(desc))
	b = appendOpt(b, ifTsresol, []byte{9}) // nanoseconds
	b = appendOptEnd(b)
	b = endBlock(b, start)
	w.buf = b
	if err := w.emit(b); err != nil {
		return 0, err
	}
	w.ifaces[k] = id
	return id, nil
}

// Write adds one record: rec is the record as read from the ring buffer
// (decode.RecordSize bytes, or decode.RecordPrefix for an event that
// captured nothing), ev its decoded form, comment a one-line
// description of the hop for people reading the file in Wireshark. The
// bytes of data[] past cap_len are not kept: a reader returns them as zero.
// With Filter.HeadersOnly, cap_len is cut to the packet's headers
// (HeaderLen) first. Write keeps none of its arguments: what it needs it
// copies into the block before it returns.
func (w *Writer) Write(rec []byte, ev *decode.Event, comment string) error {
	if w.closed {
		return ErrClosed
	}
	if w.err != nil {
		return w.err
	}
	if len(rec) < recordPrefix || len(rec) > recordSize {
		return fmt.Errorf("write record: %d bytes, want %d to %d", len(rec), recordPrefix, recordSize)
	}
	capLen := int(ne.Uint16(rec[capLenOff:]))
	if capLen > len(rec)-recordPrefix {
		return fmt.Errorf("write record: captured length %d exceeds the record's %d bytes of data", capLen, len(rec)-recordPrefix)
	}
	if w.meta.Filter.HeadersOnly {
		capLen = HeaderLen(rec[recordPrefix:recordPrefix+capLen], w.meta.Filter.VXLANPorts)
	}
	if w.rotateDue(ev.TS) {
		if err := w.rotate(ev.TS); err != nil {
			return err
		}
	}
	id, err := w.iface(ev)
	if err != nil {
		return err
	}

	b, start := beginBlock(w.buf[:0], blockEPB)
	ts := w.wall(ev.TS)
	b = ne.AppendUint32(b, id)
	b = ne.AppendUint32(b, uint32(ts>>32))
	b = ne.AppendUint32(b, uint32(ts))
	b = ne.AppendUint32(b, uint32(capLen))
	b = ne.AppendUint32(b, max(ev.Len, uint32(capLen)))
	b = append(b, rec[recordPrefix:recordPrefix+capLen]...)
	b = appendPad(b)
	if comment != "" {
		if len(comment) > maxComment || !utf8.ValidString(comment) {
			comment = clip(comment)
		}
		b = appendOpt(b, optComment, comment)
	}
	switch ev.Kind {
	case decode.KindRx:
		b = appendOpt(b, epbFlags, []byte{1, 0, 0, 0}) // inbound
	case decode.KindTx:
		b = appendOpt(b, epbFlags, []byte{2, 0, 0, 0}) // outbound
	}
	b = ne.AppendUint16(b, optCustom)
	b = ne.AppendUint16(b, uint16(8+recordPrefix))
	b = ne.AppendUint32(b, PEN)
	b = ne.AppendUint32(b, customRecord)
	b = append(b, rec[:recordPrefix]...)
	ne.PutUint16(b[len(b)-recordPrefix+capLenOff:], uint16(capLen)) // less, with HeadersOnly
	b = appendPad(b)
	if b, err = w.appendNames(b); err != nil {
		return err
	}
	b = appendOptEnd(b)
	b = endBlock(b, start)
	w.buf = b
	if err := w.emit(b); err != nil {
		return err
	}
	w.records++
	return nil
}

// wall converts a CLOCK_MONOTONIC time to Unix nanoseconds.
func (w *Writer) wall(mono uint64) uint64 {
	ns := w.meta.StartWall.UnixNano() + int64(mono-w.meta.StartMono)
	return uint64(max(ns, 0))
}

// Flush writes buffered blocks to the underlying writer.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if err := w.w.Flush(); err != nil {
		w.err = fmt.Errorf("write recording%s: %w", w.label(), unwrapPath(err))
	}
	return w.err
}

// Close ends the recording: it writes the names in final not written yet,
// then the trailer (final.EndWall, Lost, LostPerCPU, Missed, Report, Connections),
// and flushes.
// Other fields of final are ignored. It closes the file opened by Create.
func (w *Writer) Close(final Meta) error {
	if w.closed {
		return ErrClosed
	}
	w.closed = true
	err := w.finish(final)
	if w.files != nil {
		if cerr := w.files.close(); err == nil {
			err = cerr
		}
	}
	return err
}

// setNames sets every name of m, in a fixed order.
func (w *Writer) setNames(m *Meta) {
	for _, k := range slices.Sorted(maps.Keys(m.Netns)) {
		w.SetNetnsName(k, m.Netns[k])
	}
	for _, ino := range m.Nodes {
		w.AddNode(ino)
	}
	for _, k := range slices.Sorted(maps.Keys(m.DropReasons)) {
		w.SetDropReason(k, m.DropReasons[k])
	}
	for _, k := range slices.Sorted(maps.Keys(m.Symbols)) {
		w.SetSymbol(k, m.Symbols[k])
	}
}

func (w *Writer) finish(final Meta) error {
	if w.err != nil {
		return w.err
	}
	w.setNames(&final)
	if len(final.Report) > 0 && !json.Valid(final.Report) {
		return errors.New("close recording: report is not valid JSON")
	}
	t := trailer{Records: w.records, Report: final.Report}
	t.Lost, t.LostPerCPU = lostSince(final, w.lostBase)
	if final.Missed > w.missedBase {
		t.Missed = final.Missed - w.missedBase
	}
	if final.Connections != nil {
		c := *final.Connections
		t.Connections = &c
	}
	if !final.EndWall.IsZero() {
		end := final.EndWall.UTC()
		t.EndWall = &end
	}
	js, err := json.Marshal(&t)
	if err != nil {
		return fmt.Errorf("close recording: encode trailer: %w", err)
	}
	// The trailer rides on statistics of interface 0, which therefore
	// must exist; a recording without records gets a placeholder.
	if len(w.ifaces) == 0 {
		if _, err := w.iface(&decode.Event{}); err != nil {
			return err
		}
	}
	b, start := beginBlock(w.buf[:0], blockISB)
	var end uint64 // unknown
	if !final.EndWall.IsZero() {
		end = uint64(max(final.EndWall.UnixNano(), 0))
	}
	b = ne.AppendUint32(b, 0)
	b = ne.AppendUint32(b, uint32(end>>32))
	b = ne.AppendUint32(b, uint32(end))
	b = appendOpt(b, optComment, fmt.Sprintf("pathtrace trailer: %d records, %d events lost", w.records, t.Lost))
	if end != 0 {
		b = appendOpt(b, isbEndTime, ne.AppendUint32(ne.AppendUint32(nil, uint32(end>>32)), uint32(end)))
	}
	if b, err = w.appendNames(b); err != nil {
		return err
	}
	b = appendJSONOpts(b, customTrailer, js)
	b = appendOptEnd(b)
	b = endBlock(b, start)
	w.buf = b
	if err := w.emit(b); err != nil {
		return fmt.Errorf("close recording: %w", err)
	}
	return w.Flush()
}
