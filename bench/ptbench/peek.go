package main

import (
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf/asm"

	"github.com/pathtrace/pathtrace/internal/features"
)

// The address-reading programs (`ptbench null-tracer --peek ADDR`) do the
// least any tracer must do to tell whether a packet is one it follows: find
// the IPv4 header through the skb (head + network_header) and read its two
// addresses, then compare them with one address. They keep nothing and
// emit nothing. Between the empty programs and pathtrace's, they show what
// of pathtrace's cost for another pod's packet is reading the packet at
// all, on the same hooks.

// skbOffsets are the byte offsets of sk_buff's head and network_header in
// the running kernel's BTF (network_header sits in an anonymous struct
// group on newer kernels).
type skbOffsets struct{ head, nh uint32 }

func kernelSKBOffsets() (skbOffsets, error) {
	var o skbOffsets
	var err error
	if o.head, err = features.SKBFieldOffset("head"); err != nil {
		return o, err
	}
	o.nh, err = features.SKBFieldOffset("network_header")
	return o, err
}

// peekInsns reads the addresses and compares them with addr. skb: R6 holds
// the skb pointer; fromWindow: the raw tracepoint's skb is a scalar, so its
// two fields come from one bpf_probe_read_kernel of the bytes that hold
// them (as pathtrace's tracepoint programs read them); otherwise (netfilter)
// they are plain loads through the typed pointer. direct (a typed pointer
// only): the addresses are plain loads through skb->head too, where the
// kernel types that load as readable memory (features.DirectSKBRead; as
// pathtrace's direct forms read the packet), not a bpf_probe_read_kernel.
// ret is the program's return value (0, or NF_ACCEPT).
func peekInsns(o skbOffsets, addr netip.Addr, fromWindow, direct bool, ret int32) (asm.Instructions, error) {
	if fromWindow && direct {
		return nil, fmt.Errorf("peek: a raw tracepoint's skb is a number, not readable directly")
	}
	a4 := addr.As4()
	want := int32(uint32(a4[0]) | uint32(a4[1])<<8 | uint32(a4[2])<<16 | uint32(a4[3])<<24) // as loaded from memory, little endian
	var in asm.Instructions
	if fromWindow {
		start := min(o.head, o.nh) &^ 7
		size := max(o.head+8, o.nh+2) - start
		if size > 64 {
			return nil, fmt.Errorf("sk_buff head (%d) and network_header (%d) are too far apart", o.head, o.nh)
		}
		size = (size + 7) &^ 7
		in = append(in,
			asm.Mov.Reg(asm.R1, asm.RFP), asm.Add.Imm(asm.R1, -64),
			asm.Mov.Imm(asm.R2, int32(size)),
			asm.Mov.Reg(asm.R3, asm.R6), asm.Add.Imm(asm.R3, int32(start)),
			asm.FnProbeReadKernel.Call(),
			asm.JNE.Imm(asm.R0, 0, "out"),
			asm.LoadMem(asm.R7, asm.RFP, int16(-64+int32(o.head-start)), asm.DWord),
			asm.LoadMem(asm.R8, asm.RFP, int16(-64+int32(o.nh-start)), asm.Half),
		)
	} else {
		in = append(in,
			asm.LoadMem(asm.R7, asm.R6, int16(o.head), asm.DWord),
			asm.LoadMem(asm.R8, asm.R6, int16(o.nh), asm.Half),
		)
	}
	in = append(in, asm.Add.Reg(asm.R7, asm.R8))
	if direct {
		in = append(in,
			asm.LoadMem(asm.R1, asm.R7, 12, asm.Word), // saddr
			asm.LoadMem(asm.R2, asm.R7, 16, asm.Word), // daddr
		)
	} else {
		in = append(in,
			asm.Add.Imm(asm.R7, 12), // saddr, daddr
			asm.Mov.Reg(asm.R1, asm.RFP), asm.Add.Imm(asm.R1, -72),
			asm.Mov.Imm(asm.R2, 8),
			asm.Mov.Reg(asm.R3, asm.R7),
			asm.FnProbeReadKernel.Call(),
			asm.JNE.Imm(asm.R0, 0, "out"),
			asm.LoadMem(asm.R1, asm.RFP, -72, asm.Word),
			asm.LoadMem(asm.R2, asm.RFP, -68, asm.Word),
		)
	}
	in = append(in,
		asm.JEq.Imm32(asm.R1, want, "out"),
		asm.JEq.Imm32(asm.R2, want, "out"),
		asm.Mov.Imm(asm.R0, ret).WithSymbol("out"),
		asm.Return(),
	)
	return in, nil
}
