package kernel

import (
	"cmp"
	"errors"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// modulesPath lists the loaded modules (a variable for tests).
var modulesPath = "/proc/modules"

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

// LiveSymbols names addresses of the running kernel while modules come and
// go: a module loaded after the symbols were read (nf_tables when the first
// rule is added, ip_vs when kube-proxy starts in IPVS mode) would otherwise
// take the name of whatever symbol precedes its address. At most once per
// modulesCheck it compares /proc/modules with what it was when kallsyms was
// read, and reads kallsyms again when it changed. No name, or a name in a
// module whose text, as /proc/modules gives it, does not hold the address
// (a symbol of a module's init code, freed once the module was loaded, or
// of a module since unloaded) is passed over for the closest symbol before
// it that its module holds; without one, it looks at /proc/modules again
// after modulesRecheck, and returns none rather than a wrong name.
// Safe for concurrent use.
type LiveSymbols struct {
	mu      sync.Mutex
	syms    *Symbols
	err     error
	modules string               // /proc/modules when syms was read
	ranges  map[string][2]uint64 // module: its core's start and end, from modules
	checked time.Time
	now     func() time.Time
}

// modulesCheck is how often LiveSymbols looks at /proc/modules; a name
// outside its module makes it look again after modulesRecheck.
const (
	modulesCheck   = time.Second
	modulesRecheck = 10 * time.Millisecond
)

// NewLiveSymbols reads the running kernel's symbols.
func NewLiveSymbols() *LiveSymbols {
	l := &LiveSymbols{now: time.Now}
	l.reload(readModules())
	return l
}

func (l *LiveSymbols) reload(modules string) {
	l.syms, l.err = LoadSymbols()
	l.modules = modules
	l.ranges = moduleRanges(modules)
	l.checked = l.now()
}

// readModules returns /proc/modules without the reference counts and users,
// which change all the time: one "name size state address" per line. ""
// when it cannot be read (then kallsyms is never read again).
func readModules() string {
	b, err := os.ReadFile(modulesPath)
	if err != nil {
		return ""
	}
	var out strings.Builder
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) >= 6 {
			out.WriteString(f[0] + " " + f[1] + " " + f[4] + " " + f[5] + "\n")
		}
	}
	return out.String()
}

// moduleRanges reads readModules' lines: each module's core, from its
// address (where its text starts) for its size.
func moduleRanges(modules string) map[string][2]uint64 {
	ranges := map[string][2]uint64{}
	for line := range strings.Lines(modules) {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		size, err1 := strconv.ParseUint(f[1], 10, 64)
		addr, err2 := strconv.ParseUint(strings.TrimPrefix(f[3], "0x"), 16, 64)
		if err1 == nil && err2 == nil && addr != 0 {
			ranges[f[0]] = [2]uint64{addr, addr + size}
		}
	}
	return ranges
}

// refresh reads kallsyms again if /proc/modules changed, when at least
// every has passed since it last looked.
func (l *LiveSymbols) refresh(every time.Duration) {
	if now := l.now(); now.Sub(l.checked) >= every {
		l.checked = now
		if m := readModules(); m != "" && m != l.modules {
			l.reload(m)
		}
	}
}

// Symbols returns the current symbols (and why there are none).
func (l *LiveSymbols) Symbols() (*Symbols, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refresh(modulesCheck)
	return l.syms, l.err
}

// Lookup is Symbols().Lookup(addr), checked against the module's text.
func (l *LiveSymbols) Lookup(addr uint64) string {
	if addr == 0 {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refresh(modulesCheck)
	held := func(name string) bool { return l.holds(name, addr) }
	if name := l.syms.lookupHeld(addr, held); name != "" {
		return name
	}
	l.refresh(modulesRecheck)
	return l.syms.lookupHeld(addr, held)
}

// holds reports whether name ("fn+0xoff [module]") may name addr: a
// vmlinux symbol, one of a module whose core holds addr, or one of
// kallsyms' own pseudo-modules, which /proc/modules does not list (BPF
// programs' "[bpf]", "[__builtin__ftrace]" trampolines, kprobes' slots).
// Without /proc/modules every name may.
func (l *LiveSymbols) holds(name string, addr uint64) bool {
	_, mod, ok := strings.Cut(name, " [")
	if !ok || len(l.ranges) == 0 {
		return true
	}
	mod = strings.TrimSuffix(mod, "]")
	r, ok := l.ranges[mod]
	if !ok {
		return mod == "bpf" || strings.HasPrefix(mod, "__builtin__")
	}
	return addr >= r[0] && addr < r[1]
}

// parseSymbols reads the text symbols into a Symbols, sorted by address.
// The names go straight into one buffer, not a string each: kallsyms
// lists about 150000 text symbols, and a string and a slice element per
// symbol made the read hold about 20 MB at its peak, which a trace's
// resident memory kept.
func parseSymbols(r io.Reader) (*Symbols, error) {
	var (
		addrs []uint64
		ends  []uint32 // ends[i]: end of symbol i's name in buf, in kallsyms' order
		buf   []byte
	)
	err := scanKallsyms(r, func(s ksym) bool {
		if !s.text() || s.addr == 0 {
			return true
		}
		buf = append(buf, s.name...)
		if len(s.module) > 0 {
			buf = append(buf, " ["...)
			buf = append(buf, s.module...)
			buf = append(buf, ']')
		}
		addrs = append(addrs, s.addr)
		ends = append(ends, uint32(len(buf)))
		return true
	})
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, ErrSymbolsHidden
	}
	order := make([]int32, len(addrs))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return cmp.Compare(addrs[a], addrs[b]) })
	s := &Symbols{addrs: make([]uint64, len(addrs)), ends: make([]uint32, len(addrs))}
	var names strings.Builder
	names.Grow(len(buf))
	for i, j := range order {
		start := uint32(0)
		if j > 0 {
			start = ends[j-1]
		}
		names.Write(buf[start:ends[j]])
		s.addrs[i] = addrs[j]
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
	return s.lookupHeld(addr, func(string) bool { return true })
}

// maxSkipped bounds how many preceding symbols lookupHeld passes over.
const maxSkipped = 256

// lookupHeld is Lookup by the closest symbol before addr whose name held
// accepts. kallsyms can list a module's init symbols after its init code
// was freed and reused by a module loaded later (seen on Debian 6.12:
// ip_vs_protocol_init [ip_vs] inside nf_tables' text), so the symbol
// right before an address may not be the function that holds it.
func (s *Symbols) lookupHeld(addr uint64, held func(name string) bool) string {
	if s == nil || addr == 0 {
		return ""
	}
	i, found := slices.BinarySearch(s.addrs, addr)
	if !found {
		i--
	}
	for stop := max(i-maxSkipped, -1); i > stop && addr-s.addrs[i] < maxOffset; i-- {
		start := uint32(0)
		if i > 0 {
			start = s.ends[i-1]
		}
		fn, mod, _ := strings.Cut(s.names[start:s.ends[i]], " ")
		out := fn + "+0x" + strconv.FormatUint(addr-s.addrs[i], 16)
		if mod != "" {
			out += " " + mod
		}
		if held(out) {
			return out
		}
	}
	return ""
}
