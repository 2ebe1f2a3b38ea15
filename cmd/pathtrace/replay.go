package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pathtrace/pathtrace/internal/trace"
)

func newReplayCmd() *cobra.Command {
	var (
		f          outputFlags
		podIPs     []string
		kube       kubeFlags
		count      int
		maxPerConn int
	)
	cmd := &cobra.Command{
		Use:   "replay FILE...",
		Short: "Render a recording made with -w, offline, without root",
		Long: `replay reads a recording made with 'pathtrace ... -w FILE' and prints the same
timelines, JSON or HTML report the live run printed, byte for byte. --pod-ip
narrows the output further. It needs no root, no BPF and no access to the
traced system. --pod and --service name pods and Services by the names stored in
the recording. The files of a recording that -C or -G split replay alone, or
together as one recording, given in any order (FILE*): they must follow each
other. The recordings of several nodes' --scope node traces are merged: each
packet's halves are joined across the nodes' tunnel, on the first file's
node's clock, with each other node's clock offset estimated (docs/cluster.md).`,
		Example: `  pathtrace replay trace.pcapng
  pathtrace replay trace.pcapng -o json --pod-ip 10.244.1.5
  pathtrace replay trace.pcapng -o html > trace.html
  pathtrace replay trace.pcapng -o svg --packet 2 > packet2.svg
  pathtrace replay trace.pcapng*
  pathtrace replay node1.pcapng node2.pcapng   # --scope node recordings, merged`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{fmt.Errorf("replay takes the recording's files, got none")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReplay(cmd, &f, args, podIPs, trace.ReplayOptions{Select: kube.selection(), Count: count, MaxPerConn: maxPerConn})
		},
	}
	f.register(cmd)
	cmd.Flags().StringArrayVar(&podIPs, "pod-ip", nil, "render only packets with this IPv4 or IPv6 address at any hop (repeatable)")
	kube.register(cmd, false)
	cmd.Flags().IntVarP(&count, "count", "c", 0, "stop after this many packets (0: all)")
	cmd.Flags().IntVar(&maxPerConn, "max-per-conn", 0, maxPerConnHelp)
	return cmd
}

// runReplay replays files with opts (Select, Count, MaxPerConn: the flags')
// and podIPs.
func runReplay(cmd *cobra.Command, f *outputFlags, files []string, podIPs []string, opts trace.ReplayOptions) error {
	ips, err := trace.ParsePodIPs(podIPs)
	if err != nil {
		return usageError{err}
	}
	if opts.Count < 0 {
		return usageError{fmt.Errorf("--count %d is negative", opts.Count)}
	}
	if err := checkMaxPerConn(opts.MaxPerConn); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	stdout := newStdout(cmd.Context())
	opts.PodIPs, opts.Log = ips, f.logger()
	sum, err := trace.ReplayFiles(cmd.Context(), files, opts, f.renderer(stdout))
	dropped := stdout.close()
	if err != nil {
		return err // it names the file
	}
	printSummary("replayed", sum, dropped)
	return nil
}
