package filter

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/net/bpf"
)

func ret(v uint32) bpf.Instruction { return bpf.RetConstant{Val: v} }

// pkt20 is a 20-byte packet: bytes 0..19 hold 0x10..0x23.
func pkt20() []byte {
	b := make([]byte, 20)
	for i := range b {
		b[i] = byte(0x10 + i)
	}
	return b
}

// classCases are small programs, one or two per instruction class and
// corner, with the packets to run them on.
type classCase struct {
	name  string
	insns []bpf.Instruction
	pkts  [][]byte
}

var classCases = []classCase{
	{"ld imm, ret A", []bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegA, Val: 0xdeadbeef}, bpf.RetA{}}, nil},
	{"ret K", []bpf.Instruction{ret(7)}, nil},
	{"ret 0", []bpf.Instruction{ret(0)}, nil},
	{"ldx imm, txa", []bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegX, Val: 42}, bpf.TXA{}, bpf.RetA{}}, nil},
	{"tax", []bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegA, Val: 9}, bpf.TAX{}, bpf.LoadConstant{Dst: bpf.RegA, Val: 1}, bpf.TXA{}, bpf.RetA{}}, nil},
	{"A and X start at 0", []bpf.Instruction{bpf.ALUOpX{Op: bpf.ALUOpAdd}, bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 3}, bpf.RetA{}}, nil},
	{"ld W abs", []bpf.Instruction{bpf.LoadAbsolute{Off: 12, Size: 4}, bpf.RetA{}}, nil},
	{"ld H abs", []bpf.Instruction{bpf.LoadAbsolute{Off: 2, Size: 2}, bpf.RetA{}}, nil},
	{"ld B abs", []bpf.Instruction{bpf.LoadAbsolute{Off: 9, Size: 1}, bpf.RetA{}}, nil},
	{"ld abs last byte", []bpf.Instruction{bpf.LoadAbsolute{Off: 19, Size: 1}, bpf.RetA{}}, nil},
	{"ld abs out of packet", []bpf.Instruction{bpf.LoadAbsolute{Off: 18, Size: 4}, ret(1)}, nil},
	{"ld abs out of buffer", []bpf.Instruction{bpf.LoadAbsolute{Off: BufSize - 1, Size: 2}, ret(1)}, nil},
	{"ld abs huge offset", []bpf.Instruction{bpf.LoadAbsolute{Off: 0xfffffffe, Size: 4}, ret(1)}, nil},
	{"ldx msh", []bpf.Instruction{bpf.LoadMemShift{Off: 0}, bpf.TXA{}, bpf.RetA{}}, nil},
	{"ldx msh out of packet", []bpf.Instruction{bpf.LoadMemShift{Off: 20}, ret(1)}, nil},
	{"ld ind", []bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegX, Val: 4}, bpf.LoadIndirect{Off: 2, Size: 4}, bpf.RetA{}}, nil},
	{"ld ind H, B", []bpf.Instruction{bpf.LoadMemShift{Off: 18}, bpf.LoadIndirect{Off: 1, Size: 2}, bpf.TAX{}, bpf.LoadIndirect{Off: 0, Size: 1}, bpf.RetA{}}, nil},
	{"ld ind out of packet", []bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegX, Val: 17}, bpf.LoadIndirect{Off: 2, Size: 2}, ret(1)}, nil},
	{"ld ind X huge", []bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegX, Val: 0xfffffff0}, bpf.LoadIndirect{Off: 0x20, Size: 1}, ret(1)}, nil},
	{"ld ind off out of buffer", []bpf.Instruction{bpf.LoadIndirect{Off: BufSize, Size: 1}, ret(1)}, nil},
	{"ld len", []bpf.Instruction{bpf.LoadExtension{Num: bpf.ExtLen}, bpf.RetA{}}, nil},
	{"ldx len", []bpf.Instruction{bpf.RawInstruction{Op: 0x81}, bpf.TXA{}, bpf.RetA{}}, nil},
	{"st, ld mem", []bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegA, Val: 5}, bpf.StoreScratch{Src: bpf.RegA, N: 3}, bpf.LoadConstant{Dst: bpf.RegA, Val: 0}, bpf.LoadScratch{Dst: bpf.RegA, N: 3}, bpf.RetA{}}, nil},
	{"stx, ldx mem", []bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegX, Val: 6}, bpf.StoreScratch{Src: bpf.RegX, N: 15}, bpf.LoadConstant{Dst: bpf.RegX, Val: 0}, bpf.LoadScratch{Dst: bpf.RegX, N: 15}, bpf.TXA{}, bpf.RetA{}}, nil},
	{"ld mem unwritten", []bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegA, Val: 5}, bpf.LoadScratch{Dst: bpf.RegA, N: 0}, bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 1}, bpf.RetA{}}, nil},
	{"jeq K", []bpf.Instruction{bpf.LoadAbsolute{Off: 9, Size: 1}, bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x19, SkipTrue: 1}, ret(0), ret(1)}, nil},
	{"jeq K false", []bpf.Instruction{bpf.LoadAbsolute{Off: 9, Size: 1}, bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6, SkipTrue: 1}, ret(0), ret(1)}, nil},
	{"jne K", []bpf.Instruction{bpf.LoadAbsolute{Off: 9, Size: 1}, bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 6, SkipFalse: 1}, ret(2), ret(3)}, nil},
	{"jgt K unsigned", []bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegA, Val: 0x80000000}, bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: 1, SkipTrue: 1}, ret(0), ret(1)}, nil},
	{"jgt K large", []bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegA, Val: 0x80000001}, bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: 0x80000000, SkipTrue: 1}, ret(0), ret(1)}, nil},
	{"jge K equal", []bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegA, Val: 5}, bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: 5, SkipTrue: 1}, ret(0), ret(1)}, nil},
	{"jlt, jle K", []bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegA, Val: 5}, bpf.JumpIf{Cond: bpf.JumpLessThan, Val: 5, SkipTrue: 2}, bpf.JumpIf{Cond: bpf.JumpLessOrEqual, Val: 5, SkipTrue: 2}, ret(0), ret(1), ret(2)}, nil},
	{"jset K", []bpf.Instruction{bpf.LoadAbsolute{Off: 0, Size: 1}, bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x10, SkipTrue: 1, SkipFalse: 2}, ret(9), ret(1), ret(2)}, nil},
	{"jset K not set", []bpf.Instruction{bpf.LoadAbsolute{Off: 0, Size: 1}, bpf.JumpIf{Cond: bpf.JumpBitsNotSet, Val: 0x01, SkipTrue: 1}, ret(1), ret(2)}, nil},
	{"jeq X", []bpf.Instruction{bpf.LoadAbsolute{Off: 4, Size: 1}, bpf.TAX{}, bpf.LoadAbsolute{Off: 4, Size: 1}, bpf.JumpIfX{Cond: bpf.JumpEqual, SkipTrue: 1}, ret(0), ret(1)}, nil},
	{"jgt, jge, jset X", []bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegX, Val: 0xf0000000}, bpf.LoadConstant{Dst: bpf.RegA, Val: 0xf0000001},
		bpf.JumpIfX{Cond: bpf.JumpGreaterThan, SkipFalse: 3}, bpf.JumpIfX{Cond: bpf.JumpGreaterOrEqual, SkipFalse: 2}, bpf.JumpIfX{Cond: bpf.JumpBitsSet, SkipFalse: 1}, ret(1), ret(0)}, nil},
	{"jlt, jle, jne, jset-not X", []bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegX, Val: 3}, bpf.LoadConstant{Dst: bpf.RegA, Val: 4},
		bpf.JumpIfX{Cond: bpf.JumpLessThan, SkipTrue: 4}, bpf.JumpIfX{Cond: bpf.JumpLessOrEqual, SkipTrue: 3}, bpf.JumpIfX{Cond: bpf.JumpNotEqual, SkipFalse: 2},
		bpf.JumpIfX{Cond: bpf.JumpBitsNotSet, SkipTrue: 1}, ret(7), ret(8)}, nil},
	{"ja", []bpf.Instruction{bpf.Jump{Skip: 1}, ret(0), ret(5)}, nil},
	{"fall off the end", []bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegA, Val: 1}}, nil},
}

