package trace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/pathtrace/pathtrace/internal/diagnose"
	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/record"
	"github.com/pathtrace/pathtrace/internal/render"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// ReplayOptions narrow what a replay renders.
type ReplayOptions struct {
	PodIPs []netip.Addr // render only paths with one of these addresses; none renders all
	Count  int          // stop after this many packets; 0 renders all
	Stitch stitch.Config
}

// replayFlushEvery is how many records replay reads between flushes of
// completed paths, so memory stays bounded on long recordings.
const replayFlushEvery = 4096

// Replay renders a recording: the records go through the same decode →
// stitch → render pipeline as a live trace, with the names, clocks and
// node list the live run had, so the output is the same byte for byte. No
// privileges, BPF or netlink are needed.
func Replay(ctx context.Context, path string, opts ReplayOptions, out render.Renderer) (Summary, error) {
	var sum Summary
	r, err := record.OpenFile(path)
	if err != nil {
		return sum, err
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
	p := newPipeline(cfg, out, opts.PodIPs, opts.Count)
	var reports map[uint32]*doctor.Report
	if len(meta.Reports) > 0 {
		if err := json.Unmarshal(meta.Reports, &reports); err != nil {
			return sum, fmt.Errorf("read node reports: %w: %v", record.ErrCorrupt, err)
		}
	}
	p.annotate = diagnose.New(reports)

	var readErr error
	var ts uint64
	for n := 1; ctx.Err() == nil; n++ {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			// Render what was read before the damage, then say what it was.
			readErr = fmt.Errorf("read recording after %d records: %w", p.stats.Events, err)
			break
		}
		if err := p.add(rec); err != nil {
			return sum, err
		}
		if p.stats.Events > 0 {
			ts = max(ts, p.ev.TS)
		}
		if n%replayFlushEvery == 0 {
			if err := p.st.Flush(ts); err != nil {
				if errors.Is(err, errCountReached) {
					break
				}
				return sum, errors.Join(err, out.Close())
			}
		}
	}
	final := r.Meta()
	sum.Lost = final.Lost
	podIPs := opts.PodIPs
	if len(podIPs) == 0 {
		podIPs = meta.Filter.PodIPs
	}
	describeTrace(out, render.TraceInfo{
		Backend: meta.Backend, Kernel: meta.Kernel, Hostname: meta.Hostname, Start: meta.StartWall,
		PodIPs: podIPs, Events: p.stats.Events, Lost: final.Lost, LostPerCPU: final.LostPerCPU,
	}, cfg.Names, final.Nodes, reports)
	err := p.finish()
	sum.Stats = p.stats
	return sum, errors.Join(readErr, err)
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
