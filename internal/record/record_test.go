package record

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/internal/decode"
)

var update = flag.Bool("update", false, "rewrite testdata/ (v1.pcapng is kept: it tests that old recordings stay readable)")

func TestRoundTrip(t *testing.T) {
	const n = 200
	data, recs := writeRecording(t, n, false)
	got, meta, err := readAll(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("read %d records, want %d", len(got), n)
	}
	for i := range recs {
		if !sameRecord(got[i], recs[i]) {
			t.Fatalf("record %d differs", i)
		}
	}
	if want := wantMeta(n); !reflect.DeepEqual(meta, want) {
		t.Errorf("meta:\n got %+v\nwant %+v", meta, want)
	}
}

func TestEmptyRecording(t *testing.T) {
	data, _ := writeRecording(t, 0, false)
	r, err := Open(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	// Open read up to the end: the meta is complete at once.
	if want := wantMeta(0); !reflect.DeepEqual(r.Meta(), want) {
		t.Errorf("meta:\n got %+v\nwant %+v", r.Meta(), want)
	}
	for range 2 {
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("Next: %v, want io.EOF", err)
		}
	}
}

// The ring buffer leaves stale bytes in data[] past cap_len; they are not
// recorded, and decoding the record read back gives the same event.
func TestDataTail(t *testing.T) {
	data, recs := writeRecording(t, 20, true)
	got, _, err := readAll(data)
	if err != nil {
		t.Fatal(err)
	}
	var d1, d2 decode.Decoder
	var e1, e2 decode.Event
	for i := range recs {
		if err := d1.Decode(recs[i], &e1); err != nil {
			t.Fatal(err)
		}
		if err := d2.Decode(got[i], &e2); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(e1, e2) {
			t.Fatalf("record %d decodes differently:\n got %+v\nwant %+v", i, e2, e1)
		}
		end := recordPrefix + int(e1.Len)
		if e1.Kind == decode.KindDrop {
			end = recordPrefix
		}
		if !bytes.Equal(got[i][:end], recs[i][:end]) {
			t.Fatalf("record %d: bytes up to cap_len differ", i)
		}
		if !bytes.Equal(got[i][end:], make([]byte, recordSize-end)) {
			t.Fatalf("record %d: data past cap_len is not zero", i)
		}
	}
}

