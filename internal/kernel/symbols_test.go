package kernel

import (
	"errors"
	"strings"
	"testing"
)

const kallsyms = `ffffffff81000000 T _stext
ffffffff81c3a400 T nf_hook_slow
ffffffff81c3a5a0 t nf_hook_slow_list
ffffffff82000000 D some_data
ffffffffc03f4c80 t ip_vs_in_hook	[ip_vs]
0000000000000000 A fixed_percpu_data
`

func TestSymbolsLookup(t *testing.T) {
	s, err := parseSymbols(strings.NewReader(kallsyms))
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[uint64]string{
		0xffffffff81c3a400: "nf_hook_slow+0x0",
		0xffffffff81c3a49e: "nf_hook_slow+0x9e",
		0xffffffff81c3a5a1: "nf_hook_slow_list+0x1",
		0xffffffffc03f4d00: "ip_vs_in_hook+0x80 [ip_vs]",
		0xffffffff80000000: "", // before every symbol
		0xffffffff91000000: "", // far past the last one before it
		0:                  "",
	} {
		if got := s.Lookup(addr); got != want {
			t.Errorf("Lookup(%#x) = %q, want %q", addr, got, want)
		}
	}
	var none *Symbols
	if got := none.Lookup(0xffffffff81c3a400); got != "" {
		t.Errorf("nil Symbols named %q", got)
	}
}

func TestSymbolsHidden(t *testing.T) {
	_, err := parseSymbols(strings.NewReader("0000000000000000 T _stext\n0000000000000000 t nf_hook_slow\n"))
	if !errors.Is(err, ErrSymbolsHidden) {
		t.Errorf("all-zero kallsyms: %v, want ErrSymbolsHidden", err)
	}
}
