package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/render"
	"github.com/pathtrace/pathtrace/internal/trace"
)

// outputFlags are the flags every command that renders paths shares.
type outputFlags struct {
	output string
	color  render.ColorMode
	debug  bool
	packet uint64
}

func (o *outputFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text, json (JSON lines, one object per packet), html (a report of the whole trace, written when it ends) or svg (one packet's path, with --packet)")
	cmd.Flags().Var(&o.color, "color", "colors in text output: auto, always or never (NO_COLOR is honoured in auto)")
	cmd.Flags().BoolVar(&o.debug, "debug", false, "log what pathtrace does to stderr")
	cmd.Flags().Uint64Var(&o.packet, "packet", 0, "with -o svg: the packet to draw, by its #id in the text output")
}

// renderer builds the renderer for stdout.
func (o *outputFlags) renderer() (render.Renderer, error) {
	if o.packet != 0 && o.output != "svg" {
		return nil, usageError{fmt.Errorf("--packet chooses the packet of -o svg, not of -o %s", o.output)}
	}
	switch o.output {
	case "text":
		return render.NewText(os.Stdout, render.TextOptions{Color: render.UseColor(o.color, os.Stdout, os.Getenv)}), nil
	case "json":
		return render.NewJSON(os.Stdout), nil
	case "html":
		return render.NewHTML(os.Stdout, render.HTMLOptions{}), nil
	case "svg":
		if o.packet == 0 {
			return nil, usageError{fmt.Errorf("-o svg draws one packet: name it with --packet N (its #id in the text output)")}
		}
		return render.NewSVG(os.Stdout, render.SVGOptions{Packet: o.packet}), nil
	}
	return nil, usageError{fmt.Errorf("--output %q is not text, json, html or svg", o.output)}
}

func (o *outputFlags) logger() *slog.Logger {
	level := slog.LevelWarn
	if o.debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// traceFlags are the flags of a live trace.
type traceFlags struct {
	outputFlags
	podIPs     []string
	netns      []string
	vxlanPorts []uint
	count      int
	duration   time.Duration
	readyFile  string
	write      string
	quiet      bool
	snaplen    int
	read       string
	backend    string
}

func (f *traceFlags) register(cmd *cobra.Command) {
	f.outputFlags.register(cmd)
	fl := cmd.Flags()
	fl.StringArrayVar(&f.podIPs, "pod-ip", nil, "IPv4 address of a pod to follow (repeatable); matches source or destination, outer or VXLAN-inner")
	fl.StringArrayVar(&f.netns, "netns", nil, "node network namespace (a name under /run/netns, or a path if it has a /) to attach netfilter programs in (repeatable; default: pathtrace's own, as on a real node)")
	fl.UintSliceVar(&f.vxlanPorts, "vxlan-port", []uint{8472, 4789}, "UDP destination ports carrying VXLAN")
	fl.IntVarP(&f.count, "count", "c", 0, "stop after this many packets (0: until interrupted)")
	fl.DurationVar(&f.duration, "duration", 0, "stop after this long (0: until interrupted)")
	fl.StringVar(&f.readyFile, "ready-file", "", "write this file once everything is attached, so scripts can start traffic")
	fl.StringVarP(&f.write, "write", "w", "", "record the trace to this pcapng file (mode 0600), for pathtrace replay")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print no paths, only the closing summary (with -w)")
	fl.IntVar(&f.snaplen, "snaplen", 128, "bytes of each packet, from its IP header, captured (an ICMP error is explained by the headers it quotes) and kept in a recording (0-256; headers only by default)")
	fl.StringVarP(&f.read, "read", "r", "", "replay a recording instead of tracing (same as: pathtrace replay FILE)")
	fl.StringVar(&f.backend, "backend", string(loader.ChoiceAuto), backendHelp)
}

// options turns the flags into trace options: every check of user input
// happens here, as a usage error.
func (f *traceFlags) options() (trace.Options, error) {
	var opts trace.Options
	ips, err := trace.ParsePodIPs(f.podIPs)
	if err != nil {
		return opts, usageError{err}
	}
	if len(ips) > loader.MaxPodIPs {
		return opts, usageError{fmt.Errorf("at most %d --pod-ip can be given, got %d", loader.MaxPodIPs, len(ips))}
	}
	if len(f.vxlanPorts) > loader.MaxVXLANPorts {
		return opts, usageError{fmt.Errorf("at most %d --vxlan-port can be given, got %d", loader.MaxVXLANPorts, len(f.vxlanPorts))}
	}
	ports := make([]uint16, 0, len(f.vxlanPorts))
	for _, p := range f.vxlanPorts {
		if p == 0 || p > 65535 {
			return opts, usageError{fmt.Errorf("--vxlan-port %s is not a UDP port", strconv.FormatUint(uint64(p), 10))}
		}
		ports = append(ports, uint16(p))
	}
	if f.count < 0 {
		return opts, usageError{fmt.Errorf("--count %d is negative", f.count)}
	}
	if f.duration < 0 {
		return opts, usageError{fmt.Errorf("--duration %s is negative", f.duration)}
	}
	if f.snaplen < 0 || f.snaplen > loader.MaxSnaplen {
		return opts, usageError{fmt.Errorf("--snaplen %d is out of range 0..%d", f.snaplen, loader.MaxSnaplen)}
	}
	if f.quiet && f.write == "" {
		return opts, usageError{fmt.Errorf("-q prints nothing but the summary: it needs -w FILE to be of use")}
	}
	backend, err := loader.ParseChoice(f.backend)
	if err != nil {
		return opts, usageError{fmt.Errorf("--backend: %w", err)}
	}
	// Live output and the replay of a recording see the same bytes.
	opts.Loader = loader.Options{PodIPs: ips, VXLANPorts: ports, Netns: f.netns, Backend: backend, Snaplen: f.snaplen}
	opts.Record = f.write
	opts.Count = f.count
	opts.ReadyFile = f.readyFile
	opts.Log = f.logger()
	return opts, nil
}

func newRootCmd() *cobra.Command {
	var f traceFlags
	cmd := &cobra.Command{
		Use:   "pathtrace [--pod-ip IP]... [flags]",
		Short: "Show each packet's path through a Kubernetes node's kernel, hop by hop",
		Long: `pathtrace follows the packets of the pods you name through the node's kernel:
the pod's veth, the bridge, every netfilter hook (with what NAT changed there),
VXLAN encapsulation, the node's NIC, and back, with the time spent at each hop
and where and why a packet was dropped.`,
		Example: `  sudo pathtrace --pod-ip 10.244.1.5
  sudo pathtrace --pod-ip 10.244.1.5 -o json -c 10
  sudo pathtrace --pod-ip 10.244.1.5 -o html > trace.html   # written when it stops (Ctrl-C)
  pathtrace demo`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.read != "" {
				for _, name := range []string{"netns", "write", "quiet", "snaplen", "ready-file", "duration", "vxlan-port"} {
					if cmd.Flags().Changed(name) {
						return usageError{fmt.Errorf("--%s does not apply to a replay (-r)", name)}
					}
				}
				return runReplay(cmd, &f.outputFlags, f.read, f.podIPs, f.count)
			}
			opts, err := f.options()
			if err != nil {
				return err
			}
			out, err := f.renderer()
			if err != nil {
				return err
			}
			if f.quiet {
				out = render.Discard()
			}
			ctx := cmd.Context()
			if f.duration > 0 {
				var cancel func()
				ctx, cancel = context.WithTimeout(ctx, f.duration)
				defer cancel()
			}
			if len(opts.Loader.PodIPs) == 0 {
				opts.Log.Warn("no --pod-ip given: following every IPv4 packet")
			}
			sum, err := trace.Run(ctx, opts, out)
			if sum.Backend != "" { // it ran: say what it saw
				fmt.Fprintf(os.Stderr, "pathtrace: %s\n", sum)
			}
			return err
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	f.register(cmd)
	cmd.AddCommand(newDemoCmd(), newDoctorCmd(), newReplayCmd(), newFeaturesCmd())
	return cmd
}

// noArgs rejects positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return usageError{err}
	}
	return nil
}
