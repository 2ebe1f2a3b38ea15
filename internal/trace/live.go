package trace

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/diagnose"
	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/features"
	"github.com/pathtrace/pathtrace/internal/k8s"
	"github.com/pathtrace/pathtrace/internal/kernel"
	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/record"
	"github.com/pathtrace/pathtrace/internal/render"
	"github.com/pathtrace/pathtrace/internal/scope"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/version"
)

// Options configure a live trace.
type Options struct {
	Loader    loader.Options
	Count     int    // stop after this many packets; 0 runs until ctx ends
	ReadyFile string // written once everything is attached
	OnReady   func() // called once everything is attached
	// Record, when set, is the path of a recording to write (pcapng, mode
	// 0600) with every event of the trace; Loader.Snaplen bytes of each
	// packet go with it, cut at the packet's headers with HeadersOnly.
	// Rotate says when it goes on in a new file.
	Record string
	// RecordTo, when set instead of Record, receives the recording as it
	// goes (pathtrace -w -): flushed whenever the ring buffer is found
	// empty, so that a reader sees each event within a poll or two.
	RecordTo    io.Writer
	Rotate      record.Rotation
	HeadersOnly bool
	Stitch      stitch.Config
	Log         *slog.Logger
	// OnReports, when set, is called once before OnReady with the node
	// reports the advice is based on (see Summary.Reports), so a recording
	// can store them for replay.
	OnReports func(map[uint32]*doctor.Report)

	// MaxPerConn renders only the first this many packets of each
	// connection (0: all); see connLimit.
	MaxPerConn int

	// Scope scope.Node keeps only the events of the Loader.Netns
	// namespaces and their pods (internal/scope), and names NodeName on
	// every hop; "" is scope.Kernel.
	Scope scope.Scope
	// NodeName names the node in the recording (and, with scope.Node, on
	// every hop); "" is DefaultNodeName().
	NodeName string
	// Kubernetes are the cluster's pods and Services, looked up before the
	// trace (k8s.Select, which --pod and --service use too); nil: paths
	// name no pods. Run names the pods' network namespaces on this
	// machine in a copy, and the recording stores it.
	Kubernetes *k8s.Names
	// KubeLookup, with KubeRefresh > 0 and Kubernetes set, looks the
	// names up again every KubeRefresh while tracing; names that changed
	// apply to the packets that start after, and are recorded.
	KubeLookup  func(context.Context) (*k8s.Names, error)
	KubeRefresh time.Duration
}

// Summary is what a trace did, for the closing line on stderr.
type Summary struct {
	Stats
	Lost uint64 // events the kernel could not deliver (ring buffer full)
	// Missed counts the program runs the kernel skipped (loader.Tracer
	// .Missed): events that may be missing, with nothing else to say so.
	Missed  uint64
	Nodes   []loader.Node
	Backend string
	// Reports are the node reports (pathtrace doctor) taken at the start,
	// by the inode of each node's network namespace; a node whose report
	// could not be taken is missing. Drop advice, path warnings and
	// Service names come from them (internal/diagnose).
	Reports map[uint32]*doctor.Report
	// Hops says per hop kind which backend showed it, or why none could.
	Hops []loader.HopSupport
	// Kubernetes are the names the paths were annotated with (nil: none).
	Kubernetes *k8s.Names
	// Conns are the connections the kernel followed whole (every packet,
	// both directions, each NAT form): nil where not known (a replay of a
	// recording made before they were counted).
	Conns *record.Connections
	// Clocks are, in a replay of several nodes' recordings merged, the
	// clock offsets of the nodes after the first relative to it; Merged
	// counts the halves of packets joined across nodes; Reference is the
	// first node, whose clock the others are put on.
	Clocks    []stitch.Clock
	Merged    int
	Reference string
}

