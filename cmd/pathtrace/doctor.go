package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/pathtrace/pathtrace/internal/doctor"
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
it. It needs no ipvsadm, conntrack or iptables binary.`,
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
