package filter

import (
	"errors"
	"net/netip"
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
// own compilation of the same expression, on packets from, to, between and
// around the addresses (and an IPv6 packet), and that its Code round-trips.
func TestHosts(t *testing.T) {
	tcpdumpRequired(t)
	addrs := []netip.Addr{netip.MustParseAddr("10.244.1.5"), netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("10.244.2.7")}
	for n := 1; n <= len(addrs); n++ {
		mine, err := Hosts(addrs[:n])
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
		others := []netip.Addr{netip.MustParseAddr("10.244.1.6"), netip.MustParseAddr("192.168.50.11")}
		matched := 0
		for _, src := range append(slices.Clone(addrs), others...) {
			for _, dst := range append(slices.Clone(addrs), others...) {
				s, d := src.As4(), dst.As4()
				pkt := []byte{0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0}
				pkt = append(append(append(pkt, s[:]...), d[:]...), make([]byte, 20)...)
				want := theirs.Match(pkt)
				if got := mine.Match(pkt); got != want {
					t.Errorf("%q on %s → %s: %v, libpcap's %v", mine.Expr, src, dst, got, want)
				}
				if back.Match(pkt) != want {
					t.Errorf("%q from its code on %s → %s: %v, want %v", mine.Expr, src, dst, !want, want)
				}
				if want {
					matched++
				}
			}
		}
		if matched == 0 {
			t.Errorf("%q matched no packet", mine.Expr)
		}
		v6 := append([]byte{0x60}, make([]byte, 59)...)
		if mine.Match(v6) || theirs.Match(v6) {
			t.Errorf("%q matches an IPv6 packet", mine.Expr)
		}
	}
	if _, err := Hosts([]netip.Addr{netip.MustParseAddr("fd00::1")}); err == nil {
		t.Error("Hosts takes an IPv6 address")
	}
}
