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
// decode, stitch, render. Target: ≥ 2M events/s.
func BenchmarkReplayJSON(b *testing.B) {
	file := writeBenchRecording(b, benchEvents)
	fi, _ := os.Stat(file)
	b.SetBytes(fi.Size())
	b.ResetTimer()
	var events uint64
	for b.Loop() {
		sum, err := Replay(context.Background(), file, ReplayOptions{}, render.NewJSON(io.Discard))
		if err != nil {
			b.Fatal(err)
		}
		events += sum.Events
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}
