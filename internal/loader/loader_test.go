package loader

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/bpf"
	"github.com/pathtrace/pathtrace/internal/features"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/kernel"
	"github.com/pathtrace/pathtrace/internal/testutil"
)

func TestParseChoice(t *testing.T) {
	for _, c := range Choices {
		if got, err := ParseChoice(string(c)); err != nil || got != c {
			t.Errorf("ParseChoice(%q) = %q, %v", c, got, err)
		}
	}
	if _, err := ParseChoice("ebpf"); err == nil || !strings.Contains(err.Error(), "auto, tracepoint, fentry, kprobe") {
		t.Errorf("ParseChoice(ebpf) error %v, want the list of choices", err)
	}
}

// The modules whose functions the function hops attach to.
var hopModules = []string{"bridge", "br_netfilter", "vxlan", "geneve", "ipip", "ip_vs", "ip_tables", "nf_tables", "nf_conntrack"}

// TestFeaturesMatchKernel checks what `pathtrace features` says against
// what we know of each kernel we test on (testutil.ExpectedBackends).
func TestFeaturesMatchKernel(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.Modprobe(hopModules...)
	want := testutil.RequireExpectedBackends(t)
	r := Features(testutil.Release(), ChoiceAuto, KernelProbes)
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("pathtrace features:\n%s", text.String())
	seen := map[hop.Kind]bool{}
	for _, h := range r.Hops {
		seen[h.Hop] = true
		w, ok := want[h.Hop]
		if !ok {
			t.Errorf("hop %s: no expectation", h.Hop)
			continue
		}
		if h.Backend != w {
			t.Errorf("hop %s: backend %q (%s%s), want %q", h.Hop, h.Backend, h.Source, h.Reason, w)
		}
		if !h.Observable() && (h.Reason == "" || !strings.Contains(text.String(), "not observable: "+h.Reason)) {
			t.Errorf("hop %s is not observable but the listing does not say why", h.Hop)
		}
	}
	for k := range want {
		if !seen[k] {
			t.Errorf("hop %s missing from the listing", k)
		}
	}
}

// TestOpenRingSize: a ring buffer of another size than the objects declare
// loads with every object's programs (the netfilter ones did not), and the
// reader reads the size asked for.
func TestOpenRingSize(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.Modprobe(hopModules...)
	plan := Plan(ChoiceAuto, KernelProbes)
	tr, err := Open(Options{RingSize: MinRing})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer tr.Close()
	if got := tr.reader.Size(); got != MinRing {
		t.Errorf("ring buffer of %d bytes, want %d", got, MinRing)
	}
	for i, h := range tr.Hops {
		if p := plan[i]; h.Backend != p.Backend {
			t.Errorf("hop %s: attached %q (%s), plan said %q", h.Hop, h.Backend, h.Reason, p.Backend)
		}
	}
	// Every program's statistics read, as the summary does at the end.
	if _, err := tr.Missed(); err != nil {
		t.Errorf("program runs skipped: %v", err)
	}
}

