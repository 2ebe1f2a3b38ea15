package trace

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/internal/topology"
)

// dualCluster builds the dual-stack demo cluster with echo servers on the
// server's and the peer's IPv4 and IPv6 addresses.
func dualCluster(t *testing.T) *topology.Cluster {
	t.Helper()
	c := cluster(t, topology.Options{DualStack: true})
	for _, name := range []string{topology.PodServer, topology.PodPeer} {
		p := c.Pod(name)
		srv, err := topology.StartEchoServerOn(context.Background(), p, netip.AddrPortFrom(p.IP6, topology.ServerPort))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
	}
	return c
}

// IPv6 across nodes: the ip6tables ClusterIP DNAT, IPv6 inside the IPv4
// VXLAN underlay, and the un-DNAT of the reply.
func TestLiveIPv6CrossNodeClusterIP(t *testing.T) {
	c := dualCluster(t)
	stop := tracing(t, c, topology.ClientIP6)
	client, server := c.Pod(topology.PodClient), c.Pod(topology.PodServer)
	n1, n2 := c.Node(topology.Node1).NetnsName, c.Node(topology.Node2).NetnsName

	exchange(t, client, topology.ClusterIP6)
	paths, sum := stop()
	if sum.Lost != 0 {
		t.Errorf("%d events lost", sum.Lost)
	}
	req := findPath(t, paths, topology.ClientIP6, topology.ClusterIP6.Addr(), tcpSYN)
	requireHops(t, req, []hopMatch{
		{kind: hop.Tx, dev: "eth0", netns: client.NetnsName, description: "tx on the client pod's eth0"},
		{kind: hop.Rx, dev: client.HostVeth, netns: n1, description: "rx on the client's host veth"},
		{kind: hop.NAT, hook: hop.Prerouting, netns: n1,
			nat:         &stitch.NAT{Type: hop.DNAT, From: topology.ClusterIP6, To: topology.ServerAddr6},
			description: "DNAT [fd96::10]:80 → [fd77:2::7]:8080 at PREROUTING"},
		{kind: hop.Netfilter, hook: hop.Forward, in: "cni0", out: "flannel.1", netns: n1, description: "FORWARD cni0 → flannel.1"},
		{kind: hop.Encap, dev: "flannel.1", netns: n1,
			outer:       &stitch.Outer{Tunnel: hop.TunnelVXLAN, Src: topology.Node1UnderlayIP, Dst: topology.Node2UnderlayIP, DPort: topology.VXLANPort, VNI: topology.VXLANID},
			description: "VXLAN encap on flannel.1, over IPv4"},
		{kind: hop.Tx, dev: "eth0", netns: n1, description: "tx on node1 eth0"},
		{kind: hop.Rx, dev: "eth0", netns: n2, description: "rx on node2 eth0"},
		{kind: hop.Decap, dev: "flannel.1", netns: n2, description: "VXLAN decap on node2 flannel.1"},
		{kind: hop.Tx, dev: server.HostVeth, netns: n2, description: "tx on the server's host veth"},
		{kind: hop.Rx, dev: "eth0", netns: server.NetnsName, description: "rx on the server pod's eth0"},
	})
	if req.Verdict != stitch.VerdictDelivered {
		t.Errorf("request verdict %s, want delivered\n%s", req.Verdict, dump(req))
	}
	reply := findPath(t, paths, topology.ServerIP6, topology.ClientIP6, tcpSYN|tcpACK)
	requireHops(t, reply, []hopMatch{
		{kind: hop.Tx, dev: "eth0", netns: server.NetnsName, description: "tx on the server pod's eth0"},
		{kind: hop.Encap, dev: "flannel.1", netns: n2, description: "VXLAN encap on node2"},
		{kind: hop.Decap, dev: "flannel.1", netns: n1, description: "VXLAN decap on node1"},
		{kind: hop.NAT, netns: n1,
			nat:         &stitch.NAT{Type: hop.SNAT, From: topology.ServerAddr6, To: topology.ClusterIP6, Reverse: true},
			description: "un-DNAT [fd77:2::7]:8080 → [fd96::10]:80 on node1"},
		{kind: hop.Rx, dev: "eth0", netns: client.NetnsName, description: "rx on the client pod's eth0"},
	})
	if reply.Verdict != stitch.VerdictDelivered {
		t.Errorf("reply verdict %s, want delivered\n%s", reply.Verdict, dump(reply))
	}
}

