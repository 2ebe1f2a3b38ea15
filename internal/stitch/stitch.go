package stitch

import (
	"net/netip"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
)

// Names resolves what events carry as numbers. Live, it asks the system and
// remembers; in replay it answers from the recording, so both give the same
// names.
type Names interface {
	// Netns names a network namespace by inode.
	Netns(inode uint32) string
	// IsNode reports whether the namespace is a traced node (where the
	// netfilter programs are attached), as opposed to a pod.
	IsNode(inode uint32) bool
	// DropReason names a drop reason code of the recording kernel.
	DropReason(code uint32) string
	// Symbol names a kernel text address of the recording kernel
	// ("nf_hook_slow+0x9e"); "" when unknown.
	Symbol(addr uint64) string
}

// Config tunes the stitcher. Zero fields take the defaults.
type Config struct {
	// Idle completes a path that saw no event for this long (in event
	// time): the packet left the traced hooks without a free event.
	Idle time.Duration
	// Grace is how far behind "now" Flush looks, so that events still on
	// their way from the kernel join their path before it is emitted.
	Grace time.Duration
	// MaxHops bounds the hops kept per path; further events are counted.
	MaxHops int
	// MaxHeldHops bounds the memory of the packets followed at once: the
	// hops their paths have room for (a hop is about 330 bytes). Past it,
	// as past MaxActive, the least recently seen path is completed early.
	// A flood of packets the kernel frees without a tracepoint (their
	// paths end only after Idle) stays within it.
	MaxHeldHops int
	// MaxActive bounds the packets followed at once; past it the least
	// recently seen path is completed early.
	MaxActive int
	// Recycle lets the stitcher reuse a path's memory once emit has
	// returned for it: emit, and whatever it hands the path to, must not
	// keep the path or anything it points to (Path.Clone makes a copy to
	// keep). A steady stream of packets then allocates next to nothing.
	Recycle bool
	// WallOffset turns a monotonic timestamp into wall-clock time:
	// wall = time.Unix(0, int64(mono)+WallOffset).
	WallOffset int64
	Names      Names
	// Node, when set, names the node on every hop (Hop.Node): the
	// --node-name of a --scope node trace.
	Node string
}

// Defaults of Config.
const (
	DefaultIdle      = time.Second
	DefaultGrace     = 250 * time.Millisecond
	DefaultMaxHops   = 96
	DefaultMaxActive = 16384
	// DefaultMaxHeldHops is about 5 MiB of hops: hundreds of packets in
	// flight at once on a busy node need a few thousand.
	DefaultMaxHeldHops = 16384
)

// Stats counts what the stitcher did.
type Stats struct {
	Events  uint64 // events added
	Paths   uint64 // paths emitted
	Evicted uint64 // paths completed early because MaxActive or MaxHeldHops was reached
	Clipped uint64 // events counted but not kept because a path had MaxHops
	// Freed is the number of paths not emitted because a free was all they
	// showed: copies the kernel made and freed on the spot, such as the
	// clone of a queued packet that neighbour resolution uses to send its
	// ARP request.
	Freed uint64
	// Foreign is the number of events not stitched because they showed
	// another packet than the one followed on their skb: a frame that is
	// not IPv4 (ARP, IPv6) on a reused skb, or a free of another packet.
	Foreign uint64
}

