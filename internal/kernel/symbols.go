package kernel

import (
	"cmp"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Symbols names kernel text addresses, as /proc/kallsyms lists them: a drop
// location becomes "nf_hook_slow+0x9e". Where kallsyms hides addresses
// (kptr_restrict, not root) it has no symbols.
type Symbols struct {
	addrs []uint64 // sorted
	ends  []uint32 // ends[i]: end of symbol i's name in names
	names string   // "name" or "name [module]", back to back
}

// ErrSymbolsHidden is returned by LoadSymbols when kallsyms shows every
// address as zero.
var ErrSymbolsHidden = errors.New("kernel symbol addresses are hidden (kptr_restrict, or not root)")

// LoadSymbols reads the text symbols of /proc/kallsyms.
func LoadSymbols() (*Symbols, error) { return readKallsyms(parseSymbols) }

// kernelSymbols loads the running kernel's symbols once, when first needed.
var kernelSymbols = sync.OnceValues(LoadSymbols)

// KernelSymbols returns the running kernel's symbols, read once.
func KernelSymbols() (*Symbols, error) { return kernelSymbols() }

type symbol struct {
	addr uint64
	name string
}

func parseSymbols(r io.Reader) (*Symbols, error) {
	var syms []symbol
	err := scanKallsyms(r, func(s ksym) bool {
		if !s.text() || s.addr == 0 {
			return true
		}
		name := string(s.name)
		if len(s.module) > 0 {
			name += " [" + string(s.module) + "]"
		}
		syms = append(syms, symbol{s.addr, name})
		return true
	})
	if err != nil {
		return nil, err
	}
	if len(syms) == 0 {
		return nil, ErrSymbolsHidden
	}
	slices.SortFunc(syms, func(a, b symbol) int { return cmp.Compare(a.addr, b.addr) })
	s := &Symbols{addrs: make([]uint64, len(syms)), ends: make([]uint32, len(syms))}
	var names strings.Builder
	for i, sym := range syms {
		s.addrs[i] = sym.addr
		names.WriteString(sym.name)
		s.ends[i] = uint32(names.Len())
	}
	s.names = names.String()
	return s, nil
}

// maxOffset bounds how far past a symbol an address is still taken as
// inside it: larger gaps are data or another mapping.
const maxOffset = 1 << 20

// Lookup names addr as "function+0xoffset" ("function+0xoffset [module]"
// in a module), or "" when no symbol precedes it closely enough.
func (s *Symbols) Lookup(addr uint64) string {
	if s == nil || addr == 0 {
		return ""
	}
	i, found := slices.BinarySearch(s.addrs, addr)
	if !found {
		i--
	}
	if i < 0 || addr-s.addrs[i] >= maxOffset {
		return ""
	}
	start := uint32(0)
	if i > 0 {
		start = s.ends[i-1]
	}
	name := s.names[start:s.ends[i]]
	fn, mod, _ := strings.Cut(name, " ")
	out := fn + "+0x" + strconv.FormatUint(addr-s.addrs[i], 16)
	if mod != "" {
		out += " " + mod
	}
	return out
}
