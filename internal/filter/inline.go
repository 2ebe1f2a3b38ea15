package filter

import (
	"fmt"

	"github.com/cilium/ebpf/asm"
)

// Stub is the symbol of the function in bpf/include/common.h that Inline
// replaces.
const Stub = "pt_filter"

// MatchAll is the body of a filter that matches every packet: what the
// stub does as compiled.
var MatchAll = asm.Instructions{asm.Mov.Imm32(asm.R0, 1), asm.Return()}

// Inline puts fn, a function as Translate makes it, in place of every call
// of the function named symbol in insns (a program as cilium/ebpf's ELF
// reader gives it, with its functions appended), and removes that
// function. fn's exits jump past it, with its value in R0; the jumps of
// insns are moved to match. Inlining rather than calling keeps a third
// stack frame off the call chain: the stub is called from the global
// function pt_filter_match, whose own frame already brings the deepest
// programs to the 512 bytes the verifier allows a call chain. A program that calls no
// such function comes back as it is.
func Inline(insns asm.Instructions, symbol string, fn asm.Instructions) (asm.Instructions, error) {
	start, end := -1, len(insns)
	for i, ins := range insns {
		if start >= 0 && ins.Symbol() != "" {
			end = i
			break
		}
		if ins.Symbol() == symbol {
			start = i
		}
	}
	if start < 0 {
		for _, ins := range insns {
			if ins.IsFunctionCall() && ins.Reference() == symbol {
				return nil, fmt.Errorf("inline %s: called but not in the program", symbol)
			}
		}
		return insns, nil
	}
	if start == 0 {
		return nil, fmt.Errorf("inline %s: it is the program's entry", symbol)
	}
	body, err := inlineBody(fn)
	if err != nil {
		return nil, fmt.Errorf("inline %s: %w", symbol, err)
	}

	// The program without the function (jumps never leave a function,
	// so no offset changes), then the calls replaced.
	kept := make(asm.Instructions, 0, len(insns)-(end-start))
	kept = append(kept, insns[:start]...)
	kept = append(kept, insns[end:]...)

	// newAt maps each kept instruction's raw offset to its new one.
	newAt := make(map[int]int, len(kept))
	oldAt := make([]int, len(kept))
	out := make(asm.Instructions, 0, len(kept)+8*len(body))
	rawOld, rawNew := 0, 0
	for i, ins := range kept {
		oldAt[i] = rawOld
		newAt[rawOld] = rawNew
		rawOld += int(ins.Size() / asm.InstructionSize)
		if ins.IsFunctionCall() && ins.Reference() == symbol {
			b := append(asm.Instructions{}, body...)
			b[0] = b[0].WithMetadata(ins.Metadata).WithReference("")
			out = append(out, b...)
			rawNew += len(b)
			continue
		}
		out = append(out, ins)
		rawNew += int(ins.Size() / asm.InstructionSize)
	}
	newAt[rawOld] = rawNew

	// Move the jumps of the kept instructions: out holds them in order,
	// each call replaced by len(body) instructions.
	j := 0
	for i, ins := range kept {
		if ins.IsFunctionCall() && ins.Reference() == symbol {
			j += len(body)
			continue
		}
		if isOffsetJump(ins) {
			target := oldAt[i] + 1 + int(ins.Offset)
			to, ok := newAt[target]
			if !ok {
				return nil, fmt.Errorf("inline %s: instruction %d jumps into the middle of an instruction", symbol, i)
			}
			off := to - newAt[oldAt[i]] - 1
			if off < -32768 || off > 32767 {
				return nil, fmt.Errorf("inline %s: instruction %d: jump out of range once inlined", symbol, i)
			}
			out[j].Offset = int16(off)
		}
		j++
	}
	return out, nil
}

// isOffsetJump says whether ins jumps by its Offset, resolved already (not
// a call, an exit, or a jump to a label still to resolve).
func isOffsetJump(ins asm.Instruction) bool {
	if !ins.OpCode.Class().IsJump() {
		return false
	}
	switch ins.OpCode.JumpOp() {
	case asm.Call, asm.Exit:
		return false
	}
	if ins.OpCode.Class() == asm.Jump32Class && ins.OpCode.JumpOp() == asm.Ja {
		return false // gotol: a 32-bit offset in Constant; clang makes none here
	}
	return !(ins.Reference() != "" && ins.Offset == -1)
}

// inlineBody turns fn's exits into jumps past its end.
func inlineBody(fn asm.Instructions) (asm.Instructions, error) {
	if len(fn) == 0 {
		return nil, fmt.Errorf("empty function")
	}
	body := make(asm.Instructions, len(fn))
	for i, ins := range fn {
		if ins.Size() != asm.InstructionSize {
			return nil, fmt.Errorf("instruction %d (%v) takes two slots", i, ins)
		}
		if ins.OpCode.JumpOp() == asm.Exit && ins.OpCode.Class().IsJump() {
			ins = asm.Ja.Label("").WithReference("")
			ins.Offset = int16(len(fn) - i - 1)
		}
		body[i] = ins
	}
	return body, nil
}
