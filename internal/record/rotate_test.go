package record

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
)

func TestFileName(t *testing.T) {
	for _, tc := range []struct {
		rot  Rotation
		i    int
		want string
	}{
		{Rotation{}, 0, "t.pcapng"},
		{Rotation{Size: 1}, 0, "t.pcapng"},
		{Rotation{Size: 1}, 1, "t.pcapng1"},
		{Rotation{Every: time.Second}, 12, "t.pcapng12"},
		{Rotation{Size: 1, Keep: 3}, 0, "t.pcapng0"},
		{Rotation{Size: 1, Keep: 3}, 4, "t.pcapng1"},
		{Rotation{Size: 1, Keep: 10}, 9, "t.pcapng9"},
		{Rotation{Size: 1, Keep: 11}, 3, "t.pcapng03"},
		{Rotation{Every: time.Second, Keep: 100}, 105, "t.pcapng05"},
		{Rotation{Size: 1, Keep: 1}, 7, "t.pcapng0"},
	} {
		if got := tc.rot.FileName("t.pcapng", tc.i); got != tc.want {
			t.Errorf("%+v file %d: %q, want %q", tc.rot, tc.i, got, tc.want)
		}
	}
}

// writeRotated writes n synthetic records (as writeRecording) to a
// recording at base rotated by rot, with one more event lost at each end
// of a file (and two more program runs skipped), and returns the records.
func writeRotated(t *testing.T, base string, rot Rotation, n int) [][]byte {
	t.Helper()
	fs, err := Prepare(base, rot)
	if err != nil {
		t.Fatal(err)
	}
	w, err := fs.Start(testMeta())
	if err != nil {
		t.Fatal(err)
	}
	lost := []uint64{0, 0}
	w.CountLost(func() []uint64 {
		lost[0]++
		return slices.Clone(lost)
	})
	var missed uint64
	w.CountMissed(func() uint64 {
		missed += 2
		return missed
	})
	var d decode.Decoder
	var ev decode.Event
	recs := make([][]byte, n)
	for i := range n {
		recs[i] = testRecord(t, i, false)
		if err := d.Decode(recs[i], &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Netns == nsClient {
			w.SetNetnsName(nsClient, "default/client")
		}
		if err := w.Write(recs[i], &ev, comment(&ev)); err != nil {
			t.Fatal(err)
		}
	}
	lost[1] += 5
	if err := w.Close(Meta{Lost: lost[0] + lost[1], LostPerCPU: lost, Missed: missed + 7}); err != nil {
		t.Fatal(err)
	}
	return recs
}

// readFiles reads the files as one recording.
func readFiles(t *testing.T, files ...string) ([][]byte, Meta) {
	t.Helper()
	r, err := OpenFiles(context.Background(), files...)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var recs [][]byte
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return recs, r.Meta()
		}
		if err != nil {
			t.Fatalf("read %v: %v", files, err)
		}
		recs = append(recs, bytes.Clone(rec))
	}
}

func glob(t *testing.T, pattern string) []string {
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestRotateBySize: each file is a complete recording that replays alone,
// with the names it needs in its header; together, in any order, they
// are the whole trace.
func TestRotateBySize(t *testing.T) {
	base := filepath.Join(t.TempDir(), "t.pcapng")
	one, _ := writeRecording(t, 1, false)
	recs := writeRotated(t, base, Rotation{Size: int64(len(one)) + 3*600}, 40)

	files := glob(t, base+"*")
	if len(files) < 4 {
		t.Fatalf("files %v: want several", files)
	}
	var total int
	for i := range files {
		name := Rotation{Size: 1}.FileName(base, i)
		got, m := readFiles(t, name)
		if m.FileIndex != i || len(got) == 0 {
			t.Errorf("%s: file index %d, %d records", name, m.FileIndex, len(got))
		}
		if !slices.EqualFunc(got, recs[total:total+len(got)], sameRecord) {
			t.Errorf("%s: records differ from records %d.. written", name, total)
		}
		total += len(got)
		// The client's name is learned at record 0: every later file
		// has it in its header.
		if r, err := OpenFile(name); err != nil {
			t.Fatal(err)
		} else if n, ok := r.NetnsName(nsClient); i > 0 && (!ok || n != "default/client") {
			t.Errorf("%s: header lacks the client's name: %q %v", name, n, ok)
			r.Close()
		} else {
			r.Close()
		}
		if fi, err := os.Stat(name); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v %v", name, fi.Mode(), err)
		}
	}
	if total != len(recs) {
		t.Errorf("the files hold %d records, %d were written", total, len(recs))
	}

	slices.Reverse(files) // the order given does not matter
	got, m := readFiles(t, files...)
	if !slices.EqualFunc(got, recs, sameRecord) {
		t.Errorf("the files together hold %d records, not the %d written", len(got), len(recs))
	}
	// Each file's trailer counts its own lost events: one more at each
	// rotation on CPU 0, and CPU 1's five at the end.
	rotations := uint64(len(files) - 1)
	if m.Records != uint64(len(recs)) || m.Lost != rotations+5 || !slices.Equal(m.LostPerCPU, []uint64{rotations, 5}) {
		t.Errorf("meta of all: %d records, %d lost %v", m.Records, m.Lost, m.LostPerCPU)
	}
	// Likewise the runs skipped: two more at each rotation, seven at
	// the end; the last file's trailer counts its own.
	if m.Missed != 2*rotations+7 {
		t.Errorf("meta of all: %d program runs skipped, want %d", m.Missed, 2*rotations+7)
	}
	if _, last := readFiles(t, files[0]); len(files) > 1 && last.Missed != 7 {
		t.Errorf("last file %s: %d program runs skipped, want its own 7", files[0], last.Missed)
	}
}

