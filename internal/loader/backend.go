package loader

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pathtrace/pathtrace/internal/features"
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

// Hop kinds as the stitcher names them (internal/stitch.HopKind).
const (
	HopRx        = "rx"
	HopTx        = "tx"
	HopNetfilter = "netfilter"
	HopNAT       = "nat"
	HopBridge    = "bridge"
	HopIPVS      = "ipvs"
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
}

// funcHop is a hop shown by a program on a kernel function.
type funcHop struct {
	hop    string
	fn     features.FuncRef
	fentry string // program in bpf/fentry.c
	kprobe string // program in bpf/kprobe.c
}

var funcHops = []funcHop{
	{HopBridge, features.FuncRef{Name: "br_forward", Module: "bridge"}, "fentry_br_forward", "kprobe_br_forward"},
	{HopIPVS, features.FuncRef{Name: "ip_vs_nat_xmit", Module: "ip_vs"}, "fentry_ip_vs_xmit", "kprobe_ip_vs_xmit"},
	{HopEncap, features.FuncRef{Name: "vxlan_xmit", Module: "vxlan"}, "fentry_vxlan_xmit", "kprobe_vxlan_xmit"},
}

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
		refs = append(refs, f.fn)
	}
	fns := features.LookupFunctions(refs...)

	fentry := func(fn features.Function, source string) candidate {
		c := candidate{backend: BackendFentry, source: source, err: fentryErr}
		if c.err == nil {
			c.err = fn.BTF
		}
		return c
	}
	kprobe := func(fn features.Function, source string) candidate {
		c := candidate{backend: BackendKprobe, source: source, err: kprobeErr}
		if c.err == nil {
			c.err = fn.Kallsyms
		}
		return c
	}
	link := candidate{backend: BackendNetfilterLink, source: "netfilter links, first and last priority", err: features.NetfilterLink()}
	nfF := fentry(fns[0], "fentry/nf_hook_slow+fexit")
	nfK := kprobe(fns[0], "kprobe/nf_hook_slow+kretprobe")
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
	for i, f := range funcHops {
		fn := fns[i+1]
		cf := fentry(fn, "fentry/"+f.fn.Name)
		ck := kprobe(fn, "kprobe/"+f.fn.Name)
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
		}
		hops[tp.hop] = h
	}
	hops[HopNetfilter] = planned(HopNetfilter, p.netfilter)
	for hop, cs := range p.funcs {
		hops[hop] = planned(hop, cs)
	}
	return supportTable(hops)
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
// netfilter views, encap and decap inferred from headers).
func supportTable(hops map[string]HopSupport) []HopSupport {
	nf := hops[HopNetfilter]
	nat := HopSupport{Hop: HopNAT, Backend: nf.Backend, Source: "the netfilter hook's first and last views", Reason: nf.Reason}
	if !nf.Observable() {
		nat.Source = ""
	}
	encap := hops[HopEncap]
	if !encap.Observable() {
		why := "vxlan_xmit: " + encap.Reason
		encap = HopSupport{Hop: HopEncap, Backend: BackendInferred, Source: "the VXLAN header appears between two hops", Reason: why}
	}
	decap := HopSupport{Hop: HopDecap, Backend: BackendInferred, Source: "the VXLAN header disappears between two hops"}
	order := []HopSupport{
		hops[HopRx], hops[HopTx], nf, nat, hops[HopBridge], hops[HopIPVS], encap, decap,
		hops[HopDrop], hops[HopConsume],
	}
	return order
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
