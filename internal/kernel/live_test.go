package kernel_test

// Tests of the running kernel, outside package kernel so that they can use
// internal/testutil (which imports kernel).

import (
	"testing"

	"github.com/pathtrace/pathtrace/internal/kernel"
	"github.com/pathtrace/pathtrace/internal/testutil"
)

func TestKallsymsModulesLive(t *testing.T) {
	testutil.RequireRoot(t) // kallsyms hides addresses, not names, from others; keep it simple
	found, err := kernel.KallsymsModules("netif_receive_skb", "nf_hook_slow", "pathtrace_no_such_function")
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := found["netif_receive_skb"]; !ok || m != "" {
		t.Errorf("netif_receive_skb: found %v in module %q, want vmlinux", ok, m)
	}
	if _, ok := found["pathtrace_no_such_function"]; ok {
		t.Error("found a function that does not exist")
	}
}

// The running kernel's symbols name a function pathtrace attaches to.
func TestKernelSymbols(t *testing.T) {
	testutil.RequireRoot(t) // kallsyms shows addresses to root only
	s, err := kernel.NewLiveSymbols().Symbols()
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() < 1000 {
		t.Fatalf("%d symbols", s.Len())
	}
	addr, ok := s.Addr("nf_hook_slow")
	if !ok {
		t.Fatal("no nf_hook_slow in kallsyms")
	}
	if got := s.Lookup(addr + 4); got != "nf_hook_slow+0x4" {
		t.Errorf("Lookup(nf_hook_slow+4) = %q", got)
	}
}
