package trace

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/pathtrace/pathtrace/internal/record"
	"github.com/pathtrace/pathtrace/internal/render"
)

// benchEvents is the size of the generated recording.
const benchEvents = 1_000_000

func writeBenchRecording(tb testing.TB, n int) string {
	tb.Helper()
	file := filepath.Join(tb.TempDir(), "bench.pcapng")
	if err := record.Repeat(filepath.Join(pcapDir, "clusterip.pcapng"), file, n); err != nil {
		tb.Fatal(err)
	}
	return file
}

// BenchmarkReplayJSON is replay of a 1M-event recording to JSON: read,
// decode, stitch, annotate, render. Target: ≥ 2M events/s.
func BenchmarkReplayJSON(b *testing.B) {
	benchReplay(b, func() render.Renderer { return render.NewJSON(io.Discard) })
}

// BenchmarkReplayText is BenchmarkReplayJSON with the text timeline.
func BenchmarkReplayText(b *testing.B) {
	benchReplay(b, func() render.Renderer { return render.NewText(io.Discard, render.TextOptions{}) })
}

func benchReplay(b *testing.B, out func() render.Renderer) {
	file := writeBenchRecording(b, benchEvents)
	fi, _ := os.Stat(file)
	b.SetBytes(fi.Size())
	b.ReportAllocs()
	b.ResetTimer()
	var events uint64
	for b.Loop() {
		sum, err := Replay(context.Background(), file, ReplayOptions{}, out())
		if err != nil {
			b.Fatal(err)
		}
		events += sum.Events
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/event")
}
