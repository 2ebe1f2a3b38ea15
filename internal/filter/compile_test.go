package filter

import (
	"errors"
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
