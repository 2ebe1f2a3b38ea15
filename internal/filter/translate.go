package filter

import (
	"fmt"
	"math"

	"github.com/cilium/ebpf/asm"
	"golang.org/x/net/bpf"
)

// BufSize is how many bytes of a packet the kernel gives the filter
// (PT_FILTER_BYTES in bpf/include/common.h): a load beyond them does not
// match, as a load beyond the packet does not.
const BufSize = 128

// The layout of the filter's buffer, struct pt_filter_buf of
// bpf/include/common.h: the packet's first BufSize bytes, classic BPF's
// scratch memory, the packet's length (cBPF's len).
const (
	memOff  = BufSize
	lenOff  = memOff + 16*4
	BufSpan = lenOff + 8 // the struct's size
)

// The translated function's calling convention, that of the pt_filter stub
// in bpf/include/common.h: R1 points to the buffer (a map value), R2 says
// how many of its BufSize bytes are the packet's. R0 returns cBPF's return
// value: 0, no match. The code uses R0 to R5 and no stack, so that Inline
// can put it in place of a call: it clobbers only what a call may.
const (
	regPkt  = asm.R1
	regCap  = asm.R2
	regTmp  = asm.R3
	regA    = asm.R4
	regX    = asm.R5
	regTmp2 = asm.R0
)

// fail is the jump target of the closing "return 0" block.
const fail = -1

type translator struct {
	bufSize int
	out     asm.Instructions
	start   []int // eBPF index of each cBPF instruction
	fixups  []fixup
}

// fixup is a jump of out to patch: to the first eBPF instruction of cBPF
// instruction target, or to the failing return (fail).
type fixup struct {
	at     int
	target int
}

// Translate makes insns, a classic BPF program over an IP packet, an
// eBPF function with the calling convention of the pt_filter stub. It
// keeps classic BPF's semantics as golang.org/x/net/bpf's VM runs them: A
// and X start at 0, scratch memory reads 0 until written, values are 32
// bits, a load beyond the packet (or beyond BufSize bytes of it), a
// division or modulo by zero and running off the end return 0 (no match),
// a shift by 32 or more gives 0. Extensions other than len are refused.
func Translate(insns []bpf.Instruction) (asm.Instructions, error) {
	return translate(insns, BufSize)
}

func translate(insns []bpf.Instruction, bufSize int) (asm.Instructions, error) {
	if len(insns) == 0 {
		return nil, fmt.Errorf("translate: empty program")
	}
	t := &translator{bufSize: bufSize, start: make([]int, len(insns))}
	live, fallsOff, err := reachable(insns, bufSize)
	if err != nil {
		return nil, fmt.Errorf("translate: %w", err)
	}
	t.prologue(insns)
	for i, ins := range insns {
		t.start[i] = len(t.out)
		// The verifier refuses unreachable code.
		if !live[i] {
			continue
		}
		if err := t.one(i, ins, len(insns)); err != nil {
			return nil, fmt.Errorf("translate instruction %d (%v): %w", i, ins, err)
		}
	}
	failAt := len(t.out)
	usesFail := fallsOff
	for _, f := range t.fixups {
		usesFail = usesFail || f.target == fail
	}
	if usesFail {
		t.emit(asm.Mov.Imm32(asm.R0, 0), asm.Return())
	}
	for _, f := range t.fixups {
		to := failAt
		if f.target != fail {
			to = t.start[f.target]
		}
		off := to - f.at - 1
		if off < 0 || off > math.MaxInt16 {
			return nil, fmt.Errorf("translate: jump of %d instructions out of range", off)
		}
		t.out[f.at].Offset = int16(off)
	}
	return t.out, nil
}

