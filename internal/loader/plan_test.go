package loader

import (
	"cmp"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/pathtrace/pathtrace/internal/bpf"
	"github.com/pathtrace/pathtrace/internal/features"
	"github.com/pathtrace/pathtrace/internal/hop"
)

// fakeKernel is a made-up kernel for the plan: what its probes answer, and
// where its functions are.
type fakeKernel struct {
	rawTP, btfTP, nfLink, fentry, kprobe, dropReasons, direct error
	// btf and kallsyms say, per function, why fentry or a kprobe cannot
	// reach it; a function in neither map is reachable both ways.
	btf, kallsyms map[string]error
	oldIptABI     bool
	lookups       *int // counts LookupFunctions and OldIptDoTableABI calls, when set
}

func (k fakeKernel) RawTracepoint() error { return k.rawTP }
func (k fakeKernel) BTFTracepoint() error { return k.btfTP }
func (k fakeKernel) NetfilterLink() error { return k.nfLink }
func (k fakeKernel) Fentry() error        { return k.fentry }
func (k fakeKernel) Kprobe() error        { return k.kprobe }
func (k fakeKernel) DropReasons() error   { return k.dropReasons }
func (k fakeKernel) DirectSKBRead() error { return k.direct }
func (k fakeKernel) OldIptDoTableABI() bool {
	k.count()
	return k.oldIptABI
}
func (k fakeKernel) count() {
	if k.lookups != nil {
		*k.lookups++
	}
}
func (k fakeKernel) LookupFunctions(refs ...features.FuncRef) []features.Function {
	k.count()
	fns := make([]features.Function, len(refs))
	for i, r := range refs {
		fns[i] = features.Function{Name: r.Name, Module: r.Module, BTF: k.btf[r.Name], Kallsyms: k.kallsyms[r.Name]}
		fns[i].Loaded = fns[i].BTF == nil || fns[i].Kallsyms == nil
	}
	return fns
}

var (
	errLockdown  = features.NotSupportedError("fentry refused (EPERM; kernel lockdown=integrity)")
	errNoKprobes = features.NotSupportedError("kprobes not built in (CONFIG_KPROBES unset)")
	errNoLinks   = features.NotSupportedError("no BPF netfilter links (they need Linux 6.4)")
	errNoReasons = features.NotSupportedError("no drop reasons before Linux 5.17")
)

// noModuleBTF says every module function has no BTF (Linux 5.10).
func noModuleBTF() map[string]error {
	m := map[string]error{}
	for _, f := range funcHops {
		for _, t := range f.targets {
			m[t.fn.Name] = features.NotSupportedError("module %s has no BTF", t.fn.Module)
		}
	}
	return m
}

func planOf(t *testing.T, choice Choice, k fakeKernel) map[hop.Kind]HopSupport {
	t.Helper()
	got := map[hop.Kind]HopSupport{}
	hops := Plan(choice, k)
	for i, d := range hop.Kinds() {
		if i >= len(hops) || hops[i].Hop != d.Kind {
			t.Fatalf("plan lists %v, want every hop kind in order", hops)
		}
		got[d.Kind] = hops[i]
	}
	return got
}

func wantBackends(t *testing.T, got map[hop.Kind]HopSupport, want map[hop.Kind]hop.Backend) {
	t.Helper()
	for k, b := range want {
		if got[k].Backend != b {
			t.Errorf("%s: %s (%s; %s), want %s", k, got[k].Backend, got[k].Source, got[k].Reason, b)
		}
		if !got[k].Observable() && got[k].Reason == "" {
			t.Errorf("%s: not observable, without a reason", k)
		}
	}
}

