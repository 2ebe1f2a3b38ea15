package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf/asm"
	"github.com/spf13/cobra"

	"github.com/pathtrace/pathtrace/internal/filter"
	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/podstream"
	"github.com/pathtrace/pathtrace/internal/record"
	"github.com/pathtrace/pathtrace/internal/render"
	"github.com/pathtrace/pathtrace/internal/scope"
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

// liveSnaplen is what a live trace without -w and --snaplen captures of
// each packet: an ICMP error and the headers it quotes.
const liveSnaplen = 128

// check checks the output flags.
func (o *outputFlags) check() error {
	switch {
	case o.packet != 0 && o.output != "svg":
		return usageError{fmt.Errorf("--packet chooses the packet of -o svg, not of -o %s", o.output)}
	case o.output == "svg" && o.packet == 0:
		return usageError{fmt.Errorf("-o svg draws one packet: name it with --packet N (its #id in the text output)")}
	case o.output != "text" && o.output != "json" && o.output != "html" && o.output != "svg":
		return usageError{fmt.Errorf("--output %q is not text, json, html or svg", o.output)}
	}
	return nil
}

// renderer builds the renderer for w, stdout (check first): colors are
// decided by stdout.
func (o *outputFlags) renderer(w io.Writer) render.Renderer {
	switch o.output {
	case "json":
		return render.NewJSON(w)
	case "html":
		return render.NewHTML(w, render.HTMLOptions{})
	case "svg":
		return render.NewSVG(w, render.SVGOptions{Packet: o.packet})
	}
	return render.NewText(w, render.TextOptions{Color: render.UseColor(o.color, os.Stdout, os.Getenv)})
}

