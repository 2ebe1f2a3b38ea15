package filter

import (
	"errors"
	"net/netip"
	"os"
	"slices"
	"testing"

	"golang.org/x/net/bpf"

	"github.com/pathtrace/pathtrace/internal/testutil"
)

func tcpdumpRequired(tb testing.TB) {
	tb.Helper()
	testutil.Require(tb, testutil.Tool("tcpdump"))
}

func TestParseDDD(t *testing.T) {
	got, err := parseDDD("3\n48 0 0 9\n21 0 1 6\n6 0 0 262144\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []bpf.RawInstruction{{Op: 48, K: 9}, {Op: 21, Jf: 1, K: 6}, {Op: 6, K: 262144}}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("instruction %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"", "2\n6 0 0 1\n", "1\n6 0 0\n", "1\n6 0 300 1\n", "x\n"} {
		if _, err := parseDDD(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestCompileRefuses(t *testing.T) {
	tcpdumpRequired(t)
	for expr, reason := range map[string]string{
		"port 80 and":     "syntax error",
		"tcp port http2x": "unknown port 'http2x'",
		"frobnicate":      "syntax error",
	} {
		_, err := Compile(t.Context(), expr)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%q: error %v, want a SyntaxError", expr, err)
			continue
		}
		if se.Reason != reason {
			t.Errorf("%q: reason %q, want %q", expr, se.Reason, reason)
		}
	}
}

func TestCompileNoTcpdump(t *testing.T) {
	old := tcpdumpPath
	tcpdumpPath = "/nonexistent/tcpdump"
	defer func() { tcpdumpPath = old }()
	if _, err := Compile(t.Context(), "tcp"); !errors.Is(err, ErrNoCompiler) {
		t.Errorf("error %v, want ErrNoCompiler", err)
	}
}

func TestCompileRawIP(t *testing.T) {
	tcpdumpRequired(t)
	p, err := Compile(t.Context(), "tcp port 80")
	if err != nil {
		t.Fatal(err)
	}
	// Raw IP: the version nibble at offset 0, no Ethernet header.
	if l, ok := p.Insns[0].(bpf.LoadAbsolute); !ok || l.Off != 0 {
		t.Errorf("first instruction %v, want a load of byte 0", p.Insns[0])
	}
	syn := []byte{0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x30, 0x39, 0, 80}
	if !p.Match(append(syn, make([]byte, 16)...)) {
		t.Error("a TCP packet to port 80 does not match")
	}
	syn[23] = 81
	if p.Match(append(syn, make([]byte, 16)...)) {
		t.Error("a TCP packet to port 81 matches")
	}
}

// TestHosts checks the host filter made without libpcap against libpcap's
// own compilation of the same expression, on IPv4 and IPv6 packets from,
// to, between and around the addresses, for lists of either family, both,
// and a hundred (whose jumps go past a conditional jump's 255); that its
// Code round-trips and that it translates.
func TestHosts(t *testing.T) {
	tcpdumpRequired(t)
	mk := netip.MustParseAddr
	v4 := []netip.Addr{mk("10.244.1.5"), mk("10.96.0.10"), mk("10.244.2.7")}
	v6 := []netip.Addr{mk("fd77:1::5"), mk("fd96::10"), mk("fd77:2::7")}
	var many []netip.Addr
	for i := range 100 {
		if i%2 == 0 {
			many = append(many, netip.AddrFrom4([4]byte{10, 1, byte(i), 1}))
		} else {
			many = append(many, netip.AddrFrom16([16]byte{0xfd, 0, 15: byte(i)}))
		}
	}
	others := []netip.Addr{mk("10.244.1.6"), mk("192.168.50.11"), mk("fd77:1::6"), mk("fd77:2::5"), mk("fe80::10")}
	packet := func(src, dst netip.Addr) []byte {
		if src.Is4() {
			s, d := src.As4(), dst.As4()
			pkt := []byte{0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0}
			return append(append(append(pkt, s[:]...), d[:]...), make([]byte, 20)...)
		}
		s, d := src.As16(), dst.As16()
		pkt := []byte{0x60, 0, 0, 0, 0, 20, 6, 64}
		return append(append(append(pkt, s[:]...), d[:]...), make([]byte, 20)...)
	}
	for _, addrs := range [][]netip.Addr{v4[:1], v4[:2], v4, v6[:1], v6, {v4[0], v6[0]}, append(slices.Clone(v4), v6...), many} {
		mine, err := Hosts(addrs)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := Compile(t.Context(), mine.Expr)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseCode(mine.Expr, mine.Code())
		if err != nil {
			t.Fatal(err)
		}
		var k *kernelFilter // the translation, run in the kernel where root
		if os.Geteuid() == 0 {
			k = loadKernelFilter(t, mine.Insns)
		} else if _, err := Translate(mine.Insns); err != nil {
			t.Errorf("%d addresses: %v", len(addrs), err)
		}
		name := mine.Expr
		if len(name) > 80 {
			name = name[:80] + "..."
		}
		matched, tried := 0, 0
		all := append(slices.Clone(addrs), others...)
		for _, src := range all {
			for _, dst := range all {
				if src.Is4() != dst.Is4() {
					continue
				}
				pkt := packet(src, dst)
				want := theirs.Match(pkt)
				if got := mine.Match(pkt); got != want {
					t.Errorf("%q on %s → %s: %v, libpcap's %v", name, src, dst, got, want)
				}
				if back.Match(pkt) != want {
					t.Errorf("%q from its code on %s → %s: %v, want %v", name, src, dst, !want, want)
				}
				if k != nil && (k.run(t, pkt) != 0) != want {
					t.Errorf("%q in the kernel on %s → %s: %v, want %v", name, src, dst, !want, want)
				}
				tried++
				if want {
					matched++
				}
			}
		}
		if matched == 0 || matched == tried {
			t.Errorf("%q matched %d of %d packets", name, matched, tried)
		}
		for _, pkt := range [][]byte{{0x45, 0, 0, 20}, {0x60, 0, 0, 0}, append([]byte{0x50}, make([]byte, 59)...)} {
			if mine.Match(pkt) || theirs.Match(pkt) {
				t.Errorf("%q matches a short or unknown packet % x", name, pkt[:4])
			}
		}
	}
	if _, err := Hosts([]netip.Addr{{}}); err == nil {
		t.Error("Hosts takes an invalid address")
	}
}
