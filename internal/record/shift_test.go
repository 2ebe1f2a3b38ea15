package record

import (
	"path/filepath"
	"testing"
	"time"
)

// A --scope node trace's header keeps its node's name and scope, and
// ShiftClock moves the start's wall clock only.
func TestShiftClockKeepsNode(t *testing.T) {
	dir := t.TempDir()
	seed, shifted := filepath.Join(dir, "node2.pcapng"), filepath.Join(dir, "shifted.pcapng")
	meta := testMeta()
	meta.NodeName, meta.Scope = "node2", "node"
	w, err := Create(seed, meta)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(testFinal()); err != nil {
		t.Fatal(err)
	}
	const d = -1500 * time.Millisecond
	if err := ShiftClock(shifted, seed, d); err != nil {
		t.Fatal(err)
	}
	_, a, err := ReadAll(seed)
	if err != nil {
		t.Fatal(err)
	}
	_, b, err := ReadAll(shifted)
	if err != nil {
		t.Fatal(err)
	}
	if a.NodeName != "node2" || a.Scope != "node" || b.NodeName != a.NodeName || b.Scope != a.Scope {
		t.Errorf("node %q scope %q, shifted %q %q; want node2, node", a.NodeName, a.Scope, b.NodeName, b.Scope)
	}
	if got := b.StartWall.Sub(a.StartWall); got != d || b.StartMono != a.StartMono || b.Hostname != a.Hostname {
		t.Errorf("shifted start by %v (mono %d → %d), want %v and the same monotonic start", got, a.StartMono, b.StartMono, d)
	}
}
