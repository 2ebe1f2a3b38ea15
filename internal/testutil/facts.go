package testutil

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// StrictEnv names the environment variable that makes every unexpected
// skip fail: `make test` sets it (after scripts/install-deps.sh), and so
// does vm/gotest.sh in the QEMU guests.
const StrictEnv = "PATHTRACE_TEST_STRICT"

// A Fact is something a test needs of the machine: a kernel feature, a
// module, a device, or a tool. It knows how to probe itself (if testutil
// can) and on which of the kernels we test on its absence is expected, and
// why. Tests need facts through Require, RequireSupported or Missing, never
// through t.Skip (TestSkipsGoThroughTestutil).
type Fact struct {
	name   string            // as sentences say it
	absent map[string]string // kernel series -> why the fact is missing there
	probe  func() error      // nil: only the test can tell
	tool   string            // tools: the command
	pkg    string            // tools: the Debian package with it
}

func (f Fact) String() string { return f.name }

// The facts of the machines we test on: the QEMU matrix (Debian 5.10, 6.1,
// 6.12; vm/) and the host (Debian 12 on 6.18). Facts in
// /work/shared/KERNEL-NOTES.md.
var (
	// IPVS: the ip_vs module (topology's IPVS mode also needs dummy, for
	// kube-ipvs0).
	IPVS = Fact{name: "IPVS", probe: probeIPVS, absent: map[string]string{
		"6.18": "the 6.18 host kernel has neither ip_vs nor dummy built in and loads no modules",
	}}
	// IPIP: the ipip module's tunl0 (topology's Calico IPIP mode).
	IPIP = Fact{name: "IPIP (tunl0)", absent: map[string]string{
		"6.18": "the 6.18 host kernel has no ipip built in and loads no modules",
	}}
	// Geneve: geneve devices (topology's Geneve mode).
	Geneve = Fact{name: "Geneve", absent: map[string]string{
		"6.18": "the 6.18 host kernel has no geneve built in and loads no modules",
	}}
	// Kprobes: kprobes attach (features.Kprobe).
	Kprobes = Fact{name: "kprobes", absent: map[string]string{
		"6.18": "the 6.18 host kernel is built without CONFIG_KPROBES",
	}}
	// FentryPrograms: fentry programs load and attach (features.Fentry).
	FentryPrograms = Fact{name: "fentry programs", absent: map[string]string{
		"6.18":      "lockdown on the 6.18 host refuses them (EPERM)",
		"6.1-arm64": "arm64 attaches fentry to kernel functions from 6.4 on (ftrace direct calls)",
	}}
	// NetfilterLinks: BPF programs attach to netfilter hooks as links
	// (features.NetfilterLink).
	NetfilterLinks = Fact{name: "netfilter BPF links", absent: map[string]string{
		"5.10":      "netfilter links came in kernel 6.4",
		"6.1":       "netfilter links came in kernel 6.4",
		"6.1-arm64": "netfilter links came in kernel 6.4",
	}}
	// DirectSKBReads: a program with a typed skb reads its packet with
	// plain loads through skb->head (features.DirectSKBRead; the loader's
	// direct program forms).
	DirectSKBReads = Fact{name: "plain loads of a typed skb's packet", absent: map[string]string{
		"5.10":       "its verifier loads skb->head as a number",
		"6.1":        "its verifier loads skb->head as a number",
		"6.1-arm64":  "its verifier loads skb->head as a number",
		"6.12":       "its verifier loads skb->head as a number",
		"6.12-arm64": "its verifier loads skb->head as a number",
	}}
	// BTFTracepoints: BTF tracepoint programs (tp_btf) load and attach
	// (features.BTFTracepoint); every kernel we test on has them.
	BTFTracepoints = Fact{name: "BTF tracepoint programs"}
	// FuncHops: the hops read from kernel functions (bridge, IPVS, table
	// verdicts, VXLAN) have a backend, fentry or kprobes (the expected
	// backends say which kernel has one).
	FuncHops = Fact{name: "function hops (fentry or kprobes on the bridge, IPVS, table and VXLAN functions)", absent: map[string]string{
		"6.18": "the 6.18 host has no kprobes and its lockdown refuses fentry",
	}}
	// KernelBTF: /sys/kernel/btf/vmlinux.
	KernelBTF = Fact{name: "kernel BTF", probe: func() error {
		_, err := os.Stat("/sys/kernel/btf/vmlinux")
		return err
	}}
	// ModuleBTF: BTF for loadable modules (/sys/kernel/btf/<module>).
	ModuleBTF = Fact{name: "module BTF", absent: map[string]string{
		"5.10": "Debian's 5.10 kernel has no BTF for modules",
	}}
	// PTY: a pseudo-terminal to open (/dev/ptmx).
	PTY = Fact{name: "a pseudo-terminal", probe: func() error {
		f, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
		if err == nil {
			f.Close()
		}
		return err
	}}
	// ConntrackFillable: a network namespace's conntrack table can be
	// filled in a test (nf_conntrack_max at most 2^20 above the count).
	ConntrackFillable = Fact{name: "a conntrack table small enough to fill"}
	// NftBinary is nft, which the arm64 guests' userland does not have.
	NftBinary = arm64Absent("the nft command", "nft")

	// Tshark: Wireshark's command-line reader.
	Tshark = Tool("tshark")
	// TsharkInGuest is tshark where tests that also run in the QEMU guests
	// need it: the x86 guests see the host's root, tshark included; the
	// arm64 guests' userland (vm/userland.sh) has none.
	TsharkInGuest = arm64Absent("tshark", "tshark")
)