func (o *outputFlags) logger() *slog.Logger {
	level := slog.LevelWarn
	if o.debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

// stdout is os.Stdout through an Output that a signal stops: a stdout
// nobody reads never holds the end of a command (see trace.Output).
type stdout struct{ *trace.Output }

func newStdout(ctx context.Context) stdout {
	o := trace.NewOutput(os.Stdout, outputGrace)
	context.AfterFunc(ctx, o.Stop)
	return stdout{o}
}

// close writes out what is left, and returns the summary line's note on
// what could not be written ("" when everything was).
func (o stdout) close() string {
	dropped, _ := o.Close() // a write error ended the command already
	if dropped == 0 {
		return ""
	}
	return fmt.Sprintf("; %d bytes of output dropped: stdout was not read when pathtrace stopped", dropped)
}

// traceFlags are the flags of a live trace.
type traceFlags struct {
	outputFlags
	podIPs     []string
	kube       kubeFlags
	netns      []string
	vxlanPorts []uint
	count      int
	duration   time.Duration
	readyFile  string
	write      string
	quiet      bool
	snaplen    int
	snaplenSet bool // --snaplen was given: no cut at the headers
	ndp        bool
	fileSize   int
	fileTime   int
	fileCount  int
	read       string
	backend    string
	hops       string
	maxPerConn int
	ringSize   int // MiB
	scope      string
	nodeName   string
	logStream  bool
	filterCode string
}

func (f *traceFlags) register(cmd *cobra.Command) {
	f.outputFlags.register(cmd)
	fl := cmd.Flags()
	fl.StringArrayVar(&f.podIPs, "pod-ip", nil, "IPv4 or IPv6 address of a pod to follow (repeatable: give a dual-stack pod's two addresses); matches source or destination, outer or VXLAN-inner")
	f.kube.register(cmd, true)
	fl.BoolVar(&f.ndp, "ndp", false, "also follow ICMPv6 neighbour discovery and multicast listener messages (types 130-137, 143), which are left out otherwise")
	fl.StringArrayVar(&f.netns, "netns", nil, "node network namespace (a name under /run/netns, or a path if it has a /) to attach netfilter programs in (repeatable; default: pathtrace's own, as on a real node)")
	fl.UintSliceVar(&f.vxlanPorts, "vxlan-port", []uint{8472, 4789}, "UDP destination ports carrying VXLAN")
	fl.IntVarP(&f.count, "count", "c", 0, "stop after this many packets (0: until interrupted)")
	fl.DurationVar(&f.duration, "duration", 0, "stop this long after everything is attached (0: until interrupted)")
	fl.StringVar(&f.readyFile, "ready-file", "", "write this file once everything is attached, so scripts can start traffic")
	fl.StringVarP(&f.write, "write", "w", "", "record the trace to this pcapng file (mode 0600), for pathtrace replay; - writes it to standard output, as tcpdump -w - (no paths are printed then)")
	fl.BoolVar(&f.logStream, "log-stream", false, "with -w -: write the recording as base64 lines, for a pod's log (kubectl pathtrace reads it so)")
	_ = fl.MarkHidden("log-stream")
	fl.StringVar(&f.filterCode, "filter-code", "", "the filter expression's classic BPF, compiled elsewhere (tcpdump -y RAW -ddd, lines joined by commas); the expression is then its label")
	_ = fl.MarkHidden("filter-code")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print no paths, only the closing summary (with -w)")
	fl.IntVar(&f.snaplen, "snaplen", 0, "bytes of each packet, from its IP header, captured and kept in a recording (0-256; default: its headers, up to the innermost transport header, never payload, in a recording; 128 bytes live, which hold the headers an ICMP error quotes)")
	fl.IntVarP(&f.fileSize, "file-size", "C", 0, "with -w: start a new file once the recording file holds this many megabytes (1,000,000 bytes), as tcpdump -C: FILE, FILE1, FILE2, ...")
	fl.IntVarP(&f.fileTime, "rotate-seconds", "G", 0, "with -w: start a new file every this many seconds, as tcpdump -G (numbered as with -C)")
	fl.IntVarP(&f.fileCount, "file-count", "W", 0, "with -C or -G: keep the last COUNT files, named FILE0 to FILE<COUNT-1> in turn, as tcpdump -W")
	fl.StringVarP(&f.read, "read", "r", "", "replay a recording instead of tracing (same as: pathtrace replay FILE)")
	fl.StringVar(&f.backend, "backend", string(loader.ChoiceAuto), backendHelp)
	fl.StringVar(&f.hops, "hops", "", hopsHelp)
	fl.StringVar(&f.scope, "scope", string(scope.Kernel), "kernel: every network namespace of this kernel (with the demo's nodes, both halves of a cross-node packet); node: only what one node would see, the --netns namespaces and the pods attached to them by veth pairs (docs/cluster.md), for recordings that pathtrace replay merges across nodes")
	fl.StringVar(&f.nodeName, "node-name", "", "name of this node in the recording and, with --scope node, on every hop (default: $NODE_NAME where a Kubernetes pod was told it, else the host name)")
	fl.IntVar(&f.ringSize, "ring-size", loader.DefaultRing>>20, ringSizeHelp)
	fl.IntVar(&f.maxPerConn, "max-per-conn", 0, maxPerConnHelp+". Counted in user space: the kernel still traces every packet")
}

const (
	ringSizeHelp   = "the kernel's ring buffer for events, in MiB (a power of two, 1-256): a larger one holds a longer burst, or a longer stall of pathtrace, before events are lost; it costs its size in memory (RSS) from the start"
	maxPerConnHelp = "print only the first N packets of each connection, say the handshake (0: all); a connection is the protocol and the two endpoints a packet is first seen with, either direction"
)

// checkRingSize checks --ring-size (MiB) as the loader will.
func checkRingSize(n int) error {
	if n > loader.MaxRing>>20 || !loader.ValidRingSize(n<<20) { // the first test keeps the shift from overflowing
		return usageError{fmt.Errorf("--ring-size %d is not a power of two from %d to %d (MiB)", n, loader.MinRing>>20, loader.MaxRing>>20)}
	}
	return nil
}

// checkMaxPerConn checks --max-per-conn.
func checkMaxPerConn(n int) error {
	if n < 0 {
		return usageError{fmt.Errorf("--max-per-conn %d is negative", n)}
	}
	return nil
}

// hopsHelp says what --hops attaches.
var hopsHelp = "attach only the programs of these hop kinds, comma-separated (" + loader.HopNames() + "; default: all). " +
	"drop and consume are always attached: they end a packet's path and its tracking. nat attaches the netfilter programs, " +
	"encap and decap the device hops (rx, tx) they are inferred from where no function shows them. " +
	"Without netfilter (or nat) the connection table is not fed from conntrack: packets are followed by --pod-ip address only"

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
	if err := checkRingSize(f.ringSize); err != nil {
		return opts, err
	}
	if f.quiet && f.write == "" {
		return opts, usageError{fmt.Errorf("-q prints nothing but the summary: it needs -w FILE to be of use")}
	}
	rot, err := f.rotation()
	if err != nil {
		return opts, err
	}
	backend, err := loader.ParseChoice(f.backend)
	if err != nil {
		return opts, usageError{fmt.Errorf("--backend: %w", err)}
	}
	opts.Loader = loader.Options{PodIPs: ips, VXLANPorts: ports, Netns: f.netns, Backend: backend, Snaplen: f.snaplen, NeighborDiscovery: f.ndp, RingSize: f.ringSize << 20}
	if f.hops != "" {
		if opts.Loader.Hops, err = loader.ParseHops(f.hops); err != nil {
			return opts, usageError{fmt.Errorf("--hops: %w", err)}
		}
	}
	switch {
	case f.snaplenSet:
	case f.write != "":
		// Headers only: the kernel copies what a packet's headers can
		// take, the recording keeps the headers.
		opts.Loader.Snaplen, opts.HeadersOnly = loader.MaxSnaplen, true
	default:
		// Live, the headers an ICMP error quotes explain it; replay of
		// a recording sees at least as much. The stitcher reads them at
		// the first hop that has them (and the echo ids, which the
		// kernel copies at every hop): copied where the headers are new
		// or changed only.
		opts.Loader.Snaplen, opts.Loader.SnapChanged = liveSnaplen, true
	}
	switch {
	case f.write == "-":
		if rot.Rotates() {
			return opts, usageError{fmt.Errorf("-w - writes one recording to standard output: it cannot be rotated (-C, -G)")}
		}
		opts.RecordTo = os.Stdout
		if f.logStream {
			// A pod's log is text: kubectl pathtrace reads it back.
			opts.RecordTo = podstream.NewWriter(os.Stdout)
		}
	case f.logStream:
		return opts, usageError{fmt.Errorf("--log-stream encodes the recording of -w - for a pod's log: it needs -w -")}
	case f.write != "":
		opts.Record, opts.Rotate = f.write, rot
	}
	opts.Count = f.count
	if err := checkMaxPerConn(f.maxPerConn); err != nil {
		return opts, err
	}
	opts.MaxPerConn = f.maxPerConn
	if opts.Scope, err = scope.Parse(f.scope); err != nil {
		return opts, usageError{err}
	}
	opts.NodeName = f.nodeName
	opts.ReadyFile = f.readyFile
	opts.Log = f.logger()
	return opts, nil
}