func (s Summary) String() string {
	str := fmt.Sprintf("%d packets, %d events, %d lost", s.Packets-s.LateEnds, s.Events, s.Lost)
	if s.Missed > 0 {
		str += fmt.Sprintf(", %d program run%s skipped by the kernel", s.Missed, plural(s.Missed))
	}
	if s.LateEnds > 0 {
		// Frees of packets already counted, shown apart (stitch.Late).
		str += fmt.Sprintf(", %d late end%s", s.LateEnds, plural(s.LateEnds))
	}
	if s.OutOfScope > 0 {
		str += fmt.Sprintf(", %d out of scope", s.OutOfScope)
	}
	if s.Skipped > 0 {
		// Records of a layout this pathtrace does not read: say so, so
		// that nobody takes the paths for whole.
		str += fmt.Sprintf(", %d undecodable", s.Skipped)
	}
	if c := s.Conns; c != nil {
		str += fmt.Sprintf(", %d connections (%d evicted)", c.Followed, c.Evicted)
	}
	if s.Clocks != nil {
		str += fmt.Sprintf(", %d halves joined across nodes", s.Merged)
		for _, c := range s.Clocks {
			str += "; " + ClockString(c, s.Reference)
		}
	}
	return str
}

// LossNote is the line that follows the summary when events were lost or
// program runs skipped: what that does to the paths shown, and what gives
// the ring more room. Empty when neither happened.
func (s Summary) LossNote() string {
	var notes []string
	if s.Lost > 0 {
		notes = append(notes, fmt.Sprintf("%d events were lost (the kernel's ring buffer was full): the paths of those "+
			"packets lack hops, and a drop or consume the kernel gave no device is shown at the last hop seen "+
			"(marked \"shown where last seen\"), which may not be the last hop taken; a larger --ring-size when "+
			"tracing holds a longer burst", s.Lost))
	}
	if s.Missed > 0 {
		notes = append(notes, fmt.Sprintf("the kernel skipped %d run%s of pathtrace's programs (a program interrupted "+
			"on its CPU by an event that runs it again is not run twice at once): where such a run was a traced "+
			"packet's, its path lacks that hop, and may end unknown or early", s.Missed, plural(s.Missed)))
	}
	return strings.Join(notes, "; ")
}

// liveGrace is the stitcher's grace live. The ring buffer delivers events in
// the order the programs reserved them, and each takes its timestamp right
// after reserving: once the reader has an event stamped T, or found the ring
// empty after T, no event stamped before T is still on its way (bar the
// few nanoseconds between reserve and stamp, which this covers many times
// over). Paths are rendered that soon after they end, instead of
// stitch.DefaultGrace later, which keeps the paths held in memory few.
const liveGrace = time.Millisecond