// The plan picks per hop the best backend the kernel allows and says why
// it did not pick the better ones: the kernels of the matrix and the host,
// made up.
func TestPlan(t *testing.T) {
	funcs := []hop.Kind{hop.Table, hop.Bridge, hop.IPVS, hop.IPVSDrop}
	expect := func(nf, fn, vxlan hop.Backend) map[hop.Kind]hop.Backend {
		m := map[hop.Kind]hop.Backend{hop.Rx: hop.Tracepoint, hop.Tx: hop.Tracepoint, hop.Drop: hop.Tracepoint,
			hop.Consume: hop.Tracepoint, hop.Netfilter: nf, hop.NAT: nf, hop.Encap: vxlan, hop.Decap: vxlan}
		for _, k := range funcs {
			m[k] = fn
		}
		return m
	}
	t.Run("host 6.18", func(t *testing.T) {
		var lookups int
		got := planOf(t, ChoiceAuto, fakeKernel{fentry: errLockdown, kprobe: errNoKprobes, lookups: &lookups})
		wantBackends(t, got, expect(hop.NetfilterLink, hop.NoBackend, hop.Inferred))
		if lookups != 0 {
			t.Errorf("%d function lookups where neither fentry nor kprobes can reach a function; want none (start-up time)", lookups)
		}
		if r := got[hop.Bridge].Reason; !strings.Contains(r, "lockdown") || !strings.Contains(r, "CONFIG_KPROBES") {
			t.Errorf("bridge: reason %q does not say why fentry and kprobes are out", r)
		}
		if r := got[hop.Encap].Reason; !strings.HasPrefix(r, "vxlan_xmit, geneve_xmit, ipip_tunnel_xmit: ") {
			t.Errorf("encap inferred, reason %q", r)
		}
		if got[hop.Netfilter].Reason != "" || got[hop.Drop].Reason != "" {
			t.Errorf("best backends carry reasons: %+v, %+v", got[hop.Netfilter], got[hop.Drop])
		}
	})
	t.Run("5.10", func(t *testing.T) {
		k := fakeKernel{nfLink: errNoLinks, dropReasons: errNoReasons, btf: noModuleBTF(), oldIptABI: true}
		got := planOf(t, ChoiceAuto, k)
		wantBackends(t, got, expect(hop.Fentry, hop.Kprobe, hop.Kprobe))
		if r := got[hop.Netfilter].Reason; !strings.Contains(r, "netfilter links") {
			t.Errorf("netfilter from fentry, reason %q", r)
		}
		if r := got[hop.Drop].Reason; !strings.Contains(r, "drops show the function that freed the packet") {
			t.Errorf("drop reason %q", r)
		}
		// ipt_do_table with its arguments before 5.16.
		p := makePlan(ChoiceAuto, k)
		if e, _ := p.funcs[hop.Table][1].targets[0].programs(hop.Kprobe); e != "kprobe_ipt_do_table_pre516" {
			t.Errorf("ipt_do_table before 5.16 attaches %s", e)
		}
	})
	t.Run("6.1", func(t *testing.T) {
		got := planOf(t, ChoiceAuto, fakeKernel{nfLink: errNoLinks})
		wantBackends(t, got, expect(hop.Fentry, hop.Fentry, hop.Fentry))
		if s := got[hop.Table].Source; s != "fentry/ipt_do_table,nft_do_chain+fexit" {
			t.Errorf("table source %q", s)
		}
	})
	t.Run("6.12 without ip_vs_in_hook", func(t *testing.T) {
		k := fakeKernel{kallsyms: map[string]error{"ip_vs_in_hook": errors.New("gone")}, btf: map[string]error{"ip_vs_in_hook": features.NotSupportedError("no BTF")}}
		got := planOf(t, ChoiceAuto, k)
		wantBackends(t, got, expect(hop.NetfilterLink, hop.Fentry, hop.Fentry))
		if s := got[hop.IPVSDrop].Source; s != "fexit/ip_vs_remote_request4,ip_vs_local_request4" {
			t.Errorf("ipvs-drop source %q: the targets the kernel has", s)
		}
	})
	t.Run("tunnel modules", func(t *testing.T) {
		// Every tunnel module loaded: each tunnel's functions.
		got := planOf(t, ChoiceAuto, fakeKernel{})
		if s := got[hop.Encap].Source; s != "fentry/vxlan_xmit,geneve_xmit,ipip_tunnel_xmit" {
			t.Errorf("encap source %q", s)
		}
		if s := got[hop.Decap].Source; s != "fentry/vxlan_rcv,geneve_udp_encap_recv,ipip_rcv" {
			t.Errorf("decap source %q", s)
		}
		// Only vxlan: geneve's and ipip's functions are left out, not
		// an error.
		missing := map[string]error{}
		for _, fn := range []string{"geneve_xmit", "geneve_udp_encap_recv"} {
			missing[fn] = features.NotSupportedError("module geneve not loaded")
		}
		for _, fn := range []string{"ipip_tunnel_xmit", "ipip_rcv"} {
			missing[fn] = features.NotSupportedError("module ipip not loaded")
		}
		got = planOf(t, ChoiceAuto, fakeKernel{btf: missing, kallsyms: missing})
		if h := got[hop.Encap]; h.Backend != hop.Fentry || h.Source != "fentry/vxlan_xmit" {
			t.Errorf("encap with vxlan only: %+v", h)
		}
		if h := got[hop.Decap]; h.Backend != hop.Fentry || h.Source != "fentry/vxlan_rcv" {
			t.Errorf("decap with vxlan only: %+v", h)
		}
		// No tunnel module: inferred, saying why.
		for _, fn := range []string{"vxlan_xmit", "vxlan_rcv"} {
			missing[fn] = features.NotSupportedError("module vxlan not loaded")
		}
		got = planOf(t, ChoiceAuto, fakeKernel{btf: missing, kallsyms: missing})
		if h := got[hop.Encap]; h.Backend != hop.Inferred || !strings.Contains(h.Reason, "module geneve not loaded") {
			t.Errorf("encap without tunnel modules: %+v", h)
		}
	})
	t.Run("forced kprobe without kprobes", func(t *testing.T) {
		got := planOf(t, ChoiceKprobe, fakeKernel{fentry: errLockdown, kprobe: errNoKprobes})
		wantBackends(t, got, expect(hop.NoBackend, hop.NoBackend, hop.Inferred))
		if r := got[hop.Netfilter].Reason; !strings.Contains(r, "CONFIG_KPROBES") {
			t.Errorf("netfilter: reason %q", r)
		}
	})
	t.Run("tracepoint", func(t *testing.T) {
		got := planOf(t, ChoiceTracepoint, fakeKernel{})
		wantBackends(t, got, expect(hop.NetfilterLink, hop.NoBackend, hop.Inferred))
		if r := got[hop.IPVS].Reason; !strings.Contains(r, "--backend tracepoint") {
			t.Errorf("ipvs: reason %q", r)
		}
	})
	t.Run("BTF tracepoints", func(t *testing.T) {
		noBTF := features.NotSupportedError("no BTF tracepoint programs")
		for _, c := range []struct {
			k      fakeKernel
			source string
			drop   []string // the programs tried for drops, in order
		}{
			{fakeKernel{}, "tp_btf/", []string{"btf_kfree_skb_reason", "tp_kfree_skb_reason", "tp_kfree_skb"}},
			{fakeKernel{btfTP: noBTF}, "raw_tracepoint/", []string{"tp_kfree_skb_reason", "tp_kfree_skb"}},
			{fakeKernel{dropReasons: errNoReasons}, "tp_btf/", []string{"btf_kfree_skb", "tp_kfree_skb"}},
			{fakeKernel{btfTP: noBTF, dropReasons: errNoReasons}, "raw_tracepoint/", []string{"tp_kfree_skb"}},
		} {
			got := planOf(t, ChoiceAuto, c.k)
			for _, tp := range tpHops {
				h := got[tp.hop]
				source := c.source
				if tp.hop == hop.Consume {
					source = "raw_tracepoint/" // no BTF form
				}
				if h.Backend != hop.Tracepoint || h.Source != source+tp.tp {
					t.Errorf("%+v: %s shown by %s %s, want %s%s", c.k, tp.hop, h.Backend, h.Source, source, tp.tp)
				}
				if tp.hop != hop.Drop {
					continue
				}
				var names []string
				for _, p := range tp.programs(c.k) {
					names = append(names, p.name)
				}
				if !slices.Equal(names, c.drop) {
					t.Errorf("%+v: drop programs %v, want %v", c.k, names, c.drop)
				}
				if noReason := c.k.dropReasons != nil; noReason != (h.Reason != "") {
					t.Errorf("%+v: drop reason note %q", c.k, h.Reason)
				}
			}
		}
	})
	t.Run("no raw tracepoints", func(t *testing.T) {
		got := planOf(t, ChoiceAuto, fakeKernel{rawTP: features.NotSupportedError("no raw tracepoint programs")})
		for _, k := range []hop.Kind{hop.Rx, hop.Tx, hop.Drop, hop.Consume} {
			if got[k].Observable() || got[k].Reason != "no raw tracepoint programs" {
				t.Errorf("%s: %+v", k, got[k])
			}
		}
	})
}

