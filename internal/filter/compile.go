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

// Program is a compiled filter expression: classic BPF over an IPv4 or
// IPv6 packet, from its IP header on (libpcap's raw IP link type).
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

// Match runs the program on pkt, an IP packet from its header on, as
// the kernel does (see Translate): pkt is what the kernel could read of
// it, length its IP length. It reports whether pkt matches.
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

// Hosts is the program of "host A or host B ...", IPv4 and IPv6
// addresses, as libpcap compiles it for the raw IP link type (the version
// nibble tells the family), without libpcap.
func Hosts(addrs []netip.Addr) (*Program, error) {
	if len(addrs) == 0 || len(addrs) > 100 {
		return nil, fmt.Errorf("a host filter takes 1 to 100 addresses, got %d", len(addrs))
	}
	var words []string
	var v4, v6 []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if !a.IsValid() {
			return nil, fmt.Errorf("a host filter takes IP addresses, got %s", a)
		}
		words = append(words, "host "+a.String())
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	// A test of a word that matched goes on to the next word, or where it
	// was an address's last to "ja accept"; one that did not skips the
	// address's other tests. The long jumps (to accept, to reject) are
	// unconditional ones, resolved at the end: a conditional jump takes
	// only 255 instructions.
	var h hostAsm
	h.add(bpf.LoadAbsolute{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0})
	for _, fam := range []struct {
		version    uint32
		addrs      []netip.Addr
		src, words uint32 // offset of the source address; words of an address
	}{{0x40, v4, 12, 1}, {0x60, v6, 8, 4}} {
		if len(fam.addrs) == 0 {
			continue
		}
		// Not this version: past this family's tests.
		h.add(bpf.JumpIf{Cond: bpf.JumpEqual, Val: fam.version, SkipTrue: 1})
		next := h.jump()
		for _, off := range []uint32{fam.src, fam.src + 4*fam.words} {
			for _, a := range fam.addrs {
				b := a.AsSlice()
				for w := range fam.words {
					v := uint32(b[4*w])<<24 | uint32(b[4*w+1])<<16 | uint32(b[4*w+2])<<8 | uint32(b[4*w+3])
					left := fam.words - 1 - w // words after this one
					h.add(bpf.LoadAbsolute{Off: off + 4*w, Size: 4},
						bpf.JumpIf{Cond: bpf.JumpEqual, Val: v, SkipFalse: uint8(2*left + 1)})
				}
				h.accepts = append(h.accepts, h.jump())
			}
		}
		// This family's packet matched no address; the version test of
		// the next family reloads nothing, so reload the version.
		h.rejects = append(h.rejects, h.jump())
		h.target(next)
		h.add(bpf.LoadAbsolute{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0})
	}
	reject := len(h.insns)
	h.add(bpf.RetConstant{Val: 0}, bpf.RetConstant{Val: 262144})
	for _, j := range h.rejects {
		h.insns[j] = bpf.Jump{Skip: uint32(reject - j - 1)}
	}
	for _, j := range h.accepts {
		h.insns[j] = bpf.Jump{Skip: uint32(reject + 1 - j - 1)}
	}
	raw := make([]bpf.RawInstruction, len(h.insns))
	for i, ins := range h.insns {
		r, err := ins.Assemble()
		if err != nil {
			return nil, fmt.Errorf("host filter: %w", err)
		}
		raw[i] = r
	}
	return NewProgram(strings.Join(words, " or "), raw)
}

// hostAsm assembles Hosts' program: its instructions, and the places of
// the unconditional jumps to resolve.
type hostAsm struct {
	insns            []bpf.Instruction
	accepts, rejects []int
}

func (h *hostAsm) add(insns ...bpf.Instruction) { h.insns = append(h.insns, insns...) }

// jump adds an unconditional jump to resolve, and returns its place.
func (h *hostAsm) jump() int {
	h.insns = append(h.insns, bpf.Jump{})
	return len(h.insns) - 1
}

// target resolves the jump at j to the next instruction added.
func (h *hostAsm) target(j int) { h.insns[j] = bpf.Jump{Skip: uint32(len(h.insns) - j - 1)} }
