package main

import (
	"errors"
	"io"
	"runtime"
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
}

// benchUserSpace reads an n-event recording into memory and times, over
// its records: decode; decode and stitch; and decode, stitch, annotate and
// render to io.Discard as JSON and as text, each as live tracing runs them
// (paths recycled, flushed every 256 events). Best of three.
func benchUserSpace(file string) ([]userRow, error) {
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
	meta := r.Meta()
	wall := meta.StartWall.UnixNano() - int64(meta.StartMono)
	stages := []struct {
		name   string
		stitch bool
		out    func() render.Renderer
	}{
		{"decode", false, nil},
		{"decode + stitch", true, nil},
		{"decode + stitch + annotate + JSON", true, func() render.Renderer { return render.NewJSON(io.Discard) }},
		{"decode + stitch + annotate + text", true, func() render.Renderer {
			return render.NewText(io.Discard, render.TextOptions{})
		}},
	}
	var rows []userRow
	for _, st := range stages {
		best := userRow{Stage: st.name}
		for range 3 {
			var out render.Renderer
			if st.out != nil {
				out = st.out()
			}
			adv := diagnose.New(nil)
			emit := func(p *stitch.Path) error {
				if out == nil {
					return nil
				}
				adv.Annotate(p)
				return out.Render(p)
			}
			s := stitch.New(stitch.Config{Recycle: true, Grace: time.Millisecond, WallOffset: wall, Names: trace.RecordingNames(r)}, emit)
			var d decode.Decoder
			var ev decode.Event
			runtime.GC()
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			start := time.Now()
			for i, rec := range recs {
				if err := d.Decode(rec, &ev); err != nil {
					return nil, err
				}
				if !st.stitch {
					continue
				}
				s.Add(&ev)
				if i%256 == 0 {
					if err := s.Flush(ev.TS); err != nil {
						return nil, err
					}
				}
			}
			if err := s.Close(); err != nil {
				return nil, err
			}
			el := time.Since(start)
			runtime.ReadMemStats(&m1)
			if eps := float64(len(recs)) / el.Seconds(); eps > best.EPS {
				best.EPS = eps
				best.BytesPer = float64(m1.TotalAlloc-m0.TotalAlloc) / float64(len(recs))
			}
		}
		rows = append(rows, best)
	}
	return rows, nil
}
