package trace

import (
	"fmt"
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

// TestRecorderLabelCache: the names the recorder keeps are the names it
// would look up, for more endpoints than it keeps, the same address with
// and without its port, in several namespaces, and again after the pods
// are renamed (the API server read again).
func TestRecorderLabelCache(t *testing.T) {
	const node1, node2 = 11, 12
	pods := func(prefix string) *k8s.Pods {
		n := &k8s.Names{}
		for i := range 600 {
			n.Pods = append(n.Pods, k8s.Pod{Namespace: "default", Name: fmt.Sprintf("%s-%d", prefix, i),
				IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 245, byte(i >> 8), byte(i)})}})
		}
		return k8s.NewPods(n)
	}
	var ports []doctor.ServicePort
	for i := range 300 {
		ports = append(ports, doctor.ServicePort{Service: fmt.Sprintf("default/svc-%d:http", i), Kind: doctor.KindClusterIP,
			Addr: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}), Proto: 6, Port: uint16(80 + i%3)})
	}
	services := diagnose.NewServices(map[uint32]*doctor.Report{node1: {KubeProxy: doctor.KubeProxy{ServicePorts: ports}}})
	r := &recorder{netns: func(uint32) string { return "" }, services: services}
	r.setKube(pods("a"))
	check := func(round string) {
		t.Helper()
		named, wrong := 0, 0
		for pass := range 2 {
			for i := range 900 {
				addr := netip.AddrFrom4([4]byte{10, 245, byte(i >> 8), byte(i)})
				if i >= 600 {
					addr = netip.AddrFrom4([4]byte{10, 96, byte((i - 600) >> 8), byte(i - 600)})
				}
				for _, inode := range []uint32{node1, node2} {
					for _, port := range []uint16{0, 80, 81} {
						a := netip.AddrPortFrom(addr, port)
						got, want := r.label(inode, 6, a, port != 0), r.lookup(inode, 6, a, port != 0)
						if got != want {
							if wrong++; wrong <= 5 {
								t.Errorf("%s, pass %d: label(%d, %v) = %q, want %q", round, pass, inode, a, got, want)
							}
						}
						if want != "" {
							named++
						}
					}
				}
			}
		}
		if named < 2*(600*6+200*2) {
			t.Errorf("%s: %d names, want every pod and every Service port named", round, named)
		}
	}
	check("first names")
	pod7 := netip.MustParseAddrPort("10.245.0.7:0")
	if got := r.label(node1, 6, pod7, false); got != "default/a-7" {
		t.Errorf("%v: %q, want default/a-7", pod7, got)
	}
	r.setKube(pods("b"))
	if got := r.label(node1, 6, pod7, false); got != "default/b-7" {
		t.Errorf("after the pods were renamed: %q, want default/b-7", got)
	}
	check("renamed")
}

// TestRecorderNamespaceKept: the recorder keeps a namespace's name, but
// names it anew when the namespace is named later (a trace names a
// namespace when it first sees it) and when the pods are read again.
func TestRecorderNamespaceKept(t *testing.T) {
	const client = 21
	netns := map[uint32]string{client: "netns:21"}
	r := &recorder{netns: func(i uint32) string { return netns[i] }}
	pods := func(name string) *k8s.Pods {
		return k8s.NewPods(&k8s.Names{Pods: []k8s.Pod{{Namespace: "default", Name: name, Node: "node1"}},
			Netns: map[uint32]string{client: "default/" + name}})
	}
	r.setKube(pods("client"))
	for _, c := range []struct {
		step func()
		want string
	}{
		{func() {}, "netns:21 (pod default/client on node1)"},
		{func() {}, "netns:21 (pod default/client on node1)"},
		{func() { netns[client] = "cni-1eb8" }, "cni-1eb8 (pod default/client on node1)"},
		{func() { r.setKube(pods("client-2")) }, "cni-1eb8 (pod default/client-2 on node1)"},
	} {
		c.step()
		if got := r.namespace(client); got != c.want {
			t.Errorf("namespace: %q, want %q", got, c.want)
		}
	}
}
