package topology

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/testutil"
)

// The dual-stack cluster: IPv6 addresses next to the IPv4 ones, IPv6
// across nodes inside the IPv4 VXLAN, and the ip6tables ClusterIP DNAT.
func TestDualStack(t *testing.T) {
	testutil.RequireRoot(t)
	c := newCluster(t, Options{DualStack: true})
	client, peer, server := c.Pod(PodClient), c.Pod(PodPeer), c.Pod(PodServer)
	if client.IP6 != ClientIP6 || peer.IP6 != PeerIP6 || server.IP6 != ServerIP6 {
		t.Fatalf("pod IPv6 addresses %s %s %s, want %s %s %s", client.IP6, peer.IP6, server.IP6, ClientIP6, PeerIP6, ServerIP6)
	}
	for _, n := range c.Nodes {
		if v, err := n.Sysctl("net.ipv6.conf.all.forwarding"); err != nil || v != "1" {
			t.Errorf("node %s: IPv6 forwarding %q, %v", n.Name, v, err)
		}
		out, err := n.Run(context.Background(), "ip6tables-save", "-t", "nat")
		if err != nil || !strings.Contains(string(out), "--to-destination "+ServerAddr6.String()) {
			t.Errorf("node %s: no DNAT to %s in ip6tables (%v):\n%s", n.Name, ServerAddr6, err, out)
		}
	}
	for _, name := range []string{PodServer, PodPeer} {
		p := c.Pod(name)
		srv, err := StartEchoServerOn(context.Background(), p, netip.AddrPortFrom(p.IP6, ServerPort))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, to := range []netip.AddrPort{PeerAddr6, ServerAddr6, ClusterIP6} {
		if _, err := TCPExchange(ctx, client, to, "hello"); err != nil {
			t.Errorf("TCP to %s: %v", to, err)
		}
	}
	if err := Ping(ctx, client, ServerIP6, 7, 1); err != nil {
		t.Errorf("ping %s: %v", ServerIP6, err)
	}
	srv4, err := StartEchoServer(context.Background(), server, ServerPort)
	if err != nil {
		t.Fatal(err)
	}
	defer srv4.Close()
	if _, err := TCPExchange(ctx, client, ClusterIP, "hello"); err != nil {
		t.Errorf("IPv4 beside IPv6: TCP to %s: %v", ClusterIP, err)
	}
}
