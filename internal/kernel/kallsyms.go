package kernel

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
)

// kallsymsPath lists the kernel's symbols, one a line:
// "ffffffffc03f4c80 t ip_vs_conn_new\t[ip_vs]".
var kallsymsPath = "/proc/kallsyms" // a variable for tests

// ksym is one line of kallsyms. name and module alias the scanner's buffer:
// they are valid only during the callback that receives them.
type ksym struct {
	addr   uint64 // 0 where kallsyms hides addresses (kptr_restrict, not root)
	typ    byte   // 't' or 'T' for text, 'd', 'D', 'A', ...
	name   []byte
	module []byte // "ip_vs", or empty for vmlinux
}

func (s ksym) text() bool { return s.typ == 't' || s.typ == 'T' }

// scanKallsyms calls fn for each well-formed line of kallsyms text until fn
// returns false. Lines it cannot parse are skipped.
func scanKallsyms(r io.Reader, fn func(ksym) bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		s, ok := parseKsym(sc.Bytes())
		if ok && !fn(s) {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read kallsyms: %w", err)
	}
	return nil
}

// parseKsym splits "ADDR TYPE NAME" with an optional "\t[MODULE]".
func parseKsym(line []byte) (ksym, bool) {
	addr, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok || len(rest) < 3 || rest[1] != ' ' {
		return ksym{}, false
	}
	s := ksym{typ: rest[0]}
	if s.addr, ok = parseHex(addr); !ok {
		return ksym{}, false
	}
	name, mod, _ := bytes.Cut(rest[2:], []byte{'\t'})
	s.name = bytes.TrimSpace(name)
	s.module = bytes.TrimSuffix(bytes.TrimPrefix(bytes.TrimSpace(mod), []byte{'['}), []byte{']'})
	return s, len(s.name) > 0
}

// parseHex reads a kallsyms address without allocating.
func parseHex(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(c)
	}
	return v, true
}

// KallsymsModules scans /proc/kallsyms for the named text symbols and
// returns the module of each found ("" for vmlinux). Names show even where
// addresses are hidden. It reads the file each time: modules come and go.
func KallsymsModules(names ...string) (map[string]string, error) {
	return readKallsyms(func(r io.Reader) (map[string]string, error) { return kallsymsModules(r, names) })
}

// readKallsyms hands /proc/kallsyms to parse.
func readKallsyms[T any](parse func(io.Reader) (T, error)) (T, error) {
	f, err := os.Open(kallsymsPath)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("read kallsyms: %w", err)
	}
	defer f.Close()
	return parse(f)
}

func kallsymsModules(r io.Reader, names []string) (map[string]string, error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	found := make(map[string]string, len(names))
	err := scanKallsyms(r, func(s ksym) bool {
		if s.text() && want[string(s.name)] {
			found[string(s.name)] = string(s.module)
		}
		return len(found) < len(want)
	})
	if err != nil {
		return nil, err
	}
	return found, nil
}