// IPv6 on one node: bridged, through br_netfilter's IPv6 hooks
// (bridge-nf-call-ip6tables=1), no encapsulation.
func TestLiveIPv6SameNode(t *testing.T) {
	c := dualCluster(t)
	stop := tracing(t, c, topology.ClientIP6)
	client, peer := c.Pod(topology.PodClient), c.Pod(topology.PodPeer)
	n1 := c.Node(topology.Node1).NetnsName

	exchange(t, client, topology.PeerAddr6)
	paths, _ := stop()
	req := findPath(t, paths, topology.ClientIP6, topology.PeerIP6, tcpSYN)
	requireHops(t, req, []hopMatch{
		{kind: hop.Tx, dev: "eth0", netns: client.NetnsName, description: "tx on the client's eth0"},
		{kind: hop.Rx, dev: client.HostVeth, netns: n1, description: "rx on the client's host veth"},
		{kind: hop.Netfilter, hook: hop.Prerouting, in: "cni0", netns: n1, description: "br_netfilter IPv6 PREROUTING on cni0"},
		{kind: hop.Netfilter, hook: hop.Forward, netns: n1, description: "br_netfilter IPv6 FORWARD"},
		{kind: hop.Tx, dev: peer.HostVeth, netns: n1, description: "tx on the peer's host veth"},
		{kind: hop.Rx, dev: "eth0", netns: peer.NetnsName, description: "rx on the peer's eth0"},
	})
	for _, h := range req.Hops {
		if h.Kind == hop.Encap || h.Kind == hop.NAT {
			t.Errorf("same-node path has a %s hop:\n%s", h.Kind, dump(req))
		}
	}
	if req.Verdict != stitch.VerdictDelivered {
		t.Errorf("verdict %s, want delivered\n%s", req.Verdict, dump(req))
	}
}

// pathsOf counts the paths from or to a.
func pathsOf(paths []*stitch.Path, a netip.Addr) int {
	n := 0
	for _, p := range paths {
		if p.Src.Addr() == a || p.Dst.Addr() == a {
			n++
		}
	}
	return n
}

// dualTraffic sends the client's IPv4 and IPv6 traffic: a TCP exchange
// with each ClusterIP and a ping of the server's IPv6 address.
func dualTraffic(t *testing.T, c *topology.Cluster) {
	t.Helper()
	client := c.Pod(topology.PodClient)
	exchange(t, client, topology.ClusterIP)
	exchange(t, client, topology.ClusterIP6)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := topology.Ping(ctx, client, topology.ServerIP6, 0x6666, 1); err != nil {
		t.Fatal(err)
	}
}

// A dual-stack pod traced by both its addresses shows its IPv4 and its
// IPv6 packets, the ICMPv6 echo with its id; neighbour discovery is left
// out. Traced by its IPv4 address only, its IPv6 packets are not followed
// (the live run warns about it on a node that routes IPv6).
func TestLiveDualStackPod(t *testing.T) {
	c := dualCluster(t)
	t.Run("both addresses", func(t *testing.T) {
		stop := tracing(t, c, topology.ClientIP, topology.ClientIP6)
		dualTraffic(t, c)
		paths, _ := stop()
		findPath(t, paths, topology.ClientIP, topology.ClusterIP.Addr(), tcpSYN)
		findPath(t, paths, topology.ClientIP6, topology.ClusterIP6.Addr(), tcpSYN)
		var echo, reply, nd bool
		for _, p := range paths {
			if p.Proto != decode.ProtoICMPv6 {
				continue
			}
			switch typ := p.Src.Port(); {
			case typ == 128 && p.Dst.Addr() == topology.ServerIP6:
				echo = p.HasICMPID && p.ICMPID == 0x6666
			case typ == 129 && p.Src.Addr() == topology.ServerIP6:
				reply = p.Verdict == stitch.VerdictDelivered
			case typ >= 133 && typ <= 137:
				nd = true
			}
		}
		if !echo || !reply || nd {
			var b []byte
			for _, p := range paths {
				b = append(b, dump(p)...)
			}
			t.Errorf("echo request with id 0x6666 %v, delivered reply %v, neighbour discovery %v (want true, true, false):\n%s", echo, reply, nd, b)
		}
	})
	t.Run("IPv4 address only", func(t *testing.T) {
		stop := tracingWith(t, c, loader.Options{PodIPs: []netip.Addr{topology.ClientIP}})
		dualTraffic(t, c)
		paths, _ := stop()
		findPath(t, paths, topology.ClientIP, topology.ClusterIP.Addr(), tcpSYN)
		if n := pathsOf(paths, topology.ClientIP6); n != 0 {
			t.Errorf("%d paths of %s traced by %s only", n, topology.ClientIP6, topology.ClientIP)
		}
	})
}