// reachable says which instructions of insns run for some packet, and
// whether one of them runs off the end.
func reachable(insns []bpf.Instruction, bufSize int) (live []bool, fallsOff bool, err error) {
	n := len(insns)
	live = make([]bool, n)
	todo := []int{0}
	for len(todo) > 0 {
		i := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if i == n {
			fallsOff = true
			continue
		}
		if live[i] {
			continue
		}
		live[i] = true
		var next []int
		if alwaysFails(insns[i], bufSize) {
			continue
		}
		switch ins := insns[i].(type) {
		case bpf.RetA, bpf.RetConstant:
		case bpf.Jump:
			next = []int{i + 1 + jaDistance(ins)}
		case bpf.JumpIf:
			next = []int{i + 1 + int(ins.SkipTrue), i + 1 + int(ins.SkipFalse)}
		case bpf.JumpIfX:
			next = []int{i + 1 + int(ins.SkipTrue), i + 1 + int(ins.SkipFalse)}
		default:
			next = []int{i + 1}
		}
		for _, j := range next {
			if j > n || (j == n && j != i+1) {
				return nil, false, fmt.Errorf("instruction %d: jump to %d past the end (%d instructions)", i, j, n)
			}
			todo = append(todo, j)
		}
	}
	return live, fallsOff, nil
}

// alwaysFails says whether ins returns 0 whatever the packet: a load
// beyond the buffer, a division by a constant 0.
func alwaysFails(ins bpf.Instruction, bufSize int) bool {
	switch ins := ins.(type) {
	case bpf.LoadAbsolute:
		return uint64(ins.Off)+uint64(ins.Size) > uint64(bufSize)
	case bpf.LoadIndirect:
		return uint64(ins.Off)+uint64(ins.Size) > uint64(bufSize)
	case bpf.LoadMemShift:
		return uint64(ins.Off)+1 > uint64(bufSize)
	case bpf.ALUOpConstant:
		return (ins.Op == bpf.ALUOpDiv || ins.Op == bpf.ALUOpMod) && ins.Val == 0
	}
	return false
}

// prologue zeroes A, X and the scratch words the program reads (the
// buffer keeps the last packet's).
func (t *translator) prologue(insns []bpf.Instruction) {
	t.emit(asm.Mov.Imm32(regA, 0), asm.Mov.Imm32(regX, 0))
	var read [16]bool
	for _, ins := range insns {
		if l, ok := ins.(bpf.LoadScratch); ok && l.N >= 0 && l.N < 16 {
			read[l.N] = true
		}
	}
	for n, r := range read {
		if r {
			t.emit(asm.StoreImm(regPkt, scratchOff(n), 0, asm.Word))
		}
	}
}

func scratchOff(n int) int16 { return int16(memOff + 4*n) }

func (t *translator) emit(ins ...asm.Instruction) { t.out = append(t.out, ins...) }

// jump emits ins, a jump whose offset is patched to target.
func (t *translator) jump(ins asm.Instruction, target int) {
	t.fixups = append(t.fixups, fixup{at: len(t.out), target: target})
	t.emit(ins.WithReference(""))
}

func (t *translator) one(i int, ins bpf.Instruction, n int) error {
	if r, ok := ins.(bpf.RawInstruction); ok {
		return t.raw(r)
	}
	if alwaysFails(ins, t.bufSize) {
		t.jump(asm.Ja.Label(""), fail)
		return nil
	}
	switch ins := ins.(type) {
	case bpf.LoadConstant:
		t.emit(asm.Mov.Imm32(reg(ins.Dst), int32(ins.Val)))
	case bpf.LoadScratch:
		if ins.N < 0 || ins.N >= 16 {
			return fmt.Errorf("scratch word %d out of range", ins.N)
		}
		t.emit(asm.LoadMem(reg(ins.Dst), regPkt, scratchOff(ins.N), asm.Word))
	case bpf.StoreScratch:
		if ins.N < 0 || ins.N >= 16 {
			return fmt.Errorf("scratch word %d out of range", ins.N)
		}
		t.emit(asm.StoreMem(regPkt, scratchOff(ins.N), reg(ins.Src), asm.Word))
	case bpf.LoadAbsolute:
		return t.loadAbs(regA, ins.Off, ins.Size)
	case bpf.LoadIndirect:
		return t.loadInd(ins.Off, ins.Size)
	case bpf.LoadMemShift:
		if err := t.loadAbs(regX, ins.Off, 1); err != nil {
			return err
		}
		t.emit(asm.And.Imm32(regX, 0xf), asm.LSh.Imm32(regX, 2))
	case bpf.LoadExtension:
		if ins.Num != bpf.ExtLen {
			return fmt.Errorf("extension %d not supported", ins.Num)
		}
		t.emit(asm.LoadMem(regA, regPkt, lenOff, asm.Word))
	case bpf.ALUOpConstant:
		return t.aluK(ins.Op, ins.Val)
	case bpf.ALUOpX:
		return t.aluX(ins.Op)
	case bpf.NegateA:
		t.emit(asm.Neg.Imm32(regA, 0))
	case bpf.Jump:
		target, err := jumpTarget(i, jaDistance(ins), n)
		if err != nil {
			return err
		}
		t.jump(asm.Ja.Label(""), target)
	case bpf.JumpIf:
		return t.cond(i, n, ins.Cond, asm.ImmSource, ins.Val, ins.SkipTrue, ins.SkipFalse)
	case bpf.JumpIfX:
		return t.cond(i, n, ins.Cond, asm.RegSource, 0, ins.SkipTrue, ins.SkipFalse)
	case bpf.RetA:
		t.emit(asm.Mov.Reg32(asm.R0, regA), asm.Return())
	case bpf.RetConstant:
		t.emit(asm.Mov.Imm32(asm.R0, int32(ins.Val)), asm.Return())
	case bpf.TAX:
		t.emit(asm.Mov.Reg(regX, regA))
	case bpf.TXA:
		t.emit(asm.Mov.Reg(regA, regX))
	default:
		return fmt.Errorf("instruction %T not supported", ins)
	}
	return nil
}

