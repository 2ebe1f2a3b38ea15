package kernel

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeProc points kallsyms and /proc/modules at files of the test, and
// returns them with a function that writes one.
func fakeProc(t *testing.T) (ksyms, mods string, write func(path, s string)) {
	dir := t.TempDir()
	ksyms, mods = filepath.Join(dir, "kallsyms"), filepath.Join(dir, "modules")
	oldK, oldM := kallsymsPath, modulesPath
	kallsymsPath, modulesPath = ksyms, mods
	t.Cleanup(func() { kallsymsPath, modulesPath = oldK, oldM })
	return ksyms, mods, func(path, s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// A module loaded after kallsyms was read is named once /proc/modules
// shows it, not before the next check, and not by re-reading kallsyms at
// every lookup.
func TestLiveSymbolsModuleLoaded(t *testing.T) {
	ksyms, mods, write := fakeProc(t)
	write(ksyms, "ffffffff81000000 T nf_hook_slow\nffffffffc0100000 t ip_vs_protocol_init\t[ip_vs]\n")
	write(mods, "ip_vs 200000 0 - Live 0xffffffffc0100000\n")

	now := time.Unix(1000, 0)
	l := &LiveSymbols{now: func() time.Time { return now }}
	l.reload(readModules())
	const addr = 0xffffffffc0200040
	if got := l.Lookup(addr); got != "ip_vs_protocol_init+0x100040 [ip_vs]" && got != "" {
		t.Fatalf("before the module: %q", got)
	}
	// nf_tables is loaded; its reference count changes do not count.
	write(ksyms, "ffffffff81000000 T nf_hook_slow\nffffffffc0100000 t ip_vs_protocol_init\t[ip_vs]\nffffffffc0200000 t nft_do_chain\t[nf_tables]\n")
	write(mods, "ip_vs 200000 0 - Live 0xffffffffc0100000\nnf_tables 300000 0 - Live 0xffffffffc0200000\n")
	if got := l.Lookup(addr); got == "nft_do_chain+0x40 [nf_tables]" {
		t.Fatal("kallsyms read again before the check interval")
	}
	now = now.Add(modulesCheck)
	if got := l.Lookup(addr); got != "nft_do_chain+0x40 [nf_tables]" {
		t.Fatalf("after the module was loaded: %q", got)
	}
	// A use count change alone does not re-read kallsyms.
	write(ksyms, "ffffffff81000000 T nf_hook_slow\n")
	write(mods, "ip_vs 200000 3 a,b, Live 0xffffffffc0100000\nnf_tables 300000 1 x, Live 0xffffffffc0200000\n")
	now = now.Add(modulesCheck)
	if got := l.Lookup(addr); got != "nft_do_chain+0x40 [nf_tables]" {
		t.Fatalf("after a use count change: %q", got)
	}
}

// kallsyms read while a module was loading lists its init code, which is
// freed once it is live and may then hold another module. An address a
// module's init symbol would name is named by no symbol until /proc/modules
// changes, and by the new module's as soon as it does (after
// modulesRecheck, not modulesCheck). The module's going live alone makes
// kallsyms read again.
func TestLiveSymbolsInitCode(t *testing.T) {
	ksyms, mods, write := fakeProc(t)
	write(ksyms, "ffffffff81000000 T nf_hook_slow\nffffffffc0100000 t ip_vs_in_hook\t[ip_vs]\nffffffffc0300000 t ip_vs_protocol_init\t[ip_vs]\n")
	write(mods, "ip_vs 4096 0 - Loading 0xffffffffc0100000\n")

	now := time.Unix(1000, 0)
	l := &LiveSymbols{now: func() time.Time { return now }}
	l.reload(readModules())
	if got := l.Lookup(0xffffffffc0100010); got != "ip_vs_in_hook+0x10 [ip_vs]" {
		t.Errorf("in the module's core: %q", got)
	}
	const addr = 0xffffffffc030016e
	if got := l.Lookup(addr); got != "" {
		t.Errorf("in the module's init code: %q, want no name", got)
	}
	// ip_vs is live, its init code freed: kallsyms is read again at the
	// next check, though no module came or went.
	write(ksyms, "ffffffff81000000 T nf_hook_slow\nffffffffc0100000 t ip_vs_conn_in_get\t[ip_vs]\n")
	write(mods, "ip_vs 4096 0 - Live 0xffffffffc0100000\n")
	now = now.Add(modulesCheck)
	if got := l.Lookup(0xffffffffc0100010); got != "ip_vs_conn_in_get+0x10 [ip_vs]" {
		t.Errorf("after the module went live: %q", got)
	}
	// nf_tables is loaded where ip_vs's init code was.
	write(ksyms, "ffffffff81000000 T nf_hook_slow\nffffffffc0100000 t ip_vs_in_hook\t[ip_vs]\nffffffffc0300000 t nft_do_chain\t[nf_tables]\n")
	write(mods, "ip_vs 4096 0 - Live 0xffffffffc0100000\nnf_tables 8192 0 - Live 0xffffffffc0300000\n")
	now = now.Add(modulesRecheck)
	if got := l.Lookup(addr); got != "nft_do_chain+0x16e [nf_tables]" {
		t.Errorf("after nf_tables was loaded: %q", got)
	}
	if got := l.Lookup(0xffffffff81000010); got != "nf_hook_slow+0x10" {
		t.Errorf("vmlinux: %q", got)
	}
	// kallsyms' pseudo-modules are not in /proc/modules; their names hold.
	write(ksyms, "ffffffff81000000 T nf_hook_slow\nffffffffa0000000 t bpf_prog_0123456789abcdef_drop\t[bpf]\nffffffffc0100000 t ip_vs_conn_in_get\t[ip_vs]\n")
	write(mods, "ip_vs 4096 0 - Live 0xffffffffc0100000\n")
	now = now.Add(modulesCheck)
	if got := l.Lookup(0xffffffffa0000020); got != "bpf_prog_0123456789abcdef_drop+0x20 [bpf]" {
		t.Errorf("a BPF program: %q", got)
	}
}

// kallsyms of Debian's 6.12 on a trixie box listed ip_vs's init symbols,
// long after ip_vs went live, inside the text of nf_tables, loaded later
// where that init code had been; a packet nft_do_chain dropped then fell
// between them. The function is the closest symbol its module holds.
func TestLiveSymbolsStaleInitInsideModule(t *testing.T) {
	ksyms, mods, write := fakeProc(t)
	write(ksyms, "ffffffff81000000 T nf_hook_slow\n"+
		"ffffffffc0e40000 t nft_do_chain\t[nf_tables]\n"+
		"ffffffffc0e44340 T register_ip_vs_protocol\t[ip_vs]\n"+
		"ffffffffc0e44390 T ip_vs_protocol_init\t[ip_vs]\n"+
		"ffffffffc0e44730 t nf_tables_core_module_exit\t[nf_tables]\n"+
		"ffffffffc0f80000 t ip_vs_in_hook\t[ip_vs]\n")
	write(mods, "nf_tables 372736 0 - Live 0xffffffffc0e30000\nip_vs 212992 0 - Live 0xffffffffc0f80000\n")
	now := time.Unix(1000, 0)
	l := &LiveSymbols{now: func() time.Time { return now }}
	l.reload(readModules())
	if got := l.Lookup(0xffffffffc0e444fe); got != "nft_do_chain+0x44fe [nf_tables]" {
		t.Errorf("between ip_vs's stale init symbols: %q", got)
	}
	if got := l.Lookup(0xffffffffc0e44740); got != "nf_tables_core_module_exit+0x10 [nf_tables]" {
		t.Errorf("after them: %q", got)
	}
	if got := l.Lookup(0xffffffffc0f80010); got != "ip_vs_in_hook+0x10 [ip_vs]" {
		t.Errorf("in ip_vs: %q", got)
	}
}