// Run traces until ctx ends or Count packets were rendered, rendering each
// packet's path to out. Everything it attached is detached before it
// returns, whatever the outcome. Once out.Render returns, the path's memory
// is reused for a later packet: a renderer that keeps paths must keep
// copies (stitch.Path.Clone).
func Run(ctx context.Context, opts Options, out render.Renderer) (Summary, error) {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	var sum Summary
	if err := features.Check(); err != nil {
		return sum, err
	}
	in, err := openInputs(&opts)
	if err != nil {
		return sum, err
	}
	defer in.discard()
	if len(opts.Loader.PodIPs) == 0 {
		log.Warn("no --pod-ip given: following every IPv4 and IPv6 packet")
	}
	start := time.Now()
	k := loadKernelNames(log)
	log.Debug("kernel names read", "took", time.Since(start))
	lopts := opts.Loader
	lopts.Log = log
	// From the start: the programs' load parses the kernel's BTF (about
	// 25 MB of heap, released when Open returns).
	defer limitMemory()()
	start = time.Now()
	tr, err := loader.Open(lopts)
	if err != nil {
		return sum, err
	}
	defer tr.Close()
	log.Debug("programs loaded and attached", "took", time.Since(start))
	sum.Nodes, sum.Backend, sum.Hops = tr.Nodes, tr.Backend, tr.Hops
	warnUnobservable(log, tr)

	netns := kernel.NewNetnsNames()
	startMono, startWall := clockNow()
	if opts.NodeName == "" {
		opts.NodeName = DefaultNodeName()
	}
	cfg := liveStitchConfig(opts.Stitch, tr.Nodes, netns, k, startMono, startWall)
	var keep *scope.Filter
	if opts.Scope == scope.Node {
		if keep, err = scope.NewFilter(func() (map[uint32]bool, error) { return scope.Namespaces(opts.Loader.Netns) }); err != nil {
			return sum, fmt.Errorf("find the node's pods: %w", err)
		}
		log.Debug("scope node", "node", opts.NodeName, "namespaces", len(keep.In()))
		cfg.Node = opts.NodeName
	}
	p := newPipeline(cfg, out, nil, opts.Count)
	p.perConn.max = uint32(max(opts.MaxPerConn, 0))
	if keep != nil {
		p.keep = keep.Keep
	}

	start = time.Now()
	sum.Reports = nodeReports(ctx, tr.Nodes, log)
	log.Debug("node reports read", "took", time.Since(start))
	warnIPv4Only(log, opts.Loader.PodIPs, sum.Reports)
	sum.Kubernetes = podNetns(opts.Kubernetes, cfg.Names, sum.Reports)
	p.kube = k8s.NewTimeline(sum.Kubernetes)
	p.annotate = annotators(sum.Reports, p.kube)
	if opts.OnReports != nil {
		opts.OnReports(sum.Reports)
	}

	var w *record.Writer
	if in.rec != nil {
		w, err = startRecording(in.rec, opts, tr, sum.Reports, sum.Kubernetes, k, startMono, startWall)
		in.rec = nil // the writer has it, or it was removed
		if err != nil {
			return sum, err
		}
		netns.OnName = w.SetNetnsName
		p.rec = &recorder{w: w, stream: opts.RecordTo != nil, netns: netns.Netns, reasons: k.reasons, symbol: k.symbol, services: diagnose.NewServices(sum.Reports)}
		if sum.Kubernetes != nil {
			p.rec.setKube(k8s.NewPods(sum.Kubernetes))
		}
	}
	if sum.Kubernetes != nil && opts.KubeLookup != nil && opts.KubeRefresh > 0 {
		rctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		defer func() { stop(); wg.Wait() }()
		wg.Go(func() { refreshKube(rctx, opts, sum.Kubernetes, cfg.Names, sum.Reports, &p.kubeNext, log) })
	}
	if err := signalReady(in, opts); err != nil {
		if w != nil {
			w.Close(record.Meta{EndWall: time.Now()})
		}
		return sum, err
	}

	err = readLoop(ctx, tr, p)
	if errors.Is(err, errCountReached) {
		err = nil
	}
	perCPU, lerr := tr.LostPerCPU()
	for _, n := range perCPU {
		sum.Lost += n
	}
	missed, merr := tr.Missed()
	if merr != nil {
		log.Debug("program runs skipped not known", "err", merr)
	}
	sum.Missed = missed
	nodes := make([]uint32, 0, len(tr.Nodes))
	for _, n := range tr.Nodes {
		nodes = append(nodes, n.Inode)
	}
	describeTrace(out, render.TraceInfo{
		Backend: tr.Backend, Kernel: kernel.Release(), Hostname: hostname(), Start: startWall,
		PodIPs: opts.Loader.PodIPs, Events: p.stats.Events, Lost: sum.Lost, LostPerCPU: perCPU,
	}, cfg.Names, nodes, sum.Reports, sum.Kubernetes)
	err = errors.Join(err, p.finish())
	sum.Stats = p.stats
	err = errors.Join(err, lerr)
	conns, cerr := tr.Conns()
	if cerr == nil {
		sum.Conns = &record.Connections{Followed: conns.Connections, Evicted: conns.Evicted}
	}
	err = errors.Join(err, cerr)
	if w != nil {
		final := record.Meta{Lost: sum.Lost, LostPerCPU: perCPU, Missed: sum.Missed, EndWall: time.Now(), Connections: sum.Conns}
		// A recording that failed says so once: its writer's error is
		// sticky, and the read loop returned it already.
		if cerr := w.Close(final); cerr != nil && !errors.Is(err, cerr) {
			err = errors.Join(err, cerr)
		}
	}
	return sum, errors.Join(err, tr.Close())
}