// TestRotateByTime starts a new file once a record is Every after its
// file's start.
func TestRotateByTime(t *testing.T) {
	base := filepath.Join(t.TempDir(), "t.pcapng")
	// testRecord's records are 12345ns apart, starting at StartMono.
	recs := writeRotated(t, base, Rotation{Every: 10 * 12345}, 35)
	files := glob(t, base+"*")
	if len(files) != 4 {
		t.Fatalf("files %v, want 4", files)
	}
	for i, want := range []int{10, 10, 10, 5} {
		got, _ := readFiles(t, Rotation{Every: 1}.FileName(base, i))
		if len(got) != want {
			t.Errorf("file %d: %d records, want %d", i, len(got), want)
		}
	}
	if got, _ := readFiles(t, files...); len(got) != len(recs) {
		t.Errorf("together: %d records, want %d", len(got), len(recs))
	}
}

// TestRotateEarlyEvent: an event stamped before the trace's start clocks
// does not start a new file.
func TestRotateEarlyEvent(t *testing.T) {
	base := filepath.Join(t.TempDir(), "t.pcapng")
	meta := testMeta()
	meta.StartMono += 5 * 12345 // records 0 to 4 were stamped before it
	fs, err := Prepare(base, Rotation{Every: 10 * 12345})
	if err != nil {
		t.Fatal(err)
	}
	w, err := fs.Start(meta)
	if err != nil {
		t.Fatal(err)
	}
	var d decode.Decoder
	var ev decode.Event
	for i := range 12 {
		rec := testRecord(t, i, false)
		if err := d.Decode(rec, &ev); err != nil {
			t.Fatal(err)
		}
		if err := w.Write(rec, &ev, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(Meta{}); err != nil {
		t.Fatal(err)
	}
	if files := glob(t, base+"*"); len(files) != 1 {
		t.Errorf("files %v, want one", files)
	}
}

// TestRotateKeep keeps the last Keep files, reusing their names in turn;
// what is left replays together, the oldest files missing.
func TestRotateKeep(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "t.pcapng")
	recs := writeRotated(t, base, Rotation{Every: 10 * 12345, Keep: 3}, 55) // 6 files
	files := glob(t, base+"*")
	want := []string{base + "0", base + "1", base + "2"}
	if !slices.Equal(files, want) {
		t.Fatalf("files %v, want %v", files, want)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("the directory holds %d files, want 3", len(entries))
	}
	got, m := readFiles(t, files...)
	if !slices.EqualFunc(got, recs[30:], sameRecord) || m.FileIndex != 5 {
		t.Errorf("the files kept hold %d records (want the last 25), last file %d", len(got), m.FileIndex)
	}
}

func TestOpenFilesRefuses(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.pcapng"), filepath.Join(dir, "b.pcapng")
	writeRotated(t, a, Rotation{Every: 10 * 12345}, 35)
	writeRotated(t, b, Rotation{Every: 10 * 12345}, 15)
	// b's trace has the same clocks as a's (testMeta): another host.
	other := filepath.Join(dir, "other.pcapng")
	meta := testMeta()
	meta.Hostname = "node2"
	w, err := Create(other, meta)
	if err != nil {
		t.Fatal(err)
	}
	w.Close(Meta{})
	for _, tc := range []struct {
		files []string
		want  string
	}{
		{[]string{a, a + "2"}, "a.pcapng is file 0 of the trace, " + a + "2 file 2: the files between are missing"},
		{[]string{a + "1", a + "1"}, "are the same file 1 of the trace"},
		{[]string{a, other}, "were recorded by different traces"},
		{[]string{a, filepath.Join(dir, "missing")}, "open recording " + filepath.Join(dir, "missing") + ": no such file or directory"},
	} {
		_, err := OpenFiles(context.Background(), tc.files...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenFiles(%v) = %v, want %q", tc.files, err, tc.want)
		}
		if err != nil && !strings.Contains(tc.want, "no such file") && !errors.Is(err, ErrNotOneTrace) {
			t.Errorf("OpenFiles(%v) = %v, not ErrNotOneTrace", tc.files, err)
		}
	}
}

// TestOpenFilesInterrupted: a FIFO that no one writes, or that stalls,
// does not hold the reader once ctx ends.
func TestOpenFilesInterrupted(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := mkfifo(fifo); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := OpenFiles(ctx, fifo); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("open of a FIFO without a writer: %v, want the context's error", err)
	}

	// A FIFO of its own: the open that timed out above still waits in
	// its goroutine, and would take the writer's open below, then close,
	// leaving the write no reader (EPIPE) if it came first.
	fifo = filepath.Join(dir, "fifo2")
	if err := mkfifo(fifo); err != nil {
		t.Fatal(err)
	}
	good, _ := writeRecording(t, 12, false)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		r, err := OpenFiles(ctx, fifo)
		for err == nil {
			_, err = r.Next()
		}
		done <- err
	}()
	wf, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer wf.Close()
	if _, err := wf.Write(good[:len(good)/2]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the reader waits for more
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("stalled read: %v, want a deadline error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the reader still waits on the stalled FIFO")
	}
}

// TestFullDisk: a full disk is one error naming the file and the cause.
func TestFullDisk(t *testing.T) {
	_, err := Create("/dev/full", testMeta())
	if err == nil || err.Error() != "write recording /dev/full: no space left on device" {
		t.Errorf("Create(/dev/full): %v", err)
	}
}