// The kernel's connection table holds IPv6 connections: traced by the
// backend's IPv6 address, the SYN is first seen after the ip6tables DNAT,
// and the next packet of the connection (the client's ACK to the
// ClusterIP) is followed from its first hop in the client pod.
func TestLiveIPv6ConnectionFollowed(t *testing.T) {
	c := dualCluster(t)
	stop := tracing(t, c, topology.ServerIP6)
	client := c.Pod(topology.PodClient)
	exchange(t, client, topology.ClusterIP6)
	paths, sum := stop()
	syn := findPath(t, paths, topology.ClientIP6, topology.ServerIP6, tcpSYN)
	if syn.FirstSeen != stitch.FirstSeenAfterNAT {
		t.Errorf("SYN first seen %q, want after NAT\n%s", syn.FirstSeen, dump(syn))
	}
	ack := findPath(t, paths, topology.ClientIP6, topology.ClusterIP6.Addr(), tcpACK)
	requireHops(t, ack, []hopMatch{
		{kind: hop.Tx, dev: "eth0", netns: client.NetnsName, description: "tx on the client pod's eth0"},
		{kind: hop.NAT, hook: hop.Prerouting, netns: c.Node(topology.Node1).NetnsName,
			nat:         &stitch.NAT{Type: hop.DNAT, From: topology.ClusterIP6, To: topology.ServerAddr6},
			description: "DNAT at PREROUTING"},
	})
	if sum.Conns == nil || sum.Conns.Followed == 0 {
		t.Errorf("connections followed: %+v, want the IPv6 one", sum.Conns)
	}
}

// An echo across nodes (a raw socket's, forwarded by node1 into VXLAN) is
// one path from the client's eth0 to the server's, and its reply one path
// back, in either family: neither is split where the forwarding node gives
// the packet the headroom flannel.1 needs (ip6_finish_output2 and
// ip_finish_output2 clone an skb that lacks it and free the original).
func TestLiveCrossNodePing(t *testing.T) {
	c := dualCluster(t)
	client, server := c.Pod(topology.PodClient), c.Pod(topology.PodServer)
	n1, n2 := c.Node(topology.Node1).NetnsName, c.Node(topology.Node2).NetnsName
	for _, f := range []struct {
		name           string
		client, server netip.Addr
		proto          uint8
		echo, reply    uint16
	}{
		{"IPv4", topology.ClientIP, topology.ServerIP, decode.ProtoICMP, 8, 0},
		{"IPv6", topology.ClientIP6, topology.ServerIP6, decode.ProtoICMPv6, 128, 129},
	} {
		t.Run(f.name, func(t *testing.T) {
			stop := tracing(t, c, f.client)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := topology.Ping(ctx, client, f.server, 0x6667, 1); err != nil {
				t.Fatal(err)
			}
			paths, _ := stop()
			var echo, reply []*stitch.Path
			for _, p := range paths {
				if p.Proto != f.proto || !p.HasICMPID || p.ICMPID != 0x6667 {
					continue
				}
				switch p.Src.Port() {
				case f.echo:
					echo = append(echo, p)
				case f.reply:
					reply = append(reply, p)
				}
			}
			if len(echo) != 1 || len(reply) != 1 {
				var b []byte
				for _, p := range append(echo, reply...) {
					b = append(b, dump(p)...)
				}
				t.Fatalf("%d echo request paths and %d reply paths, want 1 and 1:\n%s", len(echo), len(reply), b)
			}
			requireHops(t, echo[0], []hopMatch{
				{kind: hop.Tx, dev: "eth0", netns: client.NetnsName, description: "tx on the client pod's eth0"},
				{kind: hop.Encap, dev: "flannel.1", netns: n1, description: "VXLAN encap on node1"},
				{kind: hop.Decap, dev: "flannel.1", netns: n2, description: "VXLAN decap on node2"},
				{kind: hop.Rx, dev: "eth0", netns: server.NetnsName, description: "rx on the server pod's eth0"},
			})
			requireHops(t, reply[0], []hopMatch{
				{kind: hop.Tx, dev: "eth0", netns: server.NetnsName, description: "tx on the server pod's eth0"},
				{kind: hop.Encap, dev: "flannel.1", netns: n2, description: "VXLAN encap on node2"},
				{kind: hop.Decap, dev: "flannel.1", netns: n1, description: "VXLAN decap on node1"},
				{kind: hop.Rx, dev: "eth0", netns: client.NetnsName, description: "rx on the client pod's eth0"},
			})
			for _, p := range []*stitch.Path{echo[0], reply[0]} {
				if p.Verdict != stitch.VerdictDelivered {
					t.Errorf("verdict %s, want delivered\n%s", p.Verdict, dump(p))
				}
			}
		})
	}
}