// ClockString says a node's clock offset relative to the reference node
// for people: "clock of node2 +1.234ms ± 30µs from node1's (16 packets)";
// bounded one way only: "clock of node2 -2µs from node1's, not bounded
// (3 packets, one way)".
func ClockString(c stitch.Clock, ref string) string {
	sign := "+"
	if c.Offset < 0 {
		sign = ""
	}
	switch {
	case c.Pairs == 0:
		return fmt.Sprintf("clock of %s unknown: no packet crossed between it and the others", c.Node)
	case !c.Known:
		return fmt.Sprintf("clock of %s %s%v from %s's, not bounded (%d packets, one way)", c.Node, sign, c.Offset, ref, c.Pairs)
	}
	return fmt.Sprintf("clock of %s %s%v ± %v from %s's (%d packets)", c.Node, sign, c.Offset, c.Uncertainty, ref, c.Pairs)
}

// kernelNames names what events carry as numbers on the running kernel:
// drop reasons from its BTF, code addresses from its symbols.
type kernelNames struct {
	reasons map[uint32]string
	symbol  func(addr uint64) string
}

// loadKernelNames reads the drop reasons now and the kernel symbols in the
// background, while the programs load; a missing source leaves numbers.
//
// Not after they are attached: reading /proc/kallsyms takes about 0.1 s
// of CPU, which a trace flooded from its first instant cannot spare on a
// 2-core machine (the pipeline bench lost 1–3% of 500k events/s with the
// read after the ready file, none with it before).
func loadKernelNames(log *slog.Logger) kernelNames {
	reasons, err := kernel.DropReasons()
	if err != nil {
		log.Warn("drop reasons will show as numbers", "err", err)
	}
	// Read in the background while the programs load; the first lookup
	// waits for it. Read again when modules are loaded or removed.
	ready := make(chan *kernel.LiveSymbols, 1)
	go func() { ready <- kernel.NewLiveSymbols() }()
	syms := sync.OnceValue(func() *kernel.LiveSymbols { return <-ready })
	return kernelNames{reasons: reasons, symbol: func(addr uint64) string {
		return syms().Lookup(addr)
	}}
}

// warnUnobservable logs which backend shows each hop kind, and warns once
// about the kinds nothing shows on this kernel.
func warnUnobservable(log *slog.Logger, tr *loader.Tracer) {
	log.Debug("attached", "backend", tr.Backend, "nodes", tr.Nodes)
	var unseen []string
	for _, h := range tr.Hops {
		log.Debug("hop", "kind", h.Hop, "backend", h.Backend, "source", h.Source, "reason", h.Reason)
		if !h.Observable() && h.Reason != loader.ReasonNotAsked {
			unseen = append(unseen, h.Hop.String())
		}
	}
	if len(unseen) > 0 {
		log.Warn("hops not observable on this kernel (pathtrace features says why)", "hops", strings.Join(unseen, ","))
	}
}

// clockNow reads one instant on both clocks, so that hop times become
// wall-clock times the same way live and in replay.
func clockNow() (mono uint64, wall time.Time) {
	return monotonicNow(), time.Now()
}

