package stitch

import (
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
// reached its destination: the drop reason (without SKB_DROP_REASON_) and
// the prefixes of the functions that free with it; none: any function.
type normalFree struct {
	reason string
	funcs  []string
	// queued: the reason itself says the packet was in a socket's queue,
	// so it reached a socket wherever it was seen before: a copy the
	// kernel queued to a raw or packet socket (ping without ping sockets,
	// tcpdump) is freed so at close with no hop before.
	queued bool
}

// tcpFuncs are the TCP receive functions (tcp_rcv_state_process,
// tcp_validate_incoming, tcp_data_queue, tcp_ack, tcp_v4_rcv, ...).
var tcpFuncs = []string{"tcp_"}

var normalFrees = []normalFree{
	// TCP teardown: an ACK or FIN reaching a socket in FIN_WAIT, CLOSING
	// or LAST_ACK, processed and freed without a reason.
	{"NOT_SPECIFIED", []string{"tcp_rcv_state_process"}, false},
	// A socket's queues purged at close: an unread FIN or data.
	{"QUEUE_PURGE", nil, true},
	{"SOCKET_CLOSE", nil, true},
	// Old, duplicate or out-of-window segments (retransmissions the
	// receiver already has, PAWS), and segments of a closing or reset
	// connection: TCP answers or ignores them by design.
	{"TCP_OLD_DATA", tcpFuncs, false},
	{"TCP_OLD_ACK", tcpFuncs, false},
	{"TCP_TOO_OLD_ACK", tcpFuncs, false},
	{"TCP_OLD_SEQUENCE", tcpFuncs, false},
	{"TCP_INVALID_SEQUENCE", tcpFuncs, false},
	{"TCP_INVALID_END_SEQUENCE", tcpFuncs, false},
	{"TCP_OVERWINDOW", tcpFuncs, false},
	{"TCP_OFOMERGE", tcpFuncs, false},
	{"TCP_RFC7323_PAWS", tcpFuncs, false},
	{"TCP_RFC7323_PAWS_ACK", tcpFuncs, false},
	{"TCP_RFC7323_TW_PAWS", tcpFuncs, false},
	{"TCP_CLOSE", tcpFuncs, false},
	{"TCP_RESET", tcpFuncs, false},
	{"TCP_ABORT_ON_DATA", tcpFuncs, false},
	// An ICMP echo reply: raw sockets (ping without ping sockets) got a
	// copy; the kernel's own ping socket lookup then finds none.
	{"NO_SOCKET", []string{"ping_rcv", "icmp_rcv"}, false},
}

// normalFreeOf returns the row of normalFrees a free with this reason, by
// this function, is; ok is false when it is none.
func normalFreeOf(reason, fn string) (normalFree, bool) {
	for _, f := range normalFrees {
		if f.reason != reason {
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

// classifyFree turns the drop hop that ends p into a consume hop when it is
// a normal free at the packet's destination.
func (s *Stitcher) classifyFree(p *Path) {
	n := len(p.Hops)
	if n == 0 || p.Clipped {
		return
	}
	h := &p.Hops[n-1]
	if h.Kind != hop.Drop || h.Hook != hop.NoHook {
		return
	}
	f, ok := normalFreeOf(h.Reason, h.FuncName())
	if ok && (s.reachedDestination(p, n-1) || (f.queued && n == 1)) {
		h.Kind = hop.Consume
	}
}
