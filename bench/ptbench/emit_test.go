package main

import (
	"context"
	"testing"

	"github.com/cilium/ebpf"
	ebpffeatures "github.com/cilium/ebpf/features"

	"github.com/pathtrace/pathtrace/internal/testutil"
)

// TestEmitPrograms: each run of an event-sending program puts one event of
// pathtrace's size in the ring, which the reader reads, and returns what
// its hook needs; a full ring counts the event lost.
func TestEmitPrograms(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := newEmitMaps()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "emit_tp", Type: ebpf.RawTracepoint, License: "GPL", Instructions: emitInsns(m, 0, emitSize),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	const runs = 5
	for range runs {
		ret, err := prog.Run(&ebpf.RunOptions{Context: []uint64{0}})
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		if ret != 0 {
			t.Fatalf("returned %d, want 0", ret)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*emitPoll)
	defer cancel()
	n, err := drainEmitted(ctx, m.ring, nil)
	if err != nil || n != runs {
		t.Errorf("read %d events (%v), want %d", n, err, runs)
	}
	// Fill the ring: every event past it is counted, none is read.
	size, err := ringSize()
	if err != nil {
		t.Fatal(err)
	}
	full := int(size) / (int(emitSize) + 8)
	for range full + 10 {
		if _, err := prog.Run(&ebpf.RunOptions{Context: []uint64{0}}); err != nil {
			t.Fatalf("run: %v", err)
		}
	}
	if lost := m.lostEvents(); lost < 10 {
		t.Errorf("%d events lost past a full ring, want at least 10", lost)
	}

	t.Run("16-byte events", func(t *testing.T) {
		tiny, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "emit_tp", Type: ebpf.RawTracepoint, License: "GPL", Instructions: emitInsns(m, 0, emitTinySize),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer tiny.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*emitPoll)
		defer cancel()
		drainEmitted(ctx, m.ring, nil) // what the full ring above holds
		for range runs {
			if _, err := tiny.Run(&ebpf.RunOptions{Context: []uint64{0}}); err != nil {
				t.Fatalf("run: %v", err)
			}
		}
		ctx, cancel = context.WithTimeout(context.Background(), 3*emitPoll)
		defer cancel()
		var sizes []int
		n, err := drainEmitted(ctx, m.ring, func(b []byte) { sizes = append(sizes, len(b)) })
		if err != nil || n != runs {
			t.Errorf("read %d events (%v), want %d", n, err, runs)
		}
		for _, sz := range sizes {
			if sz != emitTinySize {
				t.Errorf("an event of %d bytes, want %d", sz, emitTinySize)
			}
		}
	})

	t.Run("netfilter", func(t *testing.T) {
		testutil.RequireSupported(t, testutil.NetfilterLinks, ebpffeatures.HaveProgramType(ebpf.Netfilter))
		nf, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "emit_nf", Type: ebpf.Netfilter, AttachType: ebpf.AttachNetfilter, License: "GPL",
			Instructions: emitInsns(m, 1, emitTinySize),
		})
		if err != nil {
			t.Fatal(err)
		}
		nf.Close()
	})
}
