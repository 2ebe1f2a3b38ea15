package kernel

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A module loaded after kallsyms was read is named once /proc/modules
// shows it, not before the next check, and not by re-reading kallsyms at
// every lookup.
func TestLiveSymbolsModuleLoaded(t *testing.T) {
	dir := t.TempDir()
	ksyms, mods := filepath.Join(dir, "kallsyms"), filepath.Join(dir, "modules")
	write := func(path, s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(ksyms, "ffffffff81000000 T nf_hook_slow\nffffffffc0100000 t ip_vs_protocol_init\t[ip_vs]\n")
	write(mods, "ip_vs 200000 0 - Live 0xffffffffc0100000\n")
	oldK, oldM := kallsymsPath, modulesPath
	kallsymsPath, modulesPath = ksyms, mods
	t.Cleanup(func() { kallsymsPath, modulesPath = oldK, oldM })

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
