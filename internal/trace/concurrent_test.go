package trace

import (
	"net/netip"
	"testing"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/topology"
)

// TestTwoTracersOneNode runs two traces of the same nodes at once, as two
// operators during one incident would; the second names each node twice,
// by name and by path. Both see the netfilter hooks and the DNAT: each
// took free netfilter priorities next to the first and the last.
func TestTwoTracersOneNode(t *testing.T) {
	c := cluster(t, topology.Options{})
	n1, n2 := c.Node(topology.Node1), c.Node(topology.Node2)
	stopFirst := tracing(t, c, topology.ClientIP)
	stopSecond := tracingWith(t, c, loader.Options{PodIPs: []netip.Addr{topology.ClientIP},
		Netns: []string{n1.NetnsName, n1.NetnsPath, n2.NetnsPath, n2.NetnsName}})

	exchange(t, c.Pod(topology.PodClient), topology.ClusterIP)
	for i, stop := range []func() ([]*stitch.Path, Summary){stopFirst, stopSecond} {
		paths, sum := stop()
		if len(sum.Nodes) != 2 {
			t.Errorf("tracer %d traced nodes %+v, want the two", i+1, sum.Nodes)
		}
		for _, h := range sum.Hops {
			if (h.Hop == hop.Netfilter || h.Hop == hop.NAT) && !h.Observable() {
				t.Errorf("tracer %d: %s hops not observable: %s", i+1, h.Hop, h.Reason)
			}
		}
		req := findPath(t, paths, topology.ClientIP, topology.ClusterIP.Addr(), tcpSYN)
		requireHops(t, req, []hopMatch{
			{kind: hop.Netfilter, hook: hop.Prerouting, netns: n1.NetnsName, description: "tracer's PREROUTING on node1"},
			{kind: hop.NAT, hook: hop.Prerouting, netns: n1.NetnsName,
				nat:         &stitch.NAT{Type: hop.DNAT, From: topology.ClusterIP, To: topology.ServerAddr},
				description: "DNAT 10.96.0.10:80 → 10.244.2.7:8080 at PREROUTING"},
			{kind: hop.Netfilter, hook: hop.Forward, netns: n1.NetnsName, description: "FORWARD on node1"},
			{kind: hop.Netfilter, hook: hop.Prerouting, netns: n2.NetnsName, description: "PREROUTING on node2"},
		})
		checkBackends(t, req, "")
	}
}