// Stitcher joins events into paths and emits each path once, completed,
// in a deterministic order: by the time of its first hop (order.go), with
// IDs 1, 2, 3, ... in that order. Live and replay feed it the same events
// and get the same output.
// A Stitcher is not safe for concurrent use.
type Stitcher struct {
	cfg    Config
	emit   func(*Path) error
	active map[uint64]*track
	lru    track // sentinel of the list of active paths, least recent first
	// queue holds the paths not yet emitted, in start order (order.go);
	// waiting of them completed, with waitHops hops of room.
	queue    track
	waiting  int
	waitHops int
	stats    Stats
	err      error
	last     *track // of the last event added (Add)
	held     int    // hops the active paths have room for (see MaxHeldHops)

	// Memory to reuse: tracks always (they never leave the stitcher),
	// paths with Config.Recycle or when they were never emitted.
	freeTracks []*track
	freePaths  []*pathMem
	spare      Hop // the hop of an event past MaxHops (next)

	// handoffs are the paths whose skb was freed as a copy of it went on,
	// waiting for its first event, oldest first (handoff.go).
	handoffs []*track

	// quiet indexes by skb the paths that completed quiet, kept for a
	// late free in quietRing, whose oldest slot quietNext is once full
	// (late.go); probe is the track their identity is checked on once
	// emitted.
	quiet     map[uint64]uint32
	quietRing []quietPath
	quietNext int
	probe     track

	// frags holds when fragment paths and reassembled datagrams' paths
	// started, by datagram and namespace (frag.go).
	frags map[fragKey]*fragTimes
}

// maxFree bounds the tracks and paths kept for reuse.
const maxFree = 256

// track is the state of one path being followed.
type track struct {
	path       *Path
	skb        uint64   // the skb followed now (the path's SKB, or a copy's: handoff.go)
	mem        *pathMem // of path
	prev, next *track
	last       uint64 // monotonic ns of the newest event
	final      uint64 // completion time, when completed
	done       bool   // completed, waiting to be emitted

	qprev, qnext *track // the links in Stitcher.queue

	pending    decode.Event // a first-slot netfilter event awaiting its last slot
	hasPending bool
	// inHook holds the hops seen inside the pending hook (table verdicts,
	// IPVS's), appended after the hook's own hop.
	inHook  []Hop
	encap   bool // the previous L3 event saw a tunnel's packet
	outer   Outer
	txDev   string // device of the newest tx hop
	txNetns uint32
	// encapHop is the index of an encap hop a tunnel transmit function
	// made (KindEncap), whose outer header the next encapsulated event
	// completes; -1 when none.
	encapHop int
	// decapHop is the index of a decap hop a tunnel receive function
	// made (KindDecap), whose device (the tunnel device) the next
	// unencapsulated event tells; -1 when none.
	decapHop int

	// The packet's identity (identity.go): its innermost tuple at the
	// newest event, whether a netfilter hop or an IPVS hop was seen.
	cur   decode.Tuple
	sawNF bool
	ipvs  bool

	// A path handed off (handoff.go): when its skb was freed, and in
	// which node namespace.
	handedOff bool
	heldAt    uint64
	heldNetns uint32

	// quiet: completed because no event came for Config.Idle, and
	// remembered for a late free (late.go). seen is, on the path of a late
	// free, where its packet was last seen. lateOf links a late free's
	// path to the quiet path not yet emitted whose ID it waits for, and
	// lateBy back.
	quiet          bool
	seen           lastSeen
	lateOf, lateBy *track

	// IP fragments (frag.go): frag says the packet is one, as its first
	// event's captured bytes showed, fragLen its length then; reassembled
	// that its skb went on as the reassembled datagram.
	frag        bool
	fragLen     uint32
	reassembled bool
	// split: its skb went on as the first fragment of its datagram
	// (IP output's fast path reuses the datagram's skbs).
	split bool
	// reasmFrom is, on the path of a reassembled datagram, its
	// destination before the hook that reassembled it translated it
	// (frag.go).
	reasmFrom netip.AddrPort
}

