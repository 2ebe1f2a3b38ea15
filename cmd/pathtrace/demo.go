package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pathtrace/pathtrace/internal/demo"
	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/trace"
)

func newDemoCmd() *cobra.Command {
	var (
		f       outputFlags
		write   string
		snaplen int
		ipvs    bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Trace a pod on a built-in two-node cluster (flannel VXLAN, kube-proxy iptables) made in network namespaces",
		Long: `demo builds, in fresh network namespaces, two nodes joined by an underlay,
each with a cni0 bridge, pods and a flannel.1 VXLAN device, and kube-proxy's
iptables rules for ClusterIP 10.96.0.10:80 -> 10.244.2.7:8080. It traces pod
10.244.1.5 while it talks to the ClusterIP (cross-node) and to 10.244.1.6
(same node), prints the paths, and removes everything. Needs root.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			if snaplen < 0 || snaplen > loader.MaxSnaplen {
				return usageError{fmt.Errorf("--snaplen %d is out of range 0..%d", snaplen, loader.MaxSnaplen)}
			}
			opts := demo.Options{Trace: trace.Options{Log: f.logger(), Record: write}, Log: stderr}
			opts.Topology.IPVS = ipvs
			switch {
			case cmd.Flags().Changed("snaplen"):
				opts.Trace.Loader.Snaplen = snaplen
			case write != "": // headers only, as a trace
				opts.Trace.Loader.Snaplen, opts.Trace.HeadersOnly = loader.MaxSnaplen, true
			default:
				opts.Trace.Loader.Snaplen = liveSnaplen
			}
			stdout := newStdout(cmd.Context())
			sum, err := demo.Run(cmd.Context(), opts, f.renderer(stdout))
			dropped := stdout.close()
			if sum.Backend != "" { // it ran: say what it saw
				printSummary("", sum, dropped)
			}
			return err
		},
	}
	f.register(cmd)
	cmd.Flags().StringVarP(&write, "write", "w", "", "also record the trace to this pcapng file, for pathtrace replay")
	cmd.Flags().BoolVar(&ipvs, "ipvs", false, "serve the ClusterIP with IPVS (kube-proxy's IPVS mode: round robin over a server pod on each node) instead of iptables DNAT")
	cmd.Flags().IntVar(&snaplen, "snaplen", 0, "bytes of each packet, from its IP header, captured and kept in the recording (0-256; default: its headers in the recording, 128 bytes live)")
	return cmd
}
