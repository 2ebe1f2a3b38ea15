package trace

import (
	"bytes"
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/record"
	"github.com/pathtrace/pathtrace/internal/scope"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/topology"
)

// TestLiveFragmentedDatagram sends one 4000-byte UDP datagram from the
// client pod to the server pod on the other node, which echoes it back,
// over IPv4 and IPv6. Pods and flannel.1 have an MTU of 1450: each way the
// sending pod fragments the datagram, and each node's conntrack
// reassembles it at PREROUTING and IP output fragments it again on the
// way out (to flannel.1, to cni0). Every skb's packet has its path, and
// none of them may say what did not happen:
//   - no fragment is delivered but where it reached the pod it was sent
//     to (which reassembles it unseen), none is dropped, none unknown;
//   - on each node, a path starts with the datagram reassembled from its
//     fragments, and ends fragmented: no whole datagram is delivered at a
//     node, nor lost there;
//   - the paths tie together by the IP id (IPv4): every path of the
//     datagram has its id.
//
// Once more sent to a Service address that node1 DNATs to the server after
// reassembling the datagram (and un-DNATs the echo): NAT both ways.
//
// A replay of the recording says the same, and so does the merged replay
// of the two nodes' own traces (without the Service).
func TestLiveFragmentedDatagram(t *testing.T) {
	c := cluster(t, topology.Options{DualStack: true})
	for _, tc := range []struct {
		name                string
		client, server, vip netip.Addr
		noBytes             bool
	}{
		{"ipv4", topology.ClientIP, topology.ServerIP, netip.Addr{}, false},
		{"ipv6", topology.ClientIP6, topology.ServerIP6, netip.Addr{}, false},
		{"ipv4 dnat", topology.ClientIP, topology.ServerIP, netip.MustParseAddr("10.96.0.71"), false},
		// --snaplen 0: no packet bytes, but a fragment's headers.
		{"ipv4 snaplen 0", topology.ClientIP, topology.ServerIP, netip.Addr{}, true},
		{"ipv6 snaplen 0", topology.ClientIP6, topology.ServerIP6, netip.Addr{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fragmentedDatagram(t, c, tc.client, tc.server, tc.vip, tc.noBytes)
		})
	}
}

