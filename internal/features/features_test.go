package features

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/pathtrace/pathtrace/internal/kernel"
	"github.com/pathtrace/pathtrace/internal/testutil"
)

func TestStateOf(t *testing.T) {
	ns := NotSupportedError("kprobes not built in (%s)", "CONFIG_KPROBES unset")
	for _, tt := range []struct {
		err  error
		want State
	}{
		{nil, Supported},
		{ns, NotSupported},
		{fmt.Errorf("probe: %w", ns), NotSupported},
		{ebpf.ErrNotSupported, NotSupported},
		{errors.New("read kallsyms: permission denied"), Inconclusive},
	} {
		if got := StateOf(tt.err); got != tt.want {
			t.Errorf("StateOf(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
	if !errors.Is(ns, ebpf.ErrNotSupported) || Why(ns) != "kprobes not built in (CONFIG_KPROBES unset)" || Why(nil) != "" {
		t.Errorf("NotSupportedError %q: Is %v", Why(ns), errors.Is(ns, ebpf.ErrNotSupported))
	}
}

func TestLookupFunctions(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.Require(t, testutil.KernelBTF)
	fns := LookupFunctions(
		FuncRef{Name: "netif_receive_skb"},
		FuncRef{Name: "pathtrace_no_such_function", Module: "pathtrace_no_such_module"},
	)
	if f := fns[0]; !f.Loaded || f.BTF != nil || f.Kallsyms != nil {
		t.Errorf("netif_receive_skb: %+v", f)
	}
	f := fns[1]
	if f.Loaded || !errors.Is(f.BTF, ebpf.ErrNotSupported) || !strings.Contains(Why(f.Kallsyms), "module pathtrace_no_such_module not loaded") {
		t.Errorf("missing function: %+v", f)
	}
}

func TestProbesAreCachedAndClassified(t *testing.T) {
	testutil.RequireRoot(t)
	for name, probe := range map[string]func() error{
		"raw tracepoint": RawTracepoint, "netfilter link": NetfilterLink, "fentry": Fentry, "kprobe": Kprobe,
		"BTF tracepoint": BTFTracepoint, "direct skb read": DirectSKBRead,
	} {
		err := probe()
		if StateOf(err) == Inconclusive {
			t.Errorf("%s: inconclusive as root: %v", name, err)
		}
		if err2 := probe(); (err == nil) != (err2 == nil) {
			t.Errorf("%s: %v, then %v", name, err, err2)
		}
		t.Logf("%s: %s %s", name, StateOf(err), Why(err))
	}
}

// DirectSKBRead says yes on 6.18 (this machine's kernel), and is never
// inconclusive as root. Older kernels are not asserted: the loader falls
// back from a direct form that does not load, whatever the probe said.
func TestDirectSKBRead(t *testing.T) {
	testutil.RequireRoot(t)
	err := DirectSKBRead()
	t.Logf("%s: %s %s", kernel.Release(), StateOf(err), Why(err))
	if !kernel.VersionBelow(6, 18) && err != nil {
		t.Errorf("%s: %v, want direct reads", kernel.Release(), err)
	}
}
