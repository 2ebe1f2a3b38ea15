package trace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/kernel"
	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/internal/topology"
)

// collector is a renderer that keeps the paths.
type collector struct {
	mu    sync.Mutex
	paths []*stitch.Path
}

func (c *collector) Render(p *stitch.Path) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paths = append(c.paths, p.Clone()) // Run recycles p once Render returns
	return nil
}
func (c *collector) Close() error { return nil }

// cluster builds the demo topology for one test.
func cluster(t *testing.T, opts topology.Options) *topology.Cluster {
	t.Helper()
	testutil.RequireRoot(t)
	start := time.Now()
	c, err := topology.Build(context.Background(), opts)
	t.Logf("cluster built in %v", time.Since(start))
	missingTunnel(t, err)
	if err != nil {
		t.Fatalf("build cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	for _, name := range []string{topology.PodServer, topology.PodPeer} {
		srv, err := topology.StartEchoServer(context.Background(), c.Pod(name), topology.ServerPort)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
	}
	return c
}

// tracing runs a live trace of ips on both nodes until the returned stop is
// called; stop returns the paths and the summary.
func tracing(t *testing.T, c *topology.Cluster, ips ...netip.Addr) func() ([]*stitch.Path, Summary) {
	t.Helper()
	return tracingWith(t, c, loader.Options{PodIPs: ips})
}

// tracingWith is tracing with more loader options; the nodes are set
// unless lopts has some.
func tracingWith(t *testing.T, c *topology.Cluster, lopts loader.Options) func() ([]*stitch.Path, Summary) {
	t.Helper()
	return tracingOpts(t, c, Options{Loader: lopts})
}

// tracingOpts is tracing with the trace's options; OnReady is its own.
func tracingOpts(t *testing.T, c *topology.Cluster, opts Options) func() ([]*stitch.Path, Summary) {
	t.Helper()
	out := &collector{}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	if opts.Loader.Netns == nil {
		opts.Loader.Netns = []string{c.Node(topology.Node1).NetnsPath, c.Node(topology.Node2).NetnsPath}
	}
	opts.OnReady = func() { close(ready) }
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	type result struct {
		sum Summary
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		s, err := Run(ctx, opts, out)
		done <- result{s, err}
	}()
	select {
	case <-ready:
		t.Logf("trace ready in %v", time.Since(start))
	case r := <-done:
		cancel()
		t.Fatalf("trace ended before it was ready: %v", r.err)
	}
	var once sync.Once
	var res result
	stop := func() ([]*stitch.Path, Summary) {
		once.Do(func() {
			cancel()
			select {
			case res = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("trace did not stop within 5s of its context ending")
			}
			if res.err != nil {
				t.Fatalf("trace: %v", res.err)
			}
			if res.sum.Skipped != 0 {
				// The kernel's events and decode disagree on the layout.
				t.Errorf("%d records did not decode (%v)", res.sum.Skipped, res.sum)
			}
		})
		return out.paths, res.sum
	}
	t.Cleanup(func() { stop() })
	return stop
}

// testWriter writes a trace's log to the test's.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

func exchange(t *testing.T, from *topology.Pod, to netip.AddrPort) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := topology.TCPExchange(ctx, from, to, "ping"); err != nil {
		t.Fatalf("TCP exchange %s → %s: %v", from.IP, to, err)
	}
}

// hopMatch describes a hop to look for; empty fields match anything.
type hopMatch struct {
	kind        hop.Kind
	dev, netns  string
	hook        hop.Hook
	in, out     string
	nat         *stitch.NAT
	outer       *stitch.Outer
	table       *stitch.Table // empty fields match anything
	reason      string
	description string
}

func (m hopMatch) matches(h *stitch.Hop) bool {
	eq := func(want, got string) bool { return want == "" || want == got }
	if h.Kind != m.kind || !eq(m.dev, h.Dev) || !eq(m.netns, h.Netns) || (m.hook != hop.NoHook && m.hook != h.Hook) ||
		!eq(m.in, h.In) || !eq(m.out, h.Out) || !eq(m.reason, h.Reason) {
		return false
	}
	if m.nat != nil && (h.NAT == nil || !natMatches(*m.nat, *h.NAT)) {
		return false
	}
	if m.outer != nil && (h.Outer == nil || *h.Outer != *m.outer) {
		return false
	}
	if w := m.table; w != nil {
		g := h.Table
		if g == nil || !eq(w.Engine.String(), g.Engine.String()) || !eq(w.Family.String(), g.Family.String()) || !eq(w.Name, g.Name) ||
			!eq(w.Chain, g.Chain) || !eq(w.Verdict.String(), g.Verdict.String()) {
			return false
		}
	}
	return true
}

