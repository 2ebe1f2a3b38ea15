package loader

import (
	"fmt"
	"strings"

	"github.com/pathtrace/pathtrace/internal/features"
	"github.com/pathtrace/pathtrace/internal/hop"
)

// Choice is what --backend asks for: the backend of the hops that have a
// choice (netfilter hooks and function hops). Device and free hops always
// come from tracepoints: BTF ones where the kernel has them, else raw ones.
type Choice string

const (
	// ChoiceAuto picks per hop the best backend the kernel supports:
	// netfilter link, else fentry, else kprobe on nf_hook_slow; fentry,
	// else kprobe, for function hops.
	ChoiceAuto Choice = "auto"
	// ChoiceTracepoint keeps to tracepoints and netfilter links: no
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

// HopSupport says which backend shows a hop kind, or why none can.
type HopSupport struct {
	Hop     hop.Kind
	Backend hop.Backend // hop.NoBackend when the hop is not observable
	// Source is the kernel hook: "raw_tracepoint/netif_receive_skb",
	// "fentry/nf_hook_slow+fexit", "kprobe/br_forward", ...
	Source string
	// Reason says why the hop is not observable, or, when it is, why the
	// better backends were not used ("" when the best one was).
	Reason string
}

// Observable reports whether some backend shows the hop.
func (h HopSupport) Observable() bool { return h.Backend != hop.NoBackend }

func (h HopSupport) String() string {
	if !h.Observable() {
		return fmt.Sprintf("%s: not observable: %s", h.Hop, h.Reason)
	}
	return fmt.Sprintf("%s: %s (%s)", h.Hop, h.Backend, h.Source)
}

// candidate is one way to show a hop, in order of preference.
type candidate struct {
	backend hop.Backend
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
	hop     hop.Kind
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
	// fentryOld and kprobeOld, when set, are the entry programs for the
	// function's older arguments (ipt_do_table before 5.16), which
	// Probes.OldIptDoTableABI tells.
	fentryOld, kprobeOld string
	// old: the running kernel has the older arguments (set by the plan).
	old bool
}

// programs returns the entry and return programs to attach for backend b
// (either may be "").
func (f funcTarget) programs(b hop.Backend) (entry, ret string) {
	switch b {
	case hop.Fentry:
		if f.old {
			return f.fentryOld, f.fexit
		}
		return f.fentry, f.fexit
	case hop.Kprobe:
		if f.old {
			return f.kprobeOld, f.kret
		}
		return f.kprobe, f.kret
	}
	return "", ""
}

// sourceOf names how programs show a function hop: "fentry/br_forward",
// "fexit/ip_vs_in_hook", "kprobe/nft_do_chain+kretprobe".
func sourceOf(b hop.Backend, entry, ret string, names []string) string {
	kind, suffix := b.String(), ""
	switch {
	case b == hop.Fentry && entry == "":
		kind = "fexit"
	case b == hop.Fentry && ret != "":
		suffix = "+fexit"
	case b == hop.Kprobe && ret != "":
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
	{hop.Table, []funcTarget{
		{fn: iptDoTable, fentry: "fentry_ipt_do_table", fexit: "fexit_ipt_do_table", kprobe: "kprobe_ipt_do_table", kret: "kretprobe_table",
			fentryOld: "fentry_ipt_do_table_pre516", kprobeOld: "kprobe_ipt_do_table_pre516"},
		{fn: features.FuncRef{Name: "nft_do_chain", Module: "nf_tables"}, fentry: "fentry_nft_do_chain", fexit: "fexit_nft_do_chain", kprobe: "kprobe_nft_do_chain", kret: "kretprobe_table"},
	}},
	{hop.Bridge, []funcTarget{{fn: features.FuncRef{Name: "br_forward", Module: "bridge"}, fentry: "fentry_br_forward", kprobe: "kprobe_br_forward"}}},
	{hop.IPVS, []funcTarget{
		with(ipvsXmit, "ip_vs_nat_xmit", "ip_vs"),
		with(ipvsXmit, "ip_vs_dr_xmit", "ip_vs"),
		with(ipvsXmit, "ip_vs_tunnel_xmit", "ip_vs"),
	}},
	// ip_vs_in itself is not a target: on some kernels only a compiler
	// clone of it (ip_vs_in.part.0) exists, whose arguments are the
	// compiler's choice. The hook functions that call it are stable.
	{hop.IPVSDrop, []funcTarget{
		with(ipvsHook, "ip_vs_in_hook", "ip_vs"),
		with(ipvsHook, "ip_vs_remote_request4", "ip_vs"),
		with(ipvsHook, "ip_vs_local_request4", "ip_vs"),
	}},
	// The tunnels' transmit functions (ndo_start_xmit) and receive
	// functions (called through pointers: a UDP tunnel socket's
	// encap_rcv, tunnel4's handler), with the same arguments in 5.10,
	// 6.1 and 6.12, one program each, which says its tunnel (bpf/fentry.c).
	// A tunnel whose module is not loaded has no target: its packets'
	// encap and decap are inferred from their headers.
	{hop.Encap, []funcTarget{
		{fn: features.FuncRef{Name: "vxlan_xmit", Module: "vxlan"}, fentry: "fentry_vxlan_xmit", kprobe: "kprobe_vxlan_xmit"},
		{fn: features.FuncRef{Name: "geneve_xmit", Module: "geneve"}, fentry: "fentry_geneve_xmit", kprobe: "kprobe_geneve_xmit"},
		{fn: features.FuncRef{Name: "ipip_tunnel_xmit", Module: "ipip"}, fentry: "fentry_ipip_tunnel_xmit", kprobe: "kprobe_ipip_tunnel_xmit"},
	}},
	{hop.Decap, []funcTarget{
		{fn: features.FuncRef{Name: "vxlan_rcv", Module: "vxlan"}, fentry: "fentry_vxlan_rcv", kprobe: "kprobe_vxlan_rcv"},
		{fn: features.FuncRef{Name: "geneve_udp_encap_recv", Module: "geneve"}, fentry: "fentry_geneve_rcv", kprobe: "kprobe_geneve_rcv"},
		{fn: features.FuncRef{Name: "ipip_rcv", Module: "ipip"}, fentry: "fentry_ipip_rcv", kprobe: "kprobe_ipip_rcv"},
	}},
}

// nfHookSlow is the function that runs a netfilter hook's functions.
var nfHookSlow = features.FuncRef{Name: "nf_hook_slow"}
