package record

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
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

// BenchmarkReadFile reads a recording's file to its end: mapped (OpenFile)
// and through a read buffer (Open of the *os.File), side by side.
func BenchmarkReadFile(b *testing.B) {
	const n = 100_000
	data, _ := writeRecording(b, n, false)
	path := filepath.Join(b.TempDir(), "rec.pcapng")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
	open := map[string]func() (*Reader, error){
		"mapped": func() (*Reader, error) { return OpenFile(path) },
		"read": func() (*Reader, error) {
			f, err := os.Open(path)
			if err != nil {
				return nil, err
			}
			b.Cleanup(func() { f.Close() })
			return Open(f)
		},
	}
	for _, name := range []string{"mapped", "read"} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				r, err := open[name]()
				if err != nil {
					b.Fatal(err)
				}
				for {
					if _, err := r.Next(); err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
				}
				r.Close()
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