func init() {
	for _, op := range []bpf.ALUOp{bpf.ALUOpAdd, bpf.ALUOpSub, bpf.ALUOpMul, bpf.ALUOpDiv, bpf.ALUOpOr, bpf.ALUOpAnd,
		bpf.ALUOpShiftLeft, bpf.ALUOpShiftRight, bpf.ALUOpMod, bpf.ALUOpXor} {
		for _, k := range []uint32{1, 3, 31, 32, 33, 0x80000000, 0xffffffff} {
			classCases = append(classCases, classCase{fmt.Sprintf("alu %d K %#x", op, k), []bpf.Instruction{bpf.LoadAbsolute{Off: 0, Size: 4}, bpf.ALUOpConstant{Op: op, Val: k}, bpf.RetA{}}, nil})
		}
		for _, x := range []uint32{0, 1, 7, 31, 32, 200, 0x80000000, 0xffffffff} {
			classCases = append(classCases, classCase{fmt.Sprintf("alu %d X %#x", op, x), []bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegX, Val: x}, bpf.LoadAbsolute{Off: 0, Size: 4}, bpf.ALUOpX{Op: op}, bpf.ALUOpConstant{Op: bpf.ALUOpOr, Val: 1}, bpf.RetA{}}, nil})
		}
	}
}

