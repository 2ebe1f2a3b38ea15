package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/pathtrace/pathtrace/internal/kernel"
	"github.com/pathtrace/pathtrace/internal/loader"
)

func newFeaturesCmd() *cobra.Command {
	var output, backend string
	cmd := &cobra.Command{
		Use:   "features",
		Short: "List, for this kernel, every hop kind and which backend shows it, or why none can",
		Long: `features probes what the running kernel lets pathtrace attach (raw
tracepoints, BPF netfilter links, fentry, kprobes) and looks up the kernel
functions of the function hops (in BTF and /proc/kallsyms), then says per hop
kind which backend a trace would use, or why the hop is not observable here.
Function hops of modules (bridge, ip_vs, vxlan) need the module loaded. Needs
root for the probes to be conclusive.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			choice, err := loader.ParseChoice(backend)
			if err != nil {
				return usageError{fmt.Errorf("--backend: %w", err)}
			}
			r := loader.Features(kernel.Release(), choice, loader.KernelProbes)
			switch output {
			case "text":
				return r.WriteText(os.Stdout)
			case "json":
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			return usageError{fmt.Errorf("--output %q is not text or json", output)}
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringVar(&backend, "backend", string(loader.ChoiceAuto), backendHelp)
	return cmd
}

const backendHelp = "backend of the hops that have a choice (netfilter hooks, bridge, ipvs, vxlan): auto (best the kernel supports: netfilter link, else fentry, else kprobe), tracepoint (tracepoints and netfilter links only), fentry or kprobe; device and free hops always come from tracepoints (BTF ones where the kernel has them, else raw)"
