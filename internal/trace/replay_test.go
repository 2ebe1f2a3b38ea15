package trace

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/record"
	"github.com/pathtrace/pathtrace/internal/render"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/internal/topology"
)

var updatePcaps = flag.Bool("update-pcaps", false,
	"re-record testdata/pcaps on this kernel (needs root) and rewrite their golden renderings")

var updateGolden = flag.Bool("update", false,
	"rewrite the golden renderings of testdata/pcaps from the recordings there, which stay as they are")

const pcapDir = "../../testdata/pcaps"

// recorded are the demo exchanges kept as recordings in testdata/pcaps.
var recorded = []struct {
	name    string
	setup   func(t *testing.T, c *topology.Cluster)
	traffic func(t *testing.T, c *topology.Cluster)
}{
	{"clusterip", nil, func(t *testing.T, c *topology.Cluster) {
		exchange(t, c.Pod(topology.PodClient), topology.ClusterIP)
	}},
	{"same-node", nil, func(t *testing.T, c *topology.Cluster) {
		exchange(t, c.Pod(topology.PodClient), topology.PeerAddr)
	}},
	{"drop", func(t *testing.T, c *topology.Cluster) {
		err := c.Node(topology.Node1).IPTables("-I", "FORWARD", "-s", topology.ClientIP.String(), "-d", topology.ServerIP.String(), "-j", "DROP")
		if err != nil {
			t.Fatal(err)
		}
	}, func(t *testing.T, c *topology.Cluster) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		if _, err := topology.TCPExchange(ctx, c.Pod(topology.PodClient), topology.ClusterIP, "ping"); err == nil {
			t.Fatal("the exchange went through a DROP rule")
		}
	}},
}

// tee renders each path with every renderer: one live run, both formats.
type tee []render.Renderer

func (r tee) Render(p *stitch.Path) error {
	for _, x := range r {
		if err := x.Render(p); err != nil {
			return err
		}
	}
	return nil
}

// DescribeTrace passes the trace's description on to the renderers that
// show it.
func (r tee) DescribeTrace(info render.TraceInfo) {
	for _, x := range r {
		if d, ok := x.(render.TraceDescriber); ok {
			d.DescribeTrace(info)
		}
	}
}

func (r tee) Close() error {
	var errs []error
	for _, x := range r {
		errs = append(errs, x.Close())
	}
	return errors.Join(errs...)
}

func replayTo(t *testing.T, file string, json bool) []byte {
	t.Helper()
	if json {
		return replayWith(t, file, render.NewJSON)
	}
	return replayWith(t, file, func(w io.Writer) render.Renderer { return render.NewText(w, render.TextOptions{}) })
}

func replayWith(t *testing.T, file string, newRenderer func(io.Writer) render.Renderer) []byte {
	t.Helper()
	var buf bytes.Buffer
	out := newRenderer(&buf)
	if _, err := Replay(context.Background(), file, ReplayOptions{}, out); err != nil {
		t.Fatalf("replay %s: %v", file, err)
	}
	return buf.Bytes()
}

