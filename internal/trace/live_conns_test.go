package trace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/render"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/topology"
)

const tcpFIN = 0x01

// externalCluster is the demo cluster with a host outside it (NodePort
// client, egress server), an echo server on that host too.
func externalCluster(t *testing.T) *topology.Cluster {
	t.Helper()
	c := cluster(t, topology.Options{External: true})
	srv, err := topology.StartEchoServer(context.Background(), c.External, topology.ServerPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return c
}

// renderText is p as the text output shows it.
func renderText(t *testing.T, p *stitch.Path) string {
	t.Helper()
	var b bytes.Buffer
	r := render.NewText(&b, render.TextOptions{})
	if err := r.Render(p); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// renderJSON is p as the JSON output shows it.
func renderJSON(t *testing.T, p *stitch.Path) string {
	t.Helper()
	var b bytes.Buffer
	r := render.NewJSON(&b)
	if err := r.Render(p); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// natHop returns the first NAT hop of p of type typ, or fails.
func natHop(t *testing.T, p *stitch.Path, typ hop.NATType) *stitch.NAT {
	t.Helper()
	for i := range p.Hops {
		if h := &p.Hops[i]; h.Kind == hop.NAT && h.NAT != nil && h.NAT.Type == typ {
			return h.NAT
		}
	}
	t.Fatalf("path #%d has no %s hop\n%s", p.ID, typ, dump(p))
	return nil
}

// requireFromStart checks that p was followed from its first hop: not first
// seen after NAT, and device hops before any netfilter hook of node.
func requireFromStart(t *testing.T, p *stitch.Path, rxDev, node string) {
	t.Helper()
	if p.FirstSeen != "" {
		t.Errorf("path #%d first seen %s\n%s", p.ID, p.FirstSeen, dump(p))
	}
	for _, h := range p.Hops {
		if h.Kind == hop.Rx && h.Dev == rxDev && h.Netns == node {
			return
		}
		if h.Kind == hop.Netfilter || h.Kind == hop.NAT {
			break
		}
	}
	t.Errorf("path #%d does not start with its arrival (rx %s in %s) before the netfilter hooks\n%s", p.ID, rxDev, node, dump(p))
}

// waitTeardown waits until every TCP connection of pod that the ss filter
// selects is closed or in TIME-WAIT: its teardown's last packet arrived.
func waitTeardown(t *testing.T, pod *topology.Pod, filter ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := pod.Run(context.Background(), "ss", append([]string{"-Htan", "state", "connected"}, filter...)...)
		if err != nil {
			t.Fatal(err)
		}
		open := false
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if line != "" && !strings.HasPrefix(line, "TIME-WAIT") {
				open = true
			}
		}
		if !open {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("TCP connections of %s still closing after 10s:\n%s", pod.Name, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLiveNodePortByBackend traces a NodePort connection from a host
// outside the cluster by the backend pod's address: the SYN matches only
// after PREROUTING's DNAT and starts there (first seen after NAT, not
// partial); every later packet of the connection is followed whole, the
// requests from their arrival on node1's NIC through the DNAT and the
// masquerade, the replies with their reverse translations.
func TestLiveNodePortByBackend(t *testing.T) {
	c := externalCluster(t)
	n1 := c.Node(topology.Node1).NetnsName
	stop := tracing(t, c, topology.ServerIP)
	exchange(t, c.External, topology.NodePortAddr)
	// The exchange returns before the teardown ends (slowly, on an
	// emulated kernel): wait for its last packet before stopping.
	waitTeardown(t, c.External, "dst", topology.NodePortAddr.String())
	waitTeardown(t, c.Pod(topology.PodServer), "sport", "=", fmt.Sprintf(":%d", topology.ServerPort))
	paths, sum := stop()
	if sum.Lost != 0 {
		t.Errorf("%d events lost", sum.Lost)
	}

	syn := findPath(t, paths, topology.ExternalIP, topology.ServerIP, tcpSYN)
	if syn.FirstSeen != stitch.FirstSeenAfterNAT {
		t.Errorf("SYN first seen %q, want %q\n%s", syn.FirstSeen, stitch.FirstSeenAfterNAT, dump(syn))
	}
	if first := syn.Hops[0]; first.Kind != hop.Netfilter || first.Hook != hop.Prerouting || first.Netns != n1 || first.Partial {
		t.Errorf("SYN's first hop %s %s in %s partial=%v, want node1's PREROUTING, not partial\n%s", first.Kind, first.Hook, first.Netns, first.Partial, dump(syn))
	}
	client := syn.Src
	masq := natHop(t, syn, hop.SNAT)
	if masq.From != client || masq.Reverse {
		t.Fatalf("SYN's masquerade %+v, want from %s", *masq, client)
	}
	text := renderText(t, syn)
	if !strings.Contains(text, "first seen after NAT") || strings.Contains(text, "[partial]") {
		t.Errorf("SYN's text:\n%s", text)
	}
	if js := renderJSON(t, syn); !strings.Contains(js, `"first_seen":"after_nat"`) {
		t.Errorf("SYN's JSON: %s", js)
	}

	var requests, replies []*stitch.Path
	var reqFlags, repFlags uint8
	for _, p := range paths {
		switch {
		case p.Src == client && p.Dst == topology.NodePortAddr:
			requests, reqFlags = append(requests, p), reqFlags|p.TCPFlags
		case p.Src == topology.ServerAddr && p.Dst == masq.To:
			replies, repFlags = append(replies, p), repFlags|p.TCPFlags
		}
	}
	if len(requests) < 3 || reqFlags&tcpFIN == 0 || len(replies) < 2 || repFlags&tcpFIN == 0 {
		var b strings.Builder
		for _, p := range paths {
			b.WriteString(dump(p))
		}
		t.Fatalf("%d requests (flags %#x) and %d replies (flags %#x) of the connection after the SYN, want the whole exchange through the FINs:\n%s",
			len(requests), reqFlags, len(replies), repFlags, b.String())
	}
	for _, p := range requests {
		requireFromStart(t, p, topology.UnderlayDev, n1)
		requireHops(t, p, []hopMatch{
			{kind: hop.Rx, dev: topology.UnderlayDev, netns: n1, description: "rx on node1's eth0"},
			{kind: hop.NAT, hook: hop.Prerouting, netns: n1,
				nat:         &stitch.NAT{Type: hop.DNAT, From: topology.NodePortAddr, To: topology.ServerAddr},
				description: "DNAT 192.168.50.11:30080 → 10.244.2.7:8080 in PREROUTING"},
			{kind: hop.NAT, hook: hop.Postrouting, netns: n1,
				nat:         &stitch.NAT{Type: hop.SNAT, From: client, To: masq.To},
				description: "the masquerade in POSTROUTING"},
			{kind: hop.Rx, dev: "eth0", netns: c.Pod(topology.PodServer).NetnsName, description: "rx on the server pod's eth0"},
		})
	}
	for _, p := range replies {
		requireHops(t, p, []hopMatch{
			{kind: hop.NAT, hook: hop.Prerouting, netns: n1,
				nat:         &stitch.NAT{Type: hop.DNAT, From: masq.To, To: client, Reverse: true},
				description: "un-SNAT to the external client in PREROUTING"},
			{kind: hop.NAT, hook: hop.Postrouting, netns: n1,
				nat:         &stitch.NAT{Type: hop.SNAT, From: topology.ServerAddr, To: topology.NodePortAddr, Reverse: true},
				description: "un-DNAT 10.244.2.7:8080 → 192.168.50.11:30080 in POSTROUTING"},
			{kind: hop.Tx, dev: topology.UnderlayDev, netns: n1, description: "tx on node1's eth0"},
		})
	}
	text = renderText(t, replies[0])
	for _, want := range []string{"un-DNAT 10.244.2.7:8080 → 192.168.50.11:30080", "un-SNAT " + masq.To.String() + " → " + client.String()} {
		if !strings.Contains(text, want) {
			t.Errorf("reply's text lacks %q:\n%s", want, text)
		}
	}
	if js := renderJSON(t, replies[0]); !strings.Contains(js, `"reverse":true`) {
		t.Errorf("reply's JSON: %s", js)
	}
	// One connection: the exchange's, translated twice. The VXLAN flows
	// between the nodes that carry it are conntrack entries too, one a
	// direction, and are not the traced pod's connections.
	if sum.Conns == nil || sum.Conns.Followed != 1 || sum.Conns.Evicted != 0 {
		t.Errorf("connections %+v, want the exchange's one followed, none evicted", sum.Conns)
	}
	if s := sum.String(); !strings.Contains(s, " 1 connections (0 evicted)") {
		t.Errorf("summary %q", s)
	}
}

// TestLiveEgressMasquerade traces a connection from a pod to a host outside
// the cluster by the pod's address: the reply, addressed to node1 after
// flanneld's masquerade, is followed from its arrival on node1's NIC, with
// the un-SNAT that restores the pod as its destination.
func TestLiveEgressMasquerade(t *testing.T) {
	c := externalCluster(t)
	client := c.Pod(topology.PodClient)
	n1 := c.Node(topology.Node1).NetnsName
	stop := tracing(t, c, topology.ClientIP)
	exchange(t, client, netip.AddrPortFrom(topology.ExternalIP, topology.ServerPort))
	paths, _ := stop()

	syn := findPath(t, paths, topology.ClientIP, topology.ExternalIP, tcpSYN)
	masq := natHop(t, syn, hop.SNAT)
	if masq.From != syn.Src || masq.To.Addr() != topology.Node1UnderlayIP || masq.Reverse {
		t.Errorf("SYN's masquerade %+v, want %s → node1's %s", *masq, syn.Src, topology.Node1UnderlayIP)
	}
	reply := findPath(t, paths, topology.ExternalIP, topology.Node1UnderlayIP, tcpSYN|tcpACK)
	requireFromStart(t, reply, topology.UnderlayDev, n1)
	requireHops(t, reply, []hopMatch{
		{kind: hop.Rx, dev: topology.UnderlayDev, netns: n1, description: "rx on node1's eth0"},
		{kind: hop.NAT, hook: hop.Prerouting, netns: n1,
			nat:         &stitch.NAT{Type: hop.DNAT, From: masq.To, To: syn.Src, Reverse: true},
			description: "un-SNAT to the client pod in PREROUTING"},
		{kind: hop.Rx, dev: "eth0", netns: client.NetnsName, description: "rx on the client pod's eth0"},
	})
	if text := renderText(t, reply); !strings.Contains(text, "un-SNAT "+masq.To.String()+" → "+syn.Src.String()) {
		t.Errorf("reply's text:\n%s", text)
	}
}

// TestLiveICMPEchoID pings a host outside the cluster: request and reply
// show the echo id, never the ICMP type as a port, the masquerade and the
// reply's un-SNAT included.
func TestLiveICMPEchoID(t *testing.T) {
	const id = 1234
	c := externalCluster(t)
	n1 := c.Node(topology.Node1).NetnsName
	stop := tracing(t, c, topology.ClientIP)
	if err := topology.Ping(context.Background(), c.Pod(topology.PodClient), topology.ExternalIP, id, 1); err != nil {
		t.Fatal(err)
	}
	paths, _ := stop()
	find := func(src netip.Addr) *stitch.Path {
		for _, p := range paths {
			if p.Proto == decode.ProtoICMP && p.Src.Addr() == src {
				return p
			}
		}
		var b strings.Builder
		for _, p := range paths {
			b.WriteString(dump(p))
		}
		t.Fatalf("no ICMP path from %s among:\n%s", src, b.String())
		return nil
	}
	req, reply := find(topology.ClientIP), find(topology.ExternalIP)
	for _, p := range []*stitch.Path{req, reply} {
		if !p.HasICMPID || p.ICMPID != id {
			t.Errorf("path #%d: echo id %v %d, want %d", p.ID, p.HasICMPID, p.ICMPID, id)
		}
		if js := renderJSON(t, p); !strings.Contains(js, fmt.Sprintf(`"icmp_id":%d`, id)) {
			t.Errorf("JSON without the echo id: %s", js)
		}
	}
	echo := func(a netip.Addr) netip.AddrPort { return netip.AddrPortFrom(a, id) }
	requireHops(t, req, []hopMatch{{kind: hop.NAT, hook: hop.Postrouting, netns: n1,
		nat:         &stitch.NAT{Type: hop.SNAT, From: echo(topology.ClientIP), To: echo(topology.Node1UnderlayIP)},
		description: "the masquerade, echo id kept"}})
	requireFromStart(t, reply, topology.UnderlayDev, n1)
	requireHops(t, reply, []hopMatch{{kind: hop.NAT, hook: hop.Prerouting, netns: n1,
		nat:         &stitch.NAT{Type: hop.DNAT, From: echo(topology.Node1UnderlayIP), To: echo(topology.ClientIP), Reverse: true},
		description: "the un-SNAT, echo id kept"}})
	for p, want := range map[*stitch.Path][]string{
		req:   {"ICMP 10.244.1.5 → 192.168.50.100 id=1234", "SNAT 10.244.1.5 → 192.168.50.11 id=1234"},
		reply: {"ICMP 192.168.50.100 → 192.168.50.11 id=1234", "un-SNAT 192.168.50.11 → 10.244.1.5 id=1234"},
	} {
		text := renderText(t, p)
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("text lacks %q:\n%s", w, text)
			}
		}
		if strings.Contains(text, ":8 ") || strings.Contains(text, ":0 ") {
			t.Errorf("ICMP type or code shown as a port:\n%s", text)
		}
	}
}

// TestLiveIdentity traces IPv4 TCP of the client while IPv6 pings between
// the client and its peer and ARP churn (neighbour tables flushed) reuse
// the same skbs: every hop of every IPv4 path continues its packet (the
// path's tuple, or its NAT form), none is another packet's.
func TestLiveIdentity(t *testing.T) {
	c := cluster(t, topology.Options{})
	client, peer := c.Pod(topology.PodClient), c.Pod(topology.PodPeer)
	n1 := c.Node(topology.Node1)
	v6 := map[*topology.Pod]netip.Addr{client: netip.MustParseAddr("fd00:10:244:1::5"), peer: netip.MustParseAddr("fd00:10:244:1::6")}
	for p, a := range v6 {
		if _, err := p.Run(context.Background(), "ip", "-6", "addr", "add", a.String()+"/64", "dev", "eth0", "nodad"); err != nil {
			t.Fatal(err)
		}
	}
	stop := tracing(t, c, topology.ClientIP)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var pings, pingErrs int
	var mu sync.Mutex
	wg.Add(2)
	go func() { // IPv6 pings both ways
		defer wg.Done()
		for seq := uint16(1); ctx.Err() == nil; seq++ {
			from, to := client, v6[peer]
			if seq%2 == 0 {
				from, to = peer, v6[client]
			}
			err := topology.Ping(ctx, from, to, 0x600, seq)
			mu.Lock()
			if err == nil {
				pings++
			} else if ctx.Err() == nil {
				pingErrs++
			}
			mu.Unlock()
		}
	}()
	go func() { // ARP churn
		defer wg.Done()
		for ctx.Err() == nil {
			for _, ns := range []string{client.NetnsName, peer.NetnsName, n1.NetnsName} {
				runCtx, done := context.WithTimeout(context.Background(), 2*time.Second)
				_ = exec.CommandContext(runCtx, "ip", "-n", ns, "neigh", "flush", "all").Run()
				done()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	// A flush can fail a connection whose first packet waits for its
	// neighbour (EHOSTUNREACH): count those, they are traced all the same.
	var exchanged, failed int
	for range 10 {
		for _, to := range []netip.AddrPort{topology.ClusterIP, topology.PeerAddr} {
			xctx, done := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := topology.TCPExchange(xctx, client, to, "ping"); err != nil {
				failed++
			} else {
				exchanged++
			}
			done()
		}
	}
	cancel()
	wg.Wait()
	paths, _ := stop()
	if pings == 0 || exchanged == 0 {
		t.Fatalf("%d IPv6 pings went through (%d failed), %d TCP exchanges (%d failed)", pings, pingErrs, exchanged, failed)
	}
	t.Logf("%d IPv6 pings, %d TCP exchanges (%d failed), %d IPv4 paths", pings, exchanged, failed, len(paths))

	for _, p := range paths {
		// A connection that failed for want of a neighbour was told
		// so by the client's own stack: an ICMP host unreachable it
		// sends itself on lo (ipv4_link_failure), a packet of the
		// client's like any other.
		hostUnreachable := p.Proto == decode.ProtoICMP && p.Src.Port() == 3 && p.Dst.Port() == 1 &&
			p.Dst.Addr() == topology.ClientIP
		if (p.Proto != decode.ProtoTCP || !p.Src.Addr().Is4()) && !(hostUnreachable && failed > 0) {
			t.Errorf("path #%d is not IPv4 TCP of the traced exchanges, nor the host unreachable of one that failed (%d failed)\n%s", p.ID, failed, dump(p))
			continue
		}
		allowed := map[netip.AddrPort]bool{p.Src: true, p.Dst: true}
		for _, h := range p.Hops {
			if h.NAT != nil {
				allowed[h.NAT.From], allowed[h.NAT.To] = true, true
			}
		}
		for i, h := range p.Hops {
			if h.Proto != p.Proto || !allowed[h.Src] || !allowed[h.Dst] {
				t.Errorf("path #%d hop %d (%s on %s in %s) carries %d %s → %s, not the path's packet\n%s",
					p.ID, i, h.Kind, h.Dev, h.Netns, h.Proto, h.Src, h.Dst, dump(p))
				break
			}
		}
	}
}

// TestLiveHairpin: the server pod connects to its own Service, whose only
// endpoint it is. Without hairpin mode on its bridge port the node drops
// the SYN where it came in, after the DNAT, and the advice says hairpin;
// with it, the connection opens, DNAT and kube-proxy's masquerade shown on
// the request, both undone on the reply.
func TestLiveHairpin(t *testing.T) {
	c := cluster(t, topology.Options{})
	server, n2 := c.Pod(topology.PodServer), c.Node(topology.Node2)
	svcSYN := func(paths []*stitch.Path) *stitch.Path {
		return findPath(t, paths, topology.ServerIP, topology.ClusterIP.Addr(), tcpSYN)
	}
	dnat := &stitch.NAT{Type: hop.DNAT, From: topology.ClusterIP, To: topology.ServerAddr}
	// node2 talks to the server first: its neighbour entry on cni0 is
	// then resolved, and the DNATed SYN goes from PREROUTING straight
	// back to the bridge (br_netfilter's direct form), no transmit on
	// cni0 between the hook and the drop.
	if err := n2.Do(func() error {
		conn, err := net.DialTimeout("tcp", topology.ServerAddr.String(), 2*time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	}); err != nil {
		t.Fatalf("node2 to the server: %v", err)
	}

	stop := tracing(t, c, topology.ServerIP)
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	_, err := topology.TCPExchange(ctx, server, topology.ClusterIP, "hairpin")
	cancel()
	if err == nil {
		t.Fatal("the exchange went through a bridge port without hairpin mode")
	}
	paths, _ := stop()
	req := svcSYN(paths)
	requireHops(t, req, []hopMatch{
		{kind: hop.Rx, dev: server.HostVeth, netns: n2.NetnsName, description: "rx on the server's host veth"},
		{kind: hop.NAT, netns: n2.NetnsName, nat: dnat, description: "DNAT to the server itself"},
		{kind: hop.Drop, dev: server.HostVeth, netns: n2.NetnsName, description: "a drop on the port it came in on"},
	})
	if last := req.Hops[len(req.Hops)-1]; req.Verdict != stitch.VerdictDropped || !strings.Contains(last.Advice, "hairpin mode") ||
		!strings.Contains(last.Advice, "bridge -d link show dev "+server.HostVeth) {
		t.Errorf("verdict %s, drop advice does not say hairpin:\n%s\n%s", req.Verdict, last.Advice, dump(req))
	}
	// PREROUTING accepted the SYN (its last view shows the DNAT): the
	// bridge dropped it after, not the hook.
	var text bytes.Buffer
	r := render.NewText(&text, render.TextOptions{})
	if err := errors.Join(r.Render(req), r.Close()); err != nil {
		t.Fatal(err)
	}
	dropLine := ""
	for _, l := range strings.Split(text.String(), "\n") {
		if strings.Contains(l, "DROPPED") {
			dropLine = l
		}
	}
	if h := req.DropHook(len(req.Hops) - 1); h != hop.NoHook || dropLine == "" || strings.Contains(dropLine, " in ") {
		t.Errorf("the drop is said to be in a hook (DropHook %q), after the hook accepted the packet:\n%s", h, text.String())
	}

	if _, err := n2.Run(context.Background(), "bridge", "link", "set", "dev", server.HostVeth, "hairpin", "on"); err != nil {
		t.Fatal(err)
	}
	stop = tracing(t, c, topology.ServerIP)
	exchange(t, server, topology.ClusterIP)
	paths, _ = stop()
	req = svcSYN(paths)
	masq := netip.AddrPortFrom(n2.BridgeIP, req.Src.Port())
	requireHops(t, req, []hopMatch{
		{kind: hop.NAT, hook: hop.Prerouting, netns: n2.NetnsName, nat: dnat, description: "DNAT to the server itself"},
		{kind: hop.NAT, hook: hop.Postrouting, netns: n2.NetnsName,
			nat: &stitch.NAT{Type: hop.SNAT, From: req.Src, To: masq}, description: "masquerade to node2's bridge address"},
		{kind: hop.Tx, dev: server.HostVeth, netns: n2.NetnsName, description: "tx back out the server's host veth"},
		{kind: hop.Rx, dev: "eth0", netns: server.NetnsName, description: "rx on the server's eth0"},
	})
	if req.Verdict != stitch.VerdictDelivered {
		t.Errorf("request verdict %s, want delivered\n%s", req.Verdict, dump(req))
	}
	reply := findPath(t, paths, topology.ServerIP, n2.BridgeIP, tcpSYN|tcpACK)
	requireHops(t, reply, []hopMatch{
		{kind: hop.NAT, netns: n2.NetnsName, nat: &stitch.NAT{Type: hop.DNAT, From: masq, To: req.Src, Reverse: true}, description: "un-masquerade"},
		{kind: hop.NAT, netns: n2.NetnsName, nat: &stitch.NAT{Type: hop.SNAT, From: topology.ServerAddr, To: topology.ClusterIP, Reverse: true}, description: "un-DNAT"},
		{kind: hop.Rx, dev: "eth0", netns: server.NetnsName, description: "rx on the server's eth0"},
	})
	if reply.Verdict != stitch.VerdictDelivered {
		t.Errorf("reply verdict %s, want delivered\n%s", reply.Verdict, dump(reply))
	}
}
