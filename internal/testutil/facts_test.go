package testutil

import (
	"errors"
	"strings"
	"testing"
)

func TestVerdict(t *testing.T) {
	why := errors.New("probe says no")
	host := machine{release: "6.18.44", series: "6.18", known: true}
	vm := machine{release: "6.12.38+deb13-amd64", series: "6.12", known: true}
	other := machine{release: "6.8.0-45-generic", series: "6.8"}
	with := func(m machine, root, strict bool) machine { m.root, m.strict = root, strict; return m }
	for _, c := range []struct {
		name string
		f    Fact
		m    machine
		fail bool
		says []string
	}{
		{"expected absence skips as root", IPVS, with(host, true, true), false,
			[]string{"IPVS missing on kernel 6.18.44: probe says no; as expected on 6.18: the 6.18 host kernel has neither ip_vs"}},
		{"unexpected absence fails as root", IPVS, with(vm, true, false), true,
			[]string{"IPVS missing on kernel 6.12.38+deb13-amd64: probe says no; but expected on 6.12", "missing only on 6.18"}},
		{"unexpected absence fails under the strict env", Kprobes, with(vm, false, true), true, []string{"kprobes missing"}},
		{"unexpected absence skips otherwise", NetfilterLinks, with(vm, false, false), false,
			[]string{"missing only on 5.10, 6.1", "as root this fails"}},
		{"a fact every kernel has", KernelBTF, with(host, true, false), true, []string{"missing nowhere"}},
		{"unknown kernel skips as root", Kprobes, with(other, true, false), false,
			[]string{"testutil knows nothing of kernel series 6.8 (it knows 5.10, 6.1, 6.1-arm64, 6.12, 6.12-arm64, 6.18)", "under PATHTRACE_TEST_STRICT=1 this fails"}},
		{"unknown kernel fails under the strict env", Kprobes, with(other, true, true), true, []string{"add its facts"}},
		{"a tool skips as root", Tshark, with(vm, true, false), false,
			[]string{"tshark is not installed: probe says no; scripts/install-deps.sh installs it (Debian package tshark)"}},
		{"a tool fails under the strict env", Tshark, with(host, false, true), true, []string{"PATHTRACE_TEST_STRICT=1 says the tools are"}},
		{"a tool install-deps.sh does not know", Tool("pathtrace-no-such-tool"), with(host, false, false), false,
			[]string{"scripts/install-deps.sh does not install it"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			msg, fail := verdict(c.f, why, c.m)
			if fail != c.fail {
				t.Errorf("fail = %v, want %v: %s", fail, c.fail, msg)
			}
			for _, s := range c.says {
				if !strings.Contains(msg, s) {
					t.Errorf("%q\ndoes not say %q", msg, s)
				}
			}
		})
	}
}

// TestFactsKnowOurKernels: every absence a fact expects is on a kernel
// series in the table, and says why.
func TestFactsKnowOurKernels(t *testing.T) {
	for _, f := range []Fact{IPVS, Kprobes, FentryPrograms, BTFTracepoints, NetfilterLinks, DirectSKBReads, FuncHops, KernelBTF, ModuleBTF, PTY, ConntrackFillable} {
		for series, why := range f.absent {
			if _, ok := expected[series]; !ok || why == "" {
				t.Errorf("%s: expected missing on %s (%q), a series without expected backends or without a reason", f, series, why)
			}
		}
	}
	for command, pkg := range tools {
		if pkg == "" {
			t.Errorf("tool %s: no Debian package", command)
		}
	}
}
