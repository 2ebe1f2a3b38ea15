package trace

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/topology"
)

// udpPort is where the live tests run a UDP echo server.
const udpPort = 5353

// requireOwnPacket checks that every hop of p continues its packet: the
// hop's tuple is the path's as last translated by a NAT hop (VXLAN hops
// show the inner tuple, which VXLAN keeps).
func requireOwnPacket(t *testing.T, p *stitch.Path) {
	t.Helper()
	src, dst := p.Src, p.Dst
	for i := range p.Hops {
		h := &p.Hops[i]
		if !h.Src.Addr().IsValid() {
			t.Errorf("path #%d: hop %d (%s on %s) has no tuple\n%s", p.ID, i, h.Kind, h.Dev, dump(p))
			return
		}
		if h.Kind == hop.NAT {
			src, dst = h.Src, h.Dst
			continue
		}
		if (h.Proto != 0 && h.Proto != p.Proto) || h.Src != src || h.Dst != dst {
			t.Errorf("path #%d %s → %s: hop %d (%s on %s) carries another packet: %s → %s\n%s",
				p.ID, p.Src, p.Dst, i, h.Kind, h.Dev, h.Src, h.Dst, dump(p))
			return
		}
	}
}

// requireStartOrder checks that the paths came numbered 1, 2, 3, ... in
// the order of their first hop.
func requireStartOrder(t *testing.T, paths []*stitch.Path) {
	t.Helper()
	for i, p := range paths {
		if p.ID != uint64(i+1) {
			t.Errorf("path %d of %d has id %d", i+1, len(paths), p.ID)
		}
		if i > 0 && p.Mono < paths[i-1].Mono {
			t.Errorf("path #%d started %v before #%d, printed after it", p.ID, time.Duration(paths[i-1].Mono-p.Mono), paths[i-1].ID)
		}
	}
}

// requireNoDrop checks that no path was dropped; a consume hop with a
// reason is allowed (a normal free at the destination).
func requireNoDrop(t *testing.T, paths []*stitch.Path) {
	t.Helper()
	for _, p := range paths {
		if retriedSYN(p, paths) {
			// A SYN that met the TIME_WAIT socket of an earlier
			// connection with the same ports (the server closed first,
			// the client reused its port) is answered with an ACK and
			// freed; the client resets and sends the SYN again, which
			// opens the connection. The first SYN did die: the tracer
			// is right to show it.
			t.Logf("SYN #%d dropped, then sent again and delivered", p.ID)
			continue
		}
		if repeatedSYN(p, paths) {
			// A SYN sent again because its SYN-ACK was late (a slow
			// emulated guest): the server already had the first and
			// frees the copy (6.1: NOT_SPECIFIED by tcp_v4_rcv),
			// sending its SYN-ACK again. The copy did die.
			t.Logf("SYN #%d dropped: a copy of a SYN delivered before it", p.ID)
			if d := p.Hops[len(p.Hops)-1]; d.Kind == hop.Drop && (d.Reason == "NOT_SPECIFIED" || d.Reason == "") &&
				(strings.HasPrefix(d.FuncName(), "tcp_v4_rcv") || strings.HasPrefix(d.FuncName(), "tcp_v6_rcv")) &&
				!strings.Contains(d.Advice, "This SYN is a copy") {
				t.Errorf("SYN #%d, a copy of a SYN delivered before it, is not explained as one:\n%s", p.ID, dump(p))
			}
			continue
		}
		if p.Verdict == stitch.VerdictDropped {
			t.Errorf("a packet of a completed exchange was dropped:\n%s", dump(p))
		}
		for _, h := range p.Hops {
			if h.Kind == hop.Drop || h.Advice != "" {
				t.Errorf("path #%d has a drop hop (%s by %s) or advice:\n%s", p.ID, h.Reason, h.Func, dump(p))
			}
		}
	}
}

