package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/diagnose"
	"github.com/pathtrace/pathtrace/internal/record"
	"github.com/pathtrace/pathtrace/internal/render"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/trace"
)

// userRow is user space alone on recorded events: the pipeline pathtrace
// runs after the ring buffer, in one goroutine.
type userRow struct {
	Stage    string
	EPS      float64 // events per second
	BytesPer float64 // allocated per event
	CPUPer   float64 // CPU ns per event, of every thread (the GC's too)
	// StageCPU is the CPU ns per event of the stage this row adds to the
	// row it builds on (Base): the stage alone.
	StageCPU float64
	Base     string
	Profile  *userProfile // nil without -profiles
}

// userProfile is a CPU profile of a stage row's pipeline: where it was
// written, the share of its samples in each part of the pipeline (pprof
// label "stage"), and its top functions.
type userProfile struct {
	File   string
	Shares []labelShare
	Top    []topFunc
}

type labelShare struct {
	Label string
	Pct   float64
}

type topFunc struct {
	Name            string
	FlatPct, CumPct float64
}

// userStage is one row of the user-space phase: its pipeline, cumulative.
type userStage struct {
	name, file, base string // base: the row whose pipeline this one extends
	read, decode     bool
	stitch           bool
	out              func() render.Renderer
}

var userStages = []userStage{
	{name: "read (record.Reader)", file: "read", read: true},
	{name: "decode", file: "decode", decode: true},
	{name: "decode + stitch", file: "stitch", base: "decode", decode: true, stitch: true},
	{name: "decode + stitch + annotate + JSON", file: "json", base: "decode + stitch", decode: true, stitch: true,
		out: func() render.Renderer { return render.NewJSON(io.Discard) }},
	{name: "decode + stitch + annotate + text", file: "text", base: "decode + stitch", decode: true, stitch: true,
		out: func() render.Renderer { return render.NewText(io.Discard, render.TextOptions{}) }},
}

// profileFor is how long each profiled run lasts at least: the recording
// is run through again until then, for enough samples (100 a second).
const profileFor = 2 * time.Second

// benchUserSpace reads an n-event recording into memory and times, over
// its records: reading the file (record.Reader alone); decode; decode and
// stitch; and decode, stitch, annotate and render to io.Discard as JSON and
// as text, each as live tracing runs them (paths recycled, flushed every
// 256 events). Best of three. With profDir, each row's pipeline then runs
// again under the CPU profiler, its parts labeled (stage=read, decode,
// stitch, annotate, render), into profDir/NAME.pprof; goBin's pprof gives
// the top functions.
func benchUserSpace(ctx context.Context, file, profDir, goBin string) ([]userRow, error) {
	r, err := record.OpenFile(file)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var recs [][]byte
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		recs = append(recs, append([]byte(nil), rec...))
	}
	u := &userRun{file: file, recs: recs, names: trace.RecordingNames(r)}
	meta := r.Meta()
	u.wall = meta.StartWall.UnixNano() - int64(meta.StartMono)
	if profDir != "" {
		if err := os.MkdirAll(profDir, 0o755); err != nil {
			return nil, err
		}
	}
	var rows []userRow
	for _, st := range userStages {
		best := userRow{Stage: st.name, Base: st.base}
		for range 3 {
			runtime.GC()
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			c0, start := processCPU(), time.Now()
			n, err := u.run(st, nil)
			if err != nil {
				return nil, err
			}
			el, cpu := time.Since(start), processCPU()-c0
			runtime.ReadMemStats(&m1)
			if eps := float64(n) / el.Seconds(); eps > best.EPS {
				best.EPS = eps
				best.BytesPer = float64(m1.TotalAlloc-m0.TotalAlloc) / float64(n)
				best.CPUPer = float64(cpu) / float64(n)
			}
		}
		best.StageCPU = best.CPUPer
		for _, b := range rows {
			if b.Stage == st.base {
				best.StageCPU = best.CPUPer - b.CPUPer
			}
		}
		if profDir != "" && ctx.Err() == nil {
			p, err := u.profile(ctx, st, filepath.Join(profDir, st.file+".pprof"), goBin)
			if err != nil {
				return nil, err
			}
			best.Profile = p
		}
		rows = append(rows, best)
	}
	return rows, nil
}

// userRun is the recording the user-space phase runs.
type userRun struct {
	file  string
	recs  [][]byte
	names stitch.Names
	wall  int64
}

// stageLabels switches the goroutine's pprof labels between the parts of
// the pipeline; nil: no labels (the timed runs).
type stageLabels struct {
	read, decode, stitch, annotate, render context.Context
}

func newStageLabels() *stageLabels {
	l := func(v string) context.Context {
		return pprof.WithLabels(context.Background(), pprof.Labels("stage", v))
	}
	return &stageLabels{l("read"), l("decode"), l("stitch"), l("annotate"), l("render")}
}

