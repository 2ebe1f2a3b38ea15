package trace

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/k8s"
	"github.com/pathtrace/pathtrace/internal/merge"
	"github.com/pathtrace/pathtrace/internal/record"
	"github.com/pathtrace/pathtrace/internal/render"
	"github.com/pathtrace/pathtrace/internal/scope"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// nodeRecordings sorts the files of a replay by trace, in the order each
// trace's first file was given, when they are the recordings of two or
// more nodes: --scope node traces of nodes of different names. Otherwise
// (one trace, a file that cannot be read, traces of the whole kernel or of
// one node twice) ok is false, and the files replay as one recording,
// which tells what is wrong with them.
func nodeRecordings(ctx context.Context, paths []string) (nodes [][]string, ok bool) {
	if len(paths) < 2 {
		return nil, false
	}
	type trace struct {
		host        string
		wall        time.Time
		mono        uint64
		node, scope string
	}
	index := map[trace]int{}
	names := map[string]bool{}
	for _, p := range paths {
		r, err := record.OpenFiles(ctx, p)
		if err != nil {
			return nil, false
		}
		m := r.Meta()
		r.Close()
		t := trace{m.Hostname, m.StartWall.UTC(), m.StartMono, m.NodeName, m.Scope}
		if i, ok := index[t]; ok {
			nodes[i] = append(nodes[i], p)
			continue
		}
		if t.scope != string(scope.Node) || names[t.node] {
			return nil, false
		}
		names[t.node] = true
		index[t] = len(nodes)
		nodes = append(nodes, []string{p})
	}
	return nodes, len(nodes) > 1
}

// halves keeps copies of the paths a node's stitcher completes.
type halves struct{ paths []*stitch.Path }

func (c *halves) Render(p *stitch.Path) error {
	c.paths = append(c.paths, p.Clone())
	return nil
}

func (c *halves) Close() error { return nil }

// replayMerged replays the recordings of several nodes as one trace: each
// is decoded and stitched on its own, as its replay alone would, then the
// nodes' halves of each packet are joined and put on the first node's
// clock (internal/merge), and the paths are rendered in the order of
// their first hop. Unlike a replay of one trace it holds every path until
// all are read: its memory grows with the recordings.
func replayMerged(ctx context.Context, files [][]string, opts ReplayOptions, out render.Renderer) (Summary, error) {
	var sum Summary
	var (
		nodes   []merge.Node
		readers []*record.Reader
		metas   []record.Meta
		stats   Stats
		reports = map[uint32]*doctor.Report{}
		readErr error
	)
	defer func() {
		for _, r := range readers {
			r.Close()
		}
	}()
	for _, group := range files {
		r, err := record.OpenFiles(ctx, group...)
		if err != nil {
			if ctx.Err() != nil {
				return sum, nil
			}
			return sum, badInput(err)
		}
		readers = append(readers, r)
		meta := r.Meta()
		cfg := opts.Stitch
		cfg.WallOffset = meta.StartWall.UnixNano() - int64(meta.StartMono)
		cfg.Names = RecordingNames(r)
		cfg.Recycle = true
		cfg.Node = meta.NodeName
		c := &halves{}
		p := newPipeline(cfg, c, nil, 0)
		rerr, err := feed(ctx, r, p, nil)
		if err != nil {
			return sum, errors.Join(err, out.Close())
		}
		if err := p.finish(); err != nil {
			return sum, errors.Join(err, out.Close())
		}
		readErr = errors.Join(readErr, rerr)
		stats.Events += p.stats.Events
		stats.Skipped += p.stats.Skipped
		stats.OutOfScope += p.stats.OutOfScope
		for ino, rep := range replayReports(r, opts.Log) {
			if _, ok := reports[ino]; !ok {
				reports[ino] = rep
			}
		}
		final := r.Meta()
		metas = append(metas, final)
		sum.Lost += final.Lost
		sum.Missed += final.Missed
		nodes = append(nodes, merge.Node{Name: meta.NodeName, Paths: c.paths})
		if rerr != nil {
			break // the damaged recording's paths are merged, the others are not read
		}
	}
	res := merge.Merge(nodes)
	sum.Clocks = res.Clocks
	sum.Merged = res.Matched
	sum.Reference = nodes[0].Name

	cfg := opts.Stitch
	cfg.Names = mergedNames(readers)
	podIPs := opts.PodIPs
	p := newPipeline(cfg, out, podIPs, opts.Count)
	p.mergedIDs = true
	p.perConn.max = uint32(max(opts.MaxPerConn, 0))
	kube := replayKubernetes(readers[0], opts.Log) // the first recording's names, as they were at its start
	if kube == nil {
		kube = opts.Kubernetes
	}
	p.annotate = annotators(reports, k8s.NewTimeline(kube))
	var err error
	for _, path := range res.Paths {
		if err = p.emit(path); err != nil {
			break
		}
	}
	if errors.Is(err, errCountReached) {
		err = nil
	}
	first := metas[0]
	if len(podIPs) == 0 {
		podIPs = first.Filter.PodIPs
	}
	var inodes []uint32
	var perCPU []uint64
	for _, m := range metas {
		for _, ino := range m.Nodes {
			if !slices.Contains(inodes, ino) {
				inodes = append(inodes, ino)
			}
		}
		for i, n := range m.LostPerCPU {
			for len(perCPU) <= i {
				perCPU = append(perCPU, 0)
			}
			perCPU[i] += n
		}
	}
	describeTrace(out, render.TraceInfo{
		Backend: first.Backend, Kernel: first.Kernel, Hostname: first.Hostname, Start: first.StartWall,
		PodIPs: podIPs, Events: stats.Events, Lost: sum.Lost, LostPerCPU: perCPU,
	}, cfg.Names, inodes, reports, kube)
	err = errors.Join(err, p.out.Close())
	sum.Stats = stats
	sum.Packets = p.stats.Packets
	sum.LateEnds = p.stats.LateEnds
	sum.Backend = first.Backend
	return sum, errors.Join(readErr, err)
}

// mergedNames answers name lookups from several recordings: the first
// that knows a name answers. (A namespace's inode is one kernel's: two
// machines' may collide; the paths' hops were named by their own
// recording when stitched, these names serve the trace's description.)
type mergedNamesT []*record.Reader

func mergedNames(rs []*record.Reader) stitch.Names { return mergedNamesT(rs) }

func (m mergedNamesT) Symbol(addr uint64) string {
	for _, r := range m {
		if s, ok := r.Symbol(addr); ok {
			return s
		}
	}
	return ""
}

func (m mergedNamesT) Netns(inode uint32) string {
	for _, r := range m {
		if s, ok := r.NetnsName(inode); ok {
			return s
		}
	}
	return replayNames{m[0]}.Netns(inode)
}

func (m mergedNamesT) IsNode(inode uint32) bool {
	return slices.ContainsFunc(m, func(r *record.Reader) bool { return r.IsNode(inode) })
}

func (m mergedNamesT) DropReason(code uint32) string {
	for _, r := range m {
		if s, ok := r.DropReason(code); ok {
			return s
		}
	}
	return replayNames{m[0]}.DropReason(code)
}
