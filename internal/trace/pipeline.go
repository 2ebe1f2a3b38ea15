package trace

import (
	"errors"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/diagnose"
	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/k8s"
	"github.com/pathtrace/pathtrace/internal/render"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// errCountReached stops the pipeline once -c paths were rendered.
var errCountReached = errors.New("count reached")

// Stats counts what went through the pipeline.
type Stats struct {
	Events  uint64 // records decoded
	Packets uint64 // paths rendered
	// LateEnds counts the paths rendered that are the late end of a
	// packet rendered before (stitch.Path.Late): not packets of their own.
	LateEnds uint64
	Skipped  uint64 // records that did not decode
	// OutOfScope counts the records of other namespaces than a --scope
	// node trace's, dropped after decoding (internal/scope).
	OutOfScope uint64
}

// Annotator adds advice and warnings to a completed path before it is
// rendered. It must depend only on the path and on state recorded with the
// trace, so that replay annotates exactly as the live run did.
type Annotator interface {
	Annotate(p *stitch.Path)
}

// annotators is how live tracing and replay alike annotate paths, from the
// node reports and the Kubernetes names taken when the trace started
// (replay: stored in the recording): the Service and pod names first, then
// the advice and warnings.
func annotators(reports map[uint32]*doctor.Report, kube *k8s.Timeline) Annotator {
	return annotatorChain{diagnose.NewServices(reports), kube, diagnose.New(reports)}
}

// annotatorChain applies each annotator in turn.
type annotatorChain []Annotator

func (c annotatorChain) Annotate(p *stitch.Path) {
	for _, a := range c {
		a.Annotate(p)
	}
}

// pipeline is decode → stitch → render, shared by live tracing and replay.
type pipeline struct {
	annotate Annotator // may be nil
	dec      decode.Decoder
	ev       decode.Event
	st       *stitch.Stitcher
	out      render.Renderer
	rec      *recorder                // live with -w: every record is also written here
	keep     func(*decode.Event) bool // --scope node: the events to keep; nil keeps all
	kube     *k8s.Timeline
	kubeNext atomic.Pointer[kubeUpdate] // refreshed names for applyKube
	podIPs   []netip.Addr               // paths to render; none renders all
	count    uint64                     // stop after this many paths; 0 never
	perConn  connLimit                  // --max-per-conn
	stats    Stats
	// mergedIDs: the paths come from a merged replay (merge.Merge), whose
	// late ends' Late.Of is the place of the path they end among them;
	// shown are the IDs the paths emitted so far were shown under (0: not
	// shown), in that order.
	mergedIDs bool
	shown     []uint64
}

func newPipeline(cfg stitch.Config, out render.Renderer, podIPs []netip.Addr, count int) *pipeline {
	p := &pipeline{out: out, podIPs: podIPs, count: uint64(max(count, 0))}
	p.st = stitch.New(cfg, p.emit)
	return p
}

// add decodes one record, records it when recording, and stitches it. A
// record that does not decode is counted and skipped: one bad record must
// not end a trace. The error is the recording's.
func (p *pipeline) add(rec []byte) error {
	if err := p.dec.Decode(rec, &p.ev); err != nil {
		p.stats.Skipped++
		return nil
	}
	if p.keep != nil && !p.keep(&p.ev) {
		p.stats.OutOfScope++
		return nil
	}
	p.stats.Events++
	if p.rec != nil {
		if err := p.rec.write(rec, &p.ev); err != nil {
			return err
		}
	}
	p.st.Add(&p.ev)
	return nil
}

// addEvent stitches an event replay decoded (feed): replay has no scope
// to keep and records nothing.
func (p *pipeline) addEvent(ev *decode.Event) {
	p.stats.Events++
	p.st.Add(ev)
}

func (p *pipeline) emit(path *stitch.Path) error {
	if p.count > 0 && p.stats.Packets >= p.count {
		return errCountReached
	}
	if p.mergedIDs && path.Late != nil {
		of := path.Late.Of
		path.Late.Of = 0
		if of > 0 && of <= uint64(len(p.shown)) {
			path.Late.Of = p.shown[of-1]
		}
	}
	if !p.shows(path) {
		path.ID = 0 // not shown: what a late end of its packet refers to
		if p.mergedIDs {
			p.shown = append(p.shown, 0)
		}
		return nil
	}
	// Numbered among the printed packets: 1, 2, 3, ... without the gaps
	// of paths filtered out. The stitcher emits in start order, and
	// keeps the ID left here for a late end of the packet.
	p.stats.Packets++
	path.ID = p.stats.Packets
	if p.mergedIDs {
		p.shown = append(p.shown, path.ID)
	}
	if path.Late != nil {
		p.stats.LateEnds++
	}
	if p.annotate != nil {
		p.annotate.Annotate(path)
	}
	if err := p.out.Render(path); err != nil {
		return err
	}
	if p.count > 0 && p.stats.Packets >= p.count {
		return errCountReached
	}
	return nil
}

// shows reports whether the path is rendered: it matches the pod IPs and
// is within --max-per-conn. The late end of a packet (stitch.Path.Late) is
// rendered where its packet's path was, whatever its addresses (a
// translated form the filter does not name).
func (p *pipeline) shows(path *stitch.Path) bool {
	if path.Late != nil {
		return path.Late.Of != 0
	}
	return (len(p.podIPs) == 0 || pathMatches(path, p.podIPs)) && p.perConn.allow(path)
}

// pathMatches reports whether any address of the path, at any hop, is one
// of ips: the same rule the kernel filter applies, over the whole path.
func pathMatches(p *stitch.Path, ips []netip.Addr) bool {
	has := func(a netip.Addr) bool { return slices.Contains(ips, a) }
	if has(p.Src.Addr()) || has(p.Dst.Addr()) {
		return true
	}
	for i := range p.Hops {
		h := &p.Hops[i]
		if has(h.Src.Addr()) || has(h.Dst.Addr()) {
			return true
		}
		if h.NAT != nil && (has(h.NAT.From.Addr()) || has(h.NAT.To.Addr())) {
			return true
		}
	}
	return false
}

// finish completes and renders every remaining path.
func (p *pipeline) finish() error {
	err := p.st.Close()
	if errors.Is(err, errCountReached) {
		err = nil
	}
	return errors.Join(err, p.out.Close())
}

// connLimit renders only the first max paths of each connection
// (--max-per-conn), in user space: the kernel still traces every packet
// (its connection table, fed from conntrack, holds no per-connection
// counter yet, and a connection's first packets are seen before conntrack
// knows it). A connection is the path's protocol and its two endpoints as
// first seen, in either order (an ICMP echo's id stands for the ports):
// request and reply share it, a translated form (the ClusterIP before
// DNAT, the pod after) is another. The count of at most connLimitKeys
// connections is kept; past that the counts start over.
//
// A datagram fragmented or reassembled on the way has several paths (the
// datagram's before it is split, each fragment's, the one reassembled
// from them), completed in no fixed order: they are one packet, shown or
// not together. The first of them to be rendered counts, under its
// connection (a later fragment's is its datagram's, the first fragment's
// endpoints), and the others follow it: an IPv4 datagram's by its IP id
// and either address (a translation changes one), within datagramWindow;
// an IPv6 one's, whose fragments carry no id the datagram keeps, by
// either endpoint with its port and direction within datagramWindow6.
type connLimit struct {
	max       uint32 // 0: no limit
	counts    map[connKey]uint32
	datagrams map[datagramKey]datagramSeen
}

const connLimitKeys = 1 << 16

// How long after the first path of a fragmented datagram is rendered its
// other paths follow it: an IPv4 datagram's are told by their IP id (they
// end within the stitcher's idle timeout of each other, but a fragment
// waiting for its datagram can take longer); an IPv6 datagram's by their
// endpoints only, so the next datagram between them, if it comes sooner,
// is taken for the same.
const (
	datagramWindow  = 3 * time.Second
	datagramWindow6 = time.Second
)

type connKey struct {
	proto uint8
	a, b  netip.AddrPort
}

// datagramKey is one endpoint of a fragmented datagram: its address
// (IPv4, with the id) or address and port (IPv6), as source or as
// destination.
type datagramKey struct {
	proto uint8
	dst   bool
	id    uint16
	at    netip.AddrPort
}

type datagramSeen struct {
	at    time.Time
	shown bool
}

func (c *connLimit) allow(p *stitch.Path) bool {
	if c.max == 0 {
		return true
	}
	a, b := p.Src, p.Dst
	if p.HasICMPID {
		a = netip.AddrPortFrom(a.Addr(), p.ICMPID)
		b = netip.AddrPortFrom(b.Addr(), p.ICMPID)
	}
	if p.Fragment && p.DatagramSrc.IsValid() {
		a, b = p.DatagramSrc, p.DatagramDst
	}
	part := p.Fragment || p.FirstSeen == stitch.FirstSeenReassembled || p.Verdict == stitch.VerdictFragmented
	var keys [2]datagramKey
	if part {
		keys = datagramKeys(p, a, b)
		if shown, ok := c.followed(keys, p.Start, a.Addr().Is4()); ok {
			return shown
		}
	}
	shown := c.count(p.Proto, a, b)
	if part {
		if c.datagrams == nil || len(c.datagrams) >= connLimitKeys {
			c.datagrams = make(map[datagramKey]datagramSeen)
		}
		for _, k := range keys {
			c.datagrams[k] = datagramSeen{at: p.Start, shown: shown}
		}
	}
	return shown
}

// count counts a packet of the connection of a and b, and reports whether
// it is within the limit.
func (c *connLimit) count(proto uint8, a, b netip.AddrPort) bool {
	if b.Compare(a) < 0 {
		a, b = b, a
	}
	k := connKey{proto: proto, a: a, b: b}
	if c.counts == nil || len(c.counts) >= connLimitKeys {
		c.counts = make(map[connKey]uint32)
	}
	n := c.counts[k]
	if n >= c.max {
		return false
	}
	c.counts[k] = n + 1
	return true
}

// datagramKeys are the two endpoints by which the paths of p's datagram
// know each other; a and b are its endpoints (connLimit.allow).
func datagramKeys(p *stitch.Path, a, b netip.AddrPort) [2]datagramKey {
	if a.Addr().Is4() {
		a, b = netip.AddrPortFrom(a.Addr(), 0), netip.AddrPortFrom(b.Addr(), 0)
		return [2]datagramKey{{proto: p.Proto, id: p.IPID, at: a}, {proto: p.Proto, dst: true, id: p.IPID, at: b}}
	}
	return [2]datagramKey{{proto: p.Proto, at: a}, {proto: p.Proto, dst: true, at: b}}
}

// followed reports whether a path of the datagram of keys, started at
// start, was rendered (its first) within the window, and if so whether
// it was shown.
func (c *connLimit) followed(keys [2]datagramKey, start time.Time, v4 bool) (shown, ok bool) {
	window := datagramWindow6
	if v4 {
		window = datagramWindow
	}
	for _, k := range keys {
		if d, ok := c.datagrams[k]; ok && start.Sub(d.at).Abs() <= window {
			return d.shown, true
		}
	}
	return false, false
}
