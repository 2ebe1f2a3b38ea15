package trace

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/topology"
)

// TestLiveFilterDualStack: an expression applies to IPv6 headers as to
// IPv4 ones (libpcap's raw IP link type tells them by the version):
// 'tcp port 80' selects a dual-stack pod's connections to the ClusterIP
// over both families (the IPv6 one inside the IPv4 VXLAN underlay, its
// replies from port 8080 through conns), not its IPv6 connection to the
// peer's port 8080; 'ip6 and tcp port 80' the IPv6 one only.
func TestLiveFilterDualStack(t *testing.T) {
	c := dualCluster(t)
	client := c.Pod(topology.PodClient)
	for _, tc := range []struct {
		expr       string
		ipv4, ipv6 bool
	}{{"tcp port 80", true, true}, {"ip6 and tcp port 80", false, true}} {
		t.Run(tc.expr, func(t *testing.T) {
			lopts := compiled(t, tc.expr)
			lopts.PodIPs = []netip.Addr{topology.ClientIP, topology.ClientIP6}
			stop := tracingWith(t, c, lopts)
			exchange(t, client, topology.PeerAddr6)
			exchange(t, client, topology.ClusterIP6)
			exchange(t, client, topology.ClusterIP)
			time.Sleep(200 * time.Millisecond)
			paths, _ := stop()

			var v4, v6 bool
			for _, p := range paths {
				switch {
				case p.Src.Addr() == topology.PeerIP6 || p.Dst.Addr() == topology.PeerIP6:
					t.Errorf("path #%d %s → %s traced; the filter excludes it\n%s", p.ID, p.Src, p.Dst, pathList(paths))
				case p.Src.Addr().Is4():
					v4 = true
				default:
					v6 = true
				}
			}
			if v4 != tc.ipv4 || v6 != tc.ipv6 {
				t.Fatalf("IPv4 paths %v, IPv6 paths %v; want %v, %v\n%s", v4, v6, tc.ipv4, tc.ipv6, pathList(paths))
			}
			req := findPath(t, paths, topology.ClientIP6, topology.ClusterIP6.Addr(), tcpSYN)
			requireHops(t, req, []hopMatch{
				{kind: hop.Tx, dev: "eth0", netns: client.NetnsName, description: "tx on the client pod's eth0"},
				{kind: hop.Encap, dev: "flannel.1", description: "VXLAN encap on flannel.1"},
				{kind: hop.Rx, dev: "eth0", netns: c.Pod(topology.PodServer).NetnsName, description: "rx on the server pod's eth0"},
			})
			findPath(t, paths, topology.ServerIP6, topology.ClientIP6, tcpSYN|tcpACK)
		})
	}
}