// Options.RingSize sizes the ring buffer of every object: a program that
// shares the map with another object's must declare it alike, or it does
// not load (it did not, 2026-12-04: only the tracepoint object's was set).
func TestRingSize(t *testing.T) {
	for _, size := range []int{0, 4 << 20} {
		s, err := loadSpecs(&Options{VXLANPorts: DefaultVXLANPorts, Probes: fakeKernel{}, RingSize: size}, nil) // every object
		if err != nil {
			t.Fatal(err)
		}
		want := uint32(cmp.Or(size, DefaultRing)) // the default is the objects' own
		for name, spec := range map[string]*ebpf.CollectionSpec{"tracepoint": s.tp, "netfilter": s.nf, "fentry": s.fentry, "kprobe": s.kprobe} {
			if got := spec.Maps["events"].MaxEntries; got != want {
				t.Errorf("RingSize %d: the %s object's ring buffer is %d bytes, want %d", size, name, got, want)
			}
		}
	}
}

// A ring buffer size the kernel would refuse is refused before anything
// loads.
func TestRingSizeChecked(t *testing.T) {
	for _, n := range []int{MinRing / 2, 3 << 20, MaxRing * 2, -1} {
		if err := validate(&Options{RingSize: n}); err == nil || !strings.Contains(err.Error(), "power of two") {
			t.Errorf("RingSize %d: %v, want an error", n, err)
		}
	}
	for _, n := range []int{0, MinRing, DefaultRing, MaxRing} {
		if err := validate(&Options{RingSize: n}); err != nil {
			t.Errorf("RingSize %d: %v", n, err)
		}
	}
}

