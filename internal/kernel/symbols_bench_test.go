package kernel

import (
	"errors"
	"testing"
)

// BenchmarkLoadSymbols reads the running kernel's /proc/kallsyms: its
// bytes allocated per read are memory a trace's resident set keeps
// after the read (the garbage is not returned at once).
func BenchmarkLoadSymbols(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LoadSymbols(); errors.Is(err, ErrSymbolsHidden) {
			b.Skip(err)
		} else if err != nil {
			b.Fatal(err)
		}
	}
}
