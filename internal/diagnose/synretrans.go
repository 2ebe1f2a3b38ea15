package diagnose

import (
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pathtrace/pathtrace/internal/stitch"
)

// TCP flags as paths carry them.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// synOpenFor is how long after a SYN reached its socket a SYN of the same
// connection counts as a copy of it: a listener keeps a request socket
// through its SYN-ACK retries (net.ipv4.tcp_synack_retries, 5 by default:
// about a minute), and a client sends its SYN again for about two
// (tcp_syn_retries, 6).
const synOpenFor = 2 * time.Minute

// maxOpenSYNs bounds the SYNs the advisor remembers (about 2 MB); past
// it, those older than synOpenFor are forgotten, and if none is, no more
// are noted.
const maxOpenSYNs = 1 << 14

// synKey is a TCP connection as the receiving namespace sees it: after
// any translation on the way.
type synKey struct {
	netns    uint32
	src, dst netip.AddrPort
}

// handshakes remembers, per connection, when its SYN reached a socket,
// while its handshake is open: until the client's next packet (its ACK),
// a FIN or a reset, or synOpenFor.
type handshakes struct {
	mu   sync.Mutex
	open map[synKey]time.Time
}

// note records what p says of its connection: a SYN that reached its
// socket opens its handshake; the client's next packet, or a FIN or a
// reset either way, closes it.
func (hs *handshakes) note(p *stitch.Path) {
	if p.Proto != 6 || len(p.Hops) == 0 {
		return
	}
	k := keyAt(p, len(p.Hops)-1)
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.open == nil {
		hs.open = map[synKey]time.Time{}
	}
	switch {
	case p.TCPFlags&(tcpFIN|tcpRST) != 0:
		delete(hs.open, k)
		delete(hs.open, synKey{netns: k.netns, src: k.dst, dst: k.src})
	case p.TCPFlags&tcpSYN == 0:
		// The client's ACK or data: past the handshake, where a
		// SYN freed without a reason met no request socket.
		delete(hs.open, k)
	case p.TCPFlags&tcpACK == 0 && p.Verdict == stitch.VerdictDelivered:
		if len(hs.open) >= maxOpenSYNs {
			hs.forget(p.Start)
			if len(hs.open) >= maxOpenSYNs {
				return
			}
		}
		hs.open[k] = p.Start
	}
}

// forget drops the handshakes opened more than synOpenFor before now;
// hs.mu is held.
func (hs *handshakes) forget(now time.Time) {
	for k, t := range hs.open {
		if now.Sub(t) > synOpenFor {
			delete(hs.open, k)
		}
	}
}

// delivered says when an earlier SYN of the connection of p's drop hop i
// reached its socket in that hop's namespace, if its handshake is open
// and it did within synOpenFor.
func (hs *handshakes) delivered(p *stitch.Path, i int) (time.Time, bool) {
	k := keyAt(p, i)
	hs.mu.Lock()
	t, ok := hs.open[k]
	hs.mu.Unlock()
	if !ok || p.Start.Sub(t) > synOpenFor || p.Start.Before(t) {
		return time.Time{}, false
	}
	return t, true
}

// keyAt is p's connection at hop i, in its namespace: the addresses of
// the last hop up to i there that has them (after any NAT; frees carry
// none), else the path's.
func keyAt(p *stitch.Path, i int) synKey {
	ns := p.Hops[i].NetnsInode
	for j := i; j >= 0; j-- {
		if h := &p.Hops[j]; h.NetnsInode == ns && h.Src.IsValid() && h.Dst.IsValid() {
			return synKey{netns: ns, src: h.Src, dst: h.Dst}
		}
	}
	return synKey{netns: ns, src: p.Src, dst: p.Dst}
}

// synCopy explains a SYN that TCP's receive function freed without a
// reason while an earlier SYN of the same connection had reached the
// listener and its handshake was still open: a copy the client sent again
// because no SYN-ACK reached it within its retransmission timeout. The
// listener's request socket takes the copy (tcp_check_req), sends its
// SYN-ACK again and returns nothing, and tcp_v4_rcv (tcp_v6_rcv) frees the
// copy with kfree_skb (NOT_SPECIFIED from 5.17). Nothing of the
// connection is lost.
func (d *drop) synCopy() string {
	fn := d.h.FuncName()
	flags := d.h.TCPFlags
	if flags == 0 {
		flags = d.p.TCPFlags
	}
	if d.p.Proto != 6 || flags&(tcpSYN|tcpACK) != tcpSYN || !tcpRcv(fn) {
		return ""
	}
	first, ok := d.a.syns.delivered(d.p, d.i)
	if !ok {
		return ""
	}
	var s note
	s.say("This SYN is a copy: an earlier SYN of the same connection (same addresses and ports) reached the listener in %s %s before, and its handshake was still open, so TCP answered this one with its SYN-ACK again and freed it (%s). The client sent it again because no SYN-ACK reached it within its retransmission timeout (1 s for the first SYN): the SYN-ACK was lost or late on its way back, or the listener was slow to answer. The connection was not refused; the SYN-ACK's path shows whether it got through.",
		d.ns, d.p.Start.Sub(first).Round(time.Millisecond), fn)
	s.run(d.in + "nstat -az TcpExtTCPSynRetrans TcpExtListenOverflows TcpExtListenDrops")
	return s.String()
}

// tcpRcv says whether fn (a free's function, "tcp_v4_rcv+0x90") is TCP's
// receive function, where a SYN that no socket took further is freed.
func tcpRcv(fn string) bool {
	return strings.HasPrefix(fn, "tcp_v4_rcv") || strings.HasPrefix(fn, "tcp_v6_rcv")
}