// repeatedSYN says whether p is a dropped SYN whose connection had a SYN
// delivered before it: a retransmission the server did not need.
func repeatedSYN(p *stitch.Path, paths []*stitch.Path) bool {
	if p.Verdict != stitch.VerdictDropped || p.Proto != decode.ProtoTCP || p.TCPFlags != tcpSYN {
		return false
	}
	for _, q := range paths {
		if q != p && q.Proto == p.Proto && q.TCPFlags == tcpSYN && q.Src == p.Src &&
			q.Start.Before(p.Start) && q.Verdict == stitch.VerdictDelivered {
			return true
		}
	}
	return false
}

// retriedSYN says whether p is a dropped SYN whose connection sent its
// SYN again later and had it delivered.
func retriedSYN(p *stitch.Path, paths []*stitch.Path) bool {
	if p.Verdict != stitch.VerdictDropped || p.Proto != decode.ProtoTCP || p.TCPFlags != tcpSYN {
		return false
	}
	for _, q := range paths {
		// By the client's address and port only: one SYN may be
		// followed from the client, the other first seen after the
		// DNAT (a connection table entry of the old connection).
		if q != p && q.Proto == p.Proto && q.TCPFlags == tcpSYN && q.Src == p.Src &&
			q.Start.After(p.Start) && q.Verdict != stitch.VerdictDropped {
			return true
		}
	}
	return false
}

