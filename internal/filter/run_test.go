package filter

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/net/bpf"

	"github.com/pathtrace/pathtrace/internal/testutil"
)

// kernelFilter is a translated filter loaded in the kernel behind a small
// socket filter program that calls it as the tracing programs call the
// pt_filter stub: R1 the buffer, a map value, R2 the bytes of the
// packet in it. The map value carries the count after the buffer.
type kernelFilter struct {
	prog *ebpf.Program
	buf  *ebpf.Map
}

func loadKernelFilter(tb testing.TB, insns []bpf.Instruction) *kernelFilter {
	tb.Helper()
	testutil.RequireRoot(tb)
	fn, err := Translate(insns)
	if err != nil {
		tb.Fatalf("translate: %v", err)
	}
	return loadTranslated(tb, fn)
}

func loadTranslated(tb testing.TB, fn asm.Instructions) *kernelFilter {
	tb.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: BufSpan + 4, MaxEntries: 1})
	if err != nil {
		tb.Fatalf("create map: %v", err)
	}
	tb.Cleanup(func() { m.Close() })
	main := append(loadBuffer(m), asm.Call.Label(Stub), asm.Return())
	fn = append(asm.Instructions{}, fn...)
	fn[0] = fn[0].WithSymbol(Stub)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SocketFilter,
		License:      "GPL",
		Instructions: append(main, fn...),
	})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			tb.Fatalf("load filter: %+v", ve)
		}
		tb.Fatalf("load filter: %v", err)
	}
	tb.Cleanup(func() { prog.Close() })
	return &kernelFilter{prog: prog, buf: m}
}

// loadBuffer are the instructions that set the stub's arguments from the
// single value of m: R1 the buffer, R2 the count after it. A missing value
// returns 0.
func loadBuffer(m *ebpf.Map) asm.Instructions {
	insns := asm.Instructions{
		asm.StoreImm(asm.R10, -4, 0, asm.Word),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, m.FD()), // two slots
		asm.FnMapLookupElem.Call(),
		asm.JNE.Imm(asm.R0, 0, "").WithReference(""),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
		asm.LoadMem(asm.R2, asm.R0, BufSpan, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R0),
	}
	insns[5].Offset = 2
	return insns
}

// run gives the filter pkt (at most BufSize bytes of it) with length
// len(pkt), and returns its return value.
func (k *kernelFilter) run(tb testing.TB, pkt []byte) uint32 {
	tb.Helper()
	v := make([]byte, BufSpan+4)
	n := copy(v[:BufSize], pkt)
	for i := memOff; i < lenOff; i++ {
		v[i] = 0xa5 // the last packet's scratch memory
	}
	binary.NativeEndian.PutUint32(v[lenOff:], uint32(len(pkt)))
	binary.NativeEndian.PutUint32(v[BufSpan:], uint32(n))
	if err := k.buf.Put(uint32(0), v); err != nil {
		tb.Fatalf("put packet: %v", err)
	}
	ret, err := k.prog.Run(&ebpf.RunOptions{Data: make([]byte, 14)})
	if err != nil {
		tb.Fatalf("run filter: %v", err)
	}
	return ret
}

// vmRun is golang.org/x/net/bpf's verdict: what the translation must
// return.
func vmRun(tb testing.TB, insns []bpf.Instruction, pkt []byte) uint32 {
	tb.Helper()
	vm, err := bpf.NewVM(insns)
	if err != nil {
		tb.Fatalf("new VM: %v", err)
	}
	n, err := vm.Run(pkt)
	if err != nil {
		tb.Fatalf("run VM: %v", err)
	}
	return uint32(n)
}
