package trace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/k8s"
	"github.com/pathtrace/pathtrace/internal/record"
	"github.com/pathtrace/pathtrace/internal/render"
	"github.com/pathtrace/pathtrace/internal/scope"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// ReplayOptions narrow what a replay renders.
type ReplayOptions struct {
	PodIPs []netip.Addr // render only paths with one of these addresses; none renders all
	// Select adds the addresses of pods and Services, as the recording's
	// Kubernetes names give them (--pod, --service).
	Select k8s.Selection
	Count  int // stop after this many packets; 0 renders all
	// MaxPerConn renders only the first this many packets of each
	// connection (as the live trace's MaxPerConn); 0: all.
	MaxPerConn int
	Stitch     stitch.Config
	// Log gets a warning for each damaged node report in the recording;
	// nil: slog.Default().
	Log *slog.Logger
	// Kubernetes names pods and Services where the recording has no names
	// of its own (kubectl pathtrace: the tracers on the nodes have no
	// access to the API server, the plugin read the names); nil: none.
	Kubernetes *k8s.Names
}

// replayFlushEvery is how many records replay reads between flushes of
// completed paths, so memory stays bounded on long recordings.
const replayFlushEvery = 4096

// Replay renders a recording: the records go through the same decode →
// stitch → render pipeline as a live trace, with the names, clocks and
// node list the live run had, so the output is the same byte for byte. No
// privileges, BPF or netlink are needed.
func Replay(ctx context.Context, path string, opts ReplayOptions, out render.Renderer) (Summary, error) {
	return ReplayFiles(ctx, []string{path}, opts, out)
}

// ReplayFiles renders a recording in one file or in several: consecutive
// files of one trace (record.Rotation), given in any order, replay as one
// recording. When ctx ends, the replay stops, also while it waits for a
// FIFO or a stalled pipe, and renders what it read. A recording that
// cannot be read is an InputError, after the paths read before the
// damage were rendered.
func ReplayFiles(ctx context.Context, paths []string, opts ReplayOptions, out render.Renderer) (Summary, error) {
	var sum Summary
	if nodes, ok := nodeRecordings(ctx, paths); ok {
		return replayMerged(ctx, nodes, opts, out)
	}
	r, err := record.OpenFiles(ctx, paths...)
	if err != nil {
		if ctx.Err() != nil {
			return sum, nil // stopped before there was anything to show
		}
		return sum, badInput(err)
	}
	defer r.Close()
	sum, err = replay(ctx, r, opts, out)
	return sum, errors.Join(err, r.Close())
}

func replay(ctx context.Context, r *record.Reader, opts ReplayOptions, out render.Renderer) (Summary, error) {
	meta := r.Meta()
	sum := Summary{Backend: meta.Backend}
	cfg := opts.Stitch
	cfg.WallOffset = meta.StartWall.UnixNano() - int64(meta.StartMono)
	cfg.Names = RecordingNames(r)
	cfg.Recycle = true // as live: renderers do not keep paths
	if meta.Scope == string(scope.Node) {
		cfg.Node = meta.NodeName
	}
	p := newPipeline(cfg, out, opts.PodIPs, opts.Count)
	p.perConn.max = uint32(max(opts.MaxPerConn, 0))
	reports := replayReports(r, opts.Log)
	kube := replayKubernetes(r, opts.Log)
	if kube == nil {
		kube = opts.Kubernetes
	}
	sum.Kubernetes = kube
	timeline := k8s.NewTimeline(kube)
	p.annotate = annotators(reports, timeline)
	if !opts.Select.Empty() {
		if err := opts.Select.Check(); err != nil {
			return sum, badInput(err)
		}
		if kube == nil {
			return sum, badInput(errors.New("--pod and --service need the Kubernetes names of the live trace, and the recording has none"))
		}
		ips, err := kube.Addrs(opts.Select)
		if err != nil {
			return sum, badInput(err)
		}
		p.podIPs = append(slices.Clone(p.podIPs), ips...)
	}

	updates := 0 // Kubernetes names updates added to the timeline
	readErr, err := feed(ctx, r, p, func() { updates = addKubeUpdates(timeline, r.KubernetesUpdates(), updates, opts.Log) })
	if err != nil {
		return sum, err
	}
	final := r.Meta()
	sum.Lost = final.Lost
	sum.Missed = final.Missed
	sum.Conns = final.Connections
	podIPs := opts.PodIPs
	if len(podIPs) == 0 {
		podIPs = meta.Filter.PodIPs
	}
	describeTrace(out, render.TraceInfo{
		Backend: meta.Backend, Kernel: meta.Kernel, Hostname: meta.Hostname, Start: meta.StartWall,
		PodIPs: podIPs, Events: p.stats.Events, Lost: final.Lost, LostPerCPU: final.LostPerCPU,
	}, cfg.Names, final.Nodes, reports, kube)
	err = p.finish()
	sum.Stats = p.stats
	return sum, errors.Join(readErr, err)
}

