package loader

import (
	"cmp"
	"errors"
	"slices"
	"strings"
	"sync"

	"github.com/pathtrace/pathtrace/internal/features"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/kernel"
)

// Probes says what the running kernel allows. The plan asks nothing else
// of the kernel, so it is tested without root against a made-up kernel.
// Each method returns nil, or an error wrapping ebpf.ErrNotSupported that
// says why not, or another error when the probe could not tell.
type Probes interface {
	RawTracepoint() error
	BTFTracepoint() error
	NetfilterLink() error
	Fentry() error
	Kprobe() error
	DropReasons() error
	// DirectSKBRead: whether a typed skb's head may be read with plain
	// loads (the direct program forms, track_typed's direct form).
	DirectSKBRead() error
	// LookupFunctions finds each function in BTF and kallsyms.
	LookupFunctions(refs ...features.FuncRef) []features.Function
	// OldIptDoTableABI reports whether ipt_do_table takes (skb, state,
	// table), as before Linux 5.16, rather than (priv, skb, state).
	OldIptDoTableABI() bool
}

// KernelProbes are the running kernel's probes (internal/features), each
// run once.
var KernelProbes Probes = kernelProbes{}

type kernelProbes struct{}

func (kernelProbes) RawTracepoint() error { return features.RawTracepoint() }
func (kernelProbes) BTFTracepoint() error { return features.BTFTracepoint() }
func (kernelProbes) NetfilterLink() error { return features.NetfilterLink() }
func (kernelProbes) Fentry() error        { return features.Fentry() }
func (kernelProbes) Kprobe() error        { return features.Kprobe() }
func (kernelProbes) DropReasons() error   { return features.DropReasons() }
func (kernelProbes) DirectSKBRead() error { return features.DirectSKBRead() }
func (kernelProbes) LookupFunctions(refs ...features.FuncRef) []features.Function {
	return features.LookupFunctions(refs...)
}
func (kernelProbes) OldIptDoTableABI() bool { return iptDoTableOldABI() }

// iptDoTableOldABI tells ipt_do_table's arguments ("netfilter: iptables:
// allow use of ipt_do_table as hookfn", Linux 5.16) by its BTF where the
// kernel has it, else by the kernel's version. Asked once: the answer does
// not change while the kernel runs.
var iptDoTableOldABI = sync.OnceValue(func() bool {
	if params, err := features.FuncParams(iptDoTable); err == nil && len(params) > 0 {
		return params[0] == "skb"
	}
	return kernel.VersionBelow(5, 16)
})

// tpHops are the hops tracepoints show, with their programs; kfree_skb
// has a second program for kernels whose tracepoint has no reason (before
// 5.17). Each program is built for a raw tracepoint, named tp_*, and where
// btf is set also for a BTF tracepoint, btf_* (bpf/tracepoint.c says why
// consume_skb has no BTF form), and where direct is set a second BTF form,
// btfd_*, that reads the packet's first bytes with plain loads where the
// kernel's verifier allows it (track_typed's direct form in bpf/include/common.h).
var tpHops = []tpHop{
	{hop: hop.Rx, tp: "netif_receive_skb", prog: "netif_receive_skb", btf: true, direct: true},
	{hop: hop.Tx, tp: "net_dev_queue", prog: "net_dev_queue", btf: true, direct: true},
	{hop: hop.Consume, tp: "consume_skb", prog: "consume_skb"},
	{hop: hop.Drop, tp: "kfree_skb", prog: "kfree_skb_reason", fallback: "kfree_skb", btf: true},
}

type tpHop struct {
	hop      hop.Kind
	tp, prog string
	fallback string
	btf      bool
	direct   bool
}

// tpProgram is a tracepoint program of a hop.
type tpProgram struct {
	name string
	btf  bool // a BTF tracepoint's (tp_btf), else a raw tracepoint's
	// noReason: the form for a kfree_skb without a drop reason.
	noReason bool
}

// source is the kernel hook the program shows its hop from.
func (p tpProgram) source(tp string) string {
	if p.btf {
		return "tp_btf/" + tp
	}
	return "raw_tracepoint/" + tp
}

