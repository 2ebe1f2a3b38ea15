package trace

import (
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/record"
	"github.com/pathtrace/pathtrace/internal/render"
)

// benchEvents is the size of the generated recording.
const benchEvents = 1_000_000

// writeBenchRecording makes a recording of n events by repeating the
// committed cluster-IP recording with shifted times and skb addresses, so
// it has real packets and paths.
func writeBenchRecording(tb testing.TB, n int) string {
	tb.Helper()
	src, err := record.OpenFile(filepath.Join(pcapDir, "clusterip.pcapng"))
	if err != nil {
		tb.Fatal(err)
	}
	var recs [][]byte
	for {
		r, err := src.Next()
		if err != nil {
			break
		}
		recs = append(recs, append([]byte(nil), r...))
	}
	meta := src.Meta()
	src.Close()
	var d decode.Decoder
	var first, last decode.Event
	_ = d.Decode(recs[0], &first)
	_ = d.Decode(recs[len(recs)-1], &last)
	span := last.TS - first.TS + 2_000_000_000 // past the stitcher's idle time

	file := filepath.Join(tb.TempDir(), "bench.pcapng")
	w, err := record.Create(file, meta)
	if err != nil {
		tb.Fatal(err)
	}
	for inode, name := range meta.Netns {
		w.SetNetnsName(inode, name)
	}
	var ev decode.Event
	buf := make([]byte, decode.RecordSize)
	for i := 0; i < n; i++ {
		round := uint64(i / len(recs))
		copy(buf, recs[i%len(recs)])
		// Field offsets of struct event: skb at 0, ts at 8.
		binary.NativeEndian.PutUint64(buf[0:], binary.NativeEndian.Uint64(buf[0:])+round<<20)
		binary.NativeEndian.PutUint64(buf[8:], binary.NativeEndian.Uint64(buf[8:])+round*span)
		if err := d.Decode(buf, &ev); err != nil {
			tb.Fatal(err)
		}
		if err := w.Write(buf, &ev, "bench"); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(meta); err != nil {
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
