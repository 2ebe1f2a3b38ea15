package main

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	ebpffeatures "github.com/cilium/ebpf/features"

	"github.com/pathtrace/pathtrace/internal/features"
	"github.com/pathtrace/pathtrace/internal/testutil"
)

// TestPeekPrograms: the address-reading programs, and the hint-reading ones,
// verify in every form the null tracer loads on this kernel: the netfilter
// program and the tp_btf program, with the helper read and, where the
// kernel allows it, with plain loads through skb->head, and the raw
// tracepoint program, whose scalar skb has no direct form.
func TestPeekPrograms(t *testing.T) {
	testutil.RequireRoot(t)
	o, err := kernelSKBOffsets()
	if err != nil {
		t.Fatal(err)
	}
	hm, err := newHintMaps()
	if err != nil {
		t.Fatal(err)
	}
	defer hm.Close()
	addr := netip.MustParseAddr("10.244.1.6")
	if _, err := peekInsns(o, addr, true, true, 0, nil); err == nil {
		t.Error("a direct read of a raw tracepoint's skb was built, want an error")
	}
	directs := []bool{false}
	if features.DirectSKBRead() == nil {
		directs = append(directs, true)
	}
	load := func(t *testing.T, spec *ebpf.ProgramSpec, ctxSkb int16, fromWindow, direct bool, ret int32) {
		for _, h := range []*hintMaps{nil, hm} {
			in, err := peekInsns(o, addr, fromWindow, direct, ret, h)
			if err != nil {
				t.Fatal(err)
			}
			s := spec.Copy()
			s.License = "GPL"
			s.Instructions = append(asm.Instructions{asm.LoadMem(asm.R6, asm.R1, ctxSkb, asm.DWord)}, in...)
			prog, err := ebpf.NewProgram(s)
			if err != nil {
				t.Fatalf("direct=%v hints=%v: %v", direct, h != nil, err)
			}
			prog.Close()
		}
	}
	t.Run("netfilter", func(t *testing.T) {
		testutil.RequireSupported(t, testutil.NetfilterLinks, ebpffeatures.HaveProgramType(ebpf.Netfilter))
		for _, d := range directs {
			load(t, &ebpf.ProgramSpec{Name: "peek_nf", Type: ebpf.Netfilter, AttachType: ebpf.AttachNetfilter}, 8, false, d, 1)
		}
	})
	t.Run("tp_btf", func(t *testing.T) {
		testutil.RequireSupported(t, testutil.BTFTracepoints, features.BTFTracepoint())
		for _, d := range directs {
			load(t, &ebpf.ProgramSpec{Name: "peekbtf_tp", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp,
				AttachTo: "netif_receive_skb"}, 0, false, d, 0)
		}
	})
	t.Run("raw_tracepoint", func(t *testing.T) {
		load(t, &ebpf.ProgramSpec{Name: "peek_tp", Type: ebpf.RawTracepoint}, 0, true, false, 0)
	})
	t.Logf("forms loaded: helper read%s", map[bool]string{true: ", plain loads", false: ""}[len(directs) == 2])
}
