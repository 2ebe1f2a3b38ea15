package stitch

import (
	"testing"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
)

func TestNormalFreeOf(t *testing.T) {
	for _, tc := range []struct {
		reason, fn string
		want       bool
	}{
		{"NOT_SPECIFIED", "tcp_rcv_state_process", true},
		{"NOT_SPECIFIED", "nf_hook_slow", false},
		{"NOT_SPECIFIED", "", false},
		{"QUEUE_PURGE", "sk_stream_kill_queues", true},
		{"QUEUE_PURGE", "", true},
		{"TCP_OLD_DATA", "tcp_data_queue", true},
		{"TCP_OLD_ACK", "tcp_ack", true},
		{"TCP_OLD_DATA", "", false},
		{"NO_SOCKET", "ping_rcv", true},
		{"NOT_SPECIFIED", "icmpv6_rcv", true},
		{"NO_SOCKET", "__udp4_lib_rcv", false},
		{"NO_SOCKET", "tcp_v4_rcv", true}, // a row for teardown segments only (TestNormalFreesAreDelivered)
		{"NETFILTER_DROP", "nf_hook_slow", false},
		{"SOCKET_RCVBUFF", "sock_queue_rcv_skb_reason", false},
		{"TCP_LISTEN_OVERFLOW", "tcp_conn_request", false},
		{"", "tcp_rcv_state_process", true}, // before 5.17: no reason at all
		{"", "sk_stream_kill_queues", true},
		{"NOT_SPECIFIED", "sk_stream_kill_queues", true}, // 6.1
		{"NOT_SPECIFIED", "tcp_v4_rcv", true},            // TIME_WAIT
		{"", "tcp_v4_rcv", true},
		{"", "icmp_rcv", true},
		{"", "__udp4_lib_rcv", false},
		{"NOT_SPECIFIED", "ip_rcv_finish", false},
		{"NOT_SPECIFIED", "skb_release_data", true}, // a fragment freed with its reassembled datagram
		{"", "skb_release_data", true},
		{"NO_SOCKET", "skb_release_data", false},
	} {
		if _, got := normalFreeOf(tc.reason, tc.fn); got != tc.want {
			t.Errorf("normalFreeOf(%q, %q) = %v, want %v", tc.reason, tc.fn, got, tc.want)
		}
	}
}

// freeNames names the reasons and functions of the free tests.
type freeNames struct{ testNames }

var (
	freeReasons = map[uint32]string{2: "NOT_SPECIFIED", 3: "NO_SOCKET", 12: "NETFILTER_DROP", 60: "QUEUE_PURGE", 70: "TCP_OLD_DATA", 80: "TCP_INVALID_SYN"}
	freeFuncs   = map[uint64]string{
		0x1000: "tcp_rcv_state_process+0x1a4", 0x2000: "sk_stream_kill_queues+0x57", 0x3000: "ping_rcv+0xb3",
		0x4000: "__udp4_lib_rcv+0x9c2", 0x5000: "nf_hook_slow+0x9e", 0x6000: "tcp_data_queue+0x88",
		0x7000: "tcp_v4_rcv+0x81", 0x8000: "tcp_validate_incoming+0x180", 0x9000: "skb_release_data+0x1b4", 0xa000: "udp_destruct_common+0x12f",
	}
)

func (freeNames) DropReason(code uint32) string { return freeReasons[code] }
func (freeNames) Symbol(addr uint64) string     { return freeFuncs[addr] }

