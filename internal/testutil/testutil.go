package testutil

import (
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
