package loader

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/pathtrace/pathtrace/internal/features"
	"github.com/pathtrace/pathtrace/internal/kernel"
)

// Backend is the kind of kernel program that shows a hop.
type Backend string

const (
	BackendTracepoint    Backend = "tracepoint"     // raw tracepoints
	BackendNetfilterLink Backend = "netfilter-link" // BPF netfilter links (6.4+)
	BackendFentry        Backend = "fentry"         // fentry/fexit (BPF trampolines)
	BackendKprobe        Backend = "kprobe"         // kprobe/kretprobe
	// BackendInferred: seen in what changed between two other hops (the
	// VXLAN header appearing or going), whatever showed those.
	BackendInferred Backend = "inferred"
)

// Choice is what --backend asks for: the backend of the hops that have a
// choice (netfilter hooks and function hops). Device and free hops always
// come from raw tracepoints.
type Choice string

const (
	// ChoiceAuto picks per hop the best backend the kernel supports:
	// netfilter link, else fentry, else kprobe on nf_hook_slow; fentry,
	// else kprobe, for function hops.
	ChoiceAuto Choice = "auto"
	// ChoiceTracepoint keeps to raw tracepoints and netfilter links: no
	// function hops.
	ChoiceTracepoint Choice = "tracepoint"
	ChoiceFentry     Choice = "fentry" // fentry only, for netfilter and function hops
	ChoiceKprobe     Choice = "kprobe" // kprobes only, for netfilter and function hops
)

// Choices lists the values of Choice, for help texts.
var Choices = []Choice{ChoiceAuto, ChoiceTracepoint, ChoiceFentry, ChoiceKprobe}

// ParseChoice parses a --backend value.
func ParseChoice(s string) (Choice, error) {
	for _, c := range Choices {
		if string(c) == s {
			return c, nil
		}
	}
	names := make([]string, len(Choices))
	for i, c := range Choices {
		names[i] = string(c)
	}
	return "", fmt.Errorf("backend %q is not one of %s", s, strings.Join(names, ", "))
}

// Hop kinds as the stitcher names them (internal/stitch.HopKind), and
// the rows of the features listing.
const (
	HopRx        = "rx"
	HopTx        = "tx"
	HopNetfilter = "netfilter"
	HopNAT       = "nat"
	HopTable     = "table"
	HopBridge    = "bridge"
	HopIPVS      = "ipvs"
	HopIPVSDrop  = "ipvs-drop" // a drop by IPVS's hook: an ipvs hop with a verdict
	HopEncap     = "encap"
	HopDecap     = "decap"
	HopDrop      = "drop"
	HopConsume   = "consume"
)

// HopSupport says which backend shows a hop kind, or why none can.
type HopSupport struct {
	Hop     string
	Backend Backend // "" when the hop is not observable
	// Source is the kernel hook: "raw_tracepoint/netif_receive_skb",
	// "fentry/nf_hook_slow+fexit", "kprobe/br_forward", ...
	Source string
	// Reason says why the hop is not observable, or, when it is, why the
	// better backends were not used ("" when the best one was).
	Reason string
}

// Observable reports whether some backend shows the hop.
func (h HopSupport) Observable() bool { return h.Backend != "" }

func (h HopSupport) String() string {
	if !h.Observable() {
		return fmt.Sprintf("%s: not observable: %s", h.Hop, h.Reason)
	}
	return fmt.Sprintf("%s: %s (%s)", h.Hop, h.Backend, h.Source)
}

// candidate is one way to show a hop, in order of preference.
type candidate struct {
	backend Backend
	source  string
	err     error // why it cannot be used, from the probes; nil: try it
	// targets are the functions of a function hop this backend can reach.
	targets []funcTarget
}

// funcHop is a hop shown by programs on kernel functions: every target the
// running kernel has is attached, and the hop is observable when one is.
// Alternatives for different kernels are targets too (ip_vs_in_hook on
// newer kernels, ip_vs_remote_request4 and ip_vs_local_request4 on older
// ones): the choice follows what the kernel has, not its version.
type funcHop struct {
	hop     string
	targets []funcTarget
}

// funcTarget is one kernel function and the programs that show it. A
// program is attached to the target by name, so one program serves
// functions with the same arguments.
type funcTarget struct {
	fn     features.FuncRef
	fentry string // fentry program in bpf/fentry.c, "" when none
	fexit  string // fexit program, "" when none
	kprobe string // kprobe program in bpf/kprobe.c
	kret   string // kretprobe program, "" when none
	// abi, when set, picks other entry programs for the function's older
	// arguments (ipt_do_table before 5.16).
	abi func() (old bool)
	// fentryOld and kprobeOld are the entry programs abi picks.
	fentryOld, kprobeOld string
}

