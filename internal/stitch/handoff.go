package stitch

import (
	"slices"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
)

// A node that sends a packet out of a device needing more headroom than
// the skb has (flannel.1 adds 50 bytes of VXLAN, IPIP 20) copies it:
// ip_finish_output2 and ip6_finish_output2 call skb_expand_head, which,
// for an skb no local socket owns (a forwarded one), clones it, frees the
// original with consume_skb and sends the clone on. The packet goes on, on
// another skb: the original's free right after POSTROUTING is not where it
// ended. Seen with IPv6 from raw and UDP sockets, whose skbs have little
// headroom (TCP reserves plenty).
//
// Such a free hands the path off: the track waits, out of the skb index,
// for the first event of a new skb in the same namespace with the same
// innermost tuple (the clone is made before the original is freed, so its
// first event follows the free). If one comes within handoffWindow the
// path goes on with the new skb, without the free hop; otherwise the path
// ends at the free, as any other.

// handoffWindow is how long, in event time, a path handed off waits for
// its packet's new skb.
const handoffWindow = 50 * time.Millisecond

// maxHandoffs bounds the paths waiting for their new skb at once; past
// it the oldest ends at its free.
const maxHandoffs = 64

// handsOff reports whether the consume that just ended t's path is the
// free of a copy made for headroom: a free without a reason, in a node's
// namespace, right after the packet's POSTROUTING there.
func (s *Stitcher) handsOff(t *track, ev *decode.Event) bool {
	hops := t.path.Hops
	n := len(hops)
	if ev.Kind != decode.KindConsume || n < 2 {
		return false
	}
	free, before := &hops[n-1], &hops[n-2]
	return free.Kind == hop.Consume && free.Reason == "" && before.Hook == hop.Postrouting &&
		(before.Kind == hop.Netfilter || before.Kind == hop.NAT || before.Kind == hop.Table) && s.isNode(before.NetnsInode) &&
		(ev.Netns == 0 || ev.Netns == before.NetnsInode)
}

// handOff takes t out of the skb index to wait for its packet's new skb.
func (s *Stitcher) handOff(t *track, ev *decode.Event) {
	if len(s.handoffs) >= maxHandoffs {
		old := s.handoffs[0]
		s.complete(old, old.heldAt)
	}
	delete(s.active, t.skb)
	t.handedOff, t.heldAt = true, ev.TS
	t.heldNetns = t.path.Hops[len(t.path.Hops)-2].NetnsInode
	s.handoffs = append(s.handoffs, t)
}

// takeHandoff returns the path handed off whose packet ev, the first
// event of an skb not followed, shows, now followed on ev's skb; nil when
// none.
func (s *Stitcher) takeHandoff(ev *decode.Event) *track {
	tup, ok := innermost(ev)
	if !ok || ev.Netns == 0 {
		return nil
	}
	window := uint64(handoffWindow)
	for i := len(s.handoffs) - 1; i >= 0; i-- {
		t := s.handoffs[i]
		if t.heldNetns != ev.Netns || t.cur != tup || ev.TS < t.heldAt || ev.TS-t.heldAt > window {
			continue
		}
		s.handoffs = slices.Delete(s.handoffs, i, i+1)
		p := t.path
		p.Hops = p.Hops[:len(p.Hops)-1] // the original's free
		t.handedOff, t.heldAt, t.heldNetns = false, 0, 0
		t.skb = ev.SKB
		s.active[ev.SKB] = t
		return t
	}
	return nil
}

// expireHandoffs ends, at their free, the paths handed off that no new
// skb took by now.
func (s *Stitcher) expireHandoffs(now uint64) {
	window := uint64(handoffWindow)
	for len(s.handoffs) > 0 && s.handoffs[0].heldAt+window < now {
		t := s.handoffs[0]
		s.complete(t, t.heldAt)
	}
}

// dropHandoff removes t, being completed, from the paths handed off.
func (s *Stitcher) dropHandoff(t *track) {
	if i := slices.Index(s.handoffs, t); i >= 0 {
		s.handoffs = slices.Delete(s.handoffs, i, i+1)
	}
	t.handedOff, t.heldAt, t.heldNetns = false, 0, 0
}