// rotation checks -C, -G and -W.
func (f *traceFlags) rotation() (record.Rotation, error) {
	var rot record.Rotation
	for _, v := range []struct {
		flag  string
		value int
	}{{"-C", f.fileSize}, {"-G", f.fileTime}, {"-W", f.fileCount}} {
		switch {
		case v.value < 0:
			return rot, usageError{fmt.Errorf("%s %d is negative", v.flag, v.value)}
		case v.value > 0 && f.write == "":
			return rot, usageError{fmt.Errorf("%s rotates recording files: it needs -w FILE", v.flag)}
		}
	}
	if f.fileCount > 0 && f.fileSize == 0 && f.fileTime == 0 {
		return rot, usageError{fmt.Errorf("-W keeps the last files of a recording that -C or -G rotates: give one of them")}
	}
	if f.fileSize > math.MaxInt64/1_000_000 {
		return rot, usageError{fmt.Errorf("-C %d megabytes is too large", f.fileSize)}
	}
	if int64(f.fileTime) > math.MaxInt64/int64(time.Second) {
		return rot, usageError{fmt.Errorf("-G %d seconds is too long", f.fileTime)}
	}
	rot.Size = int64(f.fileSize) * 1_000_000
	rot.Every = time.Duration(f.fileTime) * time.Second
	rot.Keep = f.fileCount
	return rot, nil
}

