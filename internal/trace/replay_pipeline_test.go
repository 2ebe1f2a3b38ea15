package trace

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/k8s"
	"github.com/pathtrace/pathtrace/internal/record"
	"github.com/pathtrace/pathtrace/internal/render"
	"github.com/pathtrace/pathtrace/internal/topology"
)

// TestReplayPipelinedMatchesSerial replays long recordings whose names
// change as they go on two goroutines and on one (GOMAXPROCS 1: the
// stage works inline), and requires the same bytes, text and JSON: whole, with
// -c, cut short in the middle of a record, and rotated into several
// files. Every round of a recording
// renames each network namespace and adds a Kubernetes names update, so a
// stage that met names read after its records would show another round's
// names; the rounds cross batches and flushes.
func TestReplayPipelinedMatchesSerial(t *testing.T) {
	dir := t.TempDir()
	for _, seed := range pcaps(t) {
		name := strings.TrimSuffix(filepath.Base(seed), ".pcapng")
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, name+".pcapng")
			records, rounds := renamedRounds(t, seed, file, 3*replayFlushEvery, record.Rotation{})
			rotated := filepath.Join(dir, name+"-rotated.pcapng")
			renamedRounds(t, seed, rotated, 3*replayFlushEvery, record.Rotation{Size: 1 << 20})
			parts, err := filepath.Glob(rotated + "*")
			if err != nil || len(parts) < 3 {
				t.Fatalf("rotated files %v: want several (%v)", parts, err)
			}
			cut := filepath.Join(dir, name+"-cut.pcapng")
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(cut, b[:len(b)*2/3], 0o600); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				name  string
				files []string
				opts  ReplayOptions
			}{
				{"whole", []string{file}, ReplayOptions{}},
				{"count", []string{file}, ReplayOptions{Count: records / 50}},
				{"cut", []string{cut}, ReplayOptions{}},
				{"rotated", parts, ReplayOptions{}},
			} {
				for _, asJSON := range []bool{true, false} {
					alone, aerr := replayOn(t, 1, tc.files, tc.opts, asJSON)
					piped, perr := replayOn(t, 2, tc.files, tc.opts, asJSON)
					if fmt.Sprint(aerr) != fmt.Sprint(perr) {
						t.Errorf("%s, json %v: error %v on one goroutine, %v on two", tc.name, asJSON, aerr, perr)
					}
					if tc.name == "cut" && aerr == nil {
						t.Errorf("%s: the cut recording replayed without an error", tc.name)
					}
					if len(alone) == 0 {
						t.Errorf("%s, json %v: nothing rendered", tc.name, asJSON)
					}
					if !bytes.Equal(alone, piped) {
						t.Errorf("%s, json %v: %d bytes on one goroutine, %d on two; first difference at line %d",
							tc.name, asJSON, len(alone), len(piped), firstDiffLine(alone, piped))
					}
				}
			}
			// The renames show: the last round's namespace names, and
			// none of a round past it.
			out, err := replayOn(t, 2, []string{file}, ReplayOptions{}, true)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(out, fmt.Appendf(nil, "-round%d\"", rounds-1)) || bytes.Contains(out, fmt.Appendf(nil, "-round%d\"", rounds)) {
				t.Errorf("the rounds' namespace names are not in the JSON as written")
			}
		})
	}
}

// replayOn replays the files of a recording with GOMAXPROCS procs.
func replayOn(t *testing.T, procs int, files []string, opts ReplayOptions, asJSON bool) ([]byte, error) {
	t.Helper()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
	var buf bytes.Buffer
	var out render.Renderer
	if asJSON {
		out = render.NewJSON(&buf)
	} else {
		out = render.NewText(&buf, render.TextOptions{})
	}
	_, err := ReplayFiles(context.Background(), files, opts, out)
	return buf.Bytes(), err
}

// renamedRounds writes to file the records of seed, in rounds until at
// least atLeast records are written, each round with skb addresses and times
// shifted past the stitcher's idle time, every network namespace renamed
// "<name>-round<k>" and a Kubernetes names update naming the client pod
// "client-<k>"; in several files as rot asks. It returns the records and
// rounds written.
func renamedRounds(t *testing.T, seed, file string, atLeast int, rot record.Rotation) (records, rounds int) {
	t.Helper()
	recs, meta, err := record.ReadAll(seed)
	if err != nil {
		t.Fatal(err)
	}
	rounds = (atLeast + len(recs) - 1) / len(recs)
	var d decode.Decoder
	var first, last, ev decode.Event
	if err := d.Decode(recs[0], &first); err != nil {
		t.Fatal(err)
	}
	if err := d.Decode(recs[len(recs)-1], &last); err != nil {
		t.Fatal(err)
	}
	span := last.TS - first.TS + 2_000_000_000
	fs, err := record.Prepare(file, rot)
	if err != nil {
		t.Fatal(err)
	}
	w, err := fs.Start(meta)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, decode.RecordSize)
	for k := range rounds {
		shift := uint64(k) * span
		for inode, name := range meta.Netns {
			w.SetNetnsName(inode, fmt.Sprintf("%s-round%d", name, k))
		}
		pod := k8s.Pod{Namespace: "default", Name: fmt.Sprintf("client-%d", k), IPs: []netip.Addr{topology.ClientIP}}
		js, err := json.Marshal(k8s.Names{Pods: []k8s.Pod{pod}})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.AddKubernetes(first.TS+shift, js); err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			copy(buf, rec)
			record.Shift(buf, uint64(k)<<20, shift)
			if err := d.Decode(buf, &ev); err != nil {
				t.Fatal(err)
			}
			if err := w.Write(buf, &ev, "round"); err != nil {
				t.Fatal(err)
			}
			records++
		}
	}
	if err := w.Close(meta); err != nil {
		t.Fatal(err)
	}
	return records, rounds
}

// firstDiffLine is the 1-based line where a and b first differ.
func firstDiffLine(a, b []byte) int {
	line := 1
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return line
		}
		if a[i] == '\n' {
			line++
		}
	}
	return line
}
