package main

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/pathtrace/pathtrace/internal/features"
	"github.com/pathtrace/pathtrace/internal/topology"
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

// The hint-reading programs (`--peek ADDR --hints`) do that, and then what
// a tracer that follows a connection through NAT must also ask of every
// packet whose addresses are no traced pod's: whether its connection is
// one it follows, and whether its skb is one it follows (a packet whose
// addresses changed on the way). They ask it as pathtrace's lean_reject
// does (bpf/include/common.h): the conns_hint slot of the tuple (the
// addresses XORed, the ports and the protocol, multiplied and shifted),
// then the skb's address as a number (ptr_value's round trip through a
// per-CPU slot, for a typed skb) and its tracked_hint slot, each an array
// map of 65536 4-byte counters, all zero here. Between these and
// pathtrace's programs is what pathtrace does beyond that question.

// hintMaps are the hint programs' maps, shaped as pathtrace's.
type hintMaps struct {
	conns, tracked, scratch *ebpf.Map
}

func newHintMaps() (*hintMaps, error) {
	var m hintMaps
	var err error
	arr := func(name string) (*ebpf.Map, error) {
		return ebpf.NewMap(&ebpf.MapSpec{Name: name, Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1 << 16})
	}
	if m.conns, err = arr("conns_hint"); err != nil {
		return nil, fmt.Errorf("create conns_hint: %w", err)
	}
	if m.tracked, err = arr("tracked_hint"); err != nil {
		m.conns.Close()
		return nil, fmt.Errorf("create tracked_hint: %w", err)
	}
	if m.scratch, err = ebpf.NewMap(&ebpf.MapSpec{Name: "pt_scratch", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1}); err != nil {
		m.conns.Close()
		m.tracked.Close()
		return nil, fmt.Errorf("create pt_scratch: %w", err)
	}
	return &m, nil
}

func (m *hintMaps) Close() error {
	return errors.Join(m.conns.Close(), m.tracked.Close(), m.scratch.Close())
}

// peekInsns reads the addresses and compares them with addr. skb: R6 holds
// the skb pointer; fromWindow: the raw tracepoint's skb is a scalar, so its
// two fields come from one bpf_probe_read_kernel of the bytes that hold
// them (as pathtrace's tracepoint programs read them); otherwise (netfilter)
// they are plain loads through the typed pointer. direct (a typed pointer
// only): the addresses are plain loads through skb->head too, where the
// kernel types that load as readable memory (features.DirectSKBRead; as
// pathtrace's direct forms read the packet), not a bpf_probe_read_kernel.
// ret is the program's return value (0, or NF_ACCEPT). With hints (non-nil),
// a packet whose addresses are not addr is then looked up in the two hint
// arrays, as the hint-reading programs above describe; the ports and the
// protocol come with the addresses (one read more, or a longer helper read).
func peekInsns(o skbOffsets, addr netip.Addr, fromWindow, direct bool, ret int32, hints *hintMaps) (asm.Instructions, error) {
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
	// tuple loads the IPv4 tuple at R7+off: the addresses to R1 and R2
	// and, for the hints, the ports (as in memory) to R3 and the
	// protocol to R4.
	tuple := func(off int16) asm.Instructions {
		switch {
		case direct && hints != nil:
			return asm.Instructions{
				asm.LoadMem(asm.R1, asm.R7, off+12, asm.Word),
				asm.LoadMem(asm.R2, asm.R7, off+16, asm.Word),
				asm.LoadMem(asm.R3, asm.R7, off+20, asm.Word),
				asm.LoadMem(asm.R4, asm.R7, off+9, asm.Byte),
			}
		case direct:
			return asm.Instructions{
				asm.LoadMem(asm.R1, asm.R7, off+12, asm.Word),
				asm.LoadMem(asm.R2, asm.R7, off+16, asm.Word),
			}
		case hints != nil:
			// From the TTL to the ports in one read: protocol at 1,
			// the addresses at 4 and 8, the ports at 12.
			return append(probeRead(int32(off)+8, 16),
				asm.LoadMem(asm.R1, asm.RFP, -84, asm.Word),
				asm.LoadMem(asm.R2, asm.RFP, -80, asm.Word),
				asm.LoadMem(asm.R3, asm.RFP, -76, asm.Word),
				asm.LoadMem(asm.R4, asm.RFP, -87, asm.Byte),
			)
		}
		return append(probeRead(int32(off)+12, 8), // saddr, daddr
			asm.LoadMem(asm.R1, asm.RFP, -88, asm.Word),
			asm.LoadMem(asm.R2, asm.RFP, -84, asm.Word),
		)
	}
	in = append(in, tuple(0)...)
	if hints != nil {
		// A VXLAN packet (UDP to flannel's port) is another pod's or
		// not by its inner header, 50 bytes on (UDP 8, VXLAN 8,
		// Ethernet 14), as lean_reject takes it: the outer one is the
		// nodes'.
		in = append(in,
			asm.JNE.Imm(asm.R4, 17, "addrs"),
			asm.Mov.Reg(asm.R5, asm.R3), asm.RSh.Imm32(asm.R5, 16),
			asm.JNE.Imm(asm.R5, int32(bits.ReverseBytes16(topology.VXLANPort)), "addrs"),
		)
		in = append(in, tuple(50)...)
	}
	in = append(in,
		asm.JEq.Imm32(asm.R1, want, "out").WithSymbol("addrs"),
		asm.JEq.Imm32(asm.R2, want, "out"),
	)
	if hints != nil {
		in = append(in, hintInsns(hints, !fromWindow)...)
	}
	in = append(in,
		asm.Mov.Imm(asm.R0, ret).WithSymbol("out"),
		asm.Return(),
	)
	return in, nil
}