// liveStitchConfig is the stitcher's configuration live: names from the
// system, the traced nodes, and memory reused once a path is rendered (see
// Run's doc).
func liveStitchConfig(cfg stitch.Config, nodes []loader.Node, netns *kernel.NetnsNames, k kernelNames, startMono uint64, startWall time.Time) stitch.Config {
	isNode := make(map[uint32]bool, len(nodes))
	for _, n := range nodes {
		isNode[n.Inode] = true
	}
	if cfg.Grace == 0 {
		cfg.Grace = liveGrace
	}
	cfg.Recycle = true
	cfg.WallOffset = startWall.UnixNano() - int64(startMono)
	cfg.Names = &names{netns: netns.Netns, nodes: isNode, reasons: k.reasons, symbol: k.symbol}
	return cfg
}

// startRecording starts the recording of -w, in the file made before
// anything was attached, with everything replay needs to show the trace as
// it was shown live: the node reports (replay advises from them), the drop
// reasons, the clocks and the traced nodes. Each file of a rotated
// recording counts the events lost while it was written.
func startRecording(files *record.Files, opts Options, tr *loader.Tracer, reports map[uint32]*doctor.Report, kube *k8s.Names, k kernelNames, startMono uint64, startWall time.Time) (*record.Writer, error) {
	reportsJSON, err := json.Marshal(reports)
	if err != nil {
		files.Discard()
		return nil, fmt.Errorf("encode node reports: %w", err)
	}
	var kubeJSON []byte
	if kube != nil {
		if kubeJSON, err = json.Marshal(kube); err != nil {
			files.Discard()
			return nil, fmt.Errorf("encode Kubernetes names: %w", err)
		}
		if len(kubeJSON) > maxKubeJSON {
			log := opts.Log
			if log == nil {
				log = slog.Default()
			}
			log.Warn("the Kubernetes names are too many for the recording: its replay shows no pod names", "bytes", len(kubeJSON))
			kubeJSON = nil
		}
	}
	ports := opts.Loader.VXLANPorts
	if ports == nil {
		ports = loader.DefaultVXLANPorts
	}
	w, err := files.Start(record.Meta{
		PathtraceVersion: version.String(),
		Kernel:           kernel.Release(),
		Hostname:         hostname(),
		NodeName:         opts.NodeName,
		Scope:            string(opts.Scope),
		Backend:          tr.Backend,
		Filter: record.Filter{
			PodIPs:      opts.Loader.PodIPs,
			VXLANPorts:  ports,
			Snaplen:     opts.Loader.Snaplen,
			HeadersOnly: opts.HeadersOnly,
		},
		StartWall:   startWall,
		StartMono:   startMono,
		DropReasons: k.reasons,
		Reports:     reportsJSON,
		Kubernetes:  kubeJSON,
	})
	if err != nil {
		return nil, err
	}
	for _, n := range tr.Nodes {
		w.AddNode(n.Inode)
	}
	w.CountLost(func() []uint64 {
		perCPU, _ := tr.LostPerCPU()
		return perCPU
	})
	w.CountMissed(func() uint64 {
		n, _ := tr.Missed()
		return n
	})
	return w, nil
}

// kubeUpdate is Kubernetes names looked up again, and their JSON.
type kubeUpdate struct {
	names *k8s.Names
	js    []byte
}

// refreshKube looks the Kubernetes names up every opts.KubeRefresh until
// ctx ends, and leaves names that changed in next for the read loop
// (applyKube), which puts them in effect at a point of its own. A lookup
// that fails is a debug line: the names before stay.
func refreshKube(ctx context.Context, opts Options, start *k8s.Names, names stitch.Names, reports map[uint32]*doctor.Report, next *atomic.Pointer[kubeUpdate], log *slog.Logger) {
	last, _ := json.Marshal(start)
	t := time.NewTicker(opts.KubeRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := opts.KubeLookup(ctx)
		if err != nil {
			log.Debug("Kubernetes names not refreshed", "err", err)
			continue
		}
		n = podNetns(n, names, reports)
		js, err := json.Marshal(n)
		if err != nil || bytes.Equal(js, last) {
			continue
		}
		if len(js) > record.MaxKubeUpdate {
			log.Debug("Kubernetes names not refreshed: too many to record", "bytes", len(js))
			continue
		}
		last = js
		next.Store(&kubeUpdate{names: n, js: js})
	}
}