func newRootCmd() *cobra.Command {
	var f traceFlags
	cmd := &cobra.Command{
		Use:   "pathtrace [--pod-ip IP]... [flags] [filter expression]",
		Short: "Show each packet's path through a Kubernetes node's kernel, hop by hop",
		Long: `pathtrace follows the packets of the pods you name through the node's kernel:
the pod's veth, the bridge, every netfilter hook (with what NAT changed there),
VXLAN encapsulation, the node's NIC, and back, with the time spent at each hop
and where and why a packet was dropped.

A tcpdump filter expression (pcap-filter(7); the arguments are joined, as
tcpdump does) narrows what is traced: a packet must match it, on its outer or
(tunnel) inner IPv4 or IPv6 header, as well as a --pod-ip, at a hop where it is not
followed yet. See docs/filters.md.`,
		Example: `  sudo pathtrace --pod-ip 10.244.1.5
  sudo pathtrace --pod-ip 10.244.1.5 -o json -c 10
  sudo pathtrace --pod-ip 10.244.1.5 'tcp port 80'
  sudo pathtrace --pod-ip 10.244.1.5 -o html > trace.html   # written when it stops (Ctrl-C)
  pathtrace demo`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			expr := strings.TrimSpace(strings.Join(args, " "))
			if f.read != "" {
				if expr != "" {
					return usageError{fmt.Errorf("a filter expression does not apply to a replay (-r) yet")}
				}
				for _, name := range []string{"netns", "write", "quiet", "snaplen", "ready-file", "duration", "vxlan-port", "file-size", "rotate-seconds", "file-count", "scope", "node-name", "hops", "ring-size", "backend"} {
					if cmd.Flags().Changed(name) {
						return usageError{fmt.Errorf("--%s does not apply to a replay (-r)", name)}
					}
				}
				for _, name := range []string{"kubeconfig", "runtime-endpoint"} {
					if cmd.Flags().Changed(name) {
						return usageError{fmt.Errorf("--%s does not apply to a replay (-r): it names pods from the recording", name)}
					}
				}
				return runReplay(cmd, &f.outputFlags, []string{f.read}, f.podIPs, trace.ReplayOptions{Select: f.kube.selection(), Count: f.count, MaxPerConn: f.maxPerConn})
			}
			f.snaplenSet = cmd.Flags().Changed("snaplen")
			opts, err := f.options()
			if err != nil {
				return err
			}
			if err := f.check(); err != nil {
				return err
			}
			if err := f.kube.resolve(cmd.Context(), &opts); err != nil {
				return err
			}
			switch {
			case f.filterCode != "":
				// Compiled by kubectl pathtrace: the image has no tcpdump.
				if opts.Loader.Filter, err = translateFilter(filter.ParseCode(expr, f.filterCode)); err != nil {
					return err
				}
			case expr != "":
				if opts.Loader.Filter, err = compileFilter(cmd.Context(), expr); err != nil {
					return err
				}
			}
			stdout := newStdout(cmd.Context())
			out := f.renderer(stdout)
			if f.quiet || f.write == "-" {
				out = render.Discard() // -w -: standard output is the recording's
			}
			ctx := cmd.Context()
			if f.duration > 0 {
				// The time counts from when everything is attached: loading
				// the programs takes seconds on a busy node, and would
				// otherwise eat the trace.
				var cancel func()
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
				opts.OnReady = func() { time.AfterFunc(f.duration, cancel) }
			}
			sum, err := trace.Run(ctx, opts, out)
			dropped := stdout.close()
			if sum.Backend != "" { // it ran: say what it saw
				printSummary("", sum, dropped)
			}
			return err
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	f.register(cmd)
	cmd.AddCommand(newDemoCmd(), newDoctorCmd(), newReplayCmd(), newFeaturesCmd(), newKubectlCmd(false))
	return cmd
}

// printSummary writes the closing summary to stderr, verb ("replayed") first
// where one is given, and when events were lost the line that says what
// that did to the paths.
func printSummary(verb string, sum trace.Summary, dropped string) {
	if verb != "" {
		verb += " "
	}
	fmt.Fprintf(stderr, "pathtrace: %s%s%s\n", verb, sum, dropped)
	if note := sum.LossNote(); note != "" {
		fmt.Fprintf(stderr, "pathtrace: %s\n", note)
	}
}

// compileFilter compiles and translates a filter expression; one libpcap
// refuses, or whose code pathtrace cannot run, is a usage error.
func compileFilter(ctx context.Context, expr string) (asm.Instructions, error) {
	p, err := filter.Compile(ctx, expr)
	return translateFilter(p, err)
}

func translateFilter(p *filter.Program, err error) (asm.Instructions, error) {
	var syntax *filter.SyntaxError
	if errors.As(err, &syntax) {
		return nil, usageError{err}
	}
	if err != nil {
		return nil, err
	}
	fn, err := filter.Translate(p.Insns)
	if err != nil {
		return nil, usageError{fmt.Errorf("filter expression %q: %w", p.Expr, err)}
	}
	return fn, nil
}

// noArgs rejects positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return usageError{err}
	}
	return nil
}
