package trace

import (
	"net/netip"
	"testing"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/diagnose"
	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/k8s"
)

// TestRecordComments: a recording's per-hop comment names the namespace's
// pod and Node, each address's pod, Service port or Node, and the ends of
// a tunnel's outer header, where the trace knows them; without names it
// shows addresses alone.
func TestRecordComments(t *testing.T) {
	ap, a := netip.MustParseAddrPort, netip.MustParseAddr
	const node1, client = 11, 21 // namespace inodes
	kube := k8s.NewPods(&k8s.Names{
		Pods: []k8s.Pod{
			{Namespace: "default", Name: "client", Node: "node1", IPs: []netip.Addr{a("10.245.1.2")}},
			{Namespace: "default", Name: "server", Node: "node2", IPs: []netip.Addr{a("10.245.2.2")}},
		},
		Nodes:     []k8s.Node{{Name: "node1", IPs: []netip.Addr{a("192.168.60.11")}}, {Name: "node2", IPs: []netip.Addr{a("192.168.60.12")}}},
		Netns:     map[uint32]string{client: "default/client"},
		NodeNetns: map[uint32]string{node1: "node1"},
	})
	services := diagnose.NewServices(map[uint32]*doctor.Report{node1: {
		KubeProxy: doctor.KubeProxy{ServicePorts: []doctor.ServicePort{
			{Service: "default/web:http", Kind: doctor.KindClusterIP, Addr: a("10.97.0.80"), Proto: 6, Port: 80},
			{Service: "default/web:http", Kind: doctor.KindNodePort, Proto: 6, Port: 30080},
		}},
		Network: doctor.Network{Addresses: []netip.Addr{a("192.168.60.11")}},
	}})
	netns := map[uint32]string{node1: "ptlab-node1", client: "cni-1eb8"}
	named := &recorder{netns: func(i uint32) string { return netns[i] }, kube: kube, services: services}
	plain := &recorder{netns: named.netns}
	tcp := func(src, dst string) decode.Tuple {
		return decode.Tuple{Proto: 6, Src: ap(src), Dst: ap(dst), HasPorts: true}
	}
	for _, c := range []struct {
		ev          decode.Event
		named, bare string
	}{{
		decode.Event{Kind: decode.KindTx, Dev: "eth0", Netns: client, Outer: tcp("10.245.1.2:56060", "10.97.0.80:80")},
		"tx on eth0 in cni-1eb8 (pod default/client on node1): TCP 10.245.1.2:56060 (default/client) → 10.97.0.80:80 (default/web:http)",
		"tx on eth0 in cni-1eb8: TCP 10.245.1.2:56060 → 10.97.0.80:80",
	}, {
		decode.Event{Kind: decode.KindRx, Dev: "eth0", Netns: node1, Flags: decode.FlagInner, Tunnel: hop.TunnelVXLAN, VNI: 1,
			Outer: decode.Tuple{Proto: 17, Src: ap("192.168.60.12:41000"), Dst: ap("192.168.60.11:8472"), HasPorts: true},
			Inner: tcp("10.245.2.2:8080", "10.245.1.2:56060")},
		"rx on eth0 in ptlab-node1 (node node1): TCP 10.245.2.2:8080 (default/server) → 10.245.1.2:56060 (default/client) in VXLAN vni 1 192.168.60.12 (node2) → 192.168.60.11:8472 (node1)",
		"rx on eth0 in ptlab-node1: TCP 10.245.2.2:8080 → 10.245.1.2:56060 in VXLAN vni 1 192.168.60.12 → 192.168.60.11:8472",
	}, {
		// ipip_tunnel_xmit on tunl0: the tunnel, no VNI.
		decode.Event{Kind: decode.KindEncap, Dev: "tunl0", Netns: node1, Flags: decode.FlagKprobe, TunnelFunc: decode.TunnelFunc{Tunnel: hop.TunnelIPIP},
			Outer: tcp("10.245.1.2:56060", "10.245.2.2:8080")},
		"encap ipip on tunl0 in ptlab-node1 (node node1): TCP 10.245.1.2:56060 (default/client) → 10.245.2.2:8080 (default/server)",
		"encap ipip on tunl0 in ptlab-node1: TCP 10.245.1.2:56060 → 10.245.2.2:8080",
	}, {
		// geneve_xmit with the device's VNI read.
		decode.Event{Kind: decode.KindEncap, Dev: "genev_sys_6081", Netns: node1, TunnelFunc: decode.TunnelFunc{Tunnel: hop.TunnelGeneve, Known: true, VNI: 10, DPort: 6081},
			Outer: tcp("10.245.1.2:56060", "10.245.2.2:8080")},
		"encap geneve vni 10 on genev_sys_6081 in ptlab-node1 (node node1): TCP 10.245.1.2:56060 (default/client) → 10.245.2.2:8080 (default/server)",
		"encap geneve vni 10 on genev_sys_6081 in ptlab-node1: TCP 10.245.1.2:56060 → 10.245.2.2:8080",
	}, {
		// A NodePort on node1, from outside the cluster.
		decode.Event{Kind: decode.KindRx, Dev: "eth0", Netns: node1, Outer: tcp("203.0.113.9:5000", "192.168.60.11:30080")},
		"rx on eth0 in ptlab-node1 (node node1): TCP 203.0.113.9:5000 → 192.168.60.11:30080 (default/web:http)",
		"rx on eth0 in ptlab-node1: TCP 203.0.113.9:5000 → 192.168.60.11:30080",
	}} {
		for _, r := range []struct {
			rec  *recorder
			want string
		}{{named, c.named}, {plain, c.bare}} {
			if got := string(appendComment(nil, &c.ev, r.rec.namespace(c.ev.Netns), nil, r.rec.label)); got != r.want {
				t.Errorf("comment\n got %s\nwant %s", got, r.want)
			}
		}
	}
}
