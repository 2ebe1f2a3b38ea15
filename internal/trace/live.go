package trace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/kernel"
	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/record"
	"github.com/pathtrace/pathtrace/internal/render"
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
	// packet go with it.
	Record string
	Stitch stitch.Config
	Log    *slog.Logger
}

// Summary is what a trace did, for the closing line on stderr.
type Summary struct {
	Stats
	Lost    uint64 // events the kernel could not deliver (ring buffer full)
	Nodes   []loader.Node
	Backend string
}

func (s Summary) String() string {
	return fmt.Sprintf("%d packets, %d events, %d lost", s.Packets, s.Events, s.Lost)
}

// flushEvery is how often paths that completed are rendered when the ring
// buffer is quiet.
const flushEvery = 100 * time.Millisecond

// Run traces until ctx ends or Count packets were rendered, rendering each
// packet's path to out. Everything it attached is detached before it
// returns, whatever the outcome.
func Run(ctx context.Context, opts Options, out render.Renderer) (Summary, error) {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	var sum Summary
	if err := kernel.Check(); err != nil {
		return sum, err
	}
	reasons, err := kernel.DropReasons()
	if err != nil {
		log.Warn("drop reasons will show as numbers", "err", err)
	}
	tr, err := loader.Open(opts.Loader)
	if err != nil {
		return sum, err
	}
	defer tr.Close()
	sum.Nodes, sum.Backend = tr.Nodes, tr.Backend
	log.Debug("attached", "backend", tr.Backend, "nodes", tr.Nodes)

	netns := kernel.NewNetnsNames()
	nodes := make(map[uint32]bool, len(tr.Nodes))
	for _, n := range tr.Nodes {
		nodes[n.Inode] = true
	}
	// One instant on both clocks: hop times become wall-clock times the
	// same way live and in replay.
	startMono, startWall := monotonicNow(), time.Now()
	cfg := opts.Stitch
	cfg.WallOffset = startWall.UnixNano() - int64(startMono)
	cfg.Names = &names{netns: netns.Netns, nodes: nodes, reasons: reasons}
	p := newPipeline(cfg, out, nil, opts.Count)

	var w *record.Writer
	if opts.Record != "" {
		w, err = record.Create(opts.Record, record.Meta{
			PathtraceVersion: version.String(),
			Kernel:           kernel.Release(),
			Hostname:         hostname(),
			Backend:          tr.Backend,
			Filter: record.Filter{
				PodIPs:     opts.Loader.PodIPs,
				VXLANPorts: opts.Loader.VXLANPorts,
				Snaplen:    opts.Loader.Snaplen,
			},
			StartWall:   startWall,
			StartMono:   startMono,
			DropReasons: reasons,
		})
		if err != nil {
			return sum, fmt.Errorf("create recording: %w", err)
		}
		for _, n := range tr.Nodes {
			w.AddNode(n.Inode)
		}
		netns.OnName = w.SetNetnsName
		p.rec = &recorder{w: w, netns: netns.Netns, reasons: reasons}
	}

	if opts.ReadyFile != "" {
		if err := os.WriteFile(opts.ReadyFile, []byte("ready\n"), 0o644); err != nil {
			return sum, fmt.Errorf("write ready file: %w", err)
		}
	}
	if opts.OnReady != nil {
		opts.OnReady()
	}

	err = readLoop(ctx, tr, p)
	if errors.Is(err, errCountReached) {
		err = nil
	}
	err = errors.Join(err, p.finish())
	sum.Stats = p.stats
	perCPU, lerr := tr.LostPerCPU()
	for _, n := range perCPU {
		sum.Lost += n
	}
	err = errors.Join(err, lerr)
	if w != nil {
		final := record.Meta{Lost: sum.Lost, LostPerCPU: perCPU, EndWall: time.Now()}
		if cerr := w.Close(final); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close recording: %w", cerr))
		}
	}
	return sum, errors.Join(err, tr.Close())
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}

func readLoop(ctx context.Context, tr *loader.Tracer, p *pipeline) error {
	var rec ringbuf.Record
	lastFlush := time.Now()
	for ctx.Err() == nil {
		tr.SetDeadline(time.Now().Add(flushEvery))
		err := tr.Read(&rec)
		switch {
		case err == nil:
			if err := p.add(rec.RawSample); err != nil {
				return fmt.Errorf("write recording: %w", err)
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
		if time.Since(lastFlush) >= flushEvery {
			lastFlush = time.Now()
			if err := p.st.Flush(monotonicNow()); err != nil {
				return err
			}
		}
	}
	// Take what is still in the ring before finishing.
	tr.SetDeadline(time.Now())
	for tr.Read(&rec) == nil {
		if err := p.add(rec.RawSample); err != nil {
			return fmt.Errorf("write recording: %w", err)
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

// ParsePodIPs parses --pod-ip values: IPv4 addresses.
func ParsePodIPs(values []string) ([]netip.Addr, error) {
	ips := make([]netip.Addr, 0, len(values))
	for _, v := range values {
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Unmap().Is4() {
			return nil, fmt.Errorf("--pod-ip %q is not an IPv4 address", v)
		}
		ips = append(ips, a.Unmap())
	}
	return ips, nil
}
