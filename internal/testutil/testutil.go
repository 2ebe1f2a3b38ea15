package testutil

import (
	"github.com/cilium/ebpf/link"
	"os"
	"testing"
)

// RequireRoot skips the test, with the reason, unless it runs as root. Tests
// that load BPF programs, build network namespaces or run iptables call it
// first, so `go test ./...` also works for a contributor without root.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: loads BPF programs and builds network namespaces")
	}
}

// LinkIDs lists the IDs of every BPF link in the kernel, to check that a
// test left none of its own behind.
func LinkIDs(tb testing.TB) []link.ID {
	tb.Helper()
	var ids []link.ID
	var it link.Iterator
	for it.Next() {
		ids = append(ids, it.ID)
	}
	if err := it.Err(); err != nil {
		tb.Fatalf("list BPF links: %v", err)
	}
	return ids
}
