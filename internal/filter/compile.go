package filter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/bpf"
)

// ErrNoCompiler says that tcpdump, whose libpcap compiles filter
// expressions, is not installed.
var ErrNoCompiler = errors.New("filter expressions need tcpdump (libpcap's compiler) installed")

// SyntaxError is an expression libpcap refused, with libpcap's reason.
type SyntaxError struct {
	Expr   string
	Reason string // "syntax error", "unknown host 'foo'"...
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("filter expression %q: %s", e.Expr, e.Reason)
}

// Program is a compiled filter expression: classic BPF over an IPv4
// packet, from its IP header on (libpcap's raw IP link type).
type Program struct {
	Expr  string
	Insns []bpf.Instruction
	vm    *bpf.VM
}

// tcpdumpPath is the compiler; tests may point it elsewhere.
var tcpdumpPath = "tcpdump"

// Compile compiles expr with libpcap, as tcpdump -y RAW -ddd does: the
// full pcap-filter(7) language, with tcpdump's own semantics. An
// expression libpcap refuses is a *SyntaxError; without tcpdump,
// ErrNoCompiler.
func Compile(ctx context.Context, expr string) (*Program, error) {
	path, err := exec.LookPath(tcpdumpPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoCompiler, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, "-y", "RAW", "-ddd", "--", expr)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && ctx.Err() == nil {
			return nil, &SyntaxError{Expr: expr, Reason: tcpdumpReason(stderr.String())}
		}
		return nil, fmt.Errorf("run %s: %w", path, err)
	}
	raw, err := parseDDD(stdout.String())
	if err != nil {
		return nil, fmt.Errorf("read %s -ddd output: %w", path, err)
	}
	return NewProgram(expr, raw)
}

// NewProgram makes a Program of classic BPF instructions.
func NewProgram(expr string, raw []bpf.RawInstruction) (*Program, error) {
	insns := make([]bpf.Instruction, len(raw))
	for i, r := range raw {
		insns[i] = r.Disassemble()
	}
	p := &Program{Expr: expr, Insns: insns}
	// The VM refuses what it cannot run (NEG, extensions but len): Match
	// then answers through the translation's semantics only in the kernel.
	p.vm, _ = bpf.NewVM(insns)
	return p, nil
}

// tcpdumpReason is the last line of tcpdump's complaint, without the
// "tcpdump: " and "can't parse filter expression: " prefixes.
func tcpdumpReason(stderr string) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	s := strings.TrimSpace(lines[len(lines)-1])
	s = strings.TrimPrefix(s, "tcpdump: ")
	s = strings.TrimPrefix(s, "can't parse filter expression: ")
	if s == "" {
		s = "refused by libpcap"
	}
	return s
}

// parseDDD reads tcpdump -ddd output: a count, then "code jt jf k" per
// line.
func parseDDD(out string) ([]bpf.RawInstruction, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	n, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil {
		return nil, fmt.Errorf("instruction count %q: %w", lines[0], err)
	}
	if n != len(lines)-1 || n == 0 {
		return nil, fmt.Errorf("%d instructions announced, %d given", n, len(lines)-1)
	}
	raw := make([]bpf.RawInstruction, n)
	for i, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 4 {
			return nil, fmt.Errorf("line %q: want 4 fields", l)
		}
		var v [4]uint64
		for j, s := range f {
			bits := []int{16, 8, 8, 32}[j]
			if v[j], err = strconv.ParseUint(s, 10, bits); err != nil {
				return nil, fmt.Errorf("line %q: %w", l, err)
			}
		}
		raw[i] = bpf.RawInstruction{Op: uint16(v[0]), Jt: uint8(v[1]), Jf: uint8(v[2]), K: uint32(v[3])}
	}
	return raw, nil
}

// Match runs the program on pkt, an IPv4 packet from its header on, as
// the kernel does (see Translate): pkt is what the kernel could read of
// it, length its IP total length. It reports whether pkt matches.
func (p *Program) Match(pkt []byte) bool {
	if p.vm == nil {
		return false
	}
	n, err := p.vm.Run(pkt)
	return err == nil && n != 0
}
