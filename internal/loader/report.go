package loader

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/pathtrace/pathtrace/internal/features"
	"github.com/pathtrace/pathtrace/internal/hop"
)

// Probe is one feature probe's result.
type Probe struct {
	Name  string         `json:"name"`
	State features.State `json:"state"`
	// Why says why it is not supported, or what made it inconclusive.
	Why string `json:"why,omitempty"`
}

// Report is what `pathtrace features` shows: the probes, and per hop kind
// the backend that shows it on this kernel or why none can.
type Report struct {
	Kernel string `json:"kernel"`
	// Arch is the architecture (GOARCH) of this build and so of the kernel:
	// the function hops' kprobes read their arguments from its registers.
	Arch    string       `json:"arch"`
	Backend Choice       `json:"backend"`
	Probes  []Probe      `json:"probes"`
	Hops    []HopSupport `json:"hops"`
}

// MarshalJSON writes a hop as {"hop", "what", "observable", "backend",
// "source", "reason"}.
func (h HopSupport) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Hop        hop.Kind    `json:"hop"`
		What       string      `json:"what"`
		Observable bool        `json:"observable"`
		Backend    hop.Backend `json:"backend,omitempty"`
		Source     string      `json:"source,omitempty"`
		Reason     string      `json:"reason,omitempty"`
	}{h.Hop, h.Hop.Desc().What, h.Observable(), h.Backend, h.Source, h.Reason})
}

// DirectReadProbe names the probe of whether the BTF tracepoint and
// netfilter programs may read a packet's bytes with plain loads
// (features.DirectSKBRead): about 20 ns less a run than a helper call.
const DirectReadProbe = "direct packet read"

// Features runs the probes and plans the hops for choice, loading nothing
// else.
func Features(kernel string, choice Choice, pr Probes) Report {
	if choice == "" {
		choice = ChoiceAuto
	}
	r := Report{Kernel: kernel, Arch: runtime.GOARCH, Backend: choice}
	for _, p := range []struct {
		name  string
		probe func() error
	}{
		{"raw tracepoint", pr.RawTracepoint},
		{"BTF tracepoint", pr.BTFTracepoint},
		{"netfilter link", pr.NetfilterLink},
		{"fentry", pr.Fentry},
		{"kprobe", pr.Kprobe},
		// Not a backend: how the device and netfilter programs read a
		// packet's bytes (see nfPrograms), which is part of their cost.
		{DirectReadProbe, pr.DirectSKBRead},
	} {
		err := p.probe()
		r.Probes = append(r.Probes, Probe{Name: p.name, State: features.StateOf(err), Why: features.Why(err)})
	}
	r.Hops = Plan(choice, pr)
	return r
}

// WriteText writes the report as a table.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "kernel %s (%s), --backend %s\n", r.Kernel, r.Arch, r.Backend)
	width := 0
	for _, p := range r.Probes {
		width = max(width, len(p.Name)+1)
	}
	for _, p := range r.Probes {
		fmt.Fprintf(&b, "  %-*s %s", width, p.Name+":", p.State)
		if p.Why != "" {
			fmt.Fprintf(&b, " (%s)", p.Why)
		}
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "HOP\tBACKEND\tSHOWN BY")
	for _, h := range r.Hops {
		if !h.Observable() {
			fmt.Fprintf(tw, "%s\t-\tnot observable: %s\n", h.Hop, h.Reason)
			continue
		}
		src := h.Source
		if h.Reason != "" {
			src += "  (" + h.Reason + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", h.Hop, h.Backend, src)
	}
	return tw.Flush()
}