// programs returns the entry and return programs to attach for backend b
// (either may be "").
func (f funcTarget) programs(b Backend) (entry, ret string) {
	old := f.abi != nil && f.abi()
	switch b {
	case BackendFentry:
		if old {
			return f.fentryOld, f.fexit
		}
		return f.fentry, f.fexit
	case BackendKprobe:
		if old {
			return f.kprobeOld, f.kret
		}
		return f.kprobe, f.kret
	}
	return "", ""
}

// sourceOf names how programs show a function hop: "fentry/br_forward",
// "fexit/ip_vs_in_hook", "kprobe/nft_do_chain+kretprobe".
func sourceOf(b Backend, entry, ret string, names []string) string {
	kind, suffix := string(b), ""
	switch {
	case b == BackendFentry && entry == "":
		kind = "fexit"
	case b == BackendFentry && ret != "":
		suffix = "+fexit"
	case b == BackendKprobe && ret != "":
		suffix = "+kretprobe"
	}
	return kind + "/" + strings.Join(names, ",") + suffix
}

var (
	iptDoTable = features.FuncRef{Name: "ipt_do_table", Module: "ip_tables"}
	ipvsXmit   = funcTarget{fentry: "fentry_ip_vs_xmit", kprobe: "kprobe_ip_vs_xmit"}
	ipvsHook   = funcTarget{fexit: "fexit_ip_vs_hook", kprobe: "kprobe_ip_vs_hook", kret: "kretprobe_ip_vs_hook"}
)

func with(t funcTarget, name, module string) funcTarget {
	t.fn = features.FuncRef{Name: name, Module: module}
	return t
}

var funcHops = []funcHop{
	{HopTable, []funcTarget{
		{fn: iptDoTable, fentry: "fentry_ipt_do_table", fexit: "fexit_ipt_do_table", kprobe: "kprobe_ipt_do_table", kret: "kretprobe_table",
			abi: iptDoTableOldABI, fentryOld: "fentry_ipt_do_table_pre516", kprobeOld: "kprobe_ipt_do_table_pre516"},
		{fn: features.FuncRef{Name: "nft_do_chain", Module: "nf_tables"}, fentry: "fentry_nft_do_chain", fexit: "fexit_nft_do_chain", kprobe: "kprobe_nft_do_chain", kret: "kretprobe_table"},
	}},
	{HopBridge, []funcTarget{{fn: features.FuncRef{Name: "br_forward", Module: "bridge"}, fentry: "fentry_br_forward", kprobe: "kprobe_br_forward"}}},
	{HopIPVS, []funcTarget{
		with(ipvsXmit, "ip_vs_nat_xmit", "ip_vs"),
		with(ipvsXmit, "ip_vs_dr_xmit", "ip_vs"),
		with(ipvsXmit, "ip_vs_tunnel_xmit", "ip_vs"),
	}},
	// ip_vs_in itself is not a target: on some kernels only a compiler
	// clone of it (ip_vs_in.part.0) exists, whose arguments are the
	// compiler's choice. The hook functions that call it are stable.
	{HopIPVSDrop, []funcTarget{
		with(ipvsHook, "ip_vs_in_hook", "ip_vs"),
		with(ipvsHook, "ip_vs_remote_request4", "ip_vs"),
		with(ipvsHook, "ip_vs_local_request4", "ip_vs"),
	}},
	{HopEncap, []funcTarget{{fn: features.FuncRef{Name: "vxlan_xmit", Module: "vxlan"}, fentry: "fentry_vxlan_xmit", kprobe: "kprobe_vxlan_xmit"}}},
	{HopDecap, []funcTarget{{fn: features.FuncRef{Name: "vxlan_rcv", Module: "vxlan"}, fentry: "fentry_vxlan_rcv", kprobe: "kprobe_vxlan_rcv"}}},
}

// iptDoTableOldABI reports whether ipt_do_table takes (skb, state, table),
// as before "netfilter: iptables: allow use of ipt_do_table as hookfn"
// (Linux 5.16), rather than (priv, skb, state): by its BTF where the
// kernel has it, else by the kernel's version. Asked once: the answer
// does not change while the kernel runs.
var iptDoTableOldABI = sync.OnceValue(func() bool {
	if params, err := features.FuncParams(iptDoTable); err == nil && len(params) > 0 {
		return params[0] == "skb"
	}
	return kernel.VersionBelow(5, 16)
})

// nfHookSlow is the function that runs a netfilter hook's functions.
var nfHookSlow = features.FuncRef{Name: "nf_hook_slow"}

// tpHops are the hops raw tracepoints show; kfree_skb has two programs
// (with and without the drop reason).
var tpHops = []struct{ hop, tp string }{
	{HopRx, "netif_receive_skb"},
	{HopTx, "net_dev_queue"},
	{HopDrop, "kfree_skb"},
	{HopConsume, "consume_skb"},
}

// plan lists, per hop that has a choice, the candidates in the order Open
// tries them, with what the probes already know.
type plan struct {
	netfilter []candidate
	funcs     map[string][]candidate
}

