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

// TestPeekPrograms: the address-reading programs verify in every form the
// null tracer loads on this kernel: the netfilter program and the tp_btf
// program, with the helper read and, where the kernel allows it, with
// plain loads through skb->head; a raw tracepoint's scalar skb has no
// direct form.
func TestPeekPrograms(t *testing.T) {
	testutil.RequireRoot(t)
	o, err := kernelSKBOffsets()
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddr("10.244.1.6")
	if _, err := peekInsns(o, addr, true, true, 0); err == nil {
		t.Error("a direct read of a raw tracepoint's skb was built, want an error")
	}
	directs := []bool{false}
	if features.DirectSKBRead() == nil {
		directs = append(directs, true)
	}
	load := func(t *testing.T, spec *ebpf.ProgramSpec, ctxSkb int16, direct bool, ret int32) {
		in, err := peekInsns(o, addr, false, direct, ret)
		if err != nil {
			t.Fatal(err)
		}
		spec.License = "GPL"
		spec.Instructions = append(asm.Instructions{asm.LoadMem(asm.R6, asm.R1, ctxSkb, asm.DWord)}, in...)
		prog, err := ebpf.NewProgram(spec)
		if err != nil {
			t.Fatalf("direct=%v: %v", direct, err)
		}
		prog.Close()
	}
	t.Run("netfilter", func(t *testing.T) {
		testutil.RequireSupported(t, testutil.NetfilterLinks, ebpffeatures.HaveProgramType(ebpf.Netfilter))
		for _, d := range directs {
			load(t, &ebpf.ProgramSpec{Name: "peek_nf", Type: ebpf.Netfilter, AttachType: ebpf.AttachNetfilter}, 8, d, 1)
		}
	})
	t.Run("tp_btf", func(t *testing.T) {
		testutil.RequireSupported(t, testutil.BTFTracepoints, features.BTFTracepoint())
		for _, d := range directs {
			load(t, &ebpf.ProgramSpec{Name: "peekbtf_tp", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp,
				AttachTo: "netif_receive_skb"}, 0, d, 0)
		}
	})
	t.Logf("forms loaded: helper read%s", map[bool]string{true: ", plain loads", false: ""}[len(directs) == 2])
}