// applyKube puts refreshed Kubernetes names in effect for the packets
// whose first event is stamped from now on, and records them before the
// next record: every such record is read after this, live and in replay.
func (p *pipeline) applyKube() error {
	u := p.kubeNext.Swap(nil)
	if u == nil {
		return nil
	}
	now := monotonicNow()
	p.kube.Add(now, u.names)
	if p.rec != nil {
		p.rec.setKube(k8s.NewPods(u.names))
		return p.rec.w.AddKubernetes(now, u.js)
	}
	return nil
}

// maxKubeJSON bounds the Kubernetes names a recording stores: with the
// node reports they must fit its section header (1 MiB).
const maxKubeJSON = 512 << 10

// podNetns returns a copy of kube with the network namespaces of this
// machine that hold a pod's address named as the pod (not the traced
// nodes'), and the traced nodes' namespaces that hold a Node's address
// (their reports list their addresses) named as the Node; nil when kube
// is.
func podNetns(kube *k8s.Names, names stitch.Names, reports map[uint32]*doctor.Report) *k8s.Names {
	if kube == nil {
		return nil
	}
	c := *kube
	c.Netns = maps.Clone(kube.Netns)
	c.NameNetns(kernel.NetnsDir, names.IsNode)
	c.NodeNetns = maps.Clone(kube.NodeNetns)
	addrs := make(map[uint32][]netip.Addr, len(reports))
	for inode, r := range reports {
		addrs[inode] = r.Network.Addresses
	}
	c.NameNodeNetns(addrs)
	return &c
}

// signalReady tells whoever waits that everything is attached: the ready
// file, then the callback.
func signalReady(in *inputs, opts Options) error {
	if err := in.writeReady(); err != nil {
		return err
	}
	if opts.OnReady != nil {
		opts.OnReady()
	}
	return nil
}

// nodeReports takes the doctor report of each traced node, once. A node
// whose report fails is logged and left out: tracing goes on, and its drops
// get advice from their reason alone.
func nodeReports(ctx context.Context, nodes []loader.Node, log *slog.Logger) map[uint32]*doctor.Report {
	reports := make(map[uint32]*doctor.Report, len(nodes))
	for _, n := range nodes {
		if n.Inode == 0 {
			continue
		}
		r, err := doctor.Collect(ctx, doctor.Options{Netns: n.Path})
		if err != nil {
			log.Warn("no node report: drops in this namespace get advice from their reason only", "netns", nsOrOwn(n.Path), "err", err)
			continue
		}
		reports[n.Inode] = r
	}
	return reports
}

func nsOrOwn(path string) string {
	if path == "" {
		return "own"
	}
	return path
}

// DefaultNodeName is the name of this node when --node-name is not given:
// on a Kubernetes node the Node's name where the pod running pathtrace was
// told it (NODE_NAME, from the downward API's spec.nodeName, as a
// DaemonSet sets it), else the host name. Kubernetes names a Node by the
// host name unless the kubelet was told otherwise.
func DefaultNodeName() string {
	if n := os.Getenv("NODE_NAME"); n != "" {
		return n
	}
	return hostname()
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}

// pollEvery is how long the reader sleeps on an empty ring while events
// come; each poll that finds it still empty doubles the sleep, up to
// pollIdle, and an event brings it back. The kernel programs do not wake
// the reader for each event, only once a batch is waiting (a quarter of
// the ring: submit_event in bpf/include/common.h), so a burst after a
// quiet spell wakes it at once, whatever the sleep; a trickle is read at
// this pace, a busy trace in batches. A trace of a quiet pod wakes 10
// times a second, not 100: on the 2-core bench machine, 100 wakeups a
// second of an otherwise idle pathtrace cost another pod's CPU-bound flow
// about 6% of its throughput (docs/BENCHMARKS.md, 2026-12-07).
const (
	pollEvery = 10 * time.Millisecond
	pollIdle  = 100 * time.Millisecond
)

