package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// SkipIfNotSupported is RequireSupported for a kernel feature that has no
// Fact: one every kernel we test on has, so as root its absence fails the
// test. A feature some kernel lacks needs a Fact saying which (facts.go).
func SkipIfNotSupported(tb testing.TB, err error) {
	tb.Helper()
	RequireSupported(tb, Fact{name: "a kernel feature"}, err)
}

// Release is the running kernel's release (uname -r).
func Release() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// Series is the running kernel's "major.minor" ("6.12").
func Series() string {
	r := Release()
	major, rest, _ := strings.Cut(r, ".")
	minor, _, _ := strings.Cut(rest, ".")
	minor, _, _ = strings.Cut(minor, "-")
	return major + "." + minor
}

// Modprobe loads kernel modules, ignoring failures (a module may be built
// in, or the kernel may have no module support): tests that need what a
// module brings check for it themselves.
func Modprobe(modules ...string) {
	for _, m := range modules {
		exec.Command("modprobe", m).Run()
	}
}

// Backends, as internal/loader names them.
const (
	Tracepoint    = "tracepoint"
	NetfilterLink = "netfilter-link"
	Fentry        = "fentry"
	Kprobe        = "kprobe"
	Inferred      = "inferred"
	None          = "" // not observable
)

// expected holds, per kernel series we test on, the backend that must show
// each hop kind with --backend auto, with the bridge, ip_vs, vxlan,
// ip_tables and nf_tables modules loaded: the QEMU matrix (Debian 5.10, 6.1, 6.12, vm/) and the
// development VM (6.18: kprobes not built in, fentry refused by lockdown,
// no IPVS). Facts in /work/shared/KERNEL-NOTES.md.
var expected = map[string]map[string]string{
	"5.10": hops(Fentry, Kprobe),
	"6.1":  hops(Fentry, Fentry),
	"6.12": hops(NetfilterLink, Fentry),
	"6.18": hops(NetfilterLink, None),
}

func hops(netfilter, funcs string) map[string]string {
	vxlan := funcs
	if funcs == None {
		vxlan = Inferred
	}
	return map[string]string{
		"rx": Tracepoint, "tx": Tracepoint, "drop": Tracepoint, "consume": Tracepoint,
		"netfilter": netfilter, "nat": netfilter, "table": funcs,
		"bridge": funcs, "ipvs": funcs, "ipvs-drop": funcs, "encap": vxlan, "decap": vxlan,
	}
}

// ExpectedBackends returns, for the running kernel, the backend expected
// per hop kind; ok is false on kernels not in the table.
func ExpectedBackends() (map[string]string, bool) {
	m, ok := expected[Series()]
	return m, ok
}

// RequireExpectedBackends returns ExpectedBackends or skips the test,
// saying which kernel has no expectations; under StrictEnv it fails it.
func RequireExpectedBackends(tb testing.TB) map[string]string {
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