// TestLiveConnectionsDelivered: TCP connections through the ClusterIP,
// opened, data sent both ways and closed by both sides, and pings: none of
// their packets is dropped. The frees TCP teardown and raw socket delivery
// make (QUEUE_PURGE, NO_SOCKET by ping_rcv, ...) are consume hops.
func TestLiveConnectionsDelivered(t *testing.T) {
	c := cluster(t, topology.Options{})
	stop := tracing(t, c, topology.ClientIP)
	client := c.Pod(topology.PodClient)
	for range 3 {
		exchange(t, client, topology.ClusterIP)
	}
	for i, to := range []netip.Addr{topology.ServerIP, topology.PeerIP} {
		if err := topology.Ping(context.Background(), client, to, 0x7074, uint16(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // the last frees of the teardown
	paths, _ := stop()
	requireNoDrop(t, paths)
	requireStartOrder(t, paths)
	// The frees as each kernel names them (docs/output.md): the FIN
	// purged at close (QUEUE_PURGE, NOT_SPECIFIED on 6.1, no reason before
	// 5.17, by sk_stream_kill_queues), the echo replies (NO_SOCKET by
	// ping_rcv, by icmp_rcv on 6.1 and 6.12, no reason on 5.10).
	reasons := map[string]bool{}
	purged, echoed := false, false
	for _, p := range paths {
		requireOwnPacket(t, p)
		if last := p.Hops[len(p.Hops)-1]; last.Kind == hop.Consume && (last.Reason != "" || last.Func != "") {
			fn := last.FuncName()
			reasons[last.Reason+" by "+fn] = true
			purged = purged || fn == "sk_stream_kill_queues" || last.Reason == "QUEUE_PURGE"
			echoed = echoed || fn == "ping_rcv" || fn == "icmp_rcv"
			if p.Verdict != stitch.VerdictDelivered || last.Dev == "" || last.Netns == "" {
				t.Errorf("path #%d ends in a normal free but is %s (free on %q in %q)\n%s", p.ID, p.Verdict, last.Dev, last.Netns, dump(p))
			}
		}
	}
	if !purged || !echoed {
		t.Errorf("normal frees seen: %v, want the echo replies' free by ping_rcv or icmp_rcv and the FIN purged at close", reasons)
	}
	for _, want := range []struct {
		src, dst netip.Addr
		flags    uint8
	}{
		{topology.ClientIP, topology.ClusterIP.Addr(), tcpSYN},
		{topology.ServerIP, topology.ClientIP, tcpSYN | tcpACK},
	} {
		if p := findPath(t, paths, want.src, want.dst, want.flags); p.Verdict != stitch.VerdictDelivered {
			t.Errorf("path #%d verdict %s, want delivered\n%s", p.ID, p.Verdict, dump(p))
		}
	}
}

// TestLiveMixedTraffic traces the client pod while it runs, at once, TCP
// connections through the ClusterIP, pings, UDP, IPv6 multicast pings and
// ARP (arpChurn): every path holds only its own packet's
// hops, no packet of a completed exchange is dropped, and the paths come
// numbered 1..N in the order of their first hop.
func TestLiveMixedTraffic(t *testing.T) {
	c := cluster(t, topology.Options{})
	client := c.Pod(topology.PodClient)
	for _, p := range []*topology.Pod{c.Pod(topology.PodServer), c.Pod(topology.PodPeer)} {
		srv, err := topology.StartUDPEchoServer(p, udpPort)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
	}
	// IPv6 between the pods on node1: link-local addresses usable at once
	// (the ones the kernel made are tentative until DAD is done).
	for name, a := range map[string]string{topology.PodClient: "fe80::5/64", topology.PodPeer: "fe80::6/64"} {
		if _, err := c.Pod(name).Run(context.Background(), "ip", "-6", "addr", "add", a, "dev", topology.UnderlayDev, "nodad"); err != nil {
			t.Fatal(err)
		}
	}
	addChurnTarget(t, c.Pod(topology.PodPeer))
	stop := tracing(t, c, topology.ClientIP)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	run := func(what string, n int, fn func(i int) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				if err := fn(i); err != nil {
					errs <- fmt.Errorf("%s %d: %w", what, i, err)
					return
				}
			}
		}()
	}
	const conns = 8
	for w := range 2 {
		run("tcp", conns/2, func(int) error {
			_, err := topology.TCPExchange(ctx, client, topology.ClusterIP, fmt.Sprintf("worker %d", w))
			return err
		})
	}
	run("ping", 6, func(i int) error {
		to := []netip.Addr{topology.ServerIP, topology.PeerIP}[i%2]
		return topology.Ping(ctx, client, to, 0x7075, uint16(i))
	})
	run("udp", 6, func(i int) error {
		to := []netip.AddrPort{netip.AddrPortFrom(topology.ServerIP, udpPort), netip.AddrPortFrom(topology.PeerIP, udpPort)}[i%2]
		_, err := topology.UDPExchange(ctx, client, to, "hello")
		return err
	})
	run("ipv6 ping", 6, func(i int) error {
		return topology.Ping(ctx, client, netip.MustParseAddr("ff02::1").WithZone(topology.UnderlayDev), 0x7076, uint16(i))
	})
	run("arp", 3, func(i int) error {
		return arpChurn(ctx, client, churnIP, 0x7078, uint16(i))
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	time.Sleep(200 * time.Millisecond)
	paths, _ := stop()

	requireStartOrder(t, paths)
	requireNoDrop(t, paths)
	kinds := map[uint8]int{}
	syns := 0
	for _, p := range paths {
		requireOwnPacket(t, p)
		kinds[p.Proto]++
		if p.Proto == decode.ProtoTCP && p.TCPFlags == tcpSYN && p.Dst == topology.ClusterIP {
			syns++
		}
	}
	if syns != conns || kinds[decode.ProtoICMP] < 12 || kinds[decode.ProtoUDP] < 12 {
		var b strings.Builder
		for _, p := range paths {
			fmt.Fprintf(&b, "#%d %d %s → %s %#x %s\n", p.ID, p.Proto, p.Src, p.Dst, p.TCPFlags, p.Verdict)
		}
		t.Errorf("%d SYNs to the ClusterIP (want %d), %d ICMP and %d UDP packets (want 12 each):\n%s",
			syns, conns, kinds[decode.ProtoICMP], kinds[decode.ProtoUDP], b.String())
	}
}

// TestLiveFirstSeenAfterNAT traces the backend: the client's requests to
// the ClusterIP match only after PREROUTING's DNAT. Their paths start there,
// and nothing of the healthy exchange is partial.
func TestLiveFirstSeenAfterNAT(t *testing.T) {
	c := cluster(t, topology.Options{})
	stop := tracing(t, c, topology.ServerIP)
	exchange(t, c.Pod(topology.PodClient), topology.ClusterIP)
	paths, _ := stop()
	req := findPath(t, paths, topology.ClientIP, topology.ServerIP, tcpSYN)
	requireHops(t, req, []hopMatch{
		{kind: hop.Netfilter, hook: hop.Prerouting, netns: c.Node(topology.Node1).NetnsName, description: "PREROUTING on node1"},
		{kind: hop.Rx, dev: "eth0", netns: c.Pod(topology.PodServer).NetnsName, description: "rx on the server pod's eth0"},
	})
	for _, p := range paths {
		for _, h := range p.Hops {
			if h.Partial {
				t.Errorf("path #%d: %s hop partial in a healthy exchange\n%s", p.ID, h.Hook, dump(p))
			}
		}
	}
	requireStartOrder(t, paths)
}

// TestLiveFragmentsNotDropped sends a 4000-byte UDP datagram from the
// client to a closed port of the server: the client fragments it (MTU
// 1450), conntrack's defrag on node1's bridge reassembles and refragments
// it, the server reassembles it and answers ICMP port unreachable. The
// fragments the kernel frees with the datagram they were reassembled into
// (skb_release_data, NOT_SPECIFIED) are not drops; the one true drop is the
// datagram's, NO_SOCKET at the server.
func TestLiveFragmentsNotDropped(t *testing.T) {
	c := cluster(t, topology.Options{})
	stop := tracing(t, c, topology.ClientIP)
	conn, err := c.Pod(topology.PodClient).Dial(context.Background(), "udp", netip.AddrPortFrom(topology.ServerIP, 9997).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(make([]byte, 4000)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Read(make([]byte, 16)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("read after a datagram to a closed port: %v, want connection refused", err)
	}
	time.Sleep(200 * time.Millisecond)
	paths, _ := stop()
	drops := 0
	for _, p := range paths {
		for _, h := range p.Hops {
			if h.Kind != hop.Drop {
				continue
			}
			// No reasons before 5.17: the function says it.
			if (h.Reason == "NO_SOCKET" || h.Reason == "" && h.FuncName() == "__udp4_lib_rcv") && p.Dst.Port() == 9997 {
				drops++
				continue
			}
			t.Errorf("path #%d has a drop hop (%s by %s):\n%s", p.ID, h.Reason, h.Func, dump(p))
		}
	}
	if drops != 1 {
		t.Errorf("%d drops of the datagram for want of a socket, want 1", drops)
	}
}

// churnIP is a second address of the peer pod that only arpChurn talks to.
var churnIP = netip.MustParseAddr("10.244.1.66")

// addChurnTarget gives pod the address churnIP (a /32: the pod subnet's
// on-link route reaches it from the other pods of its node).
func addChurnTarget(t *testing.T, pod *topology.Pod) {
	t.Helper()
	if _, err := pod.Run(context.Background(), "ip", "addr", "add", churnIP.String()+"/32", "dev", topology.UnderlayDev); err != nil {
		t.Fatal(err)
	}
}

// arpChurn makes from resolve to's link-layer address while other traffic
// runs: it deletes from's neighbour entry for to and pings to, the echo
// request waiting on the ARP exchange. Only the churn may use to. Deleting
// an entry other traffic waits on drops that traffic for real: the kernel
// frees the packets queued on an entry still resolving (neigh_invalidate,
// NEIGH_FAILED) and fails their connect with EHOSTUNREACH. A flush of all
// neighbours did that to a TCP handshake in CI.
func arpChurn(ctx context.Context, from *topology.Pod, to netip.Addr, id, seq uint16) error {
	if _, err := from.Run(ctx, "ip", "neigh", "flush", "to", to.String()); err != nil {
		return err
	}
	return topology.Ping(ctx, from, to, id, seq)
}
