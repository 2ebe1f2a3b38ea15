package trace

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

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

// rawTracepoints is the running kernel without BTF tracepoints: the device
// and free hops come from the raw tracepoint programs.
type rawTracepoints struct{ loader.Probes }

func (rawTracepoints) BTFTracepoint() error {
	return features.NotSupportedError("BTF tracepoints left out by the test")
}

// TestLiveTracepointForms runs a same-node exchange and a request to the
// ClusterIP dropped in FORWARD, with the BTF tracepoint programs and with
// the raw ones. Each form shows its hops from the tracepoints it says, and
// the two show the same paths (pathShape).
func TestLiveTracepointForms(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireSupported(t, testutil.BTFTracepoints, features.BTFTracepoint())
	c := cluster(t, topology.Options{})
	n1 := c.Node(topology.Node1)
	// The client's packets to the server die in node1's FORWARD: an
	// exchange with the peer first (same node, delivered), then a request
	// to the ClusterIP (dropped).
	if err := n1.IPTables("-I", "FORWARD", "-s", topology.ClientIP.String(), "-d", topology.ServerIP.String(), "-j", "DROP"); err != nil {
		t.Fatal(err)
	}
	forms := []struct {
		name   string
		probes loader.Probes
		source string
	}{
		{"btf", loader.KernelProbes, "tp_btf/"},
		{"raw", rawTracepoints{loader.KernelProbes}, "raw_tracepoint/"},
	}
	var shown [2]string
	for i, f := range forms {
		stop := tracingWith(t, c, loader.Options{PodIPs: []netip.Addr{topology.ClientIP}, Probes: f.probes})
		client := c.Pod(topology.PodClient)
		exchange(t, client, topology.PeerAddr)
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		_, err := topology.TCPExchange(ctx, client, topology.ClusterIP, "ping")
		cancel()
		if err == nil {
			t.Fatal("the exchange went through a DROP rule")
		}
		paths, sum := stop()
		if sum.Lost != 0 {
			t.Errorf("%s: %d events lost", f.name, sum.Lost)
		}
		for _, h := range sum.Hops {
			want := f.source
			switch h.Hop {
			case hop.Consume: // no BTF form
				want = "raw_tracepoint/"
			case hop.Rx, hop.Tx, hop.Drop:
			default:
				continue
			}
			if !strings.HasPrefix(h.Source, want) {
				t.Errorf("%s: %s shown by %q, want %s…", f.name, h.Hop, h.Source, want)
			}
		}
		delivered := findPath(t, paths, topology.ClientIP, topology.PeerIP, tcpSYN)
		dropped := findPath(t, paths, topology.ClientIP, topology.ClusterIP.Addr(), tcpSYN)
		requireHops(t, dropped, []hopMatch{
			{kind: hop.Rx, dev: client.HostVeth, netns: n1.NetnsName, description: "rx on the client's host veth"},
			{kind: hop.NAT, hook: hop.Prerouting, description: "DNAT at PREROUTING"},
			{kind: hop.Drop, hook: hop.Forward, reason: wantReason("NETFILTER_DROP"), description: "the drop in FORWARD"},
		})
		shown[i] = pathShape(delivered) + pathShape(dropped)
	}
	if shown[0] != shown[1] {
		t.Errorf("the BTF tracepoints show\n%s\nthe raw ones\n%s", shown[0], shown[1])
	}
}

// pathShape is what a path shows of each hop that does not change from
// one trace of the same packet to the next: its kind, device, hook,
// namespace, length, mark, NAT, drop reason and freeing function, and the
// path's verdict; no times, no ports.
func pathShape(p *stitch.Path) string {
	var b strings.Builder
	for _, h := range p.Hops {
		fmt.Fprintf(&b, "%s %s %s %s len %d mark %#x", h.Kind, h.Dev, h.Hook, h.Netns, h.Len, h.Mark)
		if h.NAT != nil {
			fmt.Fprintf(&b, " %s %s→%s", h.NAT.Type, h.NAT.From, h.NAT.To)
		}
		if h.Kind == hop.Drop {
			fmt.Fprintf(&b, " %s %s", h.Reason, h.FuncName())
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "verdict %s\n", p.Verdict)
	return b.String()
}
