package trace

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/filter"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/internal/topology"
)

// compiled is expr's translation, or fails.
func compiled(t *testing.T, expr string) loader.Options {
	t.Helper()
	testutil.Require(t, testutil.Tool("tcpdump"))
	p, err := filter.Compile(context.Background(), expr)
	if err != nil {
		t.Fatal(err)
	}
	fn, err := filter.Translate(p.Insns)
	if err != nil {
		t.Fatal(err)
	}
	return loader.Options{Filter: fn}
}

func pathList(paths []*stitch.Path) string {
	var b strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&b, "#%d %d %s → %s %#x %s\n", p.ID, p.Proto, p.Src, p.Dst, p.TCPFlags, p.Verdict)
	}
	return b.String()
}

// TestLiveFilter: 'tcp port 80' with the client's pod IP selects the
// client's connection to the ClusterIP among TCP to the peer's port 8080,
// UDP and ICMP: its request followed past DNAT (to port 8080) and VXLAN
// encapsulation, its reply (from port 8080) through conns.
func TestLiveFilter(t *testing.T) {
	c := cluster(t, topology.Options{})
	client := c.Pod(topology.PodClient)
	srv, err := topology.StartUDPEchoServer(c.Pod(topology.PodServer), udpPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	lopts := compiled(t, "tcp port 80")
	lopts.PodIPs = []netip.Addr{topology.ClientIP}
	stop := tracingWith(t, c, lopts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	exchange(t, client, netip.AddrPortFrom(topology.PeerIP, topology.ServerPort))
	exchange(t, client, topology.ClusterIP)
	if err := topology.Ping(ctx, client, topology.ServerIP, 0x7075, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := topology.UDPExchange(ctx, client, netip.AddrPortFrom(topology.ServerIP, udpPort), "hello"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	paths, _ := stop()

	for _, p := range paths {
		if p.Proto != decode.ProtoTCP || p.Src.Addr() == topology.PeerIP || p.Dst.Addr() == topology.PeerIP {
			t.Errorf("path #%d %d %s → %s traced; the filter excludes it\n%s", p.ID, p.Proto, p.Src, p.Dst, pathList(paths))
		}
	}
	n1, n2 := c.Node(topology.Node1).NetnsName, c.Node(topology.Node2).NetnsName
	req := findPath(t, paths, topology.ClientIP, topology.ClusterIP.Addr(), tcpSYN)
	requireHops(t, req, []hopMatch{
		{kind: hop.Tx, dev: "eth0", netns: client.NetnsName, description: "tx on the client pod's eth0"},
		{kind: hop.NAT, hook: hop.Prerouting, netns: n1,
			nat:         &stitch.NAT{Type: hop.DNAT, From: topology.ClusterIP, To: topology.ServerAddr},
			description: "DNAT to port 8080 at PREROUTING"},
		{kind: hop.Encap, dev: "flannel.1", netns: n1, description: "VXLAN encap on flannel.1"},
		{kind: hop.Decap, dev: "flannel.1", netns: n2, description: "VXLAN decap on node2"},
		{kind: hop.Rx, dev: "eth0", netns: c.Pod(topology.PodServer).NetnsName, description: "rx on the server pod's eth0"},
	})
	reply := findPath(t, paths, topology.ServerIP, topology.ClientIP, tcpSYN|tcpACK)
	requireHops(t, reply, []hopMatch{
		{kind: hop.Tx, dev: "eth0", netns: c.Pod(topology.PodServer).NetnsName, description: "tx from port 8080 on the server pod's eth0"},
		{kind: hop.Rx, dev: "eth0", netns: client.NetnsName, description: "rx on the client pod's eth0"},
	})
}

// TestLiveFilterPerHeader: an encapsulated packet matches when one of its
// headers matches both the pod IP and the expression. The server's
// packets cross the underlay in VXLAN (UDP 8472 between the nodes):
// 'udp port 8472' matches their outer header, the server's address only
// their inner one, so nothing is traced; 'tcp' matches the inner one.
func TestLiveFilterPerHeader(t *testing.T) {
	c := cluster(t, topology.Options{})
	client := c.Pod(topology.PodClient)
	for _, c2 := range []struct {
		expr string
		want bool
	}{{"udp port 8472", false}, {"tcp", true}} {
		lopts := compiled(t, c2.expr)
		lopts.PodIPs = []netip.Addr{topology.ServerIP}
		stop := tracingWith(t, c, lopts)
		exchange(t, client, netip.AddrPortFrom(topology.ServerIP, topology.ServerPort))
		time.Sleep(200 * time.Millisecond)
		paths, _ := stop()
		if !c2.want {
			if len(paths) != 0 {
				t.Errorf("%q: %d paths, want none:\n%s", c2.expr, len(paths), pathList(paths))
			}
			continue
		}
		req := findPath(t, paths, topology.ClientIP, topology.ServerIP, tcpSYN)
		requireHops(t, req, []hopMatch{
			{kind: hop.Encap, dev: "flannel.1", description: "VXLAN encap on flannel.1"},
			{kind: hop.Tx, dev: "eth0", netns: c.Node(topology.Node1).NetnsName, description: "tx on node1 eth0"},
		})
	}
}