func TestNormalFreesAreDelivered(t *testing.T) {
	drop := func(netns uint32, dev string, reason uint32, at uint64) decode.Event {
		return decode.Event{Kind: decode.KindDrop, Netns: netns, Dev: dev, DropReason: reason, Location: at, Flags: decode.FlagReason}
	}
	toPod := func(s *seq) *seq {
		return s.dev(decode.KindTx, nsClient, "eth0").dev(decode.KindRx, nsNode1, "veth1a2b3c4d").
			dev(decode.KindTx, nsNode1, "veth5e6f7a8b").dev(decode.KindRx, nsServer, "eth0")
	}
	toNode := func(s *seq) *seq {
		return s.dev(decode.KindTx, nsClient, "eth0").dev(decode.KindRx, nsNode1, "veth1a2b3c4d").
			hook(hop.Prerouting, nsNode1, "cni0", "", nil).hook(hop.Input, nsNode1, "cni0", "", nil)
	}
	for _, tc := range []struct {
		name string
		path func(*seq) *seq
		free decode.Event
		want hop.Kind
		syn  bool
		// flags, when set, are the segment's TCP flags instead.
		flags uint8
	}{
		{"FIN purged at close in the pod", toPod, drop(0, "", 60, 0x2000), hop.Consume, false, 0},
		{"ACK in FIN_WAIT at a node socket", toNode, drop(0, "", 2, 0x1000), hop.Consume, false, 0},
		{"old data in the pod", toPod, drop(nsServer, "eth0", 70, 0x6000), hop.Consume, false, 0},
		{"echo reply to a raw socket", toPod, drop(nsServer, "eth0", 3, 0x3000), hop.Consume, false, 0},
		{"UDP to a closed port", toPod, drop(nsServer, "eth0", 3, 0x4000), hop.Drop, false, 0},
		{"late ACK at a TIME_WAIT socket", toPod, drop(nsServer, "eth0", 2, 0x7000), hop.Consume, false, 0},
		{"late ACK of a connection without a socket", toPod, drop(nsServer, "eth0", 3, 0x7000), hop.Consume, false, 0},
		{"SYN without a listener", toPod, drop(nsServer, "eth0", 3, 0x7000), hop.Drop, true, 0},
		{"SYN without a listener, before 5.17", toPod, decode.Event{Kind: decode.KindDrop, Netns: nsServer, Dev: "eth0", Location: 0x7000}, hop.Drop, true, 0},
		{"SYN-ACK sent again to an established connection", toPod, drop(nsServer, "eth0", 80, 0x8000), hop.Consume, false, 0x12},
		{"SYN to an established connection", toPod, drop(nsServer, "eth0", 80, 0x8000), hop.Drop, true, 0},
		{"netfilter drop at INPUT", toNode, drop(nsNode1, "cni0", 12, 0x5000), hop.Drop, false, 0},
		{"purged before reaching its destination", func(s *seq) *seq {
			return s.dev(decode.KindTx, nsClient, "eth0").dev(decode.KindRx, nsNode1, "veth1a2b3c4d").
				hook(hop.Forward, nsNode1, "cni0", "flannel.1", nil).dev(decode.KindTx, nsNode1, "flannel.1")
		}, drop(nsNode1, "flannel.1", 60, 0x2000), hop.Drop, false, 0},
		{"freed in another namespace than the pod's", toPod, drop(nsClient, "eth0", 60, 0x2000), hop.Drop, false, 0},
		{"without the function", toNode, drop(0, "", 2, 0), hop.Drop, false, 0},
		// conntrack's defrag on the bridge reassembled the datagram, which
		// went on (refragmented): its fragments are freed with it, as
		// NOT_SPECIFIED drops, inside PREROUTING, far from any socket.
		{"fragment freed with its reassembled datagram", func(s *seq) *seq {
			return s.dev(decode.KindTx, nsClient, "eth0").dev(decode.KindRx, nsNode1, "veth1a2b3c4d").
				hook(hop.Prerouting, nsNode1, "cni0", "", nil)
		}, drop(nsNode1, "cni0", 2, 0x9000), hop.Consume, false, 0},
		{"fragment freed with its reassembled datagram in the pod", toPod, drop(nsServer, "eth0", 2, 0x9000), hop.Consume, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tup := ack("10.244.1.5:40312", "10.244.1.6:8080")
			if tc.syn {
				tup = tcp("10.244.1.5:40312", "10.244.1.6:8080")
			}
			if tc.flags != 0 {
				tup.TCPFlags = tc.flags
			}
			s := tc.path(newSeq(0x6100, 1e9, tup))
			s.add(tc.free)
			paths, _ := collect(t, Config{Names: freeNames{}}, s.events)
			if len(paths) != 1 {
				t.Fatalf("got %d paths", len(paths))
			}
			p := paths[0]
			last := p.Hops[len(p.Hops)-1]
			if last.Kind != tc.want {
				t.Fatalf("free hop %s (%s by %s), want %s:\n%s", last.Kind, last.Reason, last.Func, tc.want, kinds(p))
			}
			want := VerdictDelivered
			if tc.want == hop.Drop {
				want = VerdictDropped
			}
			if p.Verdict != want {
				t.Errorf("verdict %s, want %s", p.Verdict, want)
			}
			if last.Reason != freeReasons[tc.free.DropReason] && tc.free.Flags&decode.FlagReason != 0 || last.Func != freeFuncs[tc.free.Location] || last.Dev == "" || last.Netns == "" {
				t.Errorf("free hop reason %q function %q on %q in %q", last.Reason, last.Func, last.Dev, last.Netns)
			}
		})
	}
}

// A copy the kernel queued to a raw socket (every raw ICMP socket of a pod
// gets one of each ICMP packet) is seen only when the socket purges it at
// close: a path of one free, which the queue purge shows was delivered. It
// is a copy freed where it was made, not a packet of its own: not shown.
// A lone free of another reason is shown, a drop.
func TestQueuedCopyFreed(t *testing.T) {
	lone := func(reason uint32, at uint64) []decode.Event {
		return newSeq(0x6200, 1e9, ack("10.244.1.6:0", "10.244.1.5:0")).
			add(decode.Event{Kind: decode.KindDrop, Netns: nsClient, DropReason: reason, Location: at, Flags: decode.FlagReason}).events
	}
	paths, st := collect(t, Config{Names: freeNames{}}, lone(60, 0x2000))
	if len(paths) != 0 || st.Stats().Freed != 1 {
		t.Errorf("a purged copy: %d paths, %d freed; want none shown, one freed", len(paths), st.Stats().Freed)
	}
	paths, _ = collect(t, Config{Names: freeNames{}}, lone(3, 0x4000))
	if len(paths) != 1 || paths[0].Verdict != VerdictDropped {
		t.Errorf("a lone NO_SOCKET free: %d paths, want one dropped", len(paths))
	}
}