// TestDirectForms opens a tracer and checks which form of the device and
// netfilter programs loaded: the direct one (track_typed's direct form:
// the packet's first bytes read with plain loads) on 6.18, whose verifier types a load
// of skb->head as readable memory. Older kernels are not asserted: on 6.12
// and older the load is a number and the loader falls back to the
// helper-reading forms, which every other test of the VM matrix then runs.
func TestDirectForms(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.Modprobe(hopModules...)
	tr, err := Open(Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer tr.Close()
	var direct, plain []string
	for _, p := range tr.progs {
		info, err := p.Info()
		if err != nil {
			t.Fatal(err)
		}
		switch n := info.Name; { // the kernel keeps 15 bytes of a name
		case strings.HasPrefix(n, "btfd_") || strings.HasPrefix(n, "nf_first_direct") || strings.HasPrefix(n, "nf_last_direct"):
			direct = append(direct, n)
		case strings.HasPrefix(n, "btf_net") || n == "nf_first" || n == "nf_last":
			plain = append(plain, n)
		}
	}
	t.Logf("%s: direct forms %v, the others %v", kernel.Release(), direct, plain)
	if len(direct)+len(plain) == 0 {
		t.Fatal("no device or netfilter program loaded")
	}
	if !kernel.VersionBelow(6, 18) && len(plain) > 0 {
		t.Errorf("%s loaded %v, want their direct forms", kernel.Release(), plain)
	}
}

// TestOpenFollowsPlan attaches everything the plan says on this kernel and
// checks that the tracer reports the same backends, and that closing it
// leaves no link behind.
func TestOpenFollowsPlan(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.Modprobe(hopModules...)
	plan := Plan(ChoiceAuto, KernelProbes)
	tr, err := Open(Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	for i, h := range tr.Hops {
		if p := plan[i]; h.Hop != p.Hop || h.Backend != p.Backend {
			t.Errorf("hop %s: attached %q (%s), plan said %q (%s)", h.Hop, h.Backend, h.Reason, p.Backend, p.Reason)
		}
	}
	if want, ok := testutil.ExpectedBackends(); ok {
		for _, h := range tr.Hops {
			if h.Backend != want[h.Hop] {
				t.Errorf("hop %s: attached %q, want %q on %s", h.Hop, h.Backend, want[h.Hop], testutil.Release())
			}
		}
	}
	var ours []link.ID
	for _, l := range tr.links {
		info, err := l.Info()
		if errors.Is(err, ebpf.ErrNotSupported) {
			continue // a perf event (kprobes before 5.15): not a BPF link
		}
		if err != nil {
			t.Fatalf("link info: %v", err)
		}
		ours = append(ours, info.ID)
	}
	if err := tr.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	// Other processes may attach links meanwhile: look for ours only.
	for _, id := range testutil.LinkIDs(t) {
		if slices.Contains(ours, id) {
			t.Errorf("link %d still attached after Close", id)
		}
	}
}

// TestForcedBackend checks that --backend fentry and --backend kprobe show
// the netfilter and function hops with that backend only, or not at all,
// saying why.
func TestForcedBackend(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.Modprobe(hopModules...)
	for _, c := range []struct {
		choice Choice
		probe  func() error
		fact   testutil.Fact
	}{
		{ChoiceFentry, features.Fentry, testutil.FentryPrograms},
		{ChoiceKprobe, features.Kprobe, testutil.Kprobes},
		{ChoiceTracepoint, features.NetfilterLink, testutil.NetfilterLinks},
	} {
		t.Run(string(c.choice), func(t *testing.T) {
			testutil.RequireSupported(t, c.fact, c.probe())
			tr, err := Open(Options{Backend: c.choice})
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer tr.Close()
			for _, h := range tr.Hops {
				switch h.Hop {
				case hop.Rx, hop.Tx, hop.Drop, hop.Consume:
					if h.Backend != hop.Tracepoint {
						t.Errorf("hop %s: %q, want tracepoint", h.Hop, h.Backend)
					}
				case hop.Encap, hop.Decap:
					if h.Backend != hop.Inferred && h.Backend.String() != string(c.choice) {
						t.Errorf("hop %s: %q, want %s or inferred", h.Hop, h.Backend, c.choice)
					}
				case hop.Netfilter, hop.NAT:
					var want hop.Backend
					if err := want.UnmarshalText([]byte(c.choice)); err != nil {
						t.Fatal(err)
					}
					if c.choice == ChoiceTracepoint {
						want = hop.NetfilterLink
					}
					if h.Backend != want {
						t.Errorf("hop %s: %q (%s), want %s", h.Hop, h.Backend, h.Reason, want)
					}
				default:
					if h.Observable() && h.Backend.String() != string(c.choice) {
						t.Errorf("hop %s: %q, want %s or not observable", h.Hop, h.Backend, c.choice)
					}
					if !h.Observable() && h.Reason == "" {
						t.Errorf("hop %s: not observable, without a reason", h.Hop)
					}
				}
			}
		})
	}
}

// TestKernelStructHeads compares the struct heads the kprobe programs read
// at fixed offsets where a module has no BTF (bpf/include/ipvs.h,
// funcs.h, tables.h, common.h) with the BTF of the kernels that have it.
func TestKernelStructHeads(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.Modprobe(hopModules...)
	spec, err := bpf.LoadKprobe()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		module, kernelType, ours string
	}{
		{"ip_vs", "ip_vs_conn", "pt_ip_vs_conn_head"},
		{"bridge", "net_bridge_port", "pt_net_bridge_port_head"},
		{"ip_tables", "xt_table", "pt_xt_table_head"},
		{"nf_tables", "nft_chain", "pt_nft_chain_head"},
		{"nf_conntrack", "nf_conn", "pt_nf_conn_head"},
		{"nf_conntrack", "nf_conntrack_tuple_hash", "pt_ct_tuple_hash"},
		{"nf_conntrack", "nf_conntrack_tuple", "pt_ct_tuple"},
		{"nf_conntrack", "nf_conntrack_man", "pt_ct_man"},
	} {
		t.Run(c.kernelType, func(t *testing.T) {
			if c.module == "ip_vs" {
				testutil.Require(t, testutil.IPVS)
			}
			var kt *btf.Struct
			err := func() error {
				if ks, err := btf.LoadKernelSpec(); err == nil && ks.TypeByName(c.kernelType, &kt) == nil {
					return nil
				}
				ms, err := btf.LoadKernelModuleSpec(c.module)
				if errors.Is(err, fs.ErrNotExist) {
					return features.NotSupportedError("no BTF for module %s", c.module)
				}
				if err != nil {
					return err
				}
				return ms.TypeByName(c.kernelType, &kt)
			}()
			testutil.RequireSupported(t, testutil.ModuleBTF, err)
			var ours *btf.Struct
			if err := spec.Types.TypeByName(c.ours, &ours); err != nil {
				t.Fatal(err)
			}
			offsets := map[string]btf.Bits{}
			for _, m := range kt.Members {
				offsets[m.Name] = m.Offset
			}
			for _, m := range ours.Members {
				if m.Name == "c_list" || strings.HasPrefix(m.Name, "pad") ||
					m.Name == "br" && c.kernelType == "net_bridge_port" {
					continue
				}
				got, ok := offsets[m.Name]
				if !ok {
					t.Errorf("struct %s has no field %s", c.kernelType, m.Name)
					continue
				}
				if got != m.Offset {
					t.Errorf("%s.%s at bit %d, %s reads it at bit %d", c.kernelType, m.Name, got, c.ours, m.Offset)
				}
			}
		})
	}
}

// TestTwoTracersShareHooks opens two tracers of the same namespace, the
// second given it twice: both show the netfilter hooks with links, the
// second at the free priorities next to the first's, and the namespace
// given twice is one node.
func TestTwoTracersShareHooks(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireSupported(t, testutil.NetfilterLinks, features.NetfilterLink())
	var log bytes.Buffer
	first, err := Open(Options{Backend: ChoiceTracepoint})
	if err != nil {
		t.Fatalf("first tracer: %v", err)
	}
	defer first.Close()
	second, err := Open(Options{Backend: ChoiceTracepoint, Netns: []string{"/proc/self/ns/net", "/proc/self/ns/net"},
		Log: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatalf("second tracer: %v", err)
	}
	defer second.Close()
	for _, tr := range []*Tracer{first, second} {
		for _, h := range tr.Hops {
			if h.Hop == hop.Netfilter && h.Backend != hop.NetfilterLink {
				t.Errorf("netfilter hops: %q (%s), want netfilter links", h.Backend, h.Reason)
			}
		}
	}
	if len(second.Nodes) != 1 || second.Nodes[0].Inode != first.Nodes[0].Inode {
		t.Errorf("nodes %+v, want one: the own namespace (%+v)", second.Nodes, first.Nodes)
	}
	for _, want := range []string{
		fmt.Sprintf("hook=PREROUTING first=%d last=%d", PriorityFirst+1, PriorityLast-1),
		fmt.Sprintf("hook=POSTROUTING first=%d last=%d", PriorityFirst+1, PriorityLast-1),
		"network namespace given again: traced once",
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("debug log lacks %q:\n%s", want, log.String())
		}
	}
}

// TestPrioritiesExhausted: when every priority tried is taken, attaching
// fails with an error that says so, not a hop the kernel cannot show.
func TestPrioritiesExhausted(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireSupported(t, testutil.NetfilterLinks, features.NetfilterLink())
	accept, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.Netfilter, AttachType: ebpf.AttachNetfilter, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}, // NF_ACCEPT
	})
	if err != nil {
		t.Fatal(err)
	}
	defer accept.Close()
	for i := range int32(priorityTries) {
		l, err := link.AttachNetfilter(link.NetfilterOptions{Program: accept, ProtocolFamily: unix.NFPROTO_IPV4,
			Hook: link.NetfilterInetHook(unix.NF_INET_PRE_ROUTING), Priority: PriorityFirst + i})
		if err != nil {
			t.Fatalf("take priority %d: %v", PriorityFirst+i, err)
		}
		defer l.Close()
	}
	tr, err := Open(Options{Backend: ChoiceTracepoint})
	if err == nil {
		tr.Close()
	}
	if err == nil || !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "PREROUTING") ||
		!strings.Contains(err.Error(), "all taken by other BPF netfilter programs") {
		t.Fatalf("open: %v, want an error saying PREROUTING's priorities are taken", err)
	}
}

