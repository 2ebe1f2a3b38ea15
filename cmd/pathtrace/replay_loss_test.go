package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/internal/record"
	"github.com/pathtrace/pathtrace/internal/record/recordtest"
)

// TestReplayLossNote replays a recording whose trace lost events: the
// summary counts them and the next line says what that does to the paths
// (hops missing, a free hop's device possibly an earlier hop's). A recording
// that lost none has the summary alone.
func TestReplayLossNote(t *testing.T) {
	const src = "../../testdata/pcaps/drop.pcapng"
	lossy := filepath.Join(t.TempDir(), "lossy.pcapng")
	recordtest.Rewrite(t, src, lossy, func(m *record.Meta) {
		m.Lost, m.LostPerCPU = 5, []uint64{2, 3}
	})
	missed := filepath.Join(t.TempDir(), "missed.pcapng")
	recordtest.Rewrite(t, src, missed, func(m *record.Meta) { m.Missed = 1 })
	for _, tc := range []struct {
		file string
		want []string
	}{
		{src, []string{"pathtrace: replayed 1 packets, 8 events, 0 lost"}},
		{lossy, []string{
			"pathtrace: replayed 1 packets, 8 events, 5 lost",
			"pathtrace: 5 events were lost (the kernel's ring buffer was full): the paths of those packets lack hops, " +
				"and a drop or consume the kernel gave no device is shown at the last hop seen",
		}},
		{missed, []string{
			"pathtrace: replayed 1 packets, 8 events, 0 lost, 1 program run skipped by the kernel",
			"pathtrace: the kernel skipped 1 run of pathtrace's programs",
		}},
	} {
		r := run(t, nil, "replay", tc.file, "-o", "json")
		if r.code != 0 {
			t.Fatalf("replay %s: exit %d: %s", tc.file, r.code, r.stderr)
		}
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if len(lines) != len(tc.want) {
			t.Errorf("replay %s: stderr %q, want %d lines", filepath.Base(tc.file), r.stderr, len(tc.want))
			continue
		}
		for i, w := range tc.want {
			if !strings.HasPrefix(lines[i], w) {
				t.Errorf("replay %s: stderr line %d %q, want it to begin %q", filepath.Base(tc.file), i+1, lines[i], w)
			}
		}
	}
}