// A name set before a record is known when Next returns that record, and
// not before: replay resolves exactly as the live run did.
func TestNamesStream(t *testing.T) {
	var out bytes.Buffer
	w, err := NewWriter(&out, testMeta())
	if err != nil {
		t.Fatal(err)
	}
	var d decode.Decoder
	var ev decode.Event
	write := func(i int) {
		rec := testRecord(t, i, false)
		if err := d.Decode(rec, &ev); err != nil {
			t.Fatal(err)
		}
		if err := w.Write(rec, &ev, ""); err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	w.SetNetnsName(nsClient, "default/client")
	w.AddNode(nsServer)
	write(1)
	w.SetNetnsName(nsClient, "default/client-renamed")
	write(2)
	if err := w.Close(Meta{}); err != nil {
		t.Fatal(err)
	}

	r, err := Open(&out)
	if err != nil {
		t.Fatal(err)
	}
	type state struct {
		name   string
		node   bool
		reason string
	}
	want := []state{
		{"", false, "NETFILTER_DROP"},
		{"default/client", true, "NETFILTER_DROP"},
		{"default/client-renamed", true, "NETFILTER_DROP"},
	}
	for i, w := range want {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		name, _ := r.NetnsName(nsClient)
		reason, _ := r.DropReason(5)
		if got := (state{name, r.IsNode(nsServer), reason}); got != w {
			t.Errorf("record %d: %+v, want %+v", i, got, w)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("Next: %v, want io.EOF", err)
	}
	if got, want := r.Meta().Nodes, []uint32{nsNode, nsServer}; !reflect.DeepEqual(got, want) {
		t.Errorf("nodes %v, want %v", got, want)
	}
}

func TestCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec.pcapng")
	// An existing, world-readable file is narrowed to 0600.
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := Create(path, testMeta())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(Meta{}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	r, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("Next: %v, want io.EOF", err)
	}

	if _, err := Create(filepath.Join(t.TempDir(), "missing", "rec.pcapng"), testMeta()); err == nil {
		t.Error("Create in a missing directory succeeded")
	}
}

func TestWriterErrors(t *testing.T) {
	if _, err := NewWriter(io.Discard, Meta{}); err == nil {
		t.Error("NewWriter without a start time succeeded")
	}
	w, err := NewWriter(io.Discard, testMeta())
	if err != nil {
		t.Fatal(err)
	}
	var ev decode.Event
	if err := w.Write(make([]byte, 10), &ev, ""); err == nil {
		t.Error("Write of a short record succeeded")
	}
	rec := testRecord(t, 0, false)
	ne.PutUint16(rec[capLenOff:], uint16(dataSize+1))
	if err := w.Write(rec, &ev, ""); err == nil {
		t.Error("Write with cap_len past data[] succeeded")
	}
	if err := w.Close(Meta{Report: []byte("{")}); err == nil {
		t.Error("Close with an invalid report succeeded")
	}
	if err := w.Write(testRecord(t, 0, false), &ev, ""); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: %v, want ErrClosed", err)
	}

	// A failing destination fails the writer, once and for all.
	fw, err := NewWriter(&failWriter{after: 1}, testMeta())
	if err == nil {
		for i := 0; err == nil && i < 1000; i++ {
			var d decode.Decoder
			rec := testRecord(t, i, false)
			if d.Decode(rec, &ev) == nil {
				err = fw.Write(rec, &ev, "x")
			}
		}
		if err == nil {
			err = fw.Close(Meta{})
		}
	}
	if err == nil {
		t.Error("writing to a failing writer succeeded")
	}
}

type failWriter struct{ after int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.after == 0 {
		return 0, errors.New("disk full")
	}
	f.after--
	return len(p), nil
}

// testdata/v1.pcapng was written by format version 1 of this package; every
// later version must keep reading it (docs/recording.md).
func TestReadV1(t *testing.T) {
	const path = "testdata/v1.pcapng"
	if *update {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			data, _ := writeRecording(t, 10, false)
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	r, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var d decode.Decoder
	var ev decode.Event
	var kinds []decode.Kind
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Decode(rec, &ev); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, ev.Kind)
		if len(kinds) == 3 {
			if ev.Kind != decode.KindNF || ev.In != "cni0" || ev.Outer.Src.Addr() != clientIP ||
				ev.Outer.Dst.String() != "10.96.0.10:80" || len(ev.Data) != 40 {
				t.Errorf("third record decodes to %+v", ev)
			}
		}
	}
	want := []decode.Kind{2, 1, 3, 2, 4, 2, 1, 3, 2, 1}
	if !reflect.DeepEqual(kinds, want) {
		t.Errorf("kinds %v, want %v", kinds, want)
	}
	m := r.Meta()
	if m.FormatVersion != 1 || m.Kernel != "6.1.0-18-amd64" || m.Records != 10 || m.Lost != 3 ||
		m.Netns[nsClient] != "default/client" || m.DropReasons[5] != "NETFILTER_DROP" ||
		!m.StartWall.Equal(testMeta().StartWall) || string(m.Report) != string(testFinal().Report) {
		t.Errorf("meta %+v", m)
	}
}

