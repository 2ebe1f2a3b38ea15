package trace

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/topology"
)

// TestLiveBusyNode traces the backend pod of the Service on a node that
// carries, at once, 50 TCP connections to that Service (half through its
// ClusterIP from a pod, half through its NodePort from a host outside the
// cluster), IPv6 pings between pods, ARP churn and UDP, and reads every
// path as an operator would: each holds only its own packet's hops, no
// packet of a completed connection was dropped, each NodePort connection's
// packets after its SYN are followed from their arrival on node1's NIC
// through the DNAT, and replies carry the reverse translations.
func TestLiveBusyNode(t *testing.T) {
	c := externalCluster(t)
	n1 := c.Node(topology.Node1).NetnsName
	client, peer := c.Pod(topology.PodClient), c.Pod(topology.PodPeer)
	srv, err := topology.StartUDPEchoServer(c.Pod(topology.PodServer), udpPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	// The ARP churn below makes the client and the outside host resolve
	// addresses while connections run. On a slow emulated guest
	// (the kernel matrix: TCG, guests sharing the CPUs) a resolution took
	// longer than the default three probes a second apart, and the
	// packets waiting on it were dropped (NEIGH_FAILED): a real drop,
	// which pathtrace showed, but of the test's making. Ten probes each.
	for _, pod := range []*topology.Pod{client, peer, c.External} {
		for _, key := range []string{
			"net.ipv4.neigh.eth0.mcast_solicit", "net.ipv4.neigh.eth0.ucast_solicit",
			"net.ipv6.neigh.eth0.mcast_solicit", "net.ipv6.neigh.eth0.ucast_solicit",
		} {
			if err := pod.SetSysctl(key, "10"); err != nil {
				t.Fatal(err)
			}
		}
	}
	// IPv6 between the pods on node1: link-local, usable at once.
	for pod, a := range map[*topology.Pod]string{client: "fe80::5/64", peer: "fe80::6/64"} {
		if _, err := pod.Run(context.Background(), "ip", "-6", "addr", "add", a, "dev", topology.UnderlayDev, "nodad"); err != nil {
			t.Fatal(err)
		}
	}

	addChurnTarget(t, peer)
	stop := tracing(t, c, topology.ServerIP)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
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
	const conns = 50 // half each way, five workers each
	for w := range 5 {
		run("tcp to the ClusterIP", conns/10, func(i int) error {
			_, err := topology.TCPExchange(ctx, client, topology.ClusterIP, fmt.Sprintf("c%d-%d", w, i))
			return err
		})
		run("tcp to the NodePort", conns/10, func(i int) error {
			_, err := topology.TCPExchange(ctx, c.External, topology.NodePortAddr, fmt.Sprintf("n%d-%d", w, i))
			return err
		})
	}
	run("udp", 10, func(i int) error {
		_, err := topology.UDPExchange(ctx, client, netip.AddrPortFrom(topology.ServerIP, udpPort), fmt.Sprint("u", i))
		return err
	})
	run("ipv6 ping", 20, func(i int) error {
		return topology.Ping(ctx, client, netip.MustParseAddr("fe80::6").WithZone(topology.UnderlayDev), 0x7077, uint16(i))
	})
	run("arp", 5, func(i int) error {
		// The outside host resolves node2, which none of its other
		// traffic goes to.
		if err := arpChurn(ctx, client, churnIP, 0x7079, uint16(i)); err != nil {
			return err
		}
		return arpChurn(ctx, c.External, topology.Node2UnderlayIP, 0x707a, uint16(i))
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitTeardown(t, c.External, "dst", topology.NodePortAddr.String())
	waitTeardown(t, client, "dst", topology.ClusterIP.String())
	waitTeardown(t, c.Pod(topology.PodServer), "sport", "=", fmt.Sprintf(":%d", topology.ServerPort))
	paths, sum := stop()
	if sum.Lost != 0 {
		t.Errorf("%d events lost", sum.Lost)
	}

	requireStartOrder(t, paths)
	requireNoDrop(t, paths)
	// The connections, by the client's address and port: the SYN is
	// first seen after the DNAT (the filter is the backend's address), so
	// its path's tuple is the translated one.
	type conn struct {
		nodePort           bool
		syn                *stitch.Path
		requests, replies  []*stitch.Path
		reqFlags, repFlags uint8
		unDNATs, unSNATs   int
	}
	byClient := map[netip.AddrPort]*conn{}
	connOf := func(client netip.AddrPort) *conn {
		cn := byClient[client]
		if cn == nil {
			cn = &conn{}
			byClient[client] = cn
		}
		return cn
	}
	for _, p := range paths {
		requireOwnPacket(t, p)
		if p.Proto != decode.ProtoTCP {
			continue
		}
		switch {
		case p.TCPFlags == tcpSYN && p.Dst == topology.ServerAddr:
			cn := connOf(p.Src)
			cn.syn, cn.nodePort = p, p.Src.Addr() == topology.ExternalIP
			if p.FirstSeen != stitch.FirstSeenAfterNAT {
				t.Errorf("SYN #%d first seen %q, want after NAT\n%s", p.ID, p.FirstSeen, dump(p))
			}
		case p.Dst == topology.ClusterIP || p.Dst == topology.NodePortAddr:
			cn := connOf(p.Src)
			cn.requests, cn.reqFlags = append(cn.requests, p), cn.reqFlags|p.TCPFlags
		case p.Src == topology.ServerAddr:
			// A reply: matched to its connection by what its reverse
			// translations give back.
			var to netip.AddrPort
			var unDNAT, unSNAT bool
			for _, h := range p.Hops {
				if h.Kind != hop.NAT || !h.NAT.Reverse {
					continue
				}
				switch h.NAT.Type {
				case hop.SNAT:
					unDNAT = true
				case hop.DNAT:
					unSNAT, to = true, h.NAT.To
				}
			}
			if !to.IsValid() {
				to = p.Dst
			}
			cn := connOf(to)
			cn.replies, cn.repFlags = append(cn.replies, p), cn.repFlags|p.TCPFlags
			if unDNAT {
				cn.unDNATs++
			}
			if unSNAT {
				cn.unSNATs++
			}
		}
	}
	var clusterIP, nodePort int
	for from, cn := range byClient {
		if cn.syn == nil {
			t.Errorf("connection of %s: no SYN among %d requests, %d replies", from, len(cn.requests), len(cn.replies))
			continue
		}
		if cn.nodePort {
			nodePort++
		} else {
			clusterIP++
		}
		if cn.reqFlags&tcpFIN == 0 || cn.repFlags&tcpFIN == 0 || len(cn.requests) < 3 || len(cn.replies) < 2 {
			t.Errorf("connection of %s (NodePort %v): %d requests (flags %#x), %d replies (flags %#x) after the SYN; want the whole exchange through both FINs",
				from, cn.nodePort, len(cn.requests), cn.reqFlags, len(cn.replies), cn.repFlags)
			continue
		}
		// Every reply is un-DNATed (the Service address given back); a
		// NodePort connection's also un-SNATed (masquerade undone).
		if cn.unDNATs != len(cn.replies) || (cn.nodePort && cn.unSNATs != len(cn.replies)) {
			t.Errorf("connection of %s (NodePort %v): %d replies, %d un-DNAT and %d un-SNAT hops\n%s",
				from, cn.nodePort, len(cn.replies), cn.unDNATs, cn.unSNATs, dump(cn.replies[0]))
		}
		for _, p := range cn.requests {
			if !cn.nodePort {
				requireFromStart(t, p, client.HostVeth, n1)
				requireHops(t, p, []hopMatch{
					{kind: hop.Tx, dev: "eth0", netns: client.NetnsName, description: "tx on the client's eth0"},
					{kind: hop.NAT, hook: hop.Prerouting, netns: n1,
						nat: &stitch.NAT{Type: hop.DNAT, From: topology.ClusterIP, To: topology.ServerAddr}, description: "the ClusterIP's DNAT"},
					{kind: hop.Rx, dev: "eth0", netns: c.Pod(topology.PodServer).NetnsName, description: "rx on the server pod's eth0"},
				})
				continue
			}
			requireFromStart(t, p, topology.UnderlayDev, n1)
			requireHops(t, p, []hopMatch{
				{kind: hop.Rx, dev: topology.UnderlayDev, netns: n1, description: "the client's arrival on node1's eth0"},
				{kind: hop.NAT, hook: hop.Prerouting, netns: n1,
					nat: &stitch.NAT{Type: hop.DNAT, From: topology.NodePortAddr, To: topology.ServerAddr}, description: "the NodePort's DNAT"},
				{kind: hop.Rx, dev: "eth0", netns: c.Pod(topology.PodServer).NetnsName, description: "rx on the server pod's eth0"},
			})
		}
	}
	t.Logf("%d paths; connections: %d through the ClusterIP, %d through the NodePort; %+v", len(paths), clusterIP, nodePort, sum)
	if clusterIP != conns/2 || nodePort != conns/2 {
		var b strings.Builder
		for _, p := range paths {
			fmt.Fprintf(&b, "#%d %d %s → %s %#x %s\n", p.ID, p.Proto, p.Src, p.Dst, p.TCPFlags, p.Verdict)
		}
		t.Errorf("%d connections through the ClusterIP and %d through the NodePort, want %d each:\n%s", clusterIP, nodePort, conns/2, b.String())
	}
	if sum.Conns == nil || sum.Conns.Evicted != 0 {
		t.Errorf("connections %+v, want none evicted", sum.Conns)
	}
}
