package record

import (
	"bytes"
	"io"
	"testing"

	"github.com/pathtrace/pathtrace/internal/decode"
)

func BenchmarkWrite(b *testing.B) {
	const n = 1000
	recs := make([][]byte, n)
	evs := make([]decode.Event, n)
	comments := make([]string, n)
	var d decode.Decoder
	for i := range recs {
		recs[i] = testRecord(b, i, false)
		if err := d.Decode(recs[i], &evs[i]); err != nil {
			b.Fatal(err)
		}
		comments[i] = comment(&evs[i])
	}
	w, err := NewWriter(io.Discard, testMeta())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := w.Write(recs[i%n], &evs[i%n], comments[i%n]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkRead(b *testing.B) {
	data, _ := writeRecording(b, 100_000, false)
	src := bytes.NewReader(data)
	r, err := Open(src)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data) / 100_000))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := r.Next(); err != nil {
			if err != io.EOF {
				b.Fatal(err)
			}
			b.StopTimer()
			src.Reset(data)
			if r, err = Open(src); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
