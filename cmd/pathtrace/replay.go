package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/pathtrace/pathtrace/internal/trace"
)

func newReplayCmd() *cobra.Command {
	var (
		f      outputFlags
		podIPs []string
		count  int
	)
	cmd := &cobra.Command{
		Use:   "replay FILE",
		Short: "Render a recording made with -w, offline, without root",
		Long: `replay reads a recording made with 'pathtrace ... -w FILE' and prints the same
timelines, JSON or HTML report the live run printed, byte for byte. --pod-ip
narrows the output further. It needs no root, no BPF and no access to the
traced system.`,
		Example: `  pathtrace replay trace.pcapng
  pathtrace replay trace.pcapng -o json --pod-ip 10.244.1.5
  pathtrace replay trace.pcapng -o html > trace.html
  pathtrace replay trace.pcapng -o svg --packet 2 > packet2.svg`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("replay takes one recording file, got %d arguments", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReplay(cmd, &f, args[0], podIPs, count)
		},
	}
	f.register(cmd)
	cmd.Flags().StringArrayVar(&podIPs, "pod-ip", nil, "render only packets with this IPv4 address at any hop (repeatable)")
	cmd.Flags().IntVarP(&count, "count", "c", 0, "stop after this many packets (0: all)")
	return cmd
}

func runReplay(cmd *cobra.Command, f *outputFlags, file string, podIPs []string, count int) error {
	ips, err := trace.ParsePodIPs(podIPs)
	if err != nil {
		return usageError{err}
	}
	if count < 0 {
		return usageError{fmt.Errorf("--count %d is negative", count)}
	}
	out, err := f.renderer()
	if err != nil {
		return err
	}
	sum, err := trace.Replay(cmd.Context(), file, trace.ReplayOptions{PodIPs: ips, Count: count, Log: f.logger()}, out)
	if err != nil {
		return fmt.Errorf("replay %s: %w", file, err)
	}
	fmt.Fprintf(os.Stderr, "pathtrace: replayed %s\n", sum)
	return nil
}