// feed reads the records of r into p, rendering completed paths as it
// goes. readErr is the recording's damage, after the records before it
// were fed; err is the renderer's.
//
// Where there are two CPUs or more, two goroutines share the work: this
// one reads and decodes the records, a replayStage stitches, annotates and
// renders them, in batches and in order (with one CPU the stage does each
// batch on this goroutine as it is sent). The stitcher looks up the recording's names (RecordingNames) and
// the annotators its Kubernetes names, which the reader changes as it
// reads: before any change the reader waits until the stage is done with
// every record before it (record.Reader.OnChange), so each record meets
// the names it met read alone. The output is the same, byte for byte
// (TestReplayPipelinedMatchesSerial).
func feed(ctx context.Context, r *record.Reader, p *pipeline, afterRead func()) (readErr, err error) {
	s := newReplayStage(p, runtime.GOMAXPROCS(0) < 2)
	r.OnChange(s.drain)
	defer r.OnChange(nil)
	var ts uint64 // of the latest event decoded
	for n := 1; ctx.Err() == nil && !s.stopped.Load(); n++ {
		rec, err := r.Next()
		if afterRead != nil {
			afterRead()
		}
		if err == io.EOF || err != nil && ctx.Err() != nil {
			break // the end, or stopped while waiting for input
		}
		if err != nil {
			// Render what was read before the damage, then say what it
			// was; unless -c was reached before it.
			if serr := s.finish(); serr != nil || s.counted {
				return nil, serr
			}
			return badInput(fmt.Errorf("%w; the %d records before it were replayed", err, p.stats.Events+p.stats.Skipped)), nil
		}
		b := s.batch()
		ev := &b.evs[b.n]
		if p.dec.Decode(rec, ev) != nil {
			b.skipped++
		} else {
			if len(ev.Data) > 0 {
				// ev.Data is the reader's, until its next record.
				ev.Data = b.data[b.n][:copy(b.data[b.n][:], ev.Data)]
			}
			b.n++
			ts = max(ts, ev.TS)
		}
		if n%replayFlushEvery == 0 {
			b.flushes = append(b.flushes, replayFlush{after: b.n, skipped: b.skipped, ts: ts})
		}
		if b.n == replayBatchLen {
			s.send()
		}
	}
	return nil, s.finish()
}

// replayBatchLen is how many records feed's reader decodes before it hands
// them on; replayBatches how many batches there are (the reader fills one
// while the stage works through another).
const (
	replayBatchLen = 1024
	replayBatches  = 4
)

// replayBatch is a run of decoded records on their way from feed's reader
// to its replayStage.
type replayBatch struct {
	evs     [replayBatchLen]decode.Event
	data    [replayBatchLen][decode.RecordSize - decode.RecordPrefix]byte // each event's Data
	n       int                                                           // events in evs
	skipped uint64                                                        // records that did not decode
	flushes []replayFlush
}

// replayFlush: flush the stitcher at ts once the first after events of the
// batch are in (skipped records of the batch did not decode by then).
type replayFlush struct {
	after   int
	skipped uint64
	ts      uint64
}

// replayStage stitches, annotates and renders feed's batches on a
// goroutine of its own, or inline: on the reader's, as each is sent.
type replayStage struct {
	p        *pipeline
	inline   bool
	cur      *replayBatch // the batch feed's reader fills
	full     chan *replayBatch
	free     chan *replayBatch
	inFlight sync.WaitGroup // batches sent and not yet done
	done     chan struct{}
	stopped  atomic.Bool // the stage stopped: -c reached, or the renderer failed
	// Set by the stage's goroutine, read after done:
	counted bool  // -c was reached
	err     error // the renderer's
}

func newReplayStage(p *pipeline, inline bool) *replayStage {
	s := &replayStage{p: p, inline: inline}
	if inline {
		s.cur = new(replayBatch)
		return s
	}
	s.full = make(chan *replayBatch, replayBatches)
	s.free = make(chan *replayBatch, replayBatches)
	s.done = make(chan struct{})
	for range replayBatches {
		s.free <- new(replayBatch)
	}
	go s.run()
	return s
}

// batch returns the batch to fill, waiting for one to come back if all
// are in flight.
func (s *replayStage) batch() *replayBatch {
	if s.cur == nil {
		s.cur = <-s.free
	}
	return s.cur
}

// send hands the batch being filled to the stage, if it holds anything.
func (s *replayStage) send() {
	b := s.cur
	if b == nil || b.n == 0 && b.skipped == 0 && len(b.flushes) == 0 {
		return
	}
	if s.inline {
		s.do(b)
		return
	}
	s.cur = nil
	s.inFlight.Add(1)
	s.full <- b
}

// drain sends what was read and waits until the stage has done it: the
// reader may change the names after.
func (s *replayStage) drain() {
	s.send()
	s.inFlight.Wait()
}