// tools are the commands tests run, with the Debian package that has each;
// scripts/install-deps.sh installs all of them.
var tools = map[string]string{
	"tshark":                   "tshark",
	"tcpdump":                  "tcpdump",
	"iptables":                 "iptables",
	"iptables-legacy":          "iptables",
	"iptables-legacy-restore":  "iptables",
	"ip6tables-legacy-restore": "iptables",
	"ip":                       "iproute2",
	"sysctl":                   "procps",
	"chromium":                 "chromium",
}

// arm64Absent is the fact that command is installed, known absent in the
// arm64 guests, whose userland is Debian's few packages (vm/userland.sh).
func arm64Absent(name, command string) Fact {
	why := "the arm64 guests' userland has no " + command
	return Fact{name: name, probe: func() error {
		_, err := exec.LookPath(command)
		return err
	}, absent: map[string]string{"6.1-arm64": why, "6.12-arm64": why}}
}

// Tool is the fact that command is installed.
func Tool(command string) Fact {
	return Fact{name: command, tool: command, pkg: tools[command], probe: func() error {
		_, err := exec.LookPath(command)
		return err
	}}
}

// probeIPVS loads ip_vs where the kernel can, and looks for its /proc file.
func probeIPVS() error {
	Modprobe("ip_vs")
	_, err := os.Stat("/proc/net/ip_vs")
	return err
}

// Require probes each fact and ends the test, skipping or failing it (see
// Missing), at the first one missing.
func Require(tb testing.TB, facts ...Fact) {
	tb.Helper()
	for _, f := range facts {
		if f.probe == nil {
			tb.Fatalf("testutil: %s has no probe of its own: use RequireSupported or Missing", f)
		}
		if err := f.probe(); err != nil {
			Missing(tb, f, err)
		}
	}
}

// RequireSupported takes the result of a probe the test ran (internal/features):
// nil, f is there; an error wrapping ebpf.ErrNotSupported, f is missing
// (see Missing); any other error fails the test.
func RequireSupported(tb testing.TB, f Fact, err error) {
	tb.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		Missing(tb, f, err)
	}
	tb.Fatalf("probe %s: %v", f, err)
}

// Missing ends a test that found f missing (why says how): it skips,
// saying why, where the absence is expected, and fails where it is not
// (see verdict).
func Missing(tb testing.TB, f Fact, why error) {
	tb.Helper()
	msg, fail := verdict(f, why, here())
	if fail {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

// machine is what verdict needs to know of where the test runs.
type machine struct {
	release, series string
	known           bool // the series is in the table (ExpectedBackends)
	root            bool
	strict          bool // StrictEnv=1
}

func here() machine {
	_, known := ExpectedBackends()
	return machine{release: Release(), series: Series(), known: known,
		root: os.Geteuid() == 0, strict: os.Getenv(StrictEnv) == "1"}
}

// verdict says what a test does without f, and why:
//   - a tool: fails under StrictEnv (`make test` installs every tool
//     first), skips elsewhere;
//   - a kernel or machine fact missing where the facts expect it: skips;
//   - missing elsewhere on a kernel series in the table: fails as root or
//     under StrictEnv, skips otherwise;
//   - on a kernel series outside the table: fails under StrictEnv, skips
//     otherwise.
func verdict(f Fact, why error, m machine) (msg string, fail bool) {
	if f.tool != "" {
		how := "scripts/install-deps.sh does not install it (add it there and to testutil's tools)"
		if f.pkg != "" {
			how = fmt.Sprintf("scripts/install-deps.sh installs it (Debian package %s)", f.pkg)
		}
		if m.strict {
			return fmt.Sprintf("%s is not installed: %v; but %s=1 says the tools are: %s", f, why, StrictEnv, how), true
		}
		return fmt.Sprintf("%s is not installed: %v; %s", f, why, how), false
	}
	missing := fmt.Sprintf("%s missing on kernel %s: %v", f, m.release, why)
	if reason, ok := f.absent[m.series]; ok {
		return fmt.Sprintf("%s; as expected on %s: %s", missing, m.series, reason), false
	}
	if !m.known {
		msg = fmt.Sprintf("%s; testutil knows nothing of kernel series %s (it knows %s)", missing, m.series, strings.Join(knownSeries(), ", "))
		if m.strict {
			return msg + ": add its facts and expected backends", true
		}
		return msg + fmt.Sprintf(": under %s=1 this fails", StrictEnv), false
	}
	where := "nowhere"
	if len(f.absent) > 0 {
		where = "only on " + strings.Join(slices.Sorted(maps.Keys(f.absent)), ", ")
	}
	msg = fmt.Sprintf("%s; but expected on %s (testutil's facts list it missing %s)", missing, m.series, where)
	if m.root || m.strict {
		return msg, true
	}
	return msg + ": as root this fails", false
}

// knownSeries lists the kernel series in the table.
func knownSeries() []string {
	return slices.Sorted(maps.Keys(expected))
}

// SkipWhereAbsent skips the test, saying why, on the kernels that list f
// absent; elsewhere it returns. For facts only the test itself shows.
func SkipWhereAbsent(tb testing.TB, f Fact) {
	tb.Helper()
	if _, ok := f.absent[here().series]; ok {
		Missing(tb, f, errors.New("known not to hold there"))
	}
}