// A UDP request and its reply across nodes, in either family, are one path
// each from pod to pod (IPv6 datagrams, with little headroom, are copied
// for flannel.1 on the way: handoff.go in internal/stitch).
func TestLiveCrossNodeUDP(t *testing.T) {
	c := dualCluster(t)
	client, server := c.Pod(topology.PodClient), c.Pod(topology.PodServer)
	for _, f := range []struct {
		name   string
		client netip.Addr
		server netip.AddrPort
	}{
		{"IPv4", topology.ClientIP, netip.AddrPortFrom(topology.ServerIP, 5353)},
		{"IPv6", topology.ClientIP6, netip.AddrPortFrom(topology.ServerIP6, 5353)},
	} {
		t.Run(f.name, func(t *testing.T) {
			srv, err := topology.StartUDPEchoServerOn(server, f.server)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			stop := tracing(t, c, f.client)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := topology.UDPExchange(ctx, client, f.server, "query"); err != nil {
				t.Fatal(err)
			}
			paths, _ := stop()
			var req, reply []*stitch.Path
			for _, p := range paths {
				switch {
				case p.Proto != decode.ProtoUDP:
				case p.Dst == f.server:
					req = append(req, p)
				case p.Src == f.server:
					reply = append(reply, p)
				}
			}
			if len(req) != 1 || len(reply) != 1 {
				var b []byte
				for _, p := range paths {
					b = append(b, dump(p)...)
				}
				t.Fatalf("%d request paths and %d reply paths, want 1 and 1:\n%s", len(req), len(reply), b)
			}
			for _, p := range []struct {
				path     *stitch.Path
				from, to *topology.Pod
			}{{req[0], client, server}, {reply[0], server, client}} {
				requireHops(t, p.path, []hopMatch{
					{kind: hop.Tx, dev: "eth0", netns: p.from.NetnsName, description: "tx on the sending pod's eth0"},
					{kind: hop.Encap, dev: "flannel.1", description: "VXLAN encap"},
					{kind: hop.Decap, dev: "flannel.1", description: "VXLAN decap"},
					{kind: hop.Rx, dev: "eth0", netns: p.to.NetnsName, description: "rx on the receiving pod's eth0"},
				})
				if p.path.Verdict != stitch.VerdictDelivered {
					t.Errorf("verdict %s, want delivered\n%s", p.path.Verdict, dump(p.path))
				}
			}
		})
	}
}