// pollSleep is the sleep after quiet polls in a row found the ring empty.
func pollSleep(quiet int) time.Duration {
	if quiet >= 8 {
		return pollIdle
	}
	return min(pollEvery<<quiet, pollIdle)
}

// checkEvery is how many records are read, while the ring is not empty,
// between looks at the context and renderings of the paths that completed
// (each emptying of the ring is one too). Rendering them this soon returns
// their memory for the next packets (stitch.Config.Recycle).
const checkEvery = 256

func readLoop(ctx context.Context, tr *loader.Tracer, p *pipeline) error {
	var rec ringbuf.Record
	// seen is the time up to which every event has been read: the newest
	// event's stamp, or when the ring was last found empty (see liveGrace).
	var seen, before uint64
	tr.SetDeadline(time.Now().Add(pollEvery))
	empty := true // the last read left the ring empty, as far as it knew
	quiet := 0    // polls in a row that found the ring empty
	for n := 1; ; n++ {
		if empty {
			// Taken before the read: if it finds the ring empty, every
			// event stamped before this was read.
			before = monotonicNow()
		}
		err := tr.Read(&rec)
		switch {
		case err == nil:
			if err := p.add(rec.RawSample); err != nil {
				return err // the recording's, which names it
			}
			seen = max(seen, p.ev.TS)
			empty = rec.Remaining == 0
			quiet = 0
			if n%checkEvery != 0 {
				continue
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			seen = max(seen, before)
			empty = true
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
		if ctx.Err() != nil {
			break
		}
		if err := p.applyKube(); err != nil {
			return err
		}
		if err != nil {
			// The ring is empty: sleep until the next poll.
			tr.SetDeadline(time.Now().Add(pollSleep(quiet)))
			quiet++
			if p.rec != nil && p.rec.stream {
				if err := p.rec.w.Flush(); err != nil {
					return err
				}
			}
		}
		if err := p.st.Flush(seen); err != nil {
			return err
		}
	}
	// Take what is still in the ring before finishing.
	tr.SetDeadline(time.Now())
	for tr.Read(&rec) == nil {
		if err := p.add(rec.RawSample); err != nil {
			return err
		}
	}
	return nil
}

func monotonicNow() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return uint64(ts.Nano())
}

// ParsePodIPs parses --pod-ip values: IPv4 and IPv6 addresses (an
// IPv4-mapped IPv6 address is its IPv4 address).
func ParsePodIPs(values []string) ([]netip.Addr, error) {
	ips := make([]netip.Addr, 0, len(values))
	for _, v := range values {
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("--pod-ip %q is not an IPv4 or IPv6 address", v)
		}
		ips = append(ips, a.Unmap())
	}
	return ips, nil
}

// warnIPv4Only says, when the filter has IPv4 addresses only and a node
// routes IPv6 (a dual-stack node), that a pod's IPv6 packets are not
// followed: the kernel matches each address on its own.
func warnIPv4Only(log *slog.Logger, ips []netip.Addr, reports map[uint32]*doctor.Report) {
	if len(ips) == 0 || slices.ContainsFunc(ips, netip.Addr.Is6) {
		return
	}
	for _, r := range reports {
		if r == nil || r.Facts == nil {
			continue
		}
		if v, ok := r.Facts.IPv6Forwarding.Int(); ok && v == 1 {
			log.Warn("only IPv4 --pod-ip given on a node that routes IPv6: a dual-stack pod's IPv6 packets are not followed; give its IPv6 address as another --pod-ip")
			return
		}
	}
}

// plural is "s" unless n is 1.
func plural(n uint64) string {
	if n == 1 {
		return ""
	}
	return "s"
}