func makePlan(choice Choice) plan {
	p := plan{funcs: map[string][]candidate{}}
	fentryErr, kprobeErr := features.Fentry(), features.Kprobe()
	refs := []features.FuncRef{nfHookSlow}
	for _, f := range funcHops {
		for _, t := range f.targets {
			refs = append(refs, t.fn)
		}
	}
	fns := features.LookupFunctions(refs...)

	link := candidate{backend: BackendNetfilterLink, source: "netfilter links, first and last priority", err: features.NetfilterLink()}
	nfF := candidate{backend: BackendFentry, source: "fentry/nf_hook_slow+fexit", err: cmp.Or(fentryErr, fns[0].BTF)}
	nfK := candidate{backend: BackendKprobe, source: "kprobe/nf_hook_slow+kretprobe", err: cmp.Or(kprobeErr, fns[0].Kallsyms)}
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
		cf := funcCandidate(BackendFentry, fentryErr, f.targets, hopFns, func(fn features.Function) error { return fn.BTF })
		ck := funcCandidate(BackendKprobe, kprobeErr, f.targets, hopFns, func(fn features.Function) error { return fn.Kallsyms })
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
func funcCandidate(b Backend, backendErr error, targets []funcTarget, fns []features.Function, reach func(features.Function) error) candidate {
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
		if s := features.Why(err); !contains(parts, s) {
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
			s = string(c.backend) + ": " + s
		}
		if !contains(parts, s) {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, "; ")
}

var backendKeyword = map[Backend]string{
	BackendNetfilterLink: "netfilter link",
	BackendFentry:        "fentry",
	BackendKprobe:        "kprobe",
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// Plan says, for every hop kind, which backend would show it on this
// kernel with this choice, or why none can, without loading anything
// beyond the feature probes. Open follows the same plan and reports in
// Tracer.Hops what attaching actually gave.
func Plan(choice Choice) []HopSupport {
	p := makePlan(choice)
	hops := make(map[string]HopSupport)
	for _, tp := range tpHops {
		h := HopSupport{Hop: tp.hop, Backend: BackendTracepoint, Source: "raw_tracepoint/" + tp.tp}
		if err := features.RawTracepoint(); err != nil {
			h = HopSupport{Hop: tp.hop, Reason: features.Why(err)}
		} else if tp.hop == HopDrop {
			h.Reason = noDropReason()
		}
		hops[tp.hop] = h
	}
	hops[HopNetfilter] = planned(HopNetfilter, p.netfilter)
	for hop, cs := range p.funcs {
		hops[hop] = planned(hop, cs)
	}
	return supportTable(hops)
}

// noDropReason says, on a kernel without drop reasons, what drop hops show
// instead; "" where they have reasons.
func noDropReason() string {
	if err := features.DropReasons(); err != nil {
		return features.Why(err) + "; drops show the function that freed the packet"
	}
	return ""
}

// planned takes the first candidate the probes allow.
func planned(hop string, cs []candidate) HopSupport {
	for i, c := range cs {
		if c.err == nil {
			return HopSupport{Hop: hop, Backend: c.backend, Source: c.source, Reason: reasons(cs[:i])}
		}
	}
	return HopSupport{Hop: hop, Reason: reasons(cs)}
}

// supportTable orders the hops and adds the derived ones (nat from the
// netfilter views, encap and decap inferred from headers where no function
// shows them).
func supportTable(hops map[string]HopSupport) []HopSupport {
	nf := hops[HopNetfilter]
	nat := HopSupport{Hop: HopNAT, Backend: nf.Backend, Source: "the netfilter hook's first and last views", Reason: nf.Reason}
	if !nf.Observable() {
		nat.Source = ""
	}
	encap := inferred(hops[HopEncap], "vxlan_xmit", "the VXLAN header appears between two hops")
	decap := inferred(hops[HopDecap], "vxlan_rcv", "the VXLAN header disappears between two hops")
	order := []HopSupport{
		hops[HopRx], hops[HopTx], nf, nat, hops[HopTable], hops[HopBridge], hops[HopIPVS], hops[HopIPVSDrop],
		encap, decap, hops[HopDrop], hops[HopConsume],
	}
	return order
}

// inferred replaces a VXLAN function hop no backend shows by the same hop
// seen in how the headers change.
func inferred(h HopSupport, fn, source string) HopSupport {
	if h.Observable() {
		return h
	}
	return HopSupport{Hop: h.Hop, Backend: BackendInferred, Source: source, Reason: fn + ": " + h.Reason}
}

// backendSummary names the backends in use, "tracepoint+netfilter-link".
func backendSummary(hops []HopSupport) string {
	var used []string
	for _, b := range []Backend{BackendTracepoint, BackendNetfilterLink, BackendFentry, BackendKprobe} { // not inferred
		for _, h := range hops {
			if h.Backend == b {
				used = append(used, string(b))
				break
			}
		}
	}
	return strings.Join(used, "+")
}

// errNothingObservable is returned by Open when no hop could be attached.
var errNothingObservable = errors.New("no hop observable")