// fragmentedDatagram sends the datagram and checks its paths; noBytes
// traces with --snaplen 0 (and no node traces).
func fragmentedDatagram(t *testing.T, c *topology.Cluster, client, server, vip netip.Addr, noBytes bool) {
	network := "udp4"
	if server.Is6() {
		network = "udp6"
	}
	srvAddr := netip.AddrPortFrom(server, 7100)
	sendTo := srvAddr
	if vip.IsValid() {
		sendTo = netip.AddrPortFrom(vip, 7100)
		node1 := c.Node(topology.Node1)
		rule := []string{"PREROUTING", "-d", vip.String(), "-p", "udp", "--dport", "7100", "-j", "DNAT", "--to-destination", srvAddr.String()}
		if out, err := node1.Run(context.Background(), "iptables", append([]string{"-t", "nat", "-A"}, rule...)...); err != nil {
			t.Fatalf("iptables: %v: %s", err, out)
		}
		t.Cleanup(func() { node1.Run(context.Background(), "iptables", append([]string{"-t", "nat", "-D"}, rule...)...) })
	}
	srv, err := c.Pod(topology.PodServer).ListenPacket(network, srvAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	recording := filepath.Join(t.TempDir(), "trace.pcapng")
	// As the command traces live: the headers where they are new or
	// changed, which tell a fragment.
	lopts := loader.Options{PodIPs: []netip.Addr{client}, Snaplen: 128, SnapChanged: true}
	if noBytes {
		lopts.Snaplen, lopts.SnapChanged = 0, false
	}
	stop := tracingOpts(t, c, Options{Loader: lopts, Record: recording})
	var nodeFiles []string
	var nodeStops []func() ([]*stitch.Path, Summary)
	// The nodes' own traces, merged, once per family (each trace takes
	// seconds to start on a slow guest).
	names := []string{topology.Node1, topology.Node2}
	if vip.IsValid() || noBytes {
		names = nil
	}
	for _, name := range names {
		file := filepath.Join(filepath.Dir(recording), name+".pcapng")
		nodeFiles = append(nodeFiles, file)
		nodeStops = append(nodeStops, tracingOpts(t, c, Options{
			// As the command records (-w): the headers of every event.
			Loader: loader.Options{PodIPs: []netip.Addr{client}, Netns: []string{c.Node(name).NetnsPath}, Snaplen: loader.MaxSnaplen},
			Record: file, Scope: scope.Node, NodeName: name, HeadersOnly: true,
		}))
	}
	// Once every trace is ready (seconds on a slow guest).
	echoed := make(chan error, 1)
	go func() {
		buf := make([]byte, 65536)
		srv.SetDeadline(time.Now().Add(30 * time.Second))
		n, from, err := srv.ReadFrom(buf)
		if err == nil {
			_, err = srv.WriteTo(buf[:n], from)
		}
		echoed <- err
	}()
	conn, err := c.Pod(topology.PodClient).Dial(context.Background(), network, sendTo.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	payload := bytes.Repeat([]byte("fragment"), 500)
	if _, err := conn.Write(payload); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	got := make([]byte, 65536)
	n, err := conn.Read(got)
	if err != nil || n != len(payload) {
		t.Fatalf("echo: %d bytes, %v; want %d", n, err, len(payload))
	}
	if err := <-echoed; err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	paths, _ := stop()
	for _, stop := range nodeStops {
		stop()
	}
	checkFragmentPaths(t, c, client, server, vip, paths)

	again := &collector{}
	if _, err := Replay(context.Background(), recording, ReplayOptions{}, again); err != nil {
		t.Fatal(err)
	}
	if len(again.paths) != len(paths) {
		t.Fatalf("replay: %d paths, live %d", len(again.paths), len(paths))
	}
	for i, p := range again.paths {
		if l := paths[i]; p.Verdict != l.Verdict || p.Fragment != l.Fragment || p.FirstSeen != l.FirstSeen {
			t.Errorf("replayed path differs from live:\n%s\nlive:\n%s", dump(p), dump(l))
		}
	}

	checkMaxPerConnDatagrams(t, recording, client, server, vip, again.paths)

	if t.Failed() {
		logUDPEvents(t, recording)
	}
	if len(nodeFiles) > 0 {
		merged, _ := replayed(t, nodeFiles...)
		t.Run("merged", func(t *testing.T) { checkFragmentPaths(t, c, client, server, vip, merged) })
	}
}

// checkFragmentPaths checks the paths of the datagram between client and
// server, and of its echo (TestLiveFragmentedDatagram).
func checkFragmentPaths(t *testing.T, c *topology.Cluster, client, server, vip netip.Addr, paths []*stitch.Path) {
	t.Helper()
	node := map[string]bool{c.Node(topology.Node1).NetnsName: true, c.Node(topology.Node2).NetnsName: true}
	clientNS, serverNS := c.Pod(topology.PodClient).NetnsName, c.Pod(topology.PodServer).NetnsName
	var ours []*stitch.Path
	reassembled, fragmented := map[string]int{}, map[string]int{}
	// Whether a first fragment (the one with the transport header) was
	// seen with its ports, by direction (true: the request).
	firstFragment := map[bool]bool{}
	for _, p := range paths {
		far := func(a netip.Addr) bool { return a == server || vip.IsValid() && a == vip }
		if p.Proto != decode.ProtoUDP || !(p.Src.Addr() == client && far(p.Dst.Addr()) || far(p.Src.Addr()) && p.Dst.Addr() == client) {
			continue
		}
		ours = append(ours, p)
		if len(p.Hops) == 0 {
			t.Errorf("path #%d has no hops", p.ID)
			continue
		}
		to := serverNS
		if p.Dst.Addr() == client {
			to = clientNS
		}
		last := &p.Hops[len(p.Hops)-1]
		first := &p.Hops[0]
		switch {
		case p.Fragment:
			if p.Verdict != stitch.VerdictReassembled && (p.Verdict != stitch.VerdictDelivered || last.Netns != to) {
				t.Errorf("fragment #%d: %s in %s, want reassembled, or delivered in %s\n%s", p.ID, p.Verdict, last.Netns, to, dump(p))
			}
			if p.Src.Port() != 0 && p.Dst.Port() != 0 {
				firstFragment[p.Src.Addr() == client] = true
			}
		case p.FirstSeen == stitch.FirstSeenReassembled:
			if vip.IsValid() && first.Netns == c.Node(topology.Node1).NetnsName && p.Src.Addr() == client {
				// Translated by node1 right after it reassembled it.
				var nat *stitch.NAT
				for _, h := range p.Hops {
					if h.NAT != nil && nat == nil {
						nat = h.NAT
					}
				}
				if nat == nil || nat.Type != hop.DNAT || nat.From != netip.AddrPortFrom(vip, 7100) || nat.To != netip.AddrPortFrom(server, 7100) || p.Dst.Addr() != vip {
					t.Errorf("datagram #%d reassembled in %s: NAT %+v, want the DNAT from %s\n%s", p.ID, first.Netns, nat, vip, dump(p))
				}
			}
			for _, w := range p.Warnings {
				// Its fragments fit; the node fragments it again.
				if strings.Contains(w, "Pods should use an MTU") {
					t.Errorf("datagram #%d reassembled in %s warns about the pods' MTU: %s", p.ID, first.Netns, w)
				}
			}
			if node[first.Netns] {
				reassembled[first.Netns]++
				if p.Verdict != stitch.VerdictFragmented {
					t.Errorf("datagram #%d reassembled in %s: %s, want fragmented on its way out\n%s", p.ID, first.Netns, p.Verdict, dump(p))
				} else {
					fragmented[last.Netns]++
				}
			} else if first.Netns != to {
				t.Errorf("datagram #%d reassembled in %s, want a node or %s\n%s", p.ID, first.Netns, to, dump(p))
			}
		default:
			t.Errorf("path #%d is no fragment and no reassembled datagram (%s)\n%s", p.ID, p.Verdict, dump(p))
		}
		if client.Is4() && p.IPID == 0 {
			t.Errorf("path #%d has no IP id\n%s", p.ID, dump(p))
		}
		for _, h := range p.Hops {
			if h.Kind == hop.Drop {
				t.Errorf("path #%d has a drop\n%s", p.ID, dump(p))
			}
		}
	}
	for _, request := range []bool{true, false} {
		if !firstFragment[request] {
			t.Errorf("no fragment path with ports (request %v): the first fragment's transport header was not read", request)
		}
	}
	for name := range node {
		// Once each way.
		if reassembled[name] != 2 || fragmented[name] != 2 {
			t.Errorf("%s: %d datagrams reassembled, %d fragmented; want 2 and 2 (one each way)", name, reassembled[name], fragmented[name])
		}
	}
	if t.Failed() || testing.Verbose() {
		for _, p := range ours {
			t.Logf("%s fragment=%v first_seen=%s ip_id=%d\n%s", p.Verdict, p.Fragment, p.FirstSeen, p.IPID, dump(p))
		}
	}
}

// checkMaxPerConnDatagrams replays recording with --max-per-conn 1 and
// checks that each datagram between client and server (all is the whole
// replay) is shown with all of its paths or none, the request shown; and,
// where it was sent to the server itself (no vip: one connection both
// ways), the echo not.
func checkMaxPerConnDatagrams(t *testing.T, recording string, client, server, vip netip.Addr, all []*stitch.Path) {
	t.Helper()
	limited := &collector{}
	if _, err := Replay(context.Background(), recording, ReplayOptions{MaxPerConn: 1}, limited); err != nil {
		t.Fatal(err)
	}
	shown := map[uint64]bool{}
	for _, p := range limited.paths {
		shown[p.ID] = true
	}
	type datagram struct {
		request bool
		id      uint16 // IPv4; IPv6 fragments keep none
	}
	parts := map[datagram][]*stitch.Path{}
	for _, p := range all {
		far := func(a netip.Addr) bool { return a == server || vip.IsValid() && a == vip }
		if p.Proto != decode.ProtoUDP {
			continue
		}
		id := p.IPID
		if client.Is6() {
			id = 0
		}
		switch {
		case p.Src.Addr() == client && far(p.Dst.Addr()):
			parts[datagram{true, id}] = append(parts[datagram{true, id}], p)
		case far(p.Src.Addr()) && p.Dst.Addr() == client:
			parts[datagram{false, id}] = append(parts[datagram{false, id}], p)
		}
	}
	if len(parts) != 2 {
		t.Errorf("--max-per-conn 1: %d datagrams, want the request and its echo", len(parts))
	}
	for d, ps := range parts {
		n := 0
		for _, p := range ps {
			if shown[p.ID] {
				n++
			}
		}
		switch {
		case n != 0 && n != len(ps):
			t.Errorf("--max-per-conn 1: %d of the %d paths of datagram %+v shown", n, len(ps), d)
		case d.request && n == 0:
			t.Errorf("--max-per-conn 1: the request (%d paths) not shown", len(ps))
		case !d.request && !vip.IsValid() && n != 0:
			t.Errorf("--max-per-conn 1: the echo (%d paths) shown, the connection's second packet", len(ps))
		}
		if t.Failed() {
			for _, p := range ps {
				t.Logf("shown %v: %s fragment=%v first_seen=%s ip_id=%d datagram %s → %s\n%s", shown[p.ID], p.Verdict, p.Fragment, p.FirstSeen, p.IPID, p.DatagramSrc, p.DatagramDst, dump(p))
			}
		}
	}
}

// logUDPEvents logs the UDP events of a recording, for a failure: what
// the kernel showed of the fragments and datagrams, skb by skb.
func logUDPEvents(t *testing.T, file string) {
	r, err := record.OpenFile(file)
	if err != nil {
		t.Log(err)
		return
	}
	defer r.Close()
	var d decode.Decoder
	var ev decode.Event
	for {
		b, err := r.Next()
		if err != nil {
			return
		}
		if d.Decode(b, &ev) != nil {
			continue
		}
		tup := ev.Outer
		if ev.Encapsulated() {
			tup = ev.Inner
		}
		if tup.Proto != decode.ProtoUDP {
			continue
		}
		t.Logf("skb=%#x ts=%d %s hook=%s slot=%s netns=%d dev=%s flags=%#x len=%d data=%d frag=%v %s→%s id=%d", ev.SKB, ev.TS, ev.Kind, ev.Hook, ev.Slot, ev.Netns, ev.Dev,
			uint8(ev.Flags), ev.Len, len(ev.Data), ev.IsFragment(), tup.Src, tup.Dst, tup.IPID)
	}
}
