package trace

import (
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
	if first := icmp.Hops[0]; first.Netns != n2.NetnsName {
		t.Errorf("the port unreachable's path starts at %s in %s, want it made in %s\n%s", first.Kind, first.Netns, n2.NetnsName, dump(icmp))
	}
	if icmp.Dst.Addr() != n1.UnderlayIP {
		t.Errorf("the port unreachable's path is to %s, want node1's address %s as node2 sent it\n%s", icmp.Dst, n1.UnderlayIP, dump(icmp))
	}
	requireHops(t, icmp, []hopMatch{
		{kind: hop.Tx, dev: topology.UnderlayDev, netns: n2.NetnsName, description: "tx on node2's " + topology.UnderlayDev},
		{kind: hop.Rx, dev: topology.UnderlayDev, netns: n1.NetnsName, description: "rx on node1's " + topology.UnderlayDev},
		{kind: hop.Netfilter, hook: hop.Prerouting, netns: n1.NetnsName, description: "PREROUTING on node1"},
		{kind: hop.NAT, netns: n1.NetnsName, description: "node1's translation back to the client"},
	})
	if last := icmp.Hops[len(icmp.Hops)-1]; last.Dst.Addr() != topology.ClientIP {
		t.Errorf("the port unreachable's last hop is to %s, want the client %s\n%s", last.Dst, topology.ClientIP, dump(icmp))
	}
	t.Logf("datagram:\n%s\nport unreachable:\n%s", dump(sent), dump(icmp))
}
