package stitch

import (
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
)

// A packet can wait where the kernel shows no event for longer than the
// idle timeout (Config.Idle): in a neighbour's queue while ARP or neighbour
// discovery resolves its next hop (up to 3 s before NEIGH_FAILED), in a
// socket's receive queue until the socket is closed. Its path completes
// when it goes quiet, and the free that really ends it comes later, alone.
// That free is not a new packet: the stitcher remembers the paths that
// completed quiet, by skb, and a free that starts no path but matches one
// (same skb, the identity continues accepts, no packet on the skb since,
// and the kernel still following the packet there: no FlagNew)
// makes a path of its own marked as the late end of that one (Path.Late),
// placed where the packet was last seen. A free that is normal once the
// packet reached its destination (a datagram purged unread from a closed
// socket's queue) is not emitted at all, as a lone consume is not.
//
// A packet can also go on after such a wait: the neighbour answered the
// second or third ARP request, and the packet queued for it is sent. Its
// next event, where it waited (the namespace it was last seen in), with the
// kernel still following it and its identity continuing the quiet path's,
// starts the path of the rest of its way, marked as that path's late end
// too (Late.Resumed).
//
// Whether the quiet path was emitted when the free comes depends on when
// Flush ran; what is emitted does not: the late end is its own path either
// way, and learns the quiet path's ID when that is emitted (it starts
// later, so it is emitted after). Only a free stamped within the idle
// timeout of the path's last event, which came after Flush had completed
// it (later than the grace allows), joins it still waiting, as it would
// have in time.

// Late says a path is the late end of a packet whose path was emitted
// before it, completed when the packet went quiet: the path's one hop is
// the free that ended the packet.
type Late struct {
	// Of is the ID the packet's earlier path was emitted with; 0 when it
	// was not shown (filtered out) or is not known (a merged replay).
	Of uint64
	// After is the time from the earlier path's last hop to the free.
	After time.Duration
	// Verdict is the earlier path's, which this one's replaces.
	Verdict Verdict
	// Resumed says the packet went on after the wait: the path is the
	// rest of its way, from where it waited, not its free alone.
	Resumed bool
}

// quietPath is what the stitcher keeps of a path that completed quiet, to
// tell its late free.
type quietPath struct {
	skb  uint64
	t    *track // the path, while it waits to be emitted; nil once emitted
	id   uint64 // once emitted, the ID emit left in it: shown under (0: not shown)
	last uint64 // its last event's time
	// The identity the free must continue (track.cur, sawNF, ipvs).
	cur   decode.Tuple
	sawNF bool
	ipvs  bool
	// verdict is the path's, seen where the packet was last seen on a
	// device.
	verdict Verdict
	seen    lastSeen
}

// lastSeen is where a path's packet was last seen on a device.
type lastSeen struct {
	dev     string
	ifindex uint32
	netns   string
	inode   uint32
}

// maxQuiet bounds the quiet paths remembered (about 1 MiB): the paths
// that went quiet in the few seconds a late free takes, on a node where a
// thousand a second do. Past it the oldest are forgotten; their late frees
// show as paths of their own, unmarked.
const maxQuiet = 1 << 12

// completeQuiet completes t, which saw no event for Config.Idle, and
// remembers it for a late free.
func (s *Stitcher) completeQuiet(t *track, final uint64) {
	handedOff := t.handedOff
	s.complete(t, final)
	if handedOff || !t.done {
		return // ended at its free after all, or never emitted
	}
	q := quietPath{skb: t.skb, t: t, last: t.last, cur: t.cur, sawNF: t.sawNF, ipvs: t.ipvs,
		verdict: t.path.Verdict, seen: lastSeenOf(t.path)}
	t.quiet = true
	// In a ring, oldest overwritten first; the index holds slots, not
	// the entries, which a map would allocate one by one (they are
	// larger than it keeps in place).
	var i int
	if s.quietRing == nil {
		s.quietRing = make([]quietPath, 0, maxQuiet)
	}
	if len(s.quietRing) < maxQuiet {
		i = len(s.quietRing)
		s.quietRing = append(s.quietRing, q)
	} else {
		i = s.quietNext
		s.quietNext = (i + 1) % maxQuiet
		if old := s.quietRing[i].skb; s.quiet[old] == uint32(i) {
			delete(s.quiet, old)
		}
		s.quietRing[i] = q
	}
	if s.quiet == nil {
		s.quiet = make(map[uint64]uint32)
	}
	s.quiet[t.skb] = uint32(i)
}

// emitted records the ID a quiet path was emitted with, for its late end,
// before its track is recycled.
func (s *Stitcher) emitted(t *track) {
	if l := t.lateBy; l != nil {
		// Its late end came already, and waits for the ID.
		l.path.Late.Of = t.path.ID
		l.lateOf, t.lateBy = nil, nil
		return
	}
	if i, ok := s.quiet[t.skb]; ok && s.quietRing[i].t == t {
		q := &s.quietRing[i]
		q.t, q.id = nil, t.path.ID
	}
}

// lateEnd returns the track of an event that starts no path but ends a
// quiet one (its free, or its next hop where it waited): a new path marked
// Late, or the quiet path itself when the event came in its idle time; nil
// when the event ends no quiet path.
func (s *Stitcher) lateEnd(ev *decode.Event) *track {
	if ev.Flags&decode.FlagNew != 0 {
		return nil // the kernel has not followed this packet on the skb since
	}
	i, ok := s.quiet[ev.SKB]
	if !ok {
		return nil
	}
	q := s.quietRing[i]
	free := isFree(ev.Kind)
	if !free && (q.seen.inode == 0 || ev.Netns != q.seen.inode) {
		return nil // the packet goes on where it waited, or it is another
	}
	probe := q.t
	if probe == nil {
		probe = &s.probe
		probe.cur, probe.sawNF, probe.ipvs = q.cur, q.sawNF, q.ipvs
	}
	if !s.continues(probe, ev) {
		return nil
	}
	delete(s.quiet, ev.SKB)
	s.quietRing[i].t = nil // unreachable now: keep no track
	if t := q.t; t != nil && ev.TS <= t.last+uint64(s.cfg.Idle) {
		s.revive(t)
		return t
	}
	t := s.start(ev)
	t.path.Late = &Late{Of: q.id, Verdict: q.verdict, Resumed: !free}
	t.sawNF, t.ipvs = q.sawNF, q.ipvs
	if ev.TS > q.last {
		t.path.Late.After = time.Duration(ev.TS - q.last)
	}
	t.seen = q.seen
	if q.t != nil {
		// Not emitted yet: it will tell its ID (emitted).
		t.lateOf, q.t.lateBy = q.t, t
	}
	s.pushBack(t) // as the caller expects of a track it found
	return t
}

// revive takes t, completed quiet and waiting to be emitted, back to be
// followed.
func (s *Stitcher) revive(t *track) {
	t.done, t.quiet = false, false
	s.waiting--
	s.waitHops -= cap(t.path.Hops)
	s.held += cap(t.path.Hops)
	s.active[t.skb] = t
	s.pushBack(t)
}

// unlinkLate forgets, on the late end t about to be recycled without being
// emitted, the quiet path waiting to tell it its ID.
func unlinkLate(t *track) {
	if q := t.lateOf; q != nil {
		q.lateBy, t.lateOf = nil, nil
	}
}

// forget drops what is remembered of a quiet path on skb: a new packet
// came on it.
func (s *Stitcher) forget(skb uint64) {
	if len(s.quiet) > 0 {
		delete(s.quiet, skb)
	}
}