// Every program object has the shared maps and no other but the kprobe
// object's own: a map added in C must be added to sharedMaps, or each
// program would get a map of its own.
func TestObjectMaps(t *testing.T) {
	s, err := loadSpecs(&Options{VXLANPorts: DefaultVXLANPorts, Probes: fakeKernel{}}, nil) // every object
	if err != nil {
		t.Fatal(err)
	}
	var m sharedMaps
	for name, spec := range map[string]*ebpf.CollectionSpec{"tracepoint": s.tp, "netfilter": s.nf, "fentry": s.fentry, "kprobe": s.kprobe} {
		var got []string
		for n := range spec.Maps {
			if !strings.HasPrefix(n, ".") { // the object's own variables
				got = append(got, n)
			}
		}
		slices.Sort(got)
		var shared []string
		for n := range m.replacements(spec) {
			shared = append(shared, n)
		}
		slices.Sort(shared)
		if !slices.Equal(got, shared) {
			t.Errorf("%s object: maps %v, shared %v", name, got, shared)
		}
	}
}

// Every program the tracepoint hops try is in the tracepoint object, of the
// type its name says, on the hop's tracepoint.
func TestTracepointPrograms(t *testing.T) {
	spec, err := loadSpec("tracepoint", bpf.LoadTracepoint)
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range tpHops {
		for _, p := range tp.programs(fakeKernel{}) {
			ps := spec.Programs[p.name]
			switch {
			case ps == nil:
				t.Errorf("%s: no program %s", tp.hop, p.name)
			case p.btf && (ps.Type != ebpf.Tracing || ps.AttachType != ebpf.AttachTraceRawTp || ps.AttachTo != tp.tp):
				t.Errorf("%s: %s is %s/%s on %q, want a BTF tracepoint on %s", tp.hop, p.name, ps.Type, ps.AttachType, ps.AttachTo, tp.tp)
			case !p.btf && ps.Type != ebpf.RawTracepoint:
				t.Errorf("%s: %s is %s, want a raw tracepoint", tp.hop, p.name, ps.Type)
			}
		}
	}
}

