package filter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
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

// Code is p's classic BPF in tcpdump -ddd's numbers, instructions
// separated by commas: a filter compiled where tcpdump is, for a pathtrace
// where it is not (ParseCode).
func (p *Program) Code() string {
	parts := []string{strconv.Itoa(len(p.Insns))}
	for _, ins := range p.Insns {
		r, err := ins.Assemble()
		if err != nil {
			return ""
		}
		parts = append(parts, fmt.Sprintf("%d %d %d %d", r.Op, r.Jt, r.Jf, r.K))
	}
	return strings.Join(parts, ",")
}

// ParseCode makes the Program of expr from its Code.
func ParseCode(expr, code string) (*Program, error) {
	raw, err := parseDDD(strings.ReplaceAll(code, ",", "\n"))
	if err != nil {
		return nil, fmt.Errorf("filter code: %w", err)
	}
	return NewProgram(expr, raw)
}

// Hosts is the program of "host A or host B ...", IPv4 addresses only,
// as libpcap compiles it for the raw IP link type, without libpcap.
func Hosts(addrs []netip.Addr) (*Program, error) {
	if len(addrs) == 0 || len(addrs) > 100 {
		return nil, fmt.Errorf("a host filter takes 1 to 100 addresses, got %d", len(addrs))
	}
	var words []string
	for _, a := range addrs {
		if !a.Is4() {
			return nil, fmt.Errorf("a host filter takes IPv4 addresses, got %s", a)
		}
		words = append(words, "host "+a.String())
	}
	// ldb [0]; and #0xf0; jeq #0x40 (IPv4, else reject); then each address
	// against the source (ld [12]) and the destination (ld [16]).
	n := len(addrs)
	accept := uint32(262144)
	insns := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 0, Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x40, SkipFalse: uint8(2*n + 2)},
	}
	for _, off := range []uint32{12, 16} {
		insns = append(insns, bpf.LoadAbsolute{Off: off, Size: 4})
		for i, a := range addrs {
			b := a.As4()
			// From test i of this load, the accept is after the rest of
			// this load's tests, and for the source the destination's
			// load and tests.
			toAccept := n - 1 - i
			if off == 12 {
				toAccept += 1 + n
			}
			insns = append(insns, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), SkipTrue: uint8(toAccept + 1)})
		}
	}
	insns = append(insns, bpf.RetConstant{Val: 0}, bpf.RetConstant{Val: accept})
	raw := make([]bpf.RawInstruction, len(insns))
	for i, ins := range insns {
		r, err := ins.Assemble()
		if err != nil {
			return nil, fmt.Errorf("host filter: %w", err)
		}
		raw[i] = r
	}
	return NewProgram(strings.Join(words, " or "), raw)
}
