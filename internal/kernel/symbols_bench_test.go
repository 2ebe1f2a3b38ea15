package kernel_test

import (
	"testing"

	"github.com/pathtrace/pathtrace/internal/kernel"
	"github.com/pathtrace/pathtrace/internal/testutil"
)

// BenchmarkLoadSymbols reads the running kernel's /proc/kallsyms: its
// bytes allocated per read are memory a trace's resident set keeps
// after the read (the garbage is not returned at once).
func BenchmarkLoadSymbols(b *testing.B) {
	testutil.RequireRoot(b) // kallsyms shows addresses to root only
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kernel.LoadSymbols(); err != nil {
			b.Fatal(err)
		}
	}
}
