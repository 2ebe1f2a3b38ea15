package trace

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/topology"
)

// TestLiveICMPErrorBeforeUnNAT sends a datagram from the client to a closed
// port of node2's underlay address. node1 masquerades it (flannel's rule
// for traffic leaving the pod network), so node2's port unreachable is
// addressed to node1 and quotes node1's tuple: no address of it is the
// traced pod's until conntrack translates it back at node1's PREROUTING.
// Its path must start where node2 made it and show node1's translation,
// not begin at that translation.
func TestLiveICMPErrorBeforeUnNAT(t *testing.T) {
	c := cluster(t, topology.Options{})
	stop := tracing(t, c, topology.ClientIP)
	to := netip.AddrPortFrom(topology.Node2UnderlayIP, 7005)
	sendDatagram(t, c, to, "to a closed port of node2")
	time.Sleep(300 * time.Millisecond)
	paths, _ := stop()

	n1, n2 := c.Node(topology.Node1), c.Node(topology.Node2)
	sent := pathWhere(t, paths, "of the datagram", func(p *stitch.Path) bool {
		return p.Proto == decode.ProtoUDP && p.Dst == to
	})
	requireHops(t, sent, []hopMatch{{kind: hop.Rx, netns: n2.NetnsName, description: "its rx on node2"}})
	icmp := pathWhere(t, paths, "of node2's port unreachable", func(p *stitch.Path) bool {
		return p.Proto == decode.ProtoICMP && p.Src.Addr() == topology.Node2UnderlayIP && p.Src.Port() == 3 && p.Dst.Port() == 3
	})
	requireMadeBeforeUnNAT(t, icmp, n1, n2, n1.UnderlayIP, topology.ClientIP)
	t.Logf("datagram:\n%s\nport unreachable:\n%s", dump(sent), dump(icmp))
}

// TestLiveICMPv6ErrorBeforeUnNAT is TestLiveICMPErrorBeforeUnNAT in IPv6:
// the nodes' eth0 get IPv6 addresses outside the pod network, the client
// sends a datagram to a closed port of node2's, node1 masquerades it
// (flannel's rule for fd77::/16), and node2's port unreachable (ICMPv6
// type 1, code 4) is addressed to node1 and quotes node1's tuple until
// node1's PREROUTING translates it back. Its path must start where node2
// made it and show node1's translation.
func TestLiveICMPv6ErrorBeforeUnNAT(t *testing.T) {
	c := cluster(t, topology.Options{DualStack: true})
	n1, n2 := c.Node(topology.Node1), c.Node(topology.Node2)
	under := [2]netip.Addr{netip.MustParseAddr("fd50::11"), netip.MustParseAddr("fd50::12")}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, n := range []*topology.Node{n1, n2} {
		if out, err := n.Run(ctx, "ip", "-6", "addr", "add", under[i].String()+"/64", "dev", topology.UnderlayDev, "nodad"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	stop := tracing(t, c, topology.ClientIP6)
	to := netip.AddrPortFrom(under[1], 7005)
	sendDatagram(t, c, to, "to a closed port of node2")
	time.Sleep(300 * time.Millisecond)
	paths, _ := stop()

	sent := pathWhere(t, paths, "of the datagram", func(p *stitch.Path) bool {
		return p.Proto == decode.ProtoUDP && p.Dst == to
	})
	requireHops(t, sent, []hopMatch{
		{kind: hop.NAT, netns: n1.NetnsName, description: "node1's masquerade"},
		{kind: hop.Rx, netns: n2.NetnsName, description: "its rx on node2"},
	})
	icmp := pathWhere(t, paths, "of node2's port unreachable", func(p *stitch.Path) bool {
		return p.Proto == decode.ProtoICMPv6 && p.Src.Addr() == under[1] && p.Src.Port() == 1 && p.Dst.Port() == 4
	})
	requireMadeBeforeUnNAT(t, icmp, n1, n2, under[0], topology.ClientIP6)
	t.Logf("datagram:\n%s\nport unreachable:\n%s", dump(sent), dump(icmp))
}

// requireMadeBeforeUnNAT checks the path of an ICMP error node2 sent to
// node1's address to (node1 masqueraded the packet it answers): it starts
// in node2, is addressed to to, crosses node2's and node1's eth0, node1's
// PREROUTING and its translation, and ends addressed to client.
func requireMadeBeforeUnNAT(t *testing.T, icmp *stitch.Path, n1, n2 *topology.Node, to, client netip.Addr) {
	t.Helper()
	if first := icmp.Hops[0]; first.Netns != n2.NetnsName {
		t.Errorf("the error's path starts at %s in %s, want it made in %s\n%s", first.Kind, first.Netns, n2.NetnsName, dump(icmp))
	}
	if icmp.Dst.Addr() != to {
		t.Errorf("the error's path is to %s, want node1's address %s as node2 sent it\n%s", icmp.Dst, to, dump(icmp))
	}
	requireHops(t, icmp, []hopMatch{
		{kind: hop.Tx, dev: topology.UnderlayDev, netns: n2.NetnsName, description: "tx on node2's " + topology.UnderlayDev},
		{kind: hop.Rx, dev: topology.UnderlayDev, netns: n1.NetnsName, description: "rx on node1's " + topology.UnderlayDev},
		{kind: hop.Netfilter, hook: hop.Prerouting, netns: n1.NetnsName, description: "PREROUTING on node1"},
		{kind: hop.NAT, netns: n1.NetnsName, description: "node1's translation back to the client"},
	})
	if last := icmp.Hops[len(icmp.Hops)-1]; last.Dst.Addr() != client {
		t.Errorf("the error's last hop is to %s, want the client %s\n%s", last.Dst, client, dump(icmp))
	}
}
