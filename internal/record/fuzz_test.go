package record

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzReader feeds the reader arbitrary files: it must return records of
// the right size or one of its errors, never panic, and stop.
func FuzzReader(f *testing.F) {
	good, _ := writeRecording(f, 4, true)
	f.Add(good)
	for _, n := range []int{0, 3, 40, len(good) / 2, len(good) - 1} {
		f.Add(good[:n])
	}
	if *update {
		writeSeeds(f, good)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Open(bytes.NewReader(data))
		if err != nil {
			checkErr(t, err)
			return
		}
		for i := 0; ; i++ {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				checkErr(t, err)
				if _, err2 := r.Next(); err2 != err {
					t.Fatalf("second Next: %v, want %v", err2, err)
				}
				break
			}
			if len(rec) != recordSize {
				t.Fatalf("record of %d bytes", len(rec))
			}
			if i > len(data) {
				t.Fatal("more records than bytes")
			}
		}
		m := r.Meta()
		for ino := range m.Netns {
			r.NetnsName(ino)
		}
	})
}

func checkErr(t *testing.T, err error) {
	t.Helper()
	for _, want := range []error{ErrCorrupt, ErrNotPathtrace, ErrVersion, ErrByteOrder} {
		if errors.Is(err, want) {
			return
		}
	}
	t.Fatalf("error %q wraps none of the reader's errors", err)
}

// writeSeeds rewrites the committed seed corpus: the recording, truncated
// at some block boundaries, and with some blocks' lengths corrupted.
func writeSeeds(tb testing.TB, good []byte) {
	dir := filepath.Join("testdata", "fuzz", "FuzzReader")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	seeds := map[string][]byte{"recording": good}
	offs := blocks(tb, good)
	for _, i := range []int{1, 2, 3, len(offs) - 2, len(offs) - 1} {
		seeds[fmt.Sprintf("cut-block-%02d", i)] = good[:offs[i]]
		seeds[fmt.Sprintf("len-block-%02d", i)] = put32(good, offs[i]+4, 0x7ffffffc)
	}
	for name, data := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}
