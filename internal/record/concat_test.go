package record

import (
	"encoding/binary"
	"encoding/json"
	"maps"
	"path/filepath"
	"slices"
	"testing"
)

// The demo's recorded exchanges: the same namespace names, other inodes.
var (
	seedClusterIP = filepath.Join("..", "..", "testdata", "pcaps", "clusterip.pcapng")
	seedSameNode  = filepath.Join("..", "..", "testdata", "pcaps", "same-node.pcapng")
)

func TestConcat(t *testing.T) {
	file := filepath.Join(t.TempDir(), "demo.pcapng")
	if err := Concat(file, seedClusterIP, seedSameNode); err != nil {
		t.Fatal(err)
	}
	a, ma, err := ReadAll(seedClusterIP)
	if err != nil {
		t.Fatal(err)
	}
	b, mb, err := ReadAll(seedSameNode)
	if err != nil {
		t.Fatal(err)
	}
	got, m, err := ReadAll(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(a)+len(b) {
		t.Fatalf("%d records, want %d + %d", len(got), len(a), len(b))
	}
	inode := map[string]uint32{}
	for ino, name := range ma.Netns {
		inode[name] = ino
	}
	ne := binary.NativeEndian
	var last uint64
	for i, rec := range got {
		ts := ne.Uint64(rec[tsOff:])
		if ts < last {
			t.Fatalf("record %d goes back in time", i)
		}
		last = ts
		name, ok := m.Netns[ne.Uint32(rec[netnsOff:])]
		if !ok && ne.Uint32(rec[netnsOff:]) != 0 { // 0: a free event, which has none
			t.Fatalf("record %d: netns %d has no name", i, ne.Uint32(rec[netnsOff:]))
		}
		if ino, ok := inode[name]; ok && ino != ne.Uint32(rec[netnsOff:]) {
			t.Errorf("record %d: %s is %d, want the first seed's %d", i, name, ne.Uint32(rec[netnsOff:]), ino)
		}
		if i >= len(a) && ne.Uint64(rec[skbOff:]) == ne.Uint64(b[i-len(a)][skbOff:]) {
			t.Fatalf("record %d kept its skb: the seeds' packets could be stitched together", i)
		}
	}
	if len(m.Nodes) != 2 || !slices.Contains(m.Nodes, inode["ptrec-node1"]) || !slices.Contains(m.Nodes, inode["ptrec-node2"]) {
		t.Errorf("nodes %v, want node1 and node2 as the first seed has them (%v)", m.Nodes, ma.Nodes)
	}
	var reports map[uint32]json.RawMessage
	if err := json.Unmarshal(m.Reports, &reports); err != nil {
		t.Fatal(err)
	}
	if len(reports) != 2 || reports[inode["ptrec-node1"]] == nil || reports[inode["ptrec-node2"]] == nil {
		t.Errorf("reports of %v, want node1 and node2's", slices.Sorted(maps.Keys(reports)))
	}
	if m.Lost != ma.Lost+mb.Lost {
		t.Errorf("lost %d, want %d", m.Lost, ma.Lost+mb.Lost)
	}
	if err := Concat(file); err == nil {
		t.Error("Concat of nothing succeeded")
	}
}