// programs are the programs to try for the hop, in order. The BTF
// tracepoint's first where the hop has one and the kernel has them: its
// skb fields are plain loads, not a helper call (30-60 ns less per run on
// 6.18, docs/BENCHMARKS.md 2026-12-04); its direct form before it, whose
// packet bytes are plain loads too (~20 ns less, 2026-12-04 (evening)),
// and which the verifier of 6.12 and older refuses (a load of skb->head is
// a number there). Then the raw tracepoint's, and for
// kfree_skb the form without a reason last. On a kernel without drop
// reasons only that form, as the reason program would be loaded (seconds
// of verifier time under emulation) only to be refused.
func (tp tpHop) programs(pr Probes) []tpProgram {
	names := []string{tp.prog}
	switch {
	case tp.fallback == "":
	case pr.DropReasons() != nil:
		names = []string{tp.fallback}
	default:
		names = append(names, tp.fallback)
	}
	var progs []tpProgram
	if tp.btf && pr.BTFTracepoint() == nil {
		if tp.direct && pr.DirectSKBRead() == nil {
			progs = append(progs, tpProgram{name: "btfd_" + names[0], btf: true})
		}
		progs = append(progs, tpProgram{name: "btf_" + names[0], btf: true, noReason: names[0] == tp.fallback})
	}
	for _, n := range names {
		progs = append(progs, tpProgram{name: "tp_" + n, noReason: n == tp.fallback})
	}
	return progs
}

// plan lists, per hop that has a choice, the candidates in the order Open
// tries them, with what the probes already know.
type plan struct {
	probes    Probes
	netfilter []candidate
	funcs     map[hop.Kind][]candidate
}

func makePlan(choice Choice, pr Probes) plan {
	p := plan{probes: pr, funcs: map[hop.Kind][]candidate{}}
	fentryErr, kprobeErr := pr.Fentry(), pr.Kprobe()
	refs := []features.FuncRef{nfHookSlow}
	for _, f := range funcHops {
		for _, t := range f.targets {
			refs = append(refs, t.fn)
		}
	}
	// Where neither backend can reach a kernel function (fentry refused,
	// no kprobes), there is nothing to look up: the kallsyms scan and BTF
	// lookups would only slow the start (about 0.3 s of CPU on a 2-core
	// machine, beside the verifier's).
	reach := fentryErr == nil || kprobeErr == nil
	fns := make([]features.Function, len(refs))
	if reach {
		fns = pr.LookupFunctions(refs...)
	}

	link := candidate{backend: hop.NetfilterLink, source: "netfilter links, first and last priority, IPv4 and IPv6 hooks", err: pr.NetfilterLink()}
	nfF := candidate{backend: hop.Fentry, source: "fentry/nf_hook_slow+fexit", err: cmp.Or(fentryErr, fns[0].BTF)}
	nfK := candidate{backend: hop.Kprobe, source: "kprobe/nf_hook_slow+kretprobe", err: cmp.Or(kprobeErr, fns[0].Kallsyms)}
	switch choice {
	case ChoiceTracepoint:
		p.netfilter = []candidate{link}
	case ChoiceFentry:
		p.netfilter = []candidate{nfF}
	case ChoiceKprobe:
		p.netfilter = []candidate{nfK}
	default:
		p.netfilter = []candidate{link, nfF, nfK}
	}
	i := 1
	for _, f := range funcHops {
		hopFns := fns[i : i+len(f.targets)]
		i += len(f.targets)
		targets := slices.Clone(f.targets)
		for j := range targets {
			if reach && (targets[j].fentryOld != "" || targets[j].kprobeOld != "") {
				targets[j].old = pr.OldIptDoTableABI()
			}
		}
		cf := funcCandidate(hop.Fentry, fentryErr, targets, hopFns, func(fn features.Function) error { return fn.BTF })
		ck := funcCandidate(hop.Kprobe, kprobeErr, targets, hopFns, func(fn features.Function) error { return fn.Kallsyms })
		switch choice {
		case ChoiceTracepoint:
			p.funcs[f.hop] = []candidate{{err: features.NotSupportedError("function hops are off with --backend tracepoint")}}
		case ChoiceFentry:
			p.funcs[f.hop] = []candidate{cf}
		case ChoiceKprobe:
			p.funcs[f.hop] = []candidate{ck}
		default:
			p.funcs[f.hop] = []candidate{cf, ck}
		}
	}
	return p
}

// funcCandidate is backend b for a function hop: the targets it can reach,
// or, when none, why.
func funcCandidate(b hop.Backend, backendErr error, targets []funcTarget, fns []features.Function, reach func(features.Function) error) candidate {
	c := candidate{backend: b, err: backendErr}
	if c.err != nil {
		return c
	}
	var errs []error
	var names []string
	for j, t := range targets {
		if err := reach(fns[j]); err != nil {
			errs = append(errs, err)
			continue
		}
		c.targets = append(c.targets, t)
		names = append(names, t.fn.Name)
	}
	if len(c.targets) == 0 {
		c.err = joinWhy(errs)
		return c
	}
	entry, ret := c.targets[0].programs(b)
	c.source = sourceOf(b, entry, ret, names)
	return c
}

