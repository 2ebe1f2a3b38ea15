package record

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/doctor"
)

// FuzzReader feeds the reader arbitrary files: it must return records of
// the right size or one of its errors, never panic, and stop. What it
// returns is then used as replay uses it: the node reports are decoded
// (internal/doctor), the names looked up and each record decoded; the names
// it returns are printable. The committed corpus (testdata/fuzz/FuzzReader,
// rewritten with -update) holds synthetic recordings and recordings made on
// a real kernel (testdata/pcaps), some with damaged reports or names.
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
		useMeta(t, r)
		var d decode.Decoder
		var ev decode.Event
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
			if d.Decode(rec, &ev) == nil {
				r.NetnsName(ev.Netns)
				r.IsNode(ev.Netns)
				r.DropReason(ev.DropReason)
				r.Symbol(ev.Location)
			}
		}
		useMeta(t, r)
	})
}

// useMeta uses the reader's metadata as replay does, and checks the
// promises the reader makes about it.
func useMeta(t *testing.T, r *Reader) {
	m := r.Meta()
	if reports, _, err := doctor.DecodeReports(m.Reports); err == nil {
		for _, inode := range slices.Sorted(maps.Keys(reports)) {
			r.NetnsName(inode)
		}
	}
	for ino, name := range m.Netns {
		if got, ok := r.NetnsName(ino); !ok || got != name || !isPrintable(name, maxName) {
			t.Fatalf("netns %d named %q (%q, %v)", ino, name, got, ok)
		}
	}
	for code, name := range m.DropReasons {
		if !isPrintable(name, maxText) {
			t.Fatalf("drop reason %d named %q", code, name)
		}
	}
	for addr, name := range m.Symbols {
		if !isPrintable(name, maxSymbolName) {
			t.Fatalf("address %#x named %q", addr, name)
		}
	}
	for _, s := range []string{m.Kernel, m.Hostname, m.Backend, m.Arch, m.PathtraceVersion} {
		if !isPrintable(s, maxText) {
			t.Fatalf("header text %q", s)
		}
	}
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

// realRecordings are the recordings made on a real kernel.
const realRecordings = "../../testdata/pcaps"

// writeSeeds rewrites the committed seed corpus: the synthetic recording,
// truncated at some block boundaries and with some blocks' lengths
// corrupted; the real recordings, the longer ones cut to their first
// records (with their reports and every name they need), and one with a
// report value emptied (which used to panic replay), one with its reports
// not reports, and one with a name that is not text.
func writeSeeds(tb testing.TB, good []byte) {
	dir := filepath.Join("testdata", "fuzz", "FuzzReader")
	if err := os.RemoveAll(dir); err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	seeds := map[string][]byte{"recording": good}
	offs := blocks(tb, good)
	for _, i := range []int{1, 2, 3, len(offs) - 2, len(offs) - 1} {
		seeds[fmt.Sprintf("cut-block-%02d", i)] = good[:offs[i]]
		seeds[fmt.Sprintf("len-block-%02d", i)] = put32(good, offs[i]+4, 0x7ffffffc)
	}
	for _, name := range []string{"drop", "clusterip", "same-node"} {
		seeds["real-"+name] = copyRecording(tb, filepath.Join(realRecordings, name+".pcapng"), 12, nil)
	}
	seeds["real-drop-report-empty-value"] = copyRecording(tb, filepath.Join(realRecordings, "drop.pcapng"), 12, func(m *Meta) {
		m.Reports = bytes.Replace(m.Reports, []byte(`"value":"0 (off)"`), []byte(`"value":""`), 1)
	})
	seeds["real-drop-reports-not-reports"] = copyRecording(tb, filepath.Join(realRecordings, "drop.pcapng"), 12, func(m *Meta) {
		m.Reports = []byte(`{"4026532177":["not","a","report"],"1":{"facts":{"ip_forward":{"state":"present"}}}}`)
	})
	bad := seeds["real-same-node"]
	if i := bytes.Index(bad, []byte(`"netns":{"`)); i > 0 {
		j := i + bytes.IndexByte(bad[i+10:], ':') + 10 + 2 // the first name's first byte
		bad = bytes.Clone(bad)
		copy(bad[j:], `\u001b`)
		seeds["real-same-node-name-escape"] = bad
	}
	for name, data := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// copyRecording copies the first n records of the recording src as it
// was written: the header (edited by edit, if not nil) with its start-up
// names, each later name on the record that first needs it, the trailer.
func copyRecording(tb testing.TB, src string, n int, edit func(*Meta)) []byte {
	tb.Helper()
	r, err := OpenFile(src)
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	meta := r.Meta()
	if edit != nil {
		edit(&meta)
	}
	var out bytes.Buffer
	w, err := NewWriter(&out, meta)
	if err != nil {
		tb.Fatal(err)
	}
	var d decode.Decoder
	var ev decode.Event
	for range n {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
		// The names the reader has now are those the live run had by
		// this record: give the writer the new ones.
		now := r.Meta()
		w.setNames(&now)
		if err := d.Decode(rec, &ev); err != nil {
			tb.Fatal(err)
		}
		if err := w.Write(rec, &ev, "copied"); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(Meta{EndWall: meta.StartWall}); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes()
}
