package stitch

import (
	"net/netip"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
)

// An IP datagram larger than a link's MTU crosses a node as fragments, and
// the kernel changes which skb carries what on the way: conntrack's
// defragmentation (at PREROUTING, before the nat hooks) and IP input hold
// the fragments until the last one comes, and go on with the whole
// datagram on the skb of the fragment that completed it (the others are
// consumed, or freed with the datagram from its frag_list); IP output
// splits a datagram larger than the device's MTU into fragments on skbs of
// their own (or reuses those of its frag_list) and consumes the datagram.
// Each skb's packet has its own path, and none of these ends is a delivery:
//   - a fragment taken into reassembly ends "reassembled": its skb went on
//     as the reassembled datagram (whose path starts "reassembled"), it
//     was consumed where no transmission freed it, or it was last seen at
//     the PREROUTING where its datagram was reassembled after it (its skb
//     freed with the datagram's frag_list without a tracepoint);
//   - a datagram split on output ends "fragmented": after its POSTROUTING,
//     fragments of it started paths in that namespace, or its skb went on
//     as the first one.
// The datagram and its fragments share the IP id (IPv4), which the text
// output prints for the operator to follow them by.

// Verdicts and the first-seen mark of fragmented and reassembled packets.
const (
	// VerdictReassembled: an IP fragment taken into the reassembly of
	// its datagram, which goes on as one packet with a path of its own
	// (FirstSeenReassembled).
	VerdictReassembled Verdict = "reassembled"
	// VerdictFragmented: a datagram split into fragments on output after
	// its POSTROUTING, each fragment with a path of its own.
	VerdictFragmented Verdict = "fragmented"
	// FirstSeenReassembled: the path starts with a datagram reassembled
	// from fragments, on the skb of the fragment that completed it.
	FirstSeenReassembled FirstSeen = "reassembled"
)

// fragKey is a datagram in one namespace: its addresses, protocol and, for
// IPv4, its IP id (an IPv6 datagram shows none but in its fragments).
type fragKey struct {
	src, dst netip.Addr
	proto    uint8
	id       uint16
	netns    uint32
}

func fragKeyOf(tup *decode.Tuple, netns uint32) fragKey {
	k := fragKey{src: tup.Src.Addr(), dst: tup.Dst.Addr(), proto: tup.Proto, netns: netns}
	if k.src.Is4() {
		k.id = tup.IPID
	}
	return k
}

// fragTimes are when, in one namespace, a datagram's newest fragment path
// started (split) and its newest reassembled path (reasm); 0: none. In
// namespace 0 (any), src and dst are its first fragment's (the one with
// the ports) endpoints, as first seen.
type fragTimes struct {
	split, reasm uint64
	src, dst     netip.AddrPort
}

// maxFrags bounds the datagrams remembered; past it those older than a
// path can wait for its end are forgotten, and all of them if that is not
// enough (their paths' verdicts are then not told fragmented or
// reassembled from this).
const maxFrags = 4096

// noteFrag returns the times of k, to be set, remembered from now.
func (s *Stitcher) noteFrag(k fragKey, now uint64) *fragTimes {
	if s.frags == nil {
		s.frags = make(map[fragKey]*fragTimes)
	}
	if ft, ok := s.frags[k]; ok {
		return ft
	}
	if len(s.frags) >= maxFrags {
		idle := uint64(s.cfg.Idle)
		for k, ft := range s.frags {
			if max(ft.split, ft.reasm)+2*idle < now {
				delete(s.frags, k)
			}
		}
		if len(s.frags) >= maxFrags {
			clear(s.frags)
		}
	}
	ft := &fragTimes{}
	s.frags[k] = ft
	return ft
}

// fragment records, on t just started by ev, that its packet is a
// fragment, and when it started, for the datagram it was split from. A
// later fragment (no ports) takes its datagram's endpoints from the first
// fragment, where that was seen.
func (s *Stitcher) fragment(t *track, ev *decode.Event) {
	t.path.Fragment, t.frag, t.fragLen = true, true, ev.Len
	s.noteFrag(fragKeyOf(&t.cur, ev.Netns), ev.TS).split = ev.TS
	if t.cur.HasPorts {
		ft := s.noteFrag(fragKeyOf(&t.cur, 0), ev.TS)
		ft.split, ft.src, ft.dst = ev.TS, t.cur.Src, t.cur.Dst
	} else if ft, ok := s.frags[fragKeyOf(&t.cur, 0)]; ok && ft.dst.IsValid() {
		t.path.DatagramSrc, t.path.DatagramDst = ft.src, ft.dst
	}
}

// reassembled records, on t just started by ev, that its packet is a
// datagram reassembled from fragments of tuple frag (the one that
// completed it, as last seen: before a DNAT in the hook that reassembled
// it), for the fragments last seen there.
//
// Where the hook translated the datagram's destination after reassembling
// it (a DNAT at PREROUTING, or the un-SNAT of a reply), its path shows the
// translation after the hook's last view, and takes the destination before
// it, as a path's is before the translations on it. That destination is
// the datagram's at ev when ev saw it untranslated (a rule table's view
// inside the hook, on 5.10 to 6.12), else its fragments': the completing
// one's address, the first one's port (its path gave it; without it
// nothing is shown).
func (s *Stitcher) reassembled(t *track, frag *decode.Tuple, ev *decode.Event) {
	t.path.FirstSeen = FirstSeenReassembled
	s.noteFrag(fragKeyOf(frag, ev.Netns), ev.TS).reasm = ev.TS
	tup, ok := innermost(ev)
	if !ok {
		return
	}
	from := tup.Dst
	if tup.Dst.Addr() != frag.Dst.Addr() {
		from = frag.Dst
		if !frag.HasPorts {
			ft, ok := s.frags[fragKeyOf(frag, 0)]
			if !ok || !ft.dst.IsValid() {
				return
			}
			from = ft.dst
		}
	}
	t.reasmFrom = natEnd(from, tup)
}