// raw handles what x/net/bpf does not disassemble: ldx len.
func (t *translator) raw(r bpf.RawInstruction) error {
	const ldxLen = 0x01 | 0x00 | 0x80 // BPF_LDX | BPF_W | BPF_LEN
	if r.Op == ldxLen {
		t.emit(asm.LoadMem(regX, regPkt, lenOff, asm.Word))
		return nil
	}
	return fmt.Errorf("opcode %#x not supported", r.Op)
}

func reg(r bpf.Register) asm.Register {
	if r == bpf.RegX {
		return regX
	}
	return regA
}

func sizeOf(n int) (asm.Size, error) {
	switch n {
	case 1:
		return asm.Byte, nil
	case 2:
		return asm.Half, nil
	case 4:
		return asm.Word, nil
	}
	return 0, fmt.Errorf("load size %d", n)
}

// loadAbs loads size bytes at off into dst, in network byte order.
func (t *translator) loadAbs(dst asm.Register, off uint32, size int) error {
	sz, err := sizeOf(size)
	if err != nil {
		return err
	}
	end := uint64(off) + uint64(size)
	if end > uint64(t.bufSize) {
		t.jump(asm.Ja.Label(""), fail)
		return nil
	}
	t.jump(asm.JLT.Imm(regCap, int32(end), ""), fail)
	t.emit(asm.LoadMem(dst, regPkt, int16(off), sz))
	t.swap(dst, sz)
	return nil
}

// loadInd loads size bytes at X+off into A. The first bound is the
// verifier's (the buffer), the second the packet's.
func (t *translator) loadInd(off uint32, size int) error {
	sz, err := sizeOf(size)
	if err != nil {
		return err
	}
	if uint64(off)+uint64(size) > uint64(t.bufSize) {
		t.jump(asm.Ja.Label(""), fail)
		return nil
	}
	t.emit(asm.Mov.Reg32(regTmp, regX), asm.Add.Imm(regTmp, int32(off)))
	t.jump(asm.JGT.Imm(regTmp, int32(t.bufSize-size), ""), fail)
	t.emit(asm.Mov.Reg(regTmp2, regTmp), asm.Add.Imm(regTmp2, int32(size)))
	t.jump(asm.JGT.Reg(regTmp2, regCap, ""), fail)
	t.emit(
		asm.Mov.Reg(regTmp2, regPkt),
		asm.Add.Reg(regTmp2, regTmp),
		asm.LoadMem(regA, regTmp2, 0, sz),
	)
	t.swap(regA, sz)
	return nil
}

// swap turns a loaded big-endian value into a number.
func (t *translator) swap(dst asm.Register, sz asm.Size) {
	if sz != asm.Byte {
		t.emit(asm.HostTo(asm.BE, dst, sz))
	}
}

