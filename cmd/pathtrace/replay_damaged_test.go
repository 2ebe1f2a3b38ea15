package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/internal/record/recordtest"
)

// TestReplayDamagedReport replays a recording whose node report holds an
// empty value, and one whose reports do not decode: exit 0, every packet
// rendered, one warning sentence, no panic.
func TestReplayDamagedReport(t *testing.T) {
	golden, err := os.ReadFile("../../testdata/pcaps/drop.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func([]byte) []byte
		want string
	}{
		{"empty value", func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"value":"0 (off)"`), []byte(`"value":""`), 1)
		}, "the report of node ptrec-node1 in the recording is damaged: net.ipv4.conf.all.rp_filter is empty"},
		{"not reports", func([]byte) []byte { return []byte(`["not", "reports"]`) },
			"the node reports in the recording are damaged (decode node reports: json: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "damaged.pcapng")
			recordtest.RewriteReports(t, "../../testdata/pcaps/drop.pcapng", file, tc.edit)
			r := run(t, nil, "replay", file, "-o", "json")
			if r.code != 0 {
				t.Errorf("exit code %d, want 0 (stderr %q)", r.code, r.stderr)
			}
			if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic") {
				t.Fatalf("stderr has a stack trace: %s", r.stderr)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if len(lines) != 2 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], tc.want) ||
				!strings.HasPrefix(lines[1], "pathtrace: replayed 1 packets") {
				t.Errorf("stderr %q, want one warning with %q and the summary", r.stderr, tc.want)
			}
			if got := strings.Count(r.stdout, "\n"); got != strings.Count(string(golden), "\n") {
				t.Errorf("%d paths rendered, the intact recording has %d", got, strings.Count(string(golden), "\n"))
			}
			if tc.name == "empty value" && r.stdout != string(golden) {
				t.Errorf("output differs from drop.json:\n%s", r.stdout)
			}
		})
	}
}
