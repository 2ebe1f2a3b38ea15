package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/features"
	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/render"
)

func newDoctorCmd() *cobra.Command {
	var (
		netns  string
		output string
		color  render.ColorMode
	)
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Report what on this node decides a pod packet's path: modules, sysctls, kube-proxy mode, overlay, bridge",
		Long: `doctor reads the kernel (netlink, /proc, /sys) of a node network namespace and
reports each setting that shapes a pod's packet path, whether it is what
Kubernetes networking expects, and the command an operator would run to check
it. It also probes which BPF backends the kernel lets pathtrace attach with
(conclusive only as root). It needs no ipvsadm, conntrack or iptables binary.`,
		Example: `  sudo pathtrace doctor
  sudo pathtrace doctor --netns cni-1234 -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return usageError{fmt.Errorf("--output %q is not text or json", output)}
			}
			rep, err := doctor.Collect(cmd.Context(), doctor.Options{Netns: netns})
			if err != nil {
				return err
			}
			rep.SetBackends(backendItems(loader.Features(rep.Kernel, loader.ChoiceAuto, loader.KernelProbes)))
			if output == "json" {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return rep.WriteText(os.Stdout, render.UseColor(color, os.Stdout, os.Getenv))
		},
	}
	cmd.Flags().StringVar(&netns, "netns", "", "node network namespace to inspect (a name under /run/netns, or a path if it has a /; default: pathtrace's own)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().Var(&color, "color", "colors: auto, always or never")
	return cmd
}

// backendItems are the report's backends section: one item per feature
// probe, then one per hop kind no backend shows on this kernel (or one
// saying all are shown). Without root the probes are inconclusive, and the
// items say so instead of naming hops that are not observable.
func backendItems(fr loader.Report) []doctor.Item {
	var items []doctor.Item
	inconclusive := false
	for _, p := range fr.Probes {
		name := p.Name
		it := doctor.Item{ID: "backend." + strings.ReplaceAll(name, " ", "-"), Name: name, Value: string(p.State),
			Check: "pathtrace features", Source: "BPF feature probe: loads a test program"}
		switch {
		case p.Name == loader.DirectReadProbe && p.State == features.Supported:
			it.Status, it.Explain = doctor.StatusOK, "the device and netfilter programs read a packet's bytes with plain loads"
		case p.Name == loader.DirectReadProbe && p.State == features.NotSupported:
			it.Status, it.Explain = doctor.StatusInfo, "the device and netfilter programs read a packet's bytes with a helper call, "+
				"about 20 ns more a run than plain loads (6.18 allows those; 6.12 and older do not): "+p.Why
		case p.State == features.Supported:
			it.Status, it.Explain = doctor.StatusOK, "the kernel lets pathtrace attach programs this way"
		case p.State == features.NotSupported:
			it.Status, it.Explain = doctor.StatusInfo, "pathtrace cannot attach programs this way: "+p.Why
		default:
			inconclusive = true
			it.Status, it.Explain = doctor.StatusUnknown, "the probe could not tell (run as root): "+p.Why
		}
		items = append(items, it)
	}
	hops := doctor.Item{ID: "backend.hops", Name: "hop kinds", Check: "pathtrace features", Source: "planned from the probes"}
	if inconclusive {
		hops.Value, hops.Status = "unknown", doctor.StatusUnknown
		hops.Explain = "which hops a trace shows is known once every probe is conclusive: run pathtrace doctor as root"
		return append(items, hops)
	}
	unseen := 0
	for _, h := range fr.Hops {
		if h.Observable() {
			continue
		}
		unseen++
		kind := h.Hop.String()
		items = append(items, doctor.Item{ID: "backend.hop." + kind, Name: kind + " hops", Value: "not observable",
			Status: doctor.StatusWarn, Explain: "a trace cannot show them on this kernel: " + h.Reason,
			Check: "pathtrace features", Source: "planned from the probes"})
	}
	if unseen == 0 {
		hops.Value, hops.Status = fmt.Sprintf("all %d observable", len(fr.Hops)), doctor.StatusOK
		hops.Explain = "a trace shows every hop kind on this kernel"
		items = append(items, hops)
	}
	return items
}