// TestTranslateClasses runs every instruction class in the kernel and in
// x/net/bpf's VM on the same packets.
func TestTranslateClasses(t *testing.T) {
	pkts := [][]byte{pkt20(), pkt20()[:3], {}, make([]byte, BufSize), append(make([]byte, BufSize), 1, 2, 3)}
	for _, c := range classCases {
		t.Run(c.name, func(t *testing.T) {
			k := loadKernelFilter(t, c.insns)
			for _, p := range append(pkts, c.pkts...) {
				want := c.want(t, p)
				if got := k.run(t, p); got != want {
					t.Errorf("packet of %d bytes: kernel returned %#x, VM %#x", len(p), got, want)
				}
			}
		})
	}
}

// want is what the translation of c must return for p: the VM's verdict
// on what the kernel sees of p (BufSize bytes, len the whole length).
func (c classCase) want(tb testing.TB, p []byte) uint32 {
	switch c.name {
	case "ldx len":
		return uint32(len(p)) // the VM has no ldx len
	case "fall off the end":
		return 0 // the VM refuses a program without a return at its end
	}
	for _, ins := range c.insns {
		if _, ok := ins.(bpf.LoadExtension); ok {
			return vmRun(tb, c.insns, p)
		}
	}
	return vmRun(tb, c.insns, p[:min(len(p), BufSize)])
}

// TestTranslateNeg: the VM has no NEG.
func TestTranslateNeg(t *testing.T) {
	k := loadKernelFilter(t, []bpf.Instruction{bpf.LoadAbsolute{Off: 0, Size: 1}, bpf.NegateA{}, bpf.RetA{}})
	for _, b := range []byte{0, 1, 0x80, 0xff} {
		if got, want := k.run(t, []byte{b}), -uint32(b); got != want {
			t.Errorf("neg %#x: got %#x, want %#x", b, got, want)
		}
	}
}

// TestTranslateBeyondBuffer: a load past BufSize bytes does not match,
// even where the packet is longer.
func TestTranslateBeyondBuffer(t *testing.T) {
	long := make([]byte, 300)
	for _, insns := range [][]bpf.Instruction{
		{bpf.LoadAbsolute{Off: BufSize - 2, Size: 4}, ret(1)},
		{bpf.LoadConstant{Dst: bpf.RegX, Val: BufSize}, bpf.LoadIndirect{Off: 0, Size: 1}, ret(1)},
		{bpf.LoadMemShift{Off: BufSize}, ret(1)},
	} {
		k := loadKernelFilter(t, insns)
		if got := k.run(t, long); got != 0 {
			t.Errorf("%v: got %d, want 0", insns, got)
		}
	}
	k := loadKernelFilter(t, []bpf.Instruction{bpf.LoadAbsolute{Off: BufSize - 4, Size: 4}, ret(1)})
	if got := k.run(t, long); got != 1 {
		t.Errorf("last word of the buffer: got %d, want 1", got)
	}
}

func TestTranslateRefuses(t *testing.T) {
	for _, c := range []struct {
		insns []bpf.Instruction
		want  string
	}{
		{nil, "empty program"},
		{[]bpf.Instruction{bpf.Jump{Skip: 1}, ret(0)}, "past the end"},
		{[]bpf.Instruction{bpf.JumpIf{Cond: bpf.JumpEqual, SkipFalse: 3}, ret(0)}, "past the end"},
		{[]bpf.Instruction{bpf.LoadExtension{Num: bpf.ExtProto}, ret(0)}, "extension"},
		{[]bpf.Instruction{bpf.RawInstruction{Op: 0xff}, ret(0)}, "opcode"},
		{[]bpf.Instruction{bpf.LoadScratch{N: 16}, ret(0)}, "scratch"},
		{[]bpf.Instruction{bpf.LoadAbsolute{Off: 0, Size: 3}, ret(0)}, "load size"},
	} {
		_, err := Translate(c.insns)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one with %q", c.insns, err, c.want)
		}
	}
}