func (l *stageLabels) set(ctx func(*stageLabels) context.Context) {
	if l != nil {
		pprof.SetGoroutineLabels(ctx(l))
	}
}

var (
	inRead     = func(l *stageLabels) context.Context { return l.read }
	inDecode   = func(l *stageLabels) context.Context { return l.decode }
	inStitch   = func(l *stageLabels) context.Context { return l.stitch }
	inAnnotate = func(l *stageLabels) context.Context { return l.annotate }
	inRender   = func(l *stageLabels) context.Context { return l.render }
)

// run runs st's pipeline over the recording once and returns the events.
func (u *userRun) run(st userStage, lab *stageLabels) (int, error) {
	if st.read {
		lab.set(inRead)
		r, err := record.OpenFile(u.file)
		if err != nil {
			return 0, err
		}
		defer r.Close()
		n := 0
		for {
			if _, err := r.Next(); err != nil {
				if errors.Is(err, io.EOF) {
					return n, nil
				}
				return n, err
			}
			n++
		}
	}
	var out render.Renderer
	if st.out != nil {
		out = st.out()
	}
	adv := diagnose.New(nil)
	emit := func(p *stitch.Path) error {
		if out == nil {
			return nil
		}
		lab.set(inAnnotate)
		adv.Annotate(p)
		lab.set(inRender)
		err := out.Render(p)
		lab.set(inStitch)
		return err
	}
	s := stitch.New(stitch.Config{Recycle: true, Grace: time.Millisecond, WallOffset: u.wall, Names: u.names}, emit)
	var d decode.Decoder
	var ev decode.Event
	for i, rec := range u.recs {
		lab.set(inDecode)
		if err := d.Decode(rec, &ev); err != nil {
			return 0, err
		}
		if !st.stitch {
			continue
		}
		lab.set(inStitch)
		s.Add(&ev)
		if i%256 == 0 {
			if err := s.Flush(ev.TS); err != nil {
				return 0, err
			}
		}
	}
	lab.set(inStitch)
	return len(u.recs), s.Close()
}

// profile runs st's pipeline under the CPU profiler for profileFor at
// least, labeled, into file, and reads the profile back with pprof.
func (u *userRun) profile(ctx context.Context, st userStage, file, goBin string) (*userProfile, error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	lab := newStageLabels()
	if err := pprof.StartCPUProfile(f); err != nil {
		return nil, fmt.Errorf("start the CPU profile: %w", err)
	}
	start := time.Now()
	for time.Since(start) < profileFor && ctx.Err() == nil {
		if _, err := u.run(st, lab); err != nil {
			pprof.StopCPUProfile()
			return nil, err
		}
	}
	pprof.SetGoroutineLabels(context.Background())
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		return nil, err
	}
	p := &userProfile{File: file}
	tags, err := exec.CommandContext(ctx, goBin, "tool", "pprof", "-tags", file).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof -tags %s: %w", file, err)
	}
	p.Shares = parseTags(string(tags))
	top, err := exec.CommandContext(ctx, goBin, "tool", "pprof", "-top", "-nodecount", "8", file).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof -top %s: %w", file, err)
	}
	p.Top = parseTop(string(top))
	return p, nil
}

// tagLineRE is a value line of `pprof -tags`: "  1.20s (45.11%): render".
var tagLineRE = regexp.MustCompile(`^\s+\S+ \(\s*([0-9.]+)%\): (\S+)$`)

// parseTags reads the shares of the stage label from `pprof -tags`.
func parseTags(out string) []labelShare {
	var s []labelShare
	in := false
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "stage:") {
			in = true
			continue
		}
		m := tagLineRE.FindStringSubmatch(l)
		switch {
		case in && m != nil:
			pct, _ := strconv.ParseFloat(m[1], 64)
			s = append(s, labelShare{m[2], pct})
		case in && strings.TrimSpace(l) != "":
			in = false
		}
	}
	return s
}

// parseTop reads the rows of `pprof -top`: flat flat% sum% cum cum% name.
func parseTop(out string) []topFunc {
	var t []topFunc
	rows := false
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "flat" && f[1] == "flat%" {
			rows = true
			continue
		}
		if !rows || len(f) < 6 {
			continue
		}
		flat, err1 := strconv.ParseFloat(strings.TrimSuffix(f[1], "%"), 64)
		cum, err2 := strconv.ParseFloat(strings.TrimSuffix(f[4], "%"), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		name := strings.Join(f[5:], " ")
		name = strings.TrimPrefix(name, "github.com/pathtrace/pathtrace/")
		t = append(t, topFunc{name, flat, cum})
	}
	return t
}

// processCPU is the user and system time of this process, every thread.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