// reassemblyNAT appends to t's path, after the last view of the hook
// where its reassembled datagram is first seen (ev), the translation of
// its destination there (reassembled).
func (s *Stitcher) reassemblyNAT(t *track, ev *decode.Event) {
	from := t.reasmFrom
	t.reasmFrom = netip.AddrPort{}
	tup, ok := innermost(ev)
	if !ok || natEnd(tup.Dst, tup) == from {
		return
	}
	h := s.hop(t, ev)
	h.Kind = hop.NAT
	h.Hook = ev.Hook
	h.NAT = alloc(&t.mem.arena.nats, NAT{Type: hop.DNAT, From: from, To: natEnd(tup.Dst, tup), Reverse: ev.CT.Reply()})
	s.append(t, &h)
	t.path.Dst = netip.AddrPortFrom(from.Addr(), tup.Dst.Port())
	if !decode.IsICMP(tup.Proto) {
		t.path.Dst = from
	}
}

// endedBy records on t, about to complete because ev shows another packet
// on its skb, whether that is the datagram its fragment completed or the
// first fragment its datagram was split into; for the first, it returns
// the fragment's tuple.
func (t *track) endedBy(ev *decode.Event) *decode.Tuple {
	t.reassembled, t.split = reassembles(t, ev), splits(t, ev)
	if !t.reassembled {
		return nil
	}
	frag := t.cur
	return &frag
}

// reassembles reports whether ev, a new packet on the skb of t, is the
// datagram t's fragment was reassembled into: a whole datagram of the
// fragment's source, protocol and (IPv4) id. Not its destination: the hook
// that reassembled it may have translated that already (a DNAT at
// PREROUTING, after conntrack's defragmentation). Whole: its captured
// header says so, or where the event captured none (a rule table's, run
// before the hook's last view), it is longer than the fragment ever was.
func reassembles(t *track, ev *decode.Event) bool {
	if !t.frag || (ev.Data == nil && ev.Len <= t.fragLen) || !sameDatagram(t, ev) {
		return false
	}
	return ev.Data == nil || !ev.IsFragment()
}

// splits reports whether ev, a new packet on the skb of t, is the first
// fragment of the datagram t follows: output split it, and kept its skb
// for that fragment.
func splits(t *track, ev *decode.Event) bool {
	return !t.frag && ev.Data != nil && sameDatagram(t, ev) && ev.IsFragment()
}

// sameDatagram reports whether ev's packet has the source, protocol and
// (IPv4) id of t's.
func sameDatagram(t *track, ev *decode.Event) bool {
	tup, ok := innermost(ev)
	if !ok || tup.Proto != t.cur.Proto || tup.Src.Addr() != t.cur.Src.Addr() {
		return false
	}
	return !tup.Src.Addr().Is4() || tup.IPID == t.cur.IPID
}

// fragVerdict is the verdict of t's path, v as its hops tell it, for a
// packet fragmented or reassembled on the way.
func (s *Stitcher) fragVerdict(t *track, v Verdict) Verdict {
	p := t.path
	switch {
	case t.reassembled:
		return VerdictReassembled
	case t.split:
		return VerdictFragmented
	}
	n := len(p.Hops)
	if n == 0 || p.Clipped {
		return v
	}
	last := &p.Hops[n-1]
	before := lastBeforeFree(p)
	if t.frag {
		// Consumed where no transmission freed it, no longer than it
		// was as a fragment (a first fragment that completed its
		// datagram goes on as it, longer): taken into reassembly (the
		// head of the queue, or a fragment on the datagram's
		// frag_list).
		if last.Kind == hop.Consume && last.Len <= t.fragLen && (before == nil || before.Kind != hop.Tx) {
			return VerdictReassembled
		}
		// Last seen at a PREROUTING where its datagram was reassembled
		// after it.
		if v == VerdictUnknown && before != nil && before.Kind == hop.Netfilter && before.Hook == hop.Prerouting {
			if ft, ok := s.frags[fragKeyOf(&t.cur, before.NetnsInode)]; ok && ft.reasm >= p.Mono+uint64(before.T) {
				return VerdictReassembled
			}
		}
		return v
	}
	if len(s.frags) == 0 || (v != VerdictDelivered && v != VerdictUnknown) ||
		before == nil || before.Kind != hop.Netfilter || before.Hook != hop.Postrouting {
		return v
	}
	// Fragments of it started in the namespace after its POSTROUTING.
	ft, ok := s.frags[fragKeyOf(&t.cur, before.NetnsInode)]
	if ok && ft.split >= p.Mono+uint64(before.T) && ft.split <= t.final {
		return VerdictFragmented
	}
	return v
}

// lastBeforeFree is the last hop of p that is not a free, nor a NAT or
// table hop inside the hook before it; nil when there is none.
func lastBeforeFree(p *Path) *Hop {
	for i := len(p.Hops) - 1; i >= 0; i-- {
		switch h := &p.Hops[i]; h.Kind {
		case hop.Drop, hop.Consume, hop.NAT, hop.Table:
		default:
			return h
		}
	}
	return nil
}
