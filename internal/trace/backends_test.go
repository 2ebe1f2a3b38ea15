package trace

import (
	"net/netip"
	"testing"

	"github.com/pathtrace/pathtrace/internal/features"
	"github.com/pathtrace/pathtrace/internal/hop"
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
		kind := h.Kind
		if h.Kind == hop.IPVS && h.IPVS != nil && h.IPVS.Verdict != hop.NoVerdict {
			kind = hop.IPVSDrop
		}
		w, known := want[kind]
		var f hop.Backend
		f.UnmarshalText([]byte(forced)) // the choices fentry and kprobe are backends
		if forced != "" {
			switch h.Kind {
			case hop.Netfilter, hop.NAT, hop.Bridge, hop.IPVS, hop.Table:
				w, known = f, true
			case hop.Encap, hop.Decap:
				if h.Backend != hop.Inferred {
					w, known = f, true
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
func expectHop(kind hop.Kind) bool {
	want, ok := testutil.ExpectedBackends()
	if !ok {
		for _, h := range loader.Plan(loader.ChoiceAuto, loader.KernelProbes) {
			if h.Hop == kind {
				return h.Observable()
			}
		}
		return false
	}
	return want[kind] != hop.NoBackend
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
		{kind: hop.NAT, hook: hop.Prerouting, netns: n1,
			nat:         &stitch.NAT{Type: hop.DNAT, From: topology.ClusterIP, To: topology.ServerAddr},
			description: "DNAT at PREROUTING, from the kprobe views of nf_hook_slow"},
		{kind: hop.Netfilter, hook: hop.Forward, in: "cni0", out: "flannel.1", netns: n1, description: "FORWARD cni0 → flannel.1"},
		{kind: hop.Encap, netns: n1, description: "VXLAN encap on node1"},
		{kind: hop.Netfilter, hook: hop.Postrouting, netns: n2, description: "POSTROUTING on node2"},
		{kind: hop.Rx, dev: "eth0", netns: c.Pod(topology.PodServer).NetnsName, description: "rx on the server pod's eth0"},
	})
	for _, h := range req.Hops {
		if h.Kind == hop.Netfilter && h.Partial {
			t.Errorf("a %s hop has only one view: the kretprobe lost its frame\n%s", h.Hook, dump(req))
			break
		}
	}
	checkBackends(t, req, loader.ChoiceKprobe)
	reply := findPath(t, paths, topology.ServerIP, topology.ClientIP, tcpSYN|tcpACK)
	requireHops(t, reply, []hopMatch{
		{kind: hop.NAT, netns: n1,
			nat:         &stitch.NAT{Type: hop.SNAT, From: topology.ServerAddr, To: topology.ClusterIP, Reverse: true},
			description: "un-DNAT on node1, from conntrack's view of the reply in the kprobe views"},
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
