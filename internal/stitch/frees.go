package stitch

import (
	"slices"
	"strings"

	"github.com/pathtrace/pathtrace/internal/hop"
)

// A packet that reached the socket it was addressed to was delivered,
// whichever function frees it afterwards: the kernel calls kfree_skb, with
// a drop reason, for many frees that are normal protocol operation. The
// stitcher shows such a free as a consume hop, with its function and
// reason, when both hold (docs/output.md, "Delivered or dropped"):
//   - where: the packet reached its destination, a pod (its last device
//     hop before the free is rx in a namespace that is not a traced
//     node's) or a node's own sockets (its last hop is the whole INPUT
//     hook of a node);
//   - what: the reason and the freeing function are a row of normalFrees.
//
// Every other free with a reason stays a drop, with advice.

// normalFree is a free that is normal protocol operation once the packet
// reached its destination: the drop reasons (without SKB_DROP_REASON_; ""
// is a free without one, as every free before Linux 5.17 is) and the
// prefixes of the functions that free with them; no functions: any.
type normalFree struct {
	reasons []string
	funcs   []string
	// queued: the free says the packet was in a socket's queue, so it
	// reached a socket wherever it was seen before: a copy the kernel
	// queued to a raw or packet socket (ping without ping sockets,
	// tcpdump) is freed so at close with no hop before.
	queued bool
	// notSYN: only for a segment without SYN; a SYN freed so found no
	// connection to open.
	notSYN bool
	// teardown: only for a segment that carries no data by its flags
	// (ACK, FIN, RST; no SYN, no PSH).
	teardown bool
	// synACK: only for a SYN-ACK; a SYN freed so is a drop.
	synACK bool
	// merged: the packet was merged into another (IP reassembly, GRO)
	// and freed with it, wherever that was: that packet's path shows
	// its fate.
	merged bool
}

// noReason are the reasons of a free the kernel gave no specific reason
// for: NOT_SPECIFIED, or none at all before Linux 5.17.
var noReason = []string{"NOT_SPECIFIED", ""}

// tcpFuncs are the TCP receive functions (tcp_rcv_state_process,
// tcp_validate_incoming, tcp_data_queue, tcp_ack, tcp_v4_rcv, ...).
var tcpFuncs = []string{"tcp_"}

var normalFrees = []normalFree{
	// TCP teardown: an ACK or FIN reaching a socket in FIN_WAIT, CLOSING
	// or LAST_ACK, processed and freed without a reason.
	{reasons: noReason, funcs: []string{"tcp_rcv_state_process"}},
	// A late segment of a closed connection: reaching its socket in
	// TIME_WAIT (answered, or ignored, then freed by tcp_v4_rcv without a
	// reason), or, before 5.17, no socket any more (answered with a
	// reset, freed without a reason).
	{reasons: noReason, funcs: []string{"tcp_v4_rcv", "tcp_v6_rcv"}, notSYN: true},
	// A late ACK, FIN or RST of a connection whose socket is gone
	// altogether (closed abortively, or no TIME_WAIT bucket left),
	// answered with a reset. A SYN or data freed so is a drop.
	{reasons: []string{"NO_SOCKET"}, funcs: []string{"tcp_v4_rcv", "tcp_v6_rcv"}, teardown: true},
	// A socket's queues purged at close: an unread FIN or data.
	{reasons: []string{"QUEUE_PURGE", "SOCKET_CLOSE"}, queued: true},
	{reasons: noReason, funcs: []string{"sk_stream_kill_queues", "inet_sock_destruct", "__skb_queue_purge", "skb_queue_purge"}, queued: true},
	// A datagram purged unread from a closed UDP socket's receive queue
	// (udp_destruct_common and udpv6_destruct_sock since 6.0,
	// udp_destruct_sock before), freed without a reason.
	{reasons: noReason, funcs: []string{"udp_destruct", "udpv6_destruct"}, queued: true},
	// Old, duplicate or out-of-window segments (retransmissions the
	// receiver already has, PAWS), and segments of a closing or reset
	// connection: TCP answers or ignores them by design.
	{reasons: []string{"TCP_OLD_DATA", "TCP_OLD_ACK", "TCP_TOO_OLD_ACK", "TCP_OLD_SEQUENCE",
		"TCP_INVALID_SEQUENCE", "TCP_INVALID_END_SEQUENCE", "TCP_OVERWINDOW", "TCP_OFOMERGE",
		"TCP_RFC7323_PAWS", "TCP_RFC7323_PAWS_ACK", "TCP_RFC7323_TW_PAWS", "TCP_CLOSE", "TCP_RESET",
		"TCP_ABORT_ON_DATA"}, funcs: tcpFuncs},
	// A SYN-ACK reaching a connection that is already established: the
	// server sent it again because the client's ACK was late, and the
	// client answers it with an ACK (RFC 5961's challenge ACK). A SYN
	// freed so hit an established connection with the same ports (a
	// NAT port collision): a drop.
	{reasons: []string{"TCP_INVALID_SYN"}, funcs: tcpFuncs, synACK: true},
	// An ICMP or ICMPv6 echo reply: raw sockets (ping without ping
	// sockets) got a copy; the kernel's own ping socket lookup then finds
	// none (no reason before 5.17).
	{reasons: []string{"NO_SOCKET", ""}, funcs: []string{"ping_rcv", "icmp_rcv", "icmpv6_rcv"}},
	// An ICMPv6 message the kernel itself handled (an echo request it
	// answered, neighbour discovery): icmpv6_rcv of 6.1 and older frees
	// every one but an echo reply with kfree_skb, no specific reason
	// ("assume failure and preserve the status quo", net/ipv6/icmp.c).
	{reasons: noReason, funcs: []string{"icmpv6_rcv"}},
	// A fragment reassembled into a datagram (conntrack's defrag, IP
	// input), or a segment GRO chained to another, on that packet's
	// frag_list: freed with it, by skb_release_data, without a reason
	// (consume_skb frees the list as NOT_SPECIFIED drops). The packet
	// it became has its own path, with its own end.
	{reasons: noReason, funcs: []string{"skb_release_data"}, merged: true},
}