// A pair of netfilter programs whose second does not load leaves nothing
// of the first loaded: the next pair is used, and only it is kept.
func TestNetfilterPairUnloadsHalf(t *testing.T) {
	testutil.RequireRoot(t)
	prog := func(name string, ok bool) *ebpf.ProgramSpec {
		insns := asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
		if !ok {
			insns = asm.Instructions{asm.Return()} // R0 unset: the verifier refuses
		}
		return &ebpf.ProgramSpec{Name: name, Type: ebpf.SocketFilter, License: "GPL", Instructions: insns}
	}
	spec := &ebpf.CollectionSpec{Maps: map[string]*ebpf.MapSpec{}, Programs: map[string]*ebpf.ProgramSpec{
		"nf_first_direct": prog("nf_first_direct", true),
		"nf_last_direct":  prog("nf_last_direct", false),
		"nf_first":        prog("nf_first", true),
		"nf_last":         prog("nf_last", true),
	}}
	tr := &Tracer{log: slog.New(slog.DiscardHandler), btf: btf.NewCache()}
	defer tr.Close()
	first, last, err := tr.loadNetfilterPrograms(spec, fakeKernel{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*ebpf.Program{first, last} {
		info, err := p.Info()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(info.Name, "nf_first") && !strings.HasPrefix(info.Name, "nf_last") || strings.Contains(info.Name, "direct") {
			t.Errorf("loaded %q, want the plain pair", info.Name)
		}
	}
	if len(tr.progs) != 2 || tr.progs[0] != first || tr.progs[1] != last {
		t.Errorf("%d programs kept, want the pair only", len(tr.progs))
	}
}
