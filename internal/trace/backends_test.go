package trace

import (
	"net/netip"
	"testing"

	"github.com/pathtrace/pathtrace/internal/features"
	"github.com/pathtrace/pathtrace/internal/kernel"
	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/internal/topology"
)

// checkBackends checks that every hop of p was shown by the backend
// expected for its kind on this kernel (testutil.ExpectedBackends), or by
// the forced one; kernels outside the table are not checked.
func checkBackends(t *testing.T, p *stitch.Path, forced loader.Choice) {
	t.Helper()
	want, ok := testutil.ExpectedBackends()
	if !ok && forced == "" {
		return
	}
	for i := range p.Hops {
		h := &p.Hops[i]
		kind := string(h.Kind)
		if h.Kind == stitch.HopIPVS && h.IPVS != nil && h.IPVS.Verdict != "" {
			kind = loader.HopIPVSDrop
		}
		w, known := want[kind]
		if forced != "" {
			switch h.Kind {
			case stitch.HopNetfilter, stitch.HopNAT, stitch.HopBridge, stitch.HopIPVS, stitch.HopTable:
				w, known = string(forced), true
			case stitch.HopEncap, stitch.HopDecap:
				if h.Backend != testutil.Inferred {
					w, known = string(forced), true
				}
			}
		}
		if known && h.Backend != w {
			t.Errorf("path #%d hop %d (%s on %s): backend %q, want %q on %s\n%s", p.ID, i, h.Kind, h.Dev, h.Backend, w, testutil.Release(), dump(p))
			return
		}
	}
}

// expectHop reports whether hops of this kind are expected on this kernel
// (true on kernels outside the table: the test then asks the loader).
func expectHop[K ~string](kind K) bool {
	want, ok := testutil.ExpectedBackends()
	if !ok {
		for _, h := range loader.Plan(loader.ChoiceAuto) {
			if h.Hop == string(kind) {
				return h.Observable()
			}
		}
		return false
	}
	return want[string(kind)] != testutil.None
}

// TestLiveKprobeBackend runs the cross-node exchange with every hop that
// has a choice on kprobes (nf_hook_slow with its kretprobe), where the
// kernel has kprobes: the same hops, NAT included, as the default backend.
func TestLiveKprobeBackend(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireSupported(t, testutil.Kprobes, features.Kprobe())
	c := cluster(t, topology.Options{})
	stop := tracingWith(t, c, loader.Options{PodIPs: []netip.Addr{topology.ClientIP}, Backend: loader.ChoiceKprobe})
	client := c.Pod(topology.PodClient)
	n1, n2 := c.Node(topology.Node1).NetnsName, c.Node(topology.Node2).NetnsName
	exchange(t, client, topology.ClusterIP)
	paths, sum := stop()
	if sum.Lost != 0 {
		t.Errorf("%d events lost", sum.Lost)
	}
	req := findPath(t, paths, topology.ClientIP, topology.ClusterIP.Addr(), tcpSYN)
	requireHops(t, req, []hopMatch{
		{kind: stitch.HopNAT, hook: "PREROUTING", netns: n1,
			nat:         &stitch.NAT{Type: stitch.NATDst, From: topology.ClusterIP, To: topology.ServerAddr},
			description: "DNAT at PREROUTING, from the kprobe views of nf_hook_slow"},
		{kind: stitch.HopNetfilter, hook: "FORWARD", in: "cni0", out: "flannel.1", netns: n1, description: "FORWARD cni0 → flannel.1"},
		{kind: stitch.HopEncap, netns: n1, description: "VXLAN encap on node1"},
		{kind: stitch.HopNetfilter, hook: "POSTROUTING", netns: n2, description: "POSTROUTING on node2"},
		{kind: stitch.HopRx, dev: "eth0", netns: c.Pod(topology.PodServer).NetnsName, description: "rx on the server pod's eth0"},
	})
	for _, h := range req.Hops {
		if h.Kind == stitch.HopNetfilter && h.Partial {
			t.Errorf("a %s hop has only one view: the kretprobe lost its frame\n%s", h.Hook, dump(req))
			break
		}
	}
	checkBackends(t, req, loader.ChoiceKprobe)
	reply := findPath(t, paths, topology.ServerIP, topology.ClientIP, tcpSYN|tcpACK)
	requireHops(t, reply, []hopMatch{
		{kind: stitch.HopNAT, netns: n1,
			nat:         &stitch.NAT{Type: stitch.NATSrc, From: topology.ServerAddr, To: topology.ClusterIP},
			description: "reverse translation on node1"},
	})
	checkBackends(t, reply, loader.ChoiceKprobe)
}

// wantReason is the drop reason a drop hop shows on this kernel: none
// before 5.17, whose kfree_skb tracepoint has no reason.
func wantReason(reason string) string {
	if names, err := kernel.DropReasons(); err == nil && len(names) == 0 {
		return ""
	}
	return reason
}