// joinWhy joins the reasons of errs, each said once.
func joinWhy(errs []error) error {
	var parts []string
	for _, err := range errs {
		if s := features.Why(err); !slices.Contains(parts, s) {
			parts = append(parts, s)
		}
	}
	return features.NotSupportedError("%s", strings.Join(parts, "; "))
}

// reasons joins why candidates were not used, each said once, naming the
// backend where the reason does not.
func reasons(tried []candidate) string {
	var parts []string
	for _, c := range tried {
		if c.err == nil {
			continue
		}
		s := features.Why(c.err)
		if kw := backendKeyword[c.backend]; kw != "" && !strings.Contains(strings.ToLower(s), kw) {
			s = c.backend.String() + ": " + s
		}
		if !slices.Contains(parts, s) {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, "; ")
}

var backendKeyword = map[hop.Backend]string{
	hop.NetfilterLink: "netfilter link",
	hop.Fentry:        "fentry",
	hop.Kprobe:        "kprobe",
}

// Plan says, for every hop kind, which backend would show it on the kernel
// pr probes with this choice, or why none can, without loading anything
// beyond the feature probes. Open follows the same plan and reports in
// Tracer.Hops what attaching actually gave.
func Plan(choice Choice, pr Probes) []HopSupport {
	p := makePlan(choice, pr)
	hops := make(map[hop.Kind]HopSupport)
	for _, tp := range tpHops {
		var h HopSupport
		if err := pr.RawTracepoint(); err != nil {
			h = HopSupport{Hop: tp.hop, Reason: features.Why(err)}
		} else {
			prog := tp.programs(pr)[0]
			h = HopSupport{Hop: tp.hop, Backend: hop.Tracepoint, Source: prog.source(tp.tp)}
			if prog.noReason {
				h.Reason = noDropReason(pr)
			}
		}
		hops[tp.hop] = h
	}
	hops[hop.Netfilter] = planned(hop.Netfilter, p.netfilter)
	for k, cs := range p.funcs {
		hops[k] = planned(k, cs)
	}
	return supportTable(hops)
}

// noDropReason says, on a kernel without drop reasons, what drop hops show
// instead; "" where they have reasons.
func noDropReason(pr Probes) string {
	if err := pr.DropReasons(); err != nil {
		return features.Why(err) + "; drops show the function that freed the packet"
	}
	return ""
}

// planned takes the first candidate the probes allow.
func planned(k hop.Kind, cs []candidate) HopSupport {
	for i, c := range cs {
		if c.err == nil {
			return HopSupport{Hop: k, Backend: c.backend, Source: c.source, Reason: reasons(cs[:i])}
		}
	}
	return HopSupport{Hop: k, Reason: reasons(cs)}
}

// supportTable lists the hops in the vocabulary's order, adding the
// derived ones: nat from the netfilter views, encap and decap inferred
// from headers where no function shows them.
func supportTable(hops map[hop.Kind]HopSupport) []HopSupport {
	nf := hops[hop.Netfilter]
	nat := HopSupport{Hop: hop.NAT, Backend: nf.Backend, Source: "the netfilter hook's first and last views", Reason: nf.Reason}
	if !nf.Observable() {
		nat.Source = ""
	}
	hops[hop.NAT] = nat
	hops[hop.Encap] = inferred(hops[hop.Encap], "the tunnel's header appears between two hops")
	hops[hop.Decap] = inferred(hops[hop.Decap], "the tunnel's header disappears between two hops")
	var order []HopSupport
	for _, d := range hop.Kinds() {
		h, ok := hops[d.Kind]
		if !ok {
			h = HopSupport{Hop: d.Kind, Reason: "no kernel program shows it"}
		}
		order = append(order, h)
	}
	return order
}

// inferred replaces a tunnel function hop no backend shows by the same
// hop seen in how the headers change, its reason naming the functions.
func inferred(h HopSupport, source string) HopSupport {
	if h.Observable() {
		return h
	}
	var fns []string
	for _, f := range funcHops {
		if f.hop == h.Hop {
			for _, t := range f.targets {
				fns = append(fns, t.fn.Name)
			}
		}
	}
	return HopSupport{Hop: h.Hop, Backend: hop.Inferred, Source: source, Reason: strings.Join(fns, ", ") + ": " + h.Reason}
}

// backendSummary names the backends in use, "tracepoint+netfilter-link".
func backendSummary(hops []HopSupport) string {
	var used []string
	for _, b := range hop.Programs { // not inferred
		for _, h := range hops {
			if h.Backend == b {
				used = append(used, b.String())
				break
			}
		}
	}
	return strings.Join(used, "+")
}

// errNothingObservable is returned by Open when no hop could be attached.
var errNothingObservable = errors.New("no hop observable")