// packets are IPv4 packets of every shape the filters below look at:
// TCP, UDP (VXLAN among them), ICMP and other protocols, options,
// fragments, odd lengths, truncation.
func packets(n int) [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	addrs := []uint32{0x0a000001, 0x0a000002, 0x0af40105, 0xc0a80001, 0x08080808}
	ports := []uint16{22, 53, 80, 443, 1500, 8080, 8472, 65535}
	var out [][]byte
	for range n {
		ihl := 5
		if r.IntN(5) == 0 {
			ihl += r.IntN(4)
		}
		proto := []byte{6, 17, 1, 47, 132}[r.IntN(5)]
		l4 := 20
		if proto != 6 {
			l4 = 8
		}
		size := ihl*4 + l4 + r.IntN(120)
		p := make([]byte, size)
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		p[0] = 0x40 | byte(ihl)
		if r.IntN(20) == 0 {
			p[0] = 0x60 | byte(ihl)
		}
		binary.BigEndian.PutUint16(p[2:], uint16(size))
		if r.IntN(4) != 0 {
			binary.BigEndian.PutUint16(p[6:], 0)
		}
		p[9] = proto
		binary.BigEndian.PutUint32(p[12:], addrs[r.IntN(len(addrs))])
		binary.BigEndian.PutUint32(p[16:], addrs[r.IntN(len(addrs))])
		o := ihl * 4
		if proto == 6 || proto == 17 {
			binary.BigEndian.PutUint16(p[o:], ports[r.IntN(len(ports))])
			binary.BigEndian.PutUint16(p[o+2:], ports[r.IntN(len(ports))])
		}
		if proto == 1 {
			p[o] = []byte{0, 3, 8, 11}[r.IntN(4)]
		}
		if proto == 6 {
			p[o+12] = byte(5+r.IntN(3)) << 4
			p[o+13] = []byte{0x02, 0x12, 0x10, 0x18, 0x11, 0x04}[r.IntN(6)]
		}
		if r.IntN(10) == 0 {
			p = p[:r.IntN(len(p))]
		}
		if len(p) > BufSize {
			p = p[:BufSize]
		}
		out = append(out, p)
	}
	return out
}

// differentialExprs are compiled by libpcap: every shape of code it makes
// for the primitives operators use, and its arithmetic.
var differentialExprs = []string{
	"tcp port 80", "udp", "icmp", "ip", "host 10.0.0.1", "src host 10.244.1.5 and dst port 8080",
	"net 10.0.0.0/8", "dst net 192.168.0.0/16 or src net 8.8.8.0/24", "portrange 1000-9000",
	"tcp dst portrange 20-80", "not tcp", "tcp and (port 22 or port 443)", "ip proto 47", "udp port 8472",
	"tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn", "tcp[tcpflags] & tcp-fin != 0",
	"icmp[icmptype] == icmp-echo", "icmp[icmptype] != icmp-echo and icmp[icmptype] != icmp-echoreply",
	"len > 60", "greater 100", "less 50", "ip[6:2] & 0x1fff != 0", "ip[0] & 0xf != 5",
	"tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420", "udp[8] & 0x08 != 0",
	"ip[2:2] / 4 > 10", "ip[2:2] % 7 = 3", "ip[8] * 2 > 100", "ip[8] ^ 0xff = 0x7f",
	"ip[2:2] / ip[1] > 10", "ip[2:2] % ip[1] = 1", "ip[2:2] << ip[8] > 0", "ip[2:2] >> ip[1] > 3",
	"ip[2:2] - ip[8] > ip[1] * 2", "tcp[0:2] - tcp[2:2] > 100", "(ip[2:2] & 0xff) | ip[1] = ip[8]",
	"ip[2:2] + ip[8] * ip[1] / 3 > ip[9] - 2", "udp[4:2] - 8 = len - 28",
	"ether proto \\ip", "ip6", "ip and not ip6 and tcp", "ip multicast", "ip broadcast or ip multicast",
}

// TestDifferential compiles expressions with libpcap and checks that the
// translation in the kernel returns what x/net/bpf's VM returns, packet
// for packet.
func TestDifferential(t *testing.T) {
	tcpdumpRequired(t)
	pkts := packets(400)
	for _, expr := range differentialExprs {
		t.Run(expr, func(t *testing.T) {
			p, err := Compile(t.Context(), expr)
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			k := loadKernelFilter(t, p.Insns)
			matched := 0
			for i, pkt := range pkts {
				want := vmRun(t, p.Insns, pkt)
				got := k.run(t, pkt)
				if got != want {
					t.Fatalf("packet %d (% x): kernel %#x, VM %#x", i, pkt, got, want)
				}
				if got != 0 {
					matched++
				}
				if p.Match(pkt) != (want != 0) {
					t.Fatalf("packet %d: Match disagrees with the VM", i)
				}
			}
			t.Logf("%d of %d packets match", matched, len(pkts))
		})
	}
}