// A DNAT written in an nftables inet table (one rule set for both
// families, as some CNIs and load balancers write it) shows as a nat hop
// for IPv4 and IPv6 alike, with the reverse on each reply.
func TestLiveNftInetDNAT(t *testing.T) {
	testutil.Require(t, testutil.NftBinary)
	c := dualCluster(t)
	n1 := c.Node(topology.Node1)
	svc4, svc6 := netip.MustParseAddrPort("10.96.0.20:80"), netip.MustParseAddrPort("[fd96::20]:80")
	rules := fmt.Sprintf("add table inet pt_inet; "+
		"add chain inet pt_inet pre { type nat hook prerouting priority -110; }; "+
		"add rule inet pt_inet pre ip daddr %s tcp dport %d dnat ip to %s; "+
		"add rule inet pt_inet pre ip6 daddr %s tcp dport %d dnat ip6 to %s",
		svc4.Addr(), svc4.Port(), topology.ServerAddr, svc6.Addr(), svc6.Port(), topology.ServerAddr6)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if out, err := n1.Run(ctx, "nft", rules); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	stop := tracing(t, c, topology.ClientIP, topology.ClientIP6)
	client := c.Pod(topology.PodClient)
	exchange(t, client, svc4)
	exchange(t, client, svc6)
	paths, _ := stop()
	for _, f := range []struct {
		client, server netip.Addr
		svc, backend   netip.AddrPort
	}{
		{topology.ClientIP, topology.ServerIP, svc4, topology.ServerAddr},
		{topology.ClientIP6, topology.ServerIP6, svc6, topology.ServerAddr6},
	} {
		req := findPath(t, paths, f.client, f.svc.Addr(), tcpSYN)
		requireHops(t, req, []hopMatch{
			{kind: hop.NAT, hook: hop.Prerouting, netns: n1.NetnsName,
				nat:         &stitch.NAT{Type: hop.DNAT, From: f.svc, To: f.backend},
				description: fmt.Sprintf("DNAT %s → %s at PREROUTING", f.svc, f.backend)},
			{kind: hop.Rx, dev: "eth0", netns: c.Pod(topology.PodServer).NetnsName, description: "rx on the server pod's eth0"},
		})
		reply := findPath(t, paths, f.server, f.client, tcpSYN|tcpACK)
		requireHops(t, reply, []hopMatch{
			{kind: hop.NAT, netns: n1.NetnsName,
				nat:         &stitch.NAT{Type: hop.SNAT, From: f.backend, To: f.svc, Reverse: true},
				description: fmt.Sprintf("un-DNAT %s → %s on node1", f.backend, f.svc)},
			{kind: hop.Rx, dev: "eth0", netns: client.NetnsName, description: "rx on the client pod's eth0"},
		})
		for _, p := range []*stitch.Path{req, reply} {
			if p.Verdict != stitch.VerdictDelivered {
				t.Errorf("verdict %s, want delivered\n%s", p.Verdict, dump(p))
			}
		}
	}
}

// Asked to (--ndp), the pod's neighbour discovery is followed: after its
// neighbour cache is flushed, the pod's neighbour solicitation and the
// advertisement that answers it are paths, the advertisement delivered.
func TestLiveNeighborDiscovery(t *testing.T) {
	c := dualCluster(t)
	client := c.Pod(topology.PodClient)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if out, err := client.Run(ctx, "ip", "-6", "neigh", "flush", "all"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	stop := tracingWith(t, c, loader.Options{PodIPs: []netip.Addr{topology.ClientIP6}, NeighborDiscovery: true})
	exchange(t, client, topology.PeerAddr6)
	paths, _ := stop()
	var ns, na *stitch.Path
	for _, p := range paths {
		if p.Proto != decode.ProtoICMPv6 {
			continue
		}
		switch typ := p.Src.Port(); {
		case typ == 135 && p.Src.Addr() == topology.ClientIP6 && p.Hops[0].Netns == client.NetnsName:
			ns = p // the bridge floods copies too: each its own path from cni0
		case typ == 136 && p.Dst.Addr() == topology.ClientIP6:
			na = p
		}
	}
	if ns == nil || na == nil {
		var b []byte
		for _, p := range paths {
			b = append(b, dump(p)...)
		}
		t.Fatalf("solicitation from the client %v, advertisement to it %v (want both):\n%s", ns != nil, na != nil, b)
	}
	requireHops(t, ns, []hopMatch{{kind: hop.Tx, dev: "eth0", netns: client.NetnsName, description: "tx on the client's eth0"}})
	requireHops(t, na, []hopMatch{{kind: hop.Rx, dev: "eth0", netns: client.NetnsName, description: "rx on the client's eth0"}})
	if na.Verdict != stitch.VerdictDelivered {
		t.Errorf("advertisement %s, want delivered\n%s", na.Verdict, dump(na))
	}
	findPath(t, paths, topology.ClientIP6, topology.PeerIP6, tcpSYN)
}
