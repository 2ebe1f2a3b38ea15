package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/kernel"
)

// Release is the running kernel's release (uname -r).
func Release() string { return kernel.Release() }

// Series is the running kernel's "major.minor" ("6.12"), with the
// architecture on other than amd64 ("6.12-arm64"): the expectations and
// facts are keyed by it, as the matrix names its guests (vm/).
func Series() string {
	v, err := kernel.ParseVersion(Release())
	s := Release()
	if err == nil {
		s = v.String()
	}
	if runtime.GOARCH != "amd64" {
		s += "-" + runtime.GOARCH
	}
	return s
}

// Modprobe loads kernel modules, ignoring failures (a module may be built
// in, or the kernel may have no module support): tests that need what a
// module brings check for it themselves.
func Modprobe(modules ...string) {
	for _, m := range modules {
		exec.Command("modprobe", m).Run()
	}
}

// expected holds, per kernel series we test on, the backend that must show
// each hop kind with --backend auto, with the bridge, ip_vs, vxlan,
// ip_tables and nf_tables modules loaded: the QEMU matrix (Debian 5.10, 6.1, 6.12 on x86,
// 6.1 and 6.12 on arm64, vm/) and the development VM (6.18: kprobes not built in, fentry
// refused by lockdown, no IPVS). Facts in /work/shared/KERNEL-NOTES.md.
var expected = map[string]map[hop.Kind]hop.Backend{
	"5.10": hops(hop.Fentry, hop.Kprobe),
	"6.1":  hops(hop.Fentry, hop.Fentry),
	"6.12": hops(hop.NetfilterLink, hop.Fentry),
	"6.18": hops(hop.NetfilterLink, hop.NoBackend),
	// arm64 attaches fentry to kernel functions from 6.4 on (ftrace direct
	// calls, commit 2aa6ac03516d): 6.1 loads fentry programs but cannot
	// attach them (ENOTSUPP).
	"6.1-arm64":  hops(hop.Kprobe, hop.Kprobe),
	"6.12-arm64": hops(hop.NetfilterLink, hop.Fentry),
}

// hops is the expectation of a kernel whose netfilter hooks netfilter
// shows and whose function hops funcs shows (hop.NoBackend: none).
func hops(netfilter, funcs hop.Backend) map[hop.Kind]hop.Backend {
	vxlan := funcs
	if funcs == hop.NoBackend {
		vxlan = hop.Inferred
	}
	return map[hop.Kind]hop.Backend{
		hop.Rx: hop.Tracepoint, hop.Tx: hop.Tracepoint, hop.Drop: hop.Tracepoint, hop.Consume: hop.Tracepoint,
		hop.Netfilter: netfilter, hop.NAT: netfilter, hop.Table: funcs,
		hop.Bridge: funcs, hop.IPVS: funcs, hop.IPVSDrop: funcs, hop.Encap: vxlan, hop.Decap: vxlan,
	}
}

// ExpectedBackends returns, for the running kernel, the backend expected
// per hop kind; ok is false on kernels not in the table.
func ExpectedBackends() (map[hop.Kind]hop.Backend, bool) {
	m, ok := expected[Series()]
	return m, ok
}

// RequireExpectedBackends returns ExpectedBackends or skips the test,
// saying which kernel has no expectations; under StrictEnv it fails it.
func RequireExpectedBackends(tb testing.TB) map[hop.Kind]hop.Backend {
	tb.Helper()
	m, ok := ExpectedBackends()
	if !ok {
		msg := fmt.Sprintf("no expected backends for kernel %s (series %s); known: %s", Release(), Series(), strings.Join(knownSeries(), ", "))
		if os.Getenv(StrictEnv) == "1" {
			tb.Fatalf("%s; under %s=1 every kernel must be known", msg, StrictEnv)
		}
		tb.Skip(msg)
	}
	return m
}
