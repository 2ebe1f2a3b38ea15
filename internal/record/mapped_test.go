package record

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// readFile writes data to the file at path and reads it as readAll does,
// through OpenFile: a regular file is mapped. The file's name is taken out
// of the error, which then reads as readAll's.
func readFile(tb testing.TB, path string, data []byte) ([][]byte, Meta, error) {
	tb.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	r, err := OpenFile(path)
	if err != nil {
		return nil, Meta{}, unlabel(err, path)
	}
	defer r.Close()
	if len(data) > 0 {
		if _, ok := r.br.(*mapped); !ok {
			tb.Fatalf("a regular file of %d bytes is read through %T, not mapped", len(data), r.br)
		}
	}
	recs, meta, err := drain(r)
	if err != nil {
		err = unlabel(err, path)
	}
	return recs, meta, err
}

// openWritten writes data to a file and opens it; the test closes it.
func openWritten(t *testing.T, data []byte) (*Reader, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rec.pcapng")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, path
}

// unlabel takes the file's name out of a reader's error message.
func unlabel(err error, path string) error {
	return errors.New(strings.ReplaceAll(err.Error(), " "+path, ""))
}

// A mapped file reads as the same bytes through a read buffer: records,
// names, trailer.
func TestMappedSameAsRead(t *testing.T) {
	data, _ := writeRecording(t, 300, true)
	want, wantMeta, err := readAll(data)
	if err != nil {
		t.Fatal(err)
	}
	got, gotMeta, err := readFile(t, filepath.Join(t.TempDir(), "rec.pcapng"), data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || len(got) != 300 {
		t.Fatalf("mapped: %d records, read: %d, written: 300", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d differs", i)
		}
	}
	if !reflect.DeepEqual(gotMeta, wantMeta) {
		t.Errorf("meta:\nmapped %+v\nread   %+v", gotMeta, wantMeta)
	}
}

// A file that grows after it was opened (a recording still being written)
// is read past the mapping, as far as a read buffer would read it: the
// block the mapping ends in, or its header, included.
func TestMappedGrows(t *testing.T) {
	data, _ := writeRecording(t, 40, true)
	want, _, err := readAll(data)
	if err != nil {
		t.Fatal(err)
	}
	offs := blocks(t, data)
	mid := offs[len(offs)/2]
	for _, cut := range []int{mid, mid + 3, mid + 8, mid + 40, len(data) - 1} {
		t.Run(strconv.Itoa(cut), func(t *testing.T) {
			r, path := openWritten(t, data[:cut])
			if m, ok := r.br.(*mapped); !ok || len(m.b) != cut {
				t.Fatalf("source %T, want the %d bytes mapped", r.br, cut)
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(data[cut:]); err != nil {
				t.Fatal(err)
			}
			f.Close()
			n := 0
			for ; ; n++ {
				rec, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("record %d: %v", n, err)
				}
				if !bytes.Equal(rec, want[n]) {
					t.Fatalf("record %d differs", n)
				}
			}
			if n != len(want) {
				t.Fatalf("%d records, want %d", n, len(want))
			}
		})
	}
}

// A file truncated while it is read ends the recording with one error,
// not a crash: the bytes gone fault under the mapping.
func TestMappedShrinks(t *testing.T) {
	data, _ := writeRecording(t, 2000, true)
	const keep = 64 << 10 // whole pages, so the bytes gone are whole pages
	if len(data) < 4*keep {
		t.Fatalf("recording of %d bytes, want more than %d", len(data), 4*keep)
	}
	r, path := openWritten(t, data)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, keep); err != nil {
		t.Fatal(err)
	}
	n := 1
	var err error
	for ; err == nil; n++ {
		_, err = r.Next()
	}
	n-- // the records read before the error
	if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "shrank") {
		t.Fatalf("after %d records: %v, want ErrTruncated saying the file shrank", n, err)
	}
	whole := 0 // records in the blocks that end before the cut
	for _, off := range blocks(t, data) {
		if ne.Uint32(data[off:]) == blockEPB && off+int(ne.Uint32(data[off+4:])) <= keep {
			whole++
		}
	}
	if n != whole {
		t.Errorf("%d records read, want the %d whole in the %d bytes kept", n, whole, keep)
	}
	if _, err2 := r.Next(); err2 != err {
		t.Errorf("Next after the error: %v, want it again", err2)
	}
	t.Logf("after %d records: %v", n, err)
}

// The pages read are released as the reader goes on, so a long
// recording's replay does not hold the whole file in its RSS.
func TestMappedDropsBehind(t *testing.T) {
	data, _ := writeRecording(t, 1, false)
	offs := blocks(t, data)
	first := bytes.Clone(data[:offs[len(offs)-1]]) // without the trailer
	rec := data[offs[len(offs)-2]:offs[len(offs)-1]]
	// Copies of the record up to 6 × dropEvery, and no trailer: the read
	// ends with ErrTruncated.
	var b bytes.Buffer
	b.Write(first)
	for b.Len() < 6*dropEvery {
		b.Write(rec)
	}
	r, _ := openWritten(t, b.Bytes())
	m, ok := r.br.(*mapped)
	if !ok {
		t.Fatalf("source %T, not mapped", r.br)
	}
	peak := 0
	for n := 0; ; n++ {
		if _, err := r.Next(); err != nil {
			if !errors.Is(err, ErrTruncated) {
				t.Fatalf("after %d records: %v", n, err)
			}
			break
		}
		if n%4096 == 0 {
			peak = max(peak, mappedRSS(t, m.b))
		}
	}
	if m.dropped < 5*dropEvery {
		t.Errorf("released %d bytes of %d read", m.dropped, m.off)
	}
	// dropEvery read since the last release, and what the kernel maps
	// around a fault (large folios of the page cache, 2–4 MiB more on
	// 6.18). Releases that leave the folio the next fault maps again
	// grow it by about 2 MiB each, past 16 MiB here.
	if peak == 0 || peak > 2*dropEvery {
		t.Errorf("the mapping's RSS reached %d bytes, want at most %d (more than 0)", peak, 2*dropEvery)
	}
	t.Logf("%d bytes read, %d released, the mapping's RSS at most %d", m.off, m.dropped, peak)
}

// mappedRSS returns the resident bytes of the mapping that starts at b
// (/proc/self/smaps).
func mappedRSS(tb testing.TB, b []byte) int {
	tb.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	start := fmt.Sprintf("%x-", uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if key, _, _ := strings.Cut(line, " "); !strings.HasSuffix(key, ":") {
			in = strings.HasPrefix(line, start) // a mapping's first line
			continue
		}
		if kb, ok := strings.CutPrefix(line, "Rss:"); ok && in {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")))
			if err != nil {
				tb.Fatal(err)
			}
			return n << 10
		}
	}
	tb.Fatalf("no mapping at %s in /proc/self/smaps", start)
	return 0
}
