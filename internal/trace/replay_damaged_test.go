package trace

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/internal/record/recordtest"
	"github.com/pathtrace/pathtrace/internal/render"
)

// replayLogged replays file as JSON and returns the output and what was
// logged, one line per record, without times.
func replayLogged(t *testing.T, file string) (out []byte, logged []string, sum Summary) {
	t.Helper()
	var buf, log bytes.Buffer
	h := slog.NewTextHandler(&log, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})
	sum, err := Replay(context.Background(), file, ReplayOptions{Log: slog.New(h)}, render.NewJSON(&buf))
	if err != nil {
		t.Fatalf("replay %s: %v", file, err)
	}
	if s := strings.TrimSpace(log.String()); s != "" {
		logged = strings.Split(s, "\n")
	}
	return buf.Bytes(), logged, sum
}

// TestReplayDamagedReport replays recordings whose node reports are
// damaged: every packet is replayed, and one warning names the node and
// what is wrong, where a value that was not a number used to panic.
func TestReplayDamagedReport(t *testing.T) {
	src := filepath.Join(pcapDir, "drop.pcapng")
	golden, err := os.ReadFile(filepath.Join(pcapDir, "drop.json"))
	if err != nil {
		t.Fatal(err)
	}
	_, logged, whole := replayLogged(t, src)
	if len(logged) != 0 {
		t.Errorf("the committed recording's reports (written before facts existed) gave warnings: %q", logged)
	}

	replaceFirst := func(old, new string) func([]byte) []byte {
		return func(b []byte) []byte {
			if !bytes.Contains(b, []byte(old)) {
				t.Fatalf("the reports hold no %s", old)
			}
			return bytes.Replace(b, []byte(old), []byte(new), 1)
		}
	}
	const node1 = `"4026532177":`
	for _, tc := range []struct {
		name  string
		edit  func([]byte) []byte
		want  []string // in the one warning
		equal bool     // the output is the golden one: the drop's advice uses none of the lost facts
	}{
		{"empty rp_filter", replaceFirst(`"value":"0 (off)"`, `"value":""`),
			[]string{"report of node ptrec-node1", "net.ipv4.conf.all.rp_filter is empty"}, true},
		{"rp_filter not a number", replaceFirst(`"value":"0 (off)"`, `"value":"(off)"`),
			[]string{"report of node ptrec-node1", "net.ipv4.conf.all.rp_filter is", "(off)", "not a number"}, true},
		{"conntrack not numbers", replaceFirst(`"value":"1 / 262144 (0.0% full)"`, `"value":"one / many"`),
			[]string{"report of node ptrec-node1", "net.netfilter.nf_conntrack_usage is", "one / many"}, true},
		{"ip_forward empty", replaceFirst(`"id":"sysctl.net.ipv4.ip_forward","name":"net.ipv4.ip_forward","value":"1"`, `"id":"sysctl.net.ipv4.ip_forward","name":"net.ipv4.ip_forward","value":""`),
			[]string{"report of node ptrec-node1", "net.ipv4.ip_forward is empty"}, true},
		{"report of the wrong shape", replaceFirst(node1+`{"schema_version":1`, node1+`{"schema_version":"one"`),
			[]string{"report of node ptrec-node1", "does not decode"}, false},
		{"reports of the wrong shape", func([]byte) []byte { return []byte(`{"node1":{}}`) },
			[]string{"node reports in the recording are damaged (decode node reports: ", "from their reason alone"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "damaged.pcapng")
			recordtest.RewriteReports(t, src, file, tc.edit)
			out, logged, sum := replayLogged(t, file)
			if len(logged) != 1 {
				t.Fatalf("logged %q, want one warning", logged)
			}
			for _, w := range append([]string{"level=WARN"}, tc.want...) {
				if !strings.Contains(logged[0], w) {
					t.Errorf("warning %q lacks %q", logged[0], w)
				}
			}
			if sum.Packets != whole.Packets || sum.Events != whole.Events {
				t.Errorf("replayed %s, the intact recording %s", sum, whole)
			}
			if tc.equal && !bytes.Equal(out, golden) {
				t.Errorf("output differs from drop.json:\n%s", out)
			}
		})
	}
}
