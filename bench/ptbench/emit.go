package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/pathtrace/pathtrace/internal/bpf"
	"github.com/pathtrace/pathtrace/internal/loader"
)

// The event-sending programs (`ptbench null-tracer --emit all|last`) are
// the floor of any tracer that sends an event per hop, as pathtrace does:
// each run reserves an event of the size of pathtrace's without packet
// bytes, zeroes it, stamps it and submits it without waking the reader,
// into a ring of pathtrace's size; a reader polls it as pathtrace's does
// (every emitPoll, until empty) and drops each record unread. They look at no packet: on the
// bench's cluster, idle but for the measured flow, every packet at those
// hooks is the flow's. With "last", the programs at the first netfilter
// priority stay empty: one event per netfilter hook instead of two, the
// floor of the redesign docs/BENCHMARKS.md proposes (31 events per
// cross-node datagram down to 21).

// emitSize is the size of pathtrace's event without packet bytes: most of
// its hops' (bpf/include/common.h, new_event).
var emitSize = int32(unsafe.Offsetof(bpf.TracepointEvent{}.Data))

// emitPoll is how often pathtrace's reader polls a ring no program woke
// it for while events come (internal/trace, pollEvery; it sleeps longer
// once the ring stays empty, which it never does here).
const emitPoll = 10 * time.Millisecond

// ringSize is the size of pathtrace's events ring, as its programs'
// collection declares it (bpf/include/common.h; a live trace keeps it).
func ringSize() (uint32, error) {
	spec, err := bpf.LoadTracepoint()
	if err != nil {
		return 0, err
	}
	m, ok := spec.Maps["events"]
	if !ok {
		return 0, errors.New("pathtrace's programs have no events map")
	}
	return m.MaxEntries, nil
}

const bpfRBNoWakeup = 1

// emitMaps are the ring and the count of events that found it full.
type emitMaps struct {
	ring, lost *ebpf.Map
}

func newEmitMaps() (*emitMaps, error) {
	size, err := ringSize()
	if err != nil {
		return nil, err
	}
	ring, err := ebpf.NewMap(&ebpf.MapSpec{Name: "emit_ring", Type: ebpf.RingBuf, MaxEntries: size})
	if err != nil {
		return nil, fmt.Errorf("create the ring: %w", err)
	}
	lost, err := ebpf.NewMap(&ebpf.MapSpec{Name: "emit_lost", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		ring.Close()
		return nil, fmt.Errorf("create the lost counter: %w", err)
	}
	return &emitMaps{ring: ring, lost: lost}, nil
}

func (m *emitMaps) Close() error { return errors.Join(m.ring.Close(), m.lost.Close()) }

// emitTinySize is the smallest event worth sending: an skb's address and
// a time, all an event per hop would need if everything else were sent
// once per packet (the floor of "smaller events").
const emitTinySize = 16

// emitInsns reserves, zeroes, stamps and submits one event of size bytes
// (a multiple of 8, at least 16); ret is the program's return value (0, or
// NF_ACCEPT).
func emitInsns(m *emitMaps, ret, size int32) asm.Instructions {
	in := asm.Instructions{
		asm.LoadMapPtr(asm.R1, m.ring.FD()),
		asm.Mov.Imm(asm.R2, size),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnRingbufReserve.Call(),
		asm.JEq.Imm(asm.R0, 0, "lost"),
		asm.Mov.Reg(asm.R6, asm.R0),
		asm.Mov.Imm(asm.R1, 0),
	}
	for off := int32(0); off+8 <= size; off += 8 {
		in = append(in, asm.StoreMem(asm.R6, int16(off), asm.R1, asm.DWord))
	}
	in = append(in,
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.R6, 8, asm.R0, asm.DWord), // ts, where pathtrace's is
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, bpfRBNoWakeup),
		asm.FnRingbufSubmit.Call(),
		asm.Ja.Label("out"),
		// Counted as pathtrace counts its lost events: a per-CPU slot.
		asm.Mov.Imm(asm.R1, 0).WithSymbol("lost"),
		asm.StoreMem(asm.RFP, -4, asm.R1, asm.Word),
		asm.LoadMapPtr(asm.R1, m.lost.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, ret).WithSymbol("out"),
		asm.Return(),
	)
	return in
}

// drainEmitted reads the ring until ctx is done, with pathtrace's reader
// (loader.Ring) paced as pathtrace paces it, and returns how many records
// it read; seen, if not nil, gets each record's bytes.
func drainEmitted(ctx context.Context, ring *ebpf.Map, seen func([]byte)) (uint64, error) {
	rd, err := loader.OpenRing(ring)
	if err != nil {
		return 0, err
	}
	defer rd.Close()
	var rec ringbuf.Record
	var n uint64
	read := func() error {
		for {
			err := rd.Read(&rec)
			switch {
			case err == nil:
				n++
				if seen != nil {
					seen(rec.RawSample)
				}
			case errors.Is(err, os.ErrDeadlineExceeded):
				return nil
			default:
				return err
			}
		}
	}
	for ctx.Err() == nil {
		rd.SetDeadline(time.Now().Add(emitPoll))
		if err := read(); err != nil {
			return n, err
		}
	}
	rd.SetDeadline(time.Now())
	return n, read()
}

// lostEvents sums the per-CPU lost counter.
func (m *emitMaps) lostEvents() uint64 {
	var per []uint64
	if err := m.lost.Lookup(uint32(0), &per); err != nil {
		return 0
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n
}