// New returns a stitcher that passes each completed path to emit. An error
// from emit stops further emission and is returned by Flush and Close.
// emit may set the path's ID to the number it shows the path under (0: not
// shown): a late end of the packet (Path.Late) refers to that ID.
func New(cfg Config, emit func(*Path) error) *Stitcher {
	if cfg.Idle <= 0 {
		cfg.Idle = DefaultIdle
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.MaxHops <= 0 {
		cfg.MaxHops = DefaultMaxHops
	}
	if cfg.MaxActive <= 0 {
		cfg.MaxActive = DefaultMaxActive
	}
	if cfg.MaxHeldHops <= 0 {
		cfg.MaxHeldHops = DefaultMaxHeldHops
	}
	s := &Stitcher{cfg: cfg, emit: emit, active: make(map[uint64]*track)}
	s.lru.prev, s.lru.next = &s.lru, &s.lru
	s.queue.qprev, s.queue.qnext = &s.queue, &s.queue
	return s
}

// Stats returns the counters so far.
func (s *Stitcher) Stats() Stats { return s.stats }

// Active returns the number of packets being followed.
func (s *Stitcher) Active() int { return len(s.active) }

// Add stitches one event. ev is not retained.
func (s *Stitcher) Add(ev *decode.Event) {
	s.stats.Events++
	idle := uint64(s.cfg.Idle)
	if len(s.handoffs) > 0 {
		s.expireHandoffs(ev.TS)
	}
	// A packet's events mostly come in a row: the track of the last one
	// first. It is active when it holds a path not completed nor handed
	// off.
	t := s.last
	if t == nil || t.path == nil || t.done || t.handedOff || t.skb != ev.SKB {
		t = s.active[ev.SKB]
	}
	var reassembled *decode.Tuple
	if t != nil && ev.Flags&decode.FlagNew != 0 {
		// A new packet on a reused skb: the old path ended without a
		// free event; or the datagram its fragment completed
		// (frag.go).
		reassembled = t.endedBy(ev)
		s.complete(t, min(t.last+idle, ev.TS))
		t = nil
	} else if t != nil && ev.TS > t.last+idle {
		// The same skb long after its packet went quiet: a late free
		// of it takes the path back (lateEnd), anything else starts
		// another.
		s.completeQuiet(t, t.last+idle)
		t = nil
	}
	if s.foreign(t, ev) {
		// Another packet's frame or free: not this path's, and no path
		// of its own (identity.go). A free tells that the followed
		// packet is gone.
		s.stats.Foreign++
		if t != nil && isFree(ev.Kind) {
			s.complete(t, min(t.last+idle, ev.TS))
		}
		return
	}
	if t != nil && !s.continues(t, ev) {
		// Another packet on the skb, which the kernel could not tell:
		// the followed one was freed without a tracepoint; or the
		// datagram its fragment completed, which older kernels'
		// programs do not mark new.
		reassembled = t.endedBy(ev)
		s.complete(t, min(t.last+idle, ev.TS))
		t = nil
	}
	if t == nil && len(s.handoffs) > 0 {
		t = s.takeHandoff(ev)
	}
	if t == nil && len(s.quiet) > 0 {
		t = s.lateEnd(ev)
	}
	if t == nil {
		if len(s.active) >= s.cfg.MaxActive {
			s.stats.Evicted++
			s.complete(s.lru.next, ev.TS)
		}
		t = s.start(ev)
		if reassembled != nil {
			s.reassembled(t, reassembled, ev)
		}
	} else {
		s.unlink(t)
	}
	s.pushBack(t)
	t.last = max(t.last, ev.TS)
	t.path.Events++
	s.apply(t, ev)
	quote(t.path, ev)
	t.follow(ev)
	if isFree(ev.Kind) {
		if s.handsOff(t, ev) {
			s.handOff(t, ev)
		} else {
			s.complete(t, ev.TS)
		}
	}
	for s.held > s.cfg.MaxHeldHops && s.lru.next != &s.lru && s.lru.next != t {
		s.stats.Evicted++
		s.complete(s.lru.next, ev.TS)
	}
	s.unblock(ev.TS, t)
	s.last = t
}

// Flush completes paths idle at now (monotonic ns) and emits, in order,
// every completed path that ended at least Grace before now.
func (s *Stitcher) Flush(now uint64) error {
	grace := uint64(s.cfg.Grace)
	if now < grace {
		return s.err
	}
	cutoff := now - grace
	s.expireHandoffs(cutoff)
	idle := uint64(s.cfg.Idle)
	for t := s.lru.next; t != &s.lru && t.last+idle <= cutoff; t = s.lru.next {
		s.completeQuiet(t, t.last+idle)
	}
	return s.emitUpTo(cutoff)
}

// Close completes every path and emits them all.
func (s *Stitcher) Close() error {
	for len(s.handoffs) > 0 {
		s.complete(s.handoffs[0], s.handoffs[0].heldAt)
	}
	idle := uint64(s.cfg.Idle)
	for t := s.lru.next; t != &s.lru; t = s.lru.next {
		s.complete(t, t.last+idle)
	}
	return s.emitUpTo(^uint64(0))
}

func (s *Stitcher) start(ev *decode.Event) *track {
	tup := ev.Outer
	if ev.Encapsulated() {
		tup = ev.Inner
	}
	m := s.newPath()
	p := &m.path
	*p = Path{
		SKB:      ev.SKB,
		Start:    time.Unix(0, int64(ev.TS)+s.cfg.WallOffset).UTC(),
		Mono:     ev.TS,
		Proto:    tup.Proto,
		Src:      tup.Src,
		Dst:      tup.Dst,
		TCPFlags: tup.TCPFlags,
		IPID:     tup.IPID,
		Len:      ev.Len,
		Verdict:  VerdictUnknown,
		Hops:     p.Hops[:0],

		HasICMPID: tup.HasICMPID,
		ICMPID:    tup.ICMPID,
	}
	s.forget(ev.SKB)
	t := s.newTrack()
	*t = track{path: p, mem: m, skb: ev.SKB, last: ev.TS, encap: ev.Encapsulated(), encapHop: -1, decapHop: -1, inHook: t.inHook[:0], cur: tup}
	s.active[ev.SKB] = t
	s.held += cap(p.Hops)
	s.enqueue(t)
	if ev.IsFragment() {
		s.fragment(t, ev)
	}
	return t
}

func (s *Stitcher) newTrack() *track {
	if n := len(s.freeTracks); n > 0 {
		t := s.freeTracks[n-1]
		s.freeTracks = s.freeTracks[:n-1]
		return t
	}
	return new(track)
}

// newPath returns a path whose Hops has room, its other fields unset, and
// an empty arena.
func (s *Stitcher) newPath() *pathMem {
	if n := len(s.freePaths); n > 0 {
		m := s.freePaths[n-1]
		s.freePaths = s.freePaths[:n-1]
		return m
	}
	return &pathMem{path: Path{Hops: make([]Hop, 0, 16)}}
}

// recycle keeps t, and its path when reusePath, for reuse.
func (s *Stitcher) recycle(t *track, reusePath bool) {
	p, m := t.path, t.mem
	*t = track{}
	if len(s.freeTracks) < maxFree {
		s.freeTracks = append(s.freeTracks, t)
	}
	if reusePath && len(s.freePaths) < maxFree {
		// Drop what the hops point to, so the GC can take it.
		clear(p.Hops)
		*p = Path{Hops: p.Hops[:0]}
		m.arena.reset()
		s.freePaths = append(s.freePaths, m)
	}
}

func (s *Stitcher) complete(t *track, final uint64) {
	s.flushPending(t)
	s.unlink(t)
	if t.handedOff {
		s.dropHandoff(t)
	} else {
		delete(s.active, t.skb)
	}
	s.held -= cap(t.path.Hops)
	t.final = max(final, t.last)
	s.classifyFree(t.path)
	if onlyConsumed(t.path) {
		s.stats.Freed++
		s.dequeue(t)
		unlinkLate(t)
		s.recycle(t, true) // never emitted
		return
	}
	t.path.Verdict = s.verdict(t.path)
	if t.frag || t.reassembled || t.split || len(s.frags) > 0 {
		t.path.Verdict = s.fragVerdict(t, t.path.Verdict)
	}
	s.wait(t)
}

func (s *Stitcher) unlink(t *track) {
	t.prev.next, t.next.prev = t.next, t.prev
	t.prev, t.next = nil, nil
}

func (s *Stitcher) pushBack(t *track) {
	t.prev, t.next = s.lru.prev, &s.lru
	s.lru.prev.next = t
	s.lru.prev = t
}

// apply turns one event into hops on its path.
func (s *Stitcher) apply(t *track, ev *decode.Event) {
	switch ev.Kind {
	case decode.KindNF:
		s.applyNF(t, ev)
		return
	case decode.KindTable, decode.KindIPVSVerdict:
		s.applyInHook(t, ev)
		return
	}
	var dropHook hop.Hook
	if t.hasPending {
		dropHook = t.pending.Hook
		s.flushPending(t)
	}
	s.transitions(t, ev)
	h := s.next(t)
	s.fill(h, t, ev)
	h.Kind = ev.Kind.Hop()
	switch ev.Kind {
	case decode.KindTx:
		t.txDev, t.txNetns = ev.Dev, ev.Netns
	case decode.KindDrop:
		h.Hook = dropHook
		h.ReasonCode = ev.DropReason
		h.Location = ev.Location
		if ev.Location != 0 && s.cfg.Names != nil {
			h.Func = s.cfg.Names.Symbol(ev.Location)
		}
		if ev.Flags&decode.FlagReason != 0 && s.cfg.Names != nil {
			h.Reason = s.cfg.Names.DropReason(ev.DropReason)
		}
		freeDevice(t.path, h, &t.seen)
	case decode.KindConsume:
		h.Location = ev.Location
		if ev.Location != 0 && s.cfg.Names != nil {
			h.Func = s.cfg.Names.Symbol(ev.Location)
		}
		freeDevice(t.path, h, &t.seen)
	case decode.KindBridge:
		h.Bridge = alloc(&t.mem.arena.bridges, Bridge{In: ev.In, Out: ev.Out})
	case decode.KindIPVS:
		h.IPVS = alloc(&t.mem.arena.ipvs, IPVS{
			Service:    ev.IPVS.Service,
			RealServer: ev.IPVS.RealServer,
			Method:     ev.IPVS.Method,
			Scheduler:  ev.IPVS.Scheduler,
		})
	case decode.KindEncap:
		// A tunnel's transmit function: the encapsulation happens
		// here; the outer header is known from the next event that
		// carries it, the tunnel (and the device's VNI and port, where
		// read) already.
		if tf := ev.TunnelFunc; tf.Tunnel != hop.NoTunnel {
			o := Outer{Tunnel: tf.Tunnel}
			if tf.Known && tf.Tunnel.HasVNI() {
				o.DPort, o.VNI = tf.DPort, tf.VNI
			}
			h.Outer = alloc(&t.mem.arena.outers, o)
		}
		if h != &s.spare {
			t.encapHop = len(t.path.Hops) - 1
		}
	case decode.KindDecap:
		// A tunnel's receive function: the decapsulation happens here,
		// on the underlay device's packet (whose outer header fill
		// took); the tunnel device is the next event's.
		if h.Outer == nil && ev.TunnelFunc.Tunnel != hop.NoTunnel {
			// Headers not parsed as the tunnel's (a VXLAN port not
			// in --vxlan-port): the function still says which.
			h.Outer = alloc(&t.mem.arena.outers, Outer{Tunnel: ev.TunnelFunc.Tunnel})
		}
		if h != &s.spare {
			t.decapHop = len(t.path.Hops) - 1
		}
	}
	s.added(t, h)
}

func (s *Stitcher) applyNF(t *track, ev *decode.Event) {
	switch ev.Slot {
	case decode.SlotFirst:
		s.flushPending(t)
		s.transitions(t, ev)
		t.pending = *ev
		t.pending.Data = nil
		t.hasPending = true
	case decode.SlotLast:
		if !t.hasPending || t.pending.Hook != ev.Hook || t.pending.Netns != ev.Netns {
			s.flushPending(t)
			s.transitions(t, ev)
			h := s.nfHop(t, ev)
			if firstSeenHere(t.path, ev) {
				// Not a packet stolen from the hook's first
				// view: one that matched only after a
				// translation in it, or a datagram
				// reassembled in it.
				if t.path.FirstSeen == "" {
					t.path.FirstSeen = FirstSeenAfterNAT
				}
			} else {
				h.Partial = true
			}
			s.append(t, &h)
			if t.reasmFrom.IsValid() {
				s.reassemblyNAT(t, ev)
			}
			return
		}
		first := &t.pending
		t.hasPending = false
		h := s.next(t)
		s.fillNF(h, t, first)
		h.Dur = time.Duration(ev.TS - first.TS)
		s.added(t, h)
		s.flushInHook(t)
		s.nat(t, first, ev)
		s.transitions(t, ev)
	}
}

// nat appends the hops for what changed between the two slots of a hook: a
// reverse translation when conntrack saw a reply (recordings made before
// the events carried conntrack's view have none).
func (s *Stitcher) nat(t *track, before, after *decode.Event) {
	b, a := before.Outer, after.Outer
	if !b.Valid() || !a.Valid() {
		return
	}
	reverse := before.CT.Reply() || after.CT.Reply()
	if b.Dst != a.Dst {
		h := s.hop(t, after)
		h.Kind = hop.NAT
		h.Hook = after.Hook
		h.NAT = alloc(&t.mem.arena.nats, NAT{Type: hop.DNAT, From: natEnd(b.Dst, b), To: natEnd(a.Dst, a), Reverse: reverse})
		s.append(t, &h)
	}
	if b.Src != a.Src {
		h := s.hop(t, after)
		h.Kind = hop.NAT
		h.Hook = after.Hook
		h.NAT = alloc(&t.mem.arena.nats, NAT{Type: hop.SNAT, From: natEnd(b.Src, b), To: natEnd(a.Src, a), Reverse: reverse})
		s.append(t, &h)
	}
}

// natEnd is an endpoint of a translation of tuple t: for ICMP the echo id
// conntrack translates with the address (0 where not captured) in place of
// the type or code the tuple's ports hold.
func natEnd(ap netip.AddrPort, t decode.Tuple) netip.AddrPort {
	if !decode.IsICMP(t.Proto) {
		return ap
	}
	return netip.AddrPortFrom(ap.Addr(), t.ICMPID)
}

// firstSeenHere reports whether a hook's last view ev, without its first,
// is where path p starts: p has no hop yet but the verdicts of tables
// that ran in that hook after the translation (nat before filter in
// OUTPUT).
func firstSeenHere(p *Path, ev *decode.Event) bool {
	for i := range p.Hops {
		h := &p.Hops[i]
		if (h.Kind != hop.Table && h.Kind != hop.IPVS) || h.Hook != ev.Hook || h.NetnsInode != ev.Netns {
			return false
		}
	}
	return true
}

func (s *Stitcher) flushPending(t *track) {
	if !t.hasPending {
		return
	}
	t.hasPending = false
	h := s.nfHop(t, &t.pending)
	h.Partial = true
	s.append(t, &h)
	s.flushInHook(t)
}

// applyInHook turns a verdict from inside a netfilter hook (a table's,
// IPVS's) into a hop. Inside the pending hook it waits for the hook's own
// hop, which starts earlier; elsewhere (no netfilter view of the hook) it
// is appended at once.
func (s *Stitcher) applyInHook(t *track, ev *decode.Event) {
	h := s.hop(t, ev)
	hook := ev.Hook
	inPending := t.hasPending && (ev.Netns == t.pending.Netns || ev.Netns == 0)
	if inPending {
		if hook == hop.HookUnknown {
			hook = t.pending.Hook
		}
		if h.Dev == "" {
			h.Dev, h.Ifindex = t.pending.Dev, t.pending.Ifindex
			h.NetnsInode, h.Netns = t.pending.Netns, s.netns(t.pending.Netns)
		}
	}
	if hook.Known() {
		h.Hook = hook
	}
	h.In, h.Out = ev.In, ev.Out
	h.Kind = ev.Kind.Hop()
	if ev.Kind == decode.KindTable {
		h.Table = alloc(&t.mem.arena.tables, Table{Engine: ev.Table.Engine, Family: ev.Table.Family, Name: ev.Table.Name, Chain: ev.Table.Chain, Verdict: ev.Verdict})
	} else {
		h.IPVS = alloc(&t.mem.arena.ipvs, IPVS{Verdict: ev.Verdict})
	}
	if inPending && len(t.inHook) < maxInHook {
		t.inHook = append(t.inHook, h)
		return
	}
	s.append(t, &h)
}

// maxInHook bounds the verdicts held for one hook (a hook runs a few
// tables); past it they are appended at once.
const maxInHook = 16

func (s *Stitcher) flushInHook(t *track) {
	for i := range t.inHook {
		s.append(t, &t.inHook[i])
		t.inHook[i] = Hop{}
	}
	t.inHook = t.inHook[:0]
}

func (s *Stitcher) nfHop(t *track, ev *decode.Event) Hop {
	var h Hop
	s.fillNF(&h, t, ev)
	return h
}

func (s *Stitcher) fillNF(h *Hop, t *track, ev *decode.Event) {
	s.fill(h, t, ev)
	h.Kind = hop.Netfilter
	h.Hook = ev.Hook
	h.In, h.Out = ev.In, ev.Out
}

// transitions appends an encap or decap hop when the packet gains or loses
// its tunnel header (VXLAN, Geneve, IPIP) between the previous event and
// ev.
func (s *Stitcher) transitions(t *track, ev *decode.Event) {
	if ev.Flags&decode.FlagL3 == 0 {
		return
	}
	enc := ev.Encapsulated()
	if !enc && t.decapHop >= 0 {
		// A tunnel receive function's hop marks the decapsulation:
		// this event tells the tunnel device.
		d := &t.path.Hops[t.decapHop]
		d.Dev, d.Ifindex = ev.Dev, ev.Ifindex
		d.NetnsInode, d.Netns = ev.Netns, s.netns(ev.Netns)
		t.decapHop = -1
		t.encap = false
		return
	}
	switch {
	case enc && !t.encap && t.encapHop >= 0:
		// A tunnel transmit function's hop already marks the
		// encapsulation: complete it.
		t.outer = outerOf(ev)
		t.path.Hops[t.encapHop].Outer = alloc(&t.mem.arena.outers, t.outer)
		t.encapHop = -1
	case enc && !t.encap:
		t.outer = outerOf(ev)
		h := s.hop(t, ev)
		h.Backend = hop.Inferred // seen between two hops, whatever showed them
		h.Kind = hop.Encap
		if t.txDev != "" {
			h.Dev, h.Ifindex = t.txDev, 0
			h.NetnsInode = t.txNetns
			h.Netns = s.netns(t.txNetns)
		}
		s.append(t, &h)
	case !enc && t.encap:
		h := s.hop(t, ev)
		h.Backend = hop.Inferred // seen between two hops, whatever showed them
		h.Kind = hop.Decap
		h.Outer = alloc(&t.mem.arena.outers, t.outer)
		s.append(t, &h)
	case enc:
		t.outer = outerOf(ev)
	}
	t.encap = enc
}

// outerOf is the outer header of an event that saw an encapsulated packet:
// addresses, and the UDP destination port and VNI of a tunnel that has
// them.
func outerOf(ev *decode.Event) Outer {
	o := Outer{Tunnel: ev.Tunnel, Src: ev.Outer.Src.Addr(), Dst: ev.Outer.Dst.Addr()}
	if ev.Tunnel.HasVNI() {
		o.DPort, o.VNI = ev.Outer.Dst.Port(), ev.VNI
	}
	return o
}

// hop fills the fields every hop kind shares.
func (s *Stitcher) hop(t *track, ev *decode.Event) Hop {
	var h Hop
	s.fill(&h, t, ev)
	return h
}

// fill sets in h, a zero hop, the fields every hop kind shares.
func (s *Stitcher) fill(h *Hop, t *track, ev *decode.Event) {
	h.T = time.Duration(ev.TS - t.path.Mono)
	h.Dev = ev.Dev
	h.Ifindex = ev.Ifindex
	h.NetnsInode = ev.Netns
	h.Netns = s.netns(ev.Netns)
	h.Node = s.cfg.Node
	h.CPU = ev.CPU
	h.Len = ev.Len
	h.Mark = ev.Mark
	h.Backend = ev.Backend
	if ev.TS < t.path.Mono {
		h.T = 0
	}
	tup := ev.Outer
	if ev.Encapsulated() {
		tup = ev.Inner
		h.Outer = alloc(&t.mem.arena.outers, outerOf(ev))
	}
	if tup.Valid() {
		h.Proto, h.Src, h.Dst, h.TCPFlags = tup.Proto, tup.Src, tup.Dst, tup.TCPFlags
		h.HasICMPID, h.ICMPID = tup.HasICMPID, tup.ICMPID
	}
}

// next returns the zero hop to build the next hop of t's path in, in place
// at its end; added completes it. Past MaxHops it is the spare, counted
// as clipped and not kept.
func (s *Stitcher) next(t *track) *Hop {
	p := t.path
	if len(p.Hops) >= s.cfg.MaxHops {
		p.Clipped = true
		s.stats.Clipped++
		s.spare = Hop{}
		return &s.spare
	}
	c := cap(p.Hops)
	p.Hops = append(p.Hops, Hop{})
	s.held += cap(p.Hops) - c
	return &p.Hops[len(p.Hops)-1]
}

// added completes h, from next, once its time is set: as append does.
func (s *Stitcher) added(t *track, h *Hop) {
	if h == &s.spare {
		return
	}
	if n := len(t.path.Hops); n > 1 {
		h.Delta = h.T - t.path.Hops[n-2].T
	} else {
		h.Delta = h.T
	}
}

func (s *Stitcher) append(t *track, h *Hop) {
	p := t.path
	if len(p.Hops) >= s.cfg.MaxHops {
		p.Clipped = true
		s.stats.Clipped++
		return
	}
	if n := len(p.Hops); n > 0 {
		h.Delta = h.T - p.Hops[n-1].T
	} else {
		h.Delta = h.T
	}
	c := cap(p.Hops)
	p.Hops = append(p.Hops, *h)
	s.held += cap(p.Hops) - c
}

func (s *Stitcher) netns(inode uint32) string {
	if inode == 0 {
		return ""
	}
	if s.cfg.Names == nil {
		return ""
	}
	return s.cfg.Names.Netns(inode)
}

func (s *Stitcher) isNode(inode uint32) bool {
	return s.cfg.Names != nil && s.cfg.Names.IsNode(inode)
}

func onlyConsumed(p *Path) bool {
	for i := range p.Hops {
		if p.Hops[i].Kind != hop.Consume {
			return false
		}
	}
	return !p.Clipped
}

// verdict decides how a completed path ended.
func (s *Stitcher) verdict(p *Path) Verdict {
	n := len(p.Hops)
	if n == 0 {
		return VerdictUnknown
	}
	last := &p.Hops[n-1]
	switch last.Kind {
	case hop.Drop:
		return VerdictDropped
	case hop.Consume:
		return VerdictDelivered
	}
	if p.Clipped {
		return VerdictUnknown
	}
	switch last.Kind {
	case hop.Rx:
		if last.NetnsInode != 0 && !s.isNode(last.NetnsInode) {
			return VerdictDelivered // reached a pod
		}
	case hop.Netfilter:
		if last.Hook == hop.Input {
			return VerdictDelivered // to a local socket of the node
		}
	case hop.Tx:
		if s.isNode(last.NetnsInode) {
			return VerdictForwarded // left the node on this device
		}
	}
	return VerdictUnknown
}
