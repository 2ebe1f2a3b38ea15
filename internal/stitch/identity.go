package stitch

import "github.com/pathtrace/pathtrace/internal/decode"

// A path holds the hops of one packet only. The kernel keeps following an
// skb once its packet matched, and tells a new packet on it by a signature
// of its IP header (bpf/include/common.h, track_skb); what it cannot tell
// reaches the stitcher: a frame that is no longer IP (ARP) on an skb freed
// without a tracepoint and reused, or a reused skb whose new packet has the
// old one's signature. Every program parses the skb's IPv4 or IPv6 header
// before it sends an event (track, parse_skb), so an event of a tracked
// packet always has FlagL3: an event without it is another packet's.

// innermost is the tuple an event shows of the packet: the inner header of
// an encapsulated packet, else the outer one; ok is false when the event
// parsed no IPv4 header.
func innermost(ev *decode.Event) (tup decode.Tuple, ok bool) {
	if ev.Flags&decode.FlagL3 == 0 {
		return decode.Tuple{}, false
	}
	if ev.Encapsulated() {
		return ev.Inner, true
	}
	return ev.Outer, true
}

// continues reports whether ev shows the packet t follows: its tuple is the
// path's current one, or a form the path's hops explain. The translated
// forms keep the protocol and IP ID (NAT rewrites neither) and change one
// side of the tuple, as a netfilter hook's NAT does (DNAT and un-SNAT the
// destination at PREROUTING and OUTPUT, SNAT and un-DNAT the source at
// POSTROUTING and INPUT):
//   - inside a hook whose first view was seen (table verdicts, the last
//     view, a drop there): the hook's NAT;
//   - a hook's last view whose first was not seen;
//   - after an IPVS hop: the real server as the destination;
//   - on a path without netfilter hops, in a node's namespace: NAT in
//     hooks this kernel does not show.
//
// The reply direction swaps both sides: another packet, another path.
func (s *Stitcher) continues(t *track, ev *decode.Event) bool {
	tup, ok := innermost(ev)
	if !ok {
		return false
	}
	c := &t.cur
	if tup.Proto != c.Proto || tup.IPID != c.IPID {
		return false
	}
	sameSrc, sameDst := tup.Src == c.Src, tup.Dst == c.Dst
	if sameSrc && sameDst {
		return true
	}
	if sameSrc == sameDst {
		return false // both sides changed
	}
	switch {
	case t.hasPending && (ev.Netns == t.pending.Netns || ev.Netns == 0):
		return true
	case ev.Kind == decode.KindNF && ev.Slot == decode.SlotLast:
		return true
	case t.ipvs:
		return sameSrc
	case !t.sawNF && s.isNode(ev.Netns):
		return true
	}
	return false
}

// foreign reports whether ev, on the skb of t (nil: an skb not followed),
// is not stitched at all: a frame that is not IPv4, or the free of another
// packet than t's.
func (s *Stitcher) foreign(t *track, ev *decode.Event) bool {
	if ev.Flags&decode.FlagL3 == 0 {
		return true
	}
	return t != nil && isFree(ev.Kind) && !s.continues(t, ev)
}

func isFree(k decode.Kind) bool { return k == decode.KindDrop || k == decode.KindConsume }

// follow records what ev, stitched into t, tells of the packet's identity.
func (t *track) follow(ev *decode.Event) {
	if tup, ok := innermost(ev); ok {
		t.cur = tup
	}
	switch ev.Kind {
	case decode.KindNF:
		t.sawNF = true
	case decode.KindIPVS:
		t.ipvs = true
	}
}

// freeDevice gives a drop or consume hop the device and namespace of the
// packet's last hop that has a device, when the kernel gave none, and marks
// it (Hop.LastSeen): the skb's device is often gone by the time a socket
// frees it (a UDP skb in a socket's queue has none: skb->dev shares its
// place with dev_scratch). The late free of a quiet path (late.go), alone
// on its path, takes where that path last saw the packet (seen).
func freeDevice(p *Path, h *Hop, seen *lastSeen) {
	if h.Dev != "" {
		return
	}
	at := lastSeenOf(p)
	if at.dev == "" {
		at = *seen
	}
	if at.dev != "" {
		h.Dev, h.Ifindex = at.dev, at.ifindex
		h.Netns, h.NetnsInode = at.netns, at.inode
		h.LastSeen = true
	}
}

// lastSeenOf is the device and namespace of p's last hop that has a
// device; zero when none has.
func lastSeenOf(p *Path) lastSeen {
	for i := len(p.Hops) - 1; i >= 0; i-- {
		if h := &p.Hops[i]; h.Dev != "" {
			return lastSeen{h.Dev, h.Ifindex, h.Netns, h.NetnsInode}
		}
	}
	return lastSeen{}
}