// TestRecordReplayParity records the demo exchanges while rendering them,
// replays the recordings, and requires the same bytes in text and JSON.
// With -update-pcaps it also refreshes testdata/pcaps.
func TestRecordReplayParity(t *testing.T) {
	for _, sc := range recorded {
		t.Run(sc.name, func(t *testing.T) {
			c := cluster(t, topology.Options{Prefix: "ptrec"})
			if sc.setup != nil {
				sc.setup(t, c)
			}
			file := filepath.Join(t.TempDir(), sc.name+".pcapng")
			var liveJSON, liveText, liveHTML bytes.Buffer
			out := tee{render.NewJSON(&liveJSON), render.NewText(&liveText, render.TextOptions{}), newHTML(&liveHTML)}
			ctx, cancel := context.WithCancel(context.Background())
			ready := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				_, err := Run(ctx, Options{
					Loader: loader.Options{
						PodIPs:  []netip.Addr{topology.ClientIP},
						Netns:   []string{c.Node(topology.Node1).NetnsPath, c.Node(topology.Node2).NetnsPath},
						Snaplen: 128,
					},
					Record:  file,
					OnReady: func() { close(ready) },
				}, out)
				done <- err
			}()
			select {
			case <-ready:
			case err := <-done:
				cancel()
				t.Fatalf("trace ended before it was ready: %v", err)
			}
			sc.traffic(t, c)
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("trace: %v", err)
			}
			if liveJSON.Len() == 0 {
				t.Fatal("the live run rendered nothing")
			}
			if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("recording mode: %v %v, want 0600", fi.Mode(), err)
			}
			if got := replayTo(t, file, true); !bytes.Equal(got, liveJSON.Bytes()) {
				t.Errorf("replayed JSON differs from the live run\nlive:\n%s\nreplay:\n%s", liveJSON.Bytes(), got)
			}
			if got := replayTo(t, file, false); !bytes.Equal(got, liveText.Bytes()) {
				t.Errorf("replayed text differs from the live run\nlive:\n%s\nreplay:\n%s", liveText.Bytes(), got)
			}
			if got := replayWith(t, file, newHTML); !bytes.Equal(got, liveHTML.Bytes()) {
				t.Errorf("replayed HTML report differs from the live run's\n%s", firstDiff(liveHTML.String(), string(got)))
			}
			if *updatePcaps && !t.Failed() {
				rec, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				base := filepath.Join(pcapDir, sc.name)
				for name, data := range map[string][]byte{".pcapng": rec, ".json": liveJSON.Bytes(), ".txt": liveText.Bytes()} {
					if err := os.WriteFile(base+name, data, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}

func newHTML(w io.Writer) render.Renderer { return render.NewHTML(w, render.HTMLOptions{}) }

// firstDiff shows where two long texts first differ.
func firstDiff(a, b string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	from := max(i-200, 0)
	return fmt.Sprintf("at byte %d:\n--- a ---\n%.400s\n--- b ---\n%.400s", i, a[from:], b[from:])
}

// describer keeps what a trace says of itself.
type describer struct {
	render.Renderer
	info *render.TraceInfo
}

func (d describer) DescribeTrace(info render.TraceInfo) { *d.info = info }

// TestReplayDescribes checks a replay tells a report what the recording
// says of the trace: its nodes, named, with their reports, the filter, the
// counts.
func TestReplayDescribes(t *testing.T) {
	var info render.TraceInfo
	sum, err := Replay(context.Background(), filepath.Join(pcapDir, "clusterip.pcapng"), ReplayOptions{},
		describer{render.Discard(), &info})
	if err != nil {
		t.Fatal(err)
	}
	if info.Events != sum.Events || info.Events == 0 || info.Lost != sum.Lost || info.Backend == "" || info.Start.IsZero() {
		t.Errorf("info %+v does not match the replay's summary %+v", info, sum)
	}
	if len(info.PodIPs) != 1 || info.PodIPs[0] != topology.ClientIP {
		t.Errorf("filter %v, want the recording's --pod-ip %v", info.PodIPs, topology.ClientIP)
	}
	var names []string
	for _, n := range info.Nodes {
		names = append(names, n.Netns)
		if n.Report == nil || n.Report.Item("sysctl.net.ipv4.ip_forward") == nil {
			t.Errorf("node %s: no report with ip_forward", n.Netns)
		}
	}
	if want := []string{"ptrec-node1", "ptrec-node2"}; !slices.Equal(names, want) {
		t.Errorf("nodes %v, want %v", names, want)
	}
}

func pcaps(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(pcapDir, "*.pcapng"))
	if err != nil || len(files) < len(recorded) {
		t.Fatalf("recordings in %s: %v (%v); regenerate with go test ./internal/trace -run TestRecordReplayParity -update-pcaps", pcapDir, files, err)
	}
	return files
}

// TestReplayGolden replays the committed recordings, made on a real kernel,
// and compares with what the live run printed. It needs no privileges. With
// -update it rewrites the renderings from the recordings instead: for a
// change of the stitcher or renderers, whose diff then shows only what the
// change does to the same events.
func TestReplayGolden(t *testing.T) {
	for _, file := range pcaps(t) {
		base := strings.TrimSuffix(file, ".pcapng")
		t.Run(filepath.Base(base), func(t *testing.T) {
			for _, json := range []bool{true, false} {
				golden := base + ".txt"
				if json {
					golden = base + ".json"
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatal(err)
				}
				got := replayTo(t, file, json)
				if *updateGolden {
					if err := os.WriteFile(golden, got, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if !bytes.Equal(got, want) {
					t.Errorf("replay of %s differs from %s:\n%s", file, golden, got)
				}
			}
		})
	}
}

// TestReplayFilters narrows a replay by pod IP and count.
func TestReplayFilters(t *testing.T) {
	file := filepath.Join(pcapDir, "clusterip.pcapng")
	var all, none, two bytes.Buffer
	if _, err := Replay(context.Background(), file, ReplayOptions{}, render.NewJSON(&all)); err != nil {
		t.Fatal(err)
	}
	if _, err := Replay(context.Background(), file, ReplayOptions{PodIPs: []netip.Addr{topology.PeerIP}}, render.NewJSON(&none)); err != nil {
		t.Fatal(err)
	}
	if none.Len() != 0 {
		t.Errorf("--pod-ip %s matched packets of %s:\n%s", topology.PeerIP, topology.ClientIP, none.String())
	}
	sum, err := Replay(context.Background(), file, ReplayOptions{PodIPs: []netip.Addr{topology.ServerIP}, Count: 2}, render.NewJSON(&two))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(two.Bytes(), []byte("\n")); n != 2 || sum.Packets != 2 {
		t.Errorf("-c 2 rendered %d lines, %d packets", n, sum.Packets)
	}
	for name, out := range map[string][]byte{"all": all.Bytes(), "--pod-ip -c 2": two.Bytes()} {
		// Printed packets are numbered 1, 2, 3, ... in the order of their
		// first hop, whatever was filtered out.
		var last time.Time
		for i, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
			var p struct {
				ID    int       `json:"id"`
				Start time.Time `json:"start"`
			}
			if err := json.Unmarshal(line, &p); err != nil {
				t.Fatal(err)
			}
			if p.ID != i+1 || p.Start.Before(last) {
				t.Errorf("%s: packet %d has id %d, start %s after %s", name, i+1, p.ID, p.Start, last)
			}
			last = p.Start
		}
	}
	if bytes.Count(all.Bytes(), []byte("\n")) <= 2 {
		t.Errorf("the recording has only %d packets", bytes.Count(all.Bytes(), []byte("\n")))
	}
}

// TestTsharkReadsRecordings: Wireshark's reader opens every recording and
// shows one frame per hop event, each with its comment.
func TestTsharkReadsRecordings(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		testutil.Missing(t, testutil.Tshark, err)
	}
	for _, file := range pcaps(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			r, err := record.OpenFile(file)
			if err != nil {
				t.Fatal(err)
			}
			for {
				if _, err := r.Next(); err != nil {
					break
				}
			}
			records := r.Meta().Records
			r.Close()
			cmd := exec.Command(tshark, "-r", file, "-T", "fields", "-e", "frame.number", "-e", "frame.comment", "-e", "ip.src")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("tshark: %v\n%s", err, stderr.String())
			}
			for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
				if line != "" && !strings.HasPrefix(line, "Running as user") {
					t.Errorf("tshark complained: %s", line)
				}
			}
			lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
			if uint64(len(lines)) != records || records == 0 {
				t.Errorf("tshark shows %d frames, the recording has %d records", len(lines), records)
			}
			for _, l := range lines {
				f := strings.Split(l, "\t")
				if len(f) < 2 || f[1] == "" {
					t.Errorf("frame without a comment: %q", l)
					break
				}
			}
		})
	}
}