// The function-hop objects are parsed only where their backend can run.
func TestSpecsOfUnusableBackendsNotLoaded(t *testing.T) {
	for _, c := range []struct {
		name           string
		opts           Options
		fentry, kprobe bool
	}{
		{"host 6.18", Options{Probes: fakeKernel{fentry: errLockdown, kprobe: errNoKprobes}}, false, false},
		{"kprobes only", Options{Probes: fakeKernel{fentry: errLockdown}}, false, true},
		{"both, --backend tracepoint", Options{Probes: fakeKernel{}, Backend: ChoiceTracepoint}, false, false},
		{"both", Options{Probes: fakeKernel{}}, true, true},
	} {
		c.opts.VXLANPorts = DefaultVXLANPorts
		s, err := loadSpecs(&c.opts, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.tp == nil || s.nf == nil || (s.fentry != nil) != c.fentry || (s.kprobe != nil) != c.kprobe {
			t.Errorf("%s: objects tp %v nf %v fentry %v kprobe %v, want fentry %v kprobe %v", c.name,
				s.tp != nil, s.nf != nil, s.fentry != nil, s.kprobe != nil, c.fentry, c.kprobe)
		}
	}
}

// The direct forms come first where the kernel allows direct reads, and
// are not tried where it does not; every one is in its object.
func TestDirectFormsPlanned(t *testing.T) {
	no := features.NotSupportedError("a load of skb->head is a number")
	nf, err := loadSpec("netfilter", bpf.LoadNetfilter)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		k      fakeKernel
		rx, nf []string
	}{
		{fakeKernel{}, []string{"btfd_netif_receive_skb", "btf_netif_receive_skb", "tp_netif_receive_skb"}, []string{"nf_first_direct", "nf_last_direct", "nf_first", "nf_last"}},
		{fakeKernel{direct: no}, []string{"btf_netif_receive_skb", "tp_netif_receive_skb"}, []string{"nf_first", "nf_last"}},
		{fakeKernel{direct: no, btfTP: no}, []string{"tp_netif_receive_skb"}, []string{"nf_first", "nf_last"}},
	} {
		var rx, nfs []string
		for _, p := range tpHops[0].programs(c.k) {
			rx = append(rx, p.name)
		}
		for _, pair := range nfPrograms(c.k) {
			nfs = append(nfs, pair...)
		}
		if tpHops[0].hop != hop.Rx || !slices.Equal(rx, c.rx) || !slices.Equal(nfs, c.nf) {
			t.Errorf("%+v: rx programs %v, want %v; netfilter programs %v, want %v", c.k, rx, c.rx, nfs, c.nf)
		}
		for _, n := range nfs {
			if p := nf.Programs[n]; p == nil || p.Type != ebpf.Netfilter {
				t.Errorf("no netfilter program %s", n)
			}
		}
	}
}