// Name tables and reports longer than one pcapng option are split over
// several options and joined on reading.
func TestLargeJSON(t *testing.T) {
	var out bytes.Buffer
	meta := testMeta()
	meta.DropReasons = make(map[uint32]string)
	for i := range 2000 {
		meta.DropReasons[uint32(i)] = strings.Repeat("R", 40) + strconv.Itoa(i)
	}
	w, err := NewWriter(&out, meta)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3000 {
		w.SetNetnsName(uint32(i), "namespace-"+strings.Repeat("n", 40)+strconv.Itoa(i))
	}
	var d decode.Decoder
	var ev decode.Event
	rec := testRecord(t, 0, false)
	if err := d.Decode(rec, &ev); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec, &ev, ""); err != nil {
		t.Fatal(err)
	}
	report := []byte(`{"blob":"` + strings.Repeat("x", 200_000) + `"}`)
	if err := w.Close(Meta{Report: report}); err != nil {
		t.Fatal(err)
	}
	recs, m, err := readAll(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || len(m.Netns) != 3000+1 || len(m.DropReasons) != 2000 || !bytes.Equal(m.Report, report) {
		t.Errorf("%d records, %d netns, %d drop reasons, report of %d bytes", len(recs), len(m.Netns), len(m.DropReasons), len(m.Report))
	}
	if m.Netns[2999] != "namespace-"+strings.Repeat("n", 40)+"2999" {
		t.Errorf("netns 2999 is %q", m.Netns[2999])
	}
}

// TestLargeReportsInHeader: node reports bigger than one option are split
// over several in the section header and read back before the first
// record.
func TestLargeReportsInHeader(t *testing.T) {
	var out bytes.Buffer
	meta := testMeta()
	meta.Reports = []byte(`{"1":{"blob":"` + strings.Repeat("r", 150_000) + `"}}`)
	w, err := NewWriter(&out, meta)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(Meta{}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Meta().Reports; !bytes.Equal(got, meta.Reports) {
		t.Errorf("reports read back: %d bytes, want %d", len(got), len(meta.Reports))
	}
	meta.Reports = []byte(`{"1":`)
	if _, err := NewWriter(&bytes.Buffer{}, meta); err == nil {
		t.Error("invalid reports JSON was written")
	}
}

// TestKubernetesInHeader: the Kubernetes names are read back from the
// section header before the first record; invalid JSON is not written.
func TestKubernetesInHeader(t *testing.T) {
	var out bytes.Buffer
	meta := testMeta()
	meta.Kubernetes = []byte(`{"source":"apiserver https://192.168.60.1:6443","pods":[{"namespace":"default","name":"client","ips":["10.245.1.5"]}]}`)
	w, err := NewWriter(&out, meta)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(Meta{}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Meta().Kubernetes; !bytes.Equal(got, meta.Kubernetes) {
		t.Errorf("Kubernetes names read back: %s, want %s", got, meta.Kubernetes)
	}
	meta.Kubernetes = []byte(`{"pods":`)
	if _, err := NewWriter(&bytes.Buffer{}, meta); err == nil {
		t.Error("invalid Kubernetes names JSON was written")
	}
}

// TestKubernetesUpdates: names updates reach the reader before the next
// record, in order.
func TestKubernetesUpdates(t *testing.T) {
	var out bytes.Buffer
	w, err := NewWriter(&out, testMeta())
	if err != nil {
		t.Fatal(err)
	}
	rec := testRecord(t, 0, false)
	var d decode.Decoder
	ev := &decode.Event{}
	if err := d.Decode(rec, ev); err != nil {
		t.Fatal(err)
	}
	if err := w.AddKubernetes(10, []byte(`{"pods":[]}`)); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec, ev, ""); err != nil {
		t.Fatal(err)
	}
	if err := w.AddKubernetes(20, []byte(`{"source":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec, ev, ""); err != nil {
		t.Fatal(err)
	}
	if err := w.AddKubernetes(30, []byte(`{`)); err == nil {
		t.Error("invalid JSON was taken")
	}
	if err := w.Close(Meta{}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []uint64{10, 20} {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		if u := r.KubernetesUpdates(); len(u) != i+1 || u[i].FromMono != want {
			t.Errorf("after record %d: updates %+v", i+1, u)
		}
	}
}