// normalFreeOf returns the row of normalFrees a free with this reason, by
// this function, is; ok is false when it is none.
func normalFreeOf(reason, fn string) (normalFree, bool) {
	for _, f := range normalFrees {
		if !slices.Contains(f.reasons, reason) {
			continue
		}
		if len(f.funcs) == 0 {
			return f, true
		}
		for _, prefix := range f.funcs {
			if fn != "" && strings.HasPrefix(fn, prefix) {
				return f, true
			}
		}
	}
	return normalFree{}, false
}

// reachedDestination reports whether the packet of p, before its hop i (a
// free), had reached a pod or a node's own sockets, in the namespace of the
// free.
func (s *Stitcher) reachedDestination(p *Path, i int) bool {
	free := &p.Hops[i]
	for j := i - 1; j >= 0; j-- {
		h := &p.Hops[j]
		switch h.Kind {
		case hop.NAT, hop.Table:
			continue // inside the hook of the hop before
		case hop.Rx:
			if h.NetnsInode == 0 || s.isNode(h.NetnsInode) {
				return false
			}
		case hop.Netfilter:
			if h.Hook != hop.Input || h.Partial || !s.isNode(h.NetnsInode) {
				return false
			}
		default:
			return false
		}
		return free.NetnsInode == 0 || free.NetnsInode == h.NetnsInode
	}
	return false
}

// TCP, and its SYN and PSH flags, as the free's tuple carries them.
const (
	protoTCP = 6
	tcpSYN   = 0x02
	tcpPSH   = 0x08
	tcpACK   = 0x10
)

// classifyFree turns the drop hop that ends p into a consume hop when it is
// a normal free at the packet's destination.
func (s *Stitcher) classifyFree(p *Path) {
	n := len(p.Hops)
	if n == 0 || p.Clipped {
		return
	}
	h := &p.Hops[n-1]
	if h.Kind != hop.Drop {
		return
	}
	f, ok := normalFreeOf(h.Reason, h.FuncName())
	if ok && f.merged {
		h.Kind = hop.Consume // anywhere, in any hook
		return
	}
	if h.Hook != hop.NoHook {
		return
	}
	if !ok || (f.notSYN && p.Proto == protoTCP && h.TCPFlags&tcpSYN != 0) ||
		(f.teardown && (p.Proto != protoTCP || h.TCPFlags&(tcpSYN|tcpPSH) != 0)) ||
		(f.synACK && (p.Proto != protoTCP || h.TCPFlags&(tcpSYN|tcpACK) != tcpSYN|tcpACK)) {
		return
	}
	// The late free of a packet whose quiet path was delivered (late.go)
	// reached its destination before it went quiet.
	late := n == 1 && p.Late != nil && p.Late.Verdict == VerdictDelivered
	if s.reachedDestination(p, n-1) || (f.queued && n == 1) || late {
		h.Kind = hop.Consume
	}
}