// finish sends what was read, waits for the stage to end and returns the
// renderer's error.
func (s *replayStage) finish() error {
	s.send()
	if !s.inline {
		close(s.full)
		<-s.done
	}
	return s.err
}

func (s *replayStage) run() {
	defer close(s.done)
	for b := range s.full {
		s.do(b)
		s.free <- b
		s.inFlight.Done()
	}
}

// do processes a batch, unless the stage stopped, and empties it.
func (s *replayStage) do(b *replayBatch) {
	if !s.stopped.Load() {
		s.process(b)
	}
	b.n, b.skipped, b.flushes = 0, 0, b.flushes[:0]
}

// process adds the batch's events to the pipeline and flushes where the
// reader said, as feed did when it worked alone.
func (s *replayStage) process(b *replayBatch) {
	p := s.p
	i := 0
	for _, f := range b.flushes {
		for ; i < f.after; i++ {
			p.addEvent(&b.evs[i])
		}
		if err := p.st.Flush(f.ts); err != nil {
			p.stats.Skipped += f.skipped
			if errors.Is(err, errCountReached) {
				s.counted = true
			} else {
				s.err = errors.Join(err, p.out.Close())
			}
			s.stopped.Store(true)
			return
		}
	}
	for ; i < b.n; i++ {
		p.addEvent(&b.evs[i])
	}
	p.stats.Skipped += b.skipped
}

// replayReports decodes the recording's node reports. A damaged report
// costs a warning, never the replay: drops on its node get advice without
// what it lacks, or from their reason alone.
func replayReports(r *record.Reader, log *slog.Logger) map[uint32]*doctor.Report {
	raw := r.Meta().Reports
	if len(raw) == 0 {
		return nil
	}
	if log == nil {
		log = slog.Default()
	}
	reports, problems, err := doctor.DecodeReports(raw)
	if err != nil {
		log.Warn(fmt.Sprintf("the node reports in the recording are damaged (%v): drops get advice from their reason alone", err))
		return nil
	}
	for _, inode := range slices.Sorted(maps.Keys(problems)) {
		log.Warn(fmt.Sprintf("the report of node %s in the recording is damaged: %s; drops there get advice without what it lacks",
			reportNode(r, inode, reports[inode]), strings.Join(problems[inode], "; ")))
	}
	return reports
}

// replayKubernetes decodes the recording's Kubernetes names; nil when it
// has none. Damaged names cost a warning, never the replay.
func replayKubernetes(r *record.Reader, log *slog.Logger) *k8s.Names {
	raw := r.Meta().Kubernetes
	if len(raw) == 0 {
		return nil
	}
	kube, err := k8s.DecodeNames(raw)
	if err != nil {
		if log == nil {
			log = slog.Default()
		}
		log.Warn(fmt.Sprintf("the Kubernetes names in the recording are damaged (%v): pods show as addresses", err))
		return nil
	}
	return kube
}

// addKubeUpdates adds to the timeline the updates after the first done,
// as the live run added them, and returns how many are done. A damaged one
// costs a warning.
func addKubeUpdates(tl *k8s.Timeline, updates []record.KubeUpdate, done int, log *slog.Logger) int {
	for _, u := range updates[done:] {
		n, err := k8s.DecodeNames(u.Names)
		if err != nil {
			if log == nil {
				log = slog.Default()
			}
			log.Warn(fmt.Sprintf("a Kubernetes names update in the recording is damaged (%v): the names before it stay", err))
			continue
		}
		tl.Add(u.FromMono, n)
	}
	return len(updates)
}

// reportNode names the node of a report for people: by the recording's
// name for its namespace, else by the report's, else by inode.
func reportNode(r *record.Reader, inode uint32, rep *doctor.Report) string {
	if name, ok := r.NetnsName(inode); ok {
		return name
	}
	if rep != nil && rep.Netns != "" {
		if dir := filepath.Dir(rep.Netns); dir == "/run/netns" || dir == "/var/run/netns" {
			return filepath.Base(rep.Netns)
		}
		return rep.Netns
	}
	return fmt.Sprintf("netns:%d", inode)
}

// RecordingNames answers the stitcher's name lookups from a recording, as
// the live run that made it answered them.
func RecordingNames(r *record.Reader) stitch.Names { return replayNames{r} }

type replayNames struct{ r *record.Reader }

func (n replayNames) Symbol(addr uint64) string {
	s, _ := n.r.Symbol(addr)
	return s
}

func (n replayNames) Netns(inode uint32) string {
	if s, ok := n.r.NetnsName(inode); ok {
		return s
	}
	return fmt.Sprintf("netns:%d", inode)
}

func (n replayNames) IsNode(inode uint32) bool { return n.r.IsNode(inode) }

func (n replayNames) DropReason(code uint32) string {
	if s, ok := n.r.DropReason(code); ok {
		return s
	}
	return fmt.Sprintf("reason(%d)", code)
}