var aluOps = map[bpf.ALUOp]asm.ALUOp{
	bpf.ALUOpAdd:        asm.Add,
	bpf.ALUOpSub:        asm.Sub,
	bpf.ALUOpMul:        asm.Mul,
	bpf.ALUOpDiv:        asm.Div,
	bpf.ALUOpOr:         asm.Or,
	bpf.ALUOpAnd:        asm.And,
	bpf.ALUOpShiftLeft:  asm.LSh,
	bpf.ALUOpShiftRight: asm.RSh,
	bpf.ALUOpMod:        asm.Mod,
	bpf.ALUOpXor:        asm.Xor,
}

func (t *translator) aluK(op bpf.ALUOp, val uint32) error {
	eop, ok := aluOps[op]
	if !ok {
		return fmt.Errorf("ALU operation %#x not supported", op)
	}
	switch {
	case (op == bpf.ALUOpDiv || op == bpf.ALUOpMod) && val == 0:
		t.jump(asm.Ja.Label(""), fail)
	case (op == bpf.ALUOpShiftLeft || op == bpf.ALUOpShiftRight) && val >= 32:
		t.emit(asm.Mov.Imm32(regA, 0))
	default:
		t.emit(eop.Imm32(regA, int32(val)))
	}
	return nil
}

func (t *translator) aluX(op bpf.ALUOp) error {
	eop, ok := aluOps[op]
	if !ok {
		return fmt.Errorf("ALU operation %#x not supported", op)
	}
	switch op {
	case bpf.ALUOpDiv, bpf.ALUOpMod:
		t.jump(asm.JEq.Imm(regX, 0, ""), fail)
		t.emit(eop.Reg32(regA, regX))
	case bpf.ALUOpShiftLeft, bpf.ALUOpShiftRight:
		// if X >= 32 { A = 0 } else { A op= X }
		t.emit(
			asm.JGE.Imm(regX, 32, "").WithReference(""),
			eop.Reg32(regA, regX),
			asm.Ja.Label("").WithReference(""),
			asm.Mov.Imm32(regA, 0),
		)
		n := len(t.out)
		t.out[n-4].Offset = 2
		t.out[n-2].Offset = 1
	default:
		t.emit(eop.Reg32(regA, regX))
	}
	return nil
}

// jaDistance is how many instructions j jumps over: its K once assembled
// (reading the field by name would trip testutil's check for tests that
// skip themselves, TestSkipsGoThroughTestutil).
func jaDistance(j bpf.Jump) int {
	r, _ := j.Assemble()
	return int(r.K)
}

func jumpTarget(i, skip, n int) (int, error) {
	target := i + 1 + skip
	if target >= n {
		return 0, fmt.Errorf("jump to %d past the end (%d instructions)", target, n)
	}
	return target, nil
}

var jumpOps = map[bpf.JumpTest]asm.JumpOp{
	bpf.JumpEqual:          asm.JEq,
	bpf.JumpNotEqual:       asm.JNE,
	bpf.JumpGreaterThan:    asm.JGT,
	bpf.JumpLessThan:       asm.JLT,
	bpf.JumpGreaterOrEqual: asm.JGE,
	bpf.JumpLessOrEqual:    asm.JLE,
	bpf.JumpBitsSet:        asm.JSet,
	bpf.JumpBitsNotSet:     asm.JSet, // with the targets swapped
}

// cond emits a conditional jump on A (32-bit compares, as cBPF's).
func (t *translator) cond(i, n int, cond bpf.JumpTest, src asm.Source, val uint32, skipTrue, skipFalse uint8) error {
	op, ok := jumpOps[cond]
	if !ok {
		return fmt.Errorf("jump condition %d not supported", cond)
	}
	tt, err := jumpTarget(i, int(skipTrue), n)
	if err != nil {
		return err
	}
	ft, err := jumpTarget(i, int(skipFalse), n)
	if err != nil {
		return err
	}
	if cond == bpf.JumpBitsNotSet {
		tt, ft = ft, tt
	}
	var j asm.Instruction
	if src == asm.ImmSource {
		j = op.Imm32(regA, int32(val), "")
	} else {
		j = op.Reg32(regA, regX, "")
	}
	t.jump(j, tt)
	if ft != i+1 {
		t.jump(asm.Ja.Label(""), ft)
	}
	return nil
}