// natMatches reports whether got is the translation want: the same but for
// the Service name, which an empty want.Service does not check.
func natMatches(want, got stitch.NAT) bool {
	if want.Service == "" {
		got.Service = ""
	}
	return got == want
}

// tableHop is the table hop to expect on kernels that show table verdicts
// (none elsewhere): the topology's rules are iptables-nft's, so nftables
// chains of family ip; the table's name where nf_tables has BTF.
func tableHop(netns, name string, chain hop.Hook, verdict hop.Verdict) []hopMatch {
	if !expectHop(hop.Table) {
		return nil
	}
	family := hop.FamilyIPv4
	if _, err := os.Stat("/sys/kernel/btf/nf_tables"); err != nil {
		name, family = "", hop.NoFamily // read from BTF only (bpf/include/tables.h)
	}
	return []hopMatch{{kind: hop.Table, netns: netns, hook: chain,
		table:       &stitch.Table{Engine: hop.EngineNFTables, Family: family, Name: name, Chain: chain.String(), Verdict: verdict},
		description: fmt.Sprintf("table %s %s %s: %s", family, name, chain, verdict)}}
}

// hops joins hop expectations.
func hops(parts ...[]hopMatch) []hopMatch { return slices.Concat(parts...) }

// requireHops checks that the path has the wanted hops in this order, other
// hops in between allowed.
func requireHops(t *testing.T, p *stitch.Path, want []hopMatch) {
	t.Helper()
	i := 0
	for j := range p.Hops {
		if i < len(want) && want[i].matches(&p.Hops[j]) {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("path #%d lacks, after the first %d expected hops, %s\n%s", p.ID, i, want[i].description, dump(p))
	}
}

func dump(p *stitch.Path) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s → %s flags=%#x %s\n", p.ID, p.Src, p.Dst, p.TCPFlags, p.Verdict)
	for _, h := range p.Hops {
		fmt.Fprintf(&b, "  %-9s %-13s %-14s %s in=%s out=%s %s→%s [%s]", h.Kind, h.Dev, h.Netns, h.Hook, h.In, h.Out, h.Src, h.Dst, h.Backend)
		if h.NAT != nil {
			fmt.Fprintf(&b, " nat %+v", *h.NAT)
		}
		if h.Outer != nil {
			fmt.Fprintf(&b, " outer %+v", *h.Outer)
		}
		if h.Reason != "" {
			fmt.Fprintf(&b, " reason %s", h.Reason)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

const (
	tcpSYN = 0x02
	tcpACK = 0x10
)

// findPath returns the first path of a packet from src to dst with exactly
// these TCP flags.
func findPath(t *testing.T, paths []*stitch.Path, src, dst netip.Addr, flags uint8) *stitch.Path {
	t.Helper()
	for _, p := range paths {
		if p.Src.Addr() == src && p.Dst.Addr() == dst && p.TCPFlags == flags && p.Proto == decode.ProtoTCP {
			return p
		}
	}
	var b strings.Builder
	for _, p := range paths {
		b.WriteString(dump(p))
	}
	t.Fatalf("no path %s → %s with TCP flags %#x among %d:\n%s", src, dst, flags, len(paths), b.String())
	return nil
}

func TestLiveCrossNodeClusterIP(t *testing.T) {
	c := cluster(t, topology.Options{})
	before := testutil.LinkIDs(t)
	stop := tracing(t, c, topology.ClientIP)
	client, server := c.Pod(topology.PodClient), c.Pod(topology.PodServer)
	n1, n2 := c.Node(topology.Node1).NetnsName, c.Node(topology.Node2).NetnsName

	exchange(t, client, topology.ClusterIP)
	paths, sum := stop()
	if after := testutil.LinkIDs(t); !slices.Equal(before, after) {
		t.Errorf("BPF links before the trace %v, after %v", before, after)
	}
	if sum.Lost != 0 {
		t.Errorf("%d events lost", sum.Lost)
	}

	req := findPath(t, paths, topology.ClientIP, topology.ClusterIP.Addr(), tcpSYN)
	requireHops(t, req, hops([]hopMatch{
		{kind: hop.Tx, dev: "eth0", netns: client.NetnsName, description: "tx on the client pod's eth0"},
		{kind: hop.Rx, dev: client.HostVeth, netns: n1, description: "rx on the client's host veth"},
	}, tableHop(n1, "nat", hop.Prerouting, hop.VerdictAccept), []hopMatch{
		{kind: hop.NAT, hook: hop.Prerouting, netns: n1,
			nat:         &stitch.NAT{Type: hop.DNAT, From: topology.ClusterIP, To: topology.ServerAddr},
			description: "DNAT 10.96.0.10:80 → 10.244.2.7:8080 at PREROUTING"},
		{kind: hop.Netfilter, hook: hop.Forward, in: "cni0", out: "flannel.1", netns: n1, description: "FORWARD cni0 → flannel.1"},
		{kind: hop.Encap, dev: "flannel.1", netns: n1,
			outer:       &stitch.Outer{Tunnel: hop.TunnelVXLAN, Src: topology.Node1UnderlayIP, Dst: topology.Node2UnderlayIP, DPort: topology.VXLANPort, VNI: topology.VXLANID},
			description: "VXLAN encap on flannel.1"},
		{kind: hop.Tx, dev: "eth0", netns: n1, description: "tx on node1 eth0"},
		{kind: hop.Rx, dev: "eth0", netns: n2, description: "rx on node2 eth0"},
		{kind: hop.Decap, dev: "flannel.1", netns: n2, description: "VXLAN decap on node2 flannel.1"},
		{kind: hop.Tx, dev: "cni0", netns: n2, description: "tx on node2 cni0"},
		{kind: hop.Tx, dev: server.HostVeth, netns: n2, description: "tx on the server's host veth"},
		{kind: hop.Rx, dev: "eth0", netns: server.NetnsName, description: "rx on the server pod's eth0"},
	}))
	if req.Verdict != stitch.VerdictDelivered {
		t.Errorf("request verdict %s, want delivered", req.Verdict)
	}
	checkBackends(t, req, "")

	reply := findPath(t, paths, topology.ServerIP, topology.ClientIP, tcpSYN|tcpACK)
	requireHops(t, reply, []hopMatch{
		{kind: hop.Tx, dev: "eth0", netns: server.NetnsName, description: "tx on the server pod's eth0"},
		{kind: hop.Encap, dev: "flannel.1", netns: n2, description: "VXLAN encap on node2"},
		{kind: hop.Decap, dev: "flannel.1", netns: n1, description: "VXLAN decap on node1"},
		{kind: hop.NAT, netns: n1,
			nat:         &stitch.NAT{Type: hop.SNAT, From: topology.ServerAddr, To: topology.ClusterIP, Reverse: true},
			description: "un-DNAT 10.244.2.7:8080 → 10.96.0.10:80 on node1"},
		{kind: hop.Rx, dev: "eth0", netns: client.NetnsName, description: "rx on the client pod's eth0"},
	})
	checkBackends(t, reply, "")
}

func TestLiveSameNode(t *testing.T) {
	c := cluster(t, topology.Options{})
	stop := tracing(t, c, topology.ClientIP)
	client, peer := c.Pod(topology.PodClient), c.Pod(topology.PodPeer)
	n1 := c.Node(topology.Node1).NetnsName

	exchange(t, client, topology.PeerAddr)
	paths, _ := stop()
	req := findPath(t, paths, topology.ClientIP, topology.PeerIP, tcpSYN)
	requireHops(t, req, []hopMatch{
		{kind: hop.Tx, dev: "eth0", netns: client.NetnsName, description: "tx on the client's eth0"},
		{kind: hop.Rx, dev: client.HostVeth, netns: n1, description: "rx on the client's host veth"},
		{kind: hop.Netfilter, hook: hop.Prerouting, in: "cni0", netns: n1, description: "br_netfilter PREROUTING on cni0"},
		{kind: hop.Netfilter, hook: hop.Forward, netns: n1, description: "br_netfilter FORWARD"},
		{kind: hop.Tx, dev: peer.HostVeth, netns: n1, description: "tx on the peer's host veth"},
		{kind: hop.Rx, dev: "eth0", netns: peer.NetnsName, description: "rx on the peer's eth0"},
	})
	for _, h := range req.Hops {
		if h.Kind == hop.Encap || h.Kind == hop.NAT || (h.Kind == hop.Tx && h.Dev == "flannel.1") {
			t.Errorf("same-node path has a %s hop on %s:\n%s", h.Kind, h.Dev, dump(req))
		}
	}
	if req.Verdict != stitch.VerdictDelivered {
		t.Errorf("verdict %s, want delivered", req.Verdict)
	}
	if expectHop(hop.Bridge) {
		requireHops(t, req, []hopMatch{
			{kind: hop.Netfilter, hook: hop.Prerouting, in: "cni0", netns: n1, description: "br_netfilter PREROUTING on cni0"},
			{kind: hop.Bridge, dev: "cni0", netns: n1, description: "the bridge forwarding the frame to the peer's veth"},
			{kind: hop.Tx, dev: peer.HostVeth, netns: n1, description: "tx on the peer's host veth"},
		})
		for _, h := range req.Hops {
			if h.Kind == hop.Bridge && (h.Bridge == nil || h.Bridge.In != client.HostVeth || h.Bridge.Out != peer.HostVeth) {
				t.Errorf("bridge hop %+v, want %s → %s", h.Bridge, client.HostVeth, peer.HostVeth)
			}
		}
	}
	checkBackends(t, req, "")
}

// forwardDropped inserts, with iptables (a func of the node: IPTables,
// IPTablesLegacy), a FORWARD DROP of the client's packets to the server on
// node1, traces a request to the ClusterIP, and returns the request's path.
func forwardDropped(t *testing.T, c *topology.Cluster, iptables func(n *topology.Node, args ...string) error) *stitch.Path {
	t.Helper()
	n1 := c.Node(topology.Node1)
	if err := iptables(n1, "-I", "FORWARD", "-s", topology.ClientIP.String(), "-d", topology.ServerIP.String(), "-j", "DROP"); err != nil {
		t.Fatal(err)
	}
	stop := tracing(t, c, topology.ClientIP)
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	_, err := topology.TCPExchange(ctx, c.Pod(topology.PodClient), topology.ClusterIP, "ping")
	cancel()
	if err == nil {
		t.Fatal("the exchange went through a DROP rule")
	}
	paths, _ := stop()
	return findPath(t, paths, topology.ClientIP, topology.ClusterIP.Addr(), tcpSYN)
}

func TestLiveForwardDrop(t *testing.T) {
	c := cluster(t, topology.Options{})
	n1 := c.Node(topology.Node1)
	req := forwardDropped(t, c, (*topology.Node).IPTables)
	requireHops(t, req, hops([]hopMatch{
		{kind: hop.NAT, hook: hop.Prerouting, description: "DNAT at PREROUTING"},
		{kind: hop.Netfilter, hook: hop.Forward, netns: n1.NetnsName, description: "FORWARD"},
	}, tableHop(n1.NetnsName, "filter", hop.Forward, hop.VerdictDrop), []hopMatch{
		{kind: hop.Drop, hook: hop.Forward, reason: wantReason("NETFILTER_DROP"), description: "a drop in FORWARD with reason " + wantReason("NETFILTER_DROP")},
	}))
	if req.Verdict != stitch.VerdictDropped {
		t.Errorf("verdict %s, want dropped", req.Verdict)
	}
	last := req.Hops[len(req.Hops)-1]
	if last.Kind != hop.Drop {
		t.Fatalf("path does not end in its drop:\n%s", dump(req))
	}
	// The freeing function, named from kallsyms: netfilter frees a packet
	// a rule dropped in nf_hook_slow, or (nf_tables on newer kernels) in
	// nft_do_chain itself.
	if fn := last.FuncName(); fn != "nf_hook_slow" && fn != "nft_do_chain" {
		t.Errorf("drop freed by %q (location %#x), want nf_hook_slow or nft_do_chain\n%s", last.Func, last.Location, describeAddr(last.Location))
	}
	// The advice points at FORWARD's rules on every kernel: from the
	// reason, the table's verdict, or (before 5.17) the freeing function.
	if !strings.Contains(last.Advice, "FORWARD") || !strings.Contains(last.Advice, n1.NetnsName) {
		t.Errorf("drop advice does not point at FORWARD on %s:\n%s", n1.NetnsName, last.Advice)
	}
}

// TestLiveLegacyTableDrop drops the request with an iptables-legacy rule
// (x_tables, next to the nftables rules the node already has): the path
// shows that table's verdict, ipt_do_table's, before the drop.
func TestLiveLegacyTableDrop(t *testing.T) {
	testutil.RequireRoot(t)
	if !expectHop(hop.Table) {
		testutil.Missing(t, testutil.FuncHops, errors.New("no table verdicts (pathtrace features says why)"))
	}
	c := cluster(t, topology.Options{})
	n1 := c.Node(topology.Node1)
	req := forwardDropped(t, c, (*topology.Node).IPTablesLegacy)
	requireHops(t, req, []hopMatch{
		{kind: hop.Netfilter, hook: hop.Forward, netns: n1.NetnsName, description: "FORWARD"},
		{kind: hop.Table, hook: hop.Forward, netns: n1.NetnsName,
			table:       &stitch.Table{Engine: hop.EngineXTables, Family: hop.FamilyIPv4, Name: "filter", Chain: "FORWARD", Verdict: hop.VerdictDrop},
			description: "the iptables-legacy filter table's drop in FORWARD"},
		{kind: hop.Drop, hook: hop.Forward, netns: n1.NetnsName, description: "the drop in FORWARD"},
	})
	last := req.Hops[len(req.Hops)-1]
	if !strings.Contains(last.Advice, "iptables-legacy -t filter -L FORWARD") {
		t.Errorf("drop advice does not point at the legacy table:\n%s", last.Advice)
	}
	checkBackends(t, req, "")
}

func TestLiveUnrelatedTrafficMakesNoEvents(t *testing.T) {
	c := cluster(t, topology.Options{})
	stop := tracing(t, c, topology.ClientIP)
	// Peer and server talk, over the service and directly: none of it
	// involves the traced pod.
	exchange(t, c.Pod(topology.PodPeer), topology.ClusterIP)
	exchange(t, c.Pod(topology.PodPeer), topology.ServerAddr)
	paths, sum := stop()
	if sum.Events != 0 || len(paths) != 0 {
		t.Errorf("tracing %s saw %d events and %d paths of other pods' traffic", topology.ClientIP, sum.Events, len(paths))
	}
}

// describeAddr says, for a failure message, what the kernel has at a code
// address now: its name in a fresh read of /proc/kallsyms, the kallsyms
// text symbols around it, and the /proc/modules lines whose core holds it
// or lies near it.
func describeAddr(addr uint64) string {
	var b strings.Builder
	if syms, err := kernel.LoadSymbols(); err != nil {
		fmt.Fprintf(&b, "kallsyms: %v\n", err)
	} else {
		fmt.Fprintf(&b, "kallsyms now: %q\n", syms.Lookup(addr))
	}
	if f, err := os.ReadFile("/proc/kallsyms"); err == nil {
		var below, above []string
		for line := range strings.Lines(string(f)) {
			fs := strings.Fields(line)
			if len(fs) < 3 {
				continue
			}
			a, err := strconv.ParseUint(fs[0], 16, 64)
			if err != nil || a == 0 {
				continue
			}
			switch {
			case a <= addr && addr-a < 1<<16:
				below = append(below, strings.TrimSpace(line))
			case a > addr && a-addr < 1<<12:
				above = append(above, strings.TrimSpace(line))
			}
		}
		slices.Sort(below)
		slices.Sort(above)
		below = below[max(0, len(below)-3):]
		above = above[:min(3, len(above))]
		fmt.Fprintf(&b, "kallsyms below: %q\nkallsyms above: %q\n", below, above)
	}
	if f, err := os.ReadFile("/proc/modules"); err == nil {
		for line := range strings.Lines(string(f)) {
			fs := strings.Fields(line)
			if len(fs) < 6 {
				continue
			}
			size, _ := strconv.ParseUint(fs[1], 10, 64)
			base, _ := strconv.ParseUint(strings.TrimPrefix(fs[5], "0x"), 16, 64)
			if base != 0 && addr+1<<20 > base && addr < base+size+1<<20 {
				fmt.Fprintf(&b, "module near: %s (core %#x..%#x)\n", strings.TrimSpace(line), base, base+size)
			}
		}
	}
	return b.String()
}