// probeRead reads size bytes of the IPv4 header at R7, from its byte from
// on, to fp-88 with bpf_probe_read_kernel, and ends the program where the
// read fails.
func probeRead(from, size int32) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R3, asm.R7), asm.Add.Imm(asm.R3, from),
		asm.Mov.Reg(asm.R1, asm.RFP), asm.Add.Imm(asm.R1, -88),
		asm.Mov.Imm(asm.R2, size),
		asm.FnProbeReadKernel.Call(),
		asm.JNE.Imm(asm.R0, 0, "out"),
	}
}

// hintInsns look up the packet's two hint slots: the connection's from the
// addresses (R1, R2), the ports as loaded from memory (R3) and the
// protocol (R4); the skb's from its address in R6, taken as a number
// through the per-CPU slot where typed. A set slot, or a failed lookup,
// ends the program (as "maybe kept" would end lean_reject's question).
func hintInsns(m *hintMaps, typed bool) asm.Instructions {
	in := asm.Instructions{
		// conn_hint_at: addrs ^ (sport << 16 | dport) ^ proto, each
		// port as in memory, times the golden ratio, the high 16 bits.
		asm.Xor.Reg32(asm.R1, asm.R2),
		asm.Mov.Reg32(asm.R5, asm.R3),
		asm.LSh.Imm32(asm.R5, 16),
		asm.RSh.Imm32(asm.R3, 16),
		asm.Or.Reg32(asm.R3, asm.R5),
		asm.Xor.Reg32(asm.R1, asm.R3),
		asm.Xor.Reg32(asm.R1, asm.R4),
		asm.Mul.Imm32(asm.R1, int32(-1640531535)), // 0x9e3779b1
		asm.RSh.Imm32(asm.R1, 16),
	}
	in = append(in, slotInsns(m.conns, -100)...)
	if typed {
		// ptr_value: the typed pointer stored and loaded back as a
		// number, and compared with it.
		in = append(in,
			asm.StoreImm(asm.RFP, -104, 0, asm.Word),
			asm.LoadMapPtr(asm.R1, m.scratch.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP), asm.Add.Imm(asm.R2, -104),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.StoreMem(asm.R0, 0, asm.R6, asm.DWord),
			asm.LoadMem(asm.R7, asm.R0, 0, asm.DWord),
			asm.JNE.Reg(asm.R7, asm.R6, "out"),
		)
	} else {
		in = append(in, asm.Mov.Reg(asm.R7, asm.R6))
	}
	// tracked_slot: ((key >> 8) ^ (key >> 24)) & 0xffff.
	in = append(in,
		asm.Mov.Reg(asm.R1, asm.R7), asm.RSh.Imm(asm.R1, 8),
		asm.Mov.Reg(asm.R2, asm.R7), asm.RSh.Imm(asm.R2, 24),
		asm.Xor.Reg(asm.R1, asm.R2),
		asm.And.Imm(asm.R1, 0xffff),
	)
	return append(in, slotInsns(m.tracked, -108)...)
}

// slotInsns look up slot R1 of the hint array m, the key at fp+off, and
// end the program where the lookup fails or the slot is set.
func slotInsns(m *ebpf.Map, off int16) asm.Instructions {
	return asm.Instructions{
		asm.StoreMem(asm.RFP, off, asm.R1, asm.Word),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP), asm.Add.Imm(asm.R2, int32(off)),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Word),
		asm.JNE.Imm(asm.R1, 0, "out"),
	}
}
