package filter

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/net/bpf"

	"github.com/pathtrace/pathtrace/internal/testutil"
)

// stubProgram calls the stub as the tracing programs do, with jumps
// across the call: a buffer whose count is 7 returns 5 without calling.
func stubProgram(m *ebpf.Map) asm.Instructions {
	insns := append(loadBuffer(m),
		asm.JEq.Imm(asm.R2, 7, "").WithReference(""),
		asm.Call.Label(Stub),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 5),
		asm.Return(),
		asm.Mov.Imm32(asm.R0, 1).WithSymbol(Stub),
		asm.Return(),
	)
	insns[10].Offset = 2
	return insns
}

func TestInline(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: BufSpan + 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	fn, err := Translate([]bpf.Instruction{bpf.LoadAbsolute{Off: 0, Size: 2}, bpf.RetA{}})
	if err != nil {
		t.Fatal(err)
	}
	insns, err := Inline(stubProgram(m), Stub, fn)
	if err != nil {
		t.Fatal(err)
	}
	for _, ins := range insns {
		if ins.Symbol() == Stub || ins.IsFunctionCall() && ins.Reference() == Stub {
			t.Fatalf("the stub is still there:\n%v", insns)
		}
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, License: "GPL", Instructions: insns})
	if err != nil {
		t.Fatalf("load: %+v\n%v", err, insns)
	}
	defer prog.Close()
	for _, c := range []struct {
		cap  uint32
		want uint32
	}{{7, 5}, {2, 0x0102}, {1, 0}, {BufSize, 0x0102}} {
		v := make([]byte, BufSpan+4)
		v[0], v[1] = 1, 2
		binary.NativeEndian.PutUint32(v[BufSpan:], c.cap)
		if err := m.Put(uint32(0), v); err != nil {
			t.Fatal(err)
		}
		got, err := prog.Run(&ebpf.RunOptions{Data: make([]byte, 14)})
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("cap %d: got %#x, want %#x", c.cap, got, c.want)
		}
	}
}

func TestInlineWithoutStub(t *testing.T) {
	insns := asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
	got, err := Inline(insns, Stub, MatchAll)
	if err != nil || len(got) != 2 {
		t.Errorf("got %v, %v; want the program as it was", got, err)
	}
	insns = asm.Instructions{asm.Call.Label(Stub), asm.Return()}
	if _, err := Inline(insns, Stub, MatchAll); err == nil || !strings.Contains(err.Error(), "not in the program") {
		t.Errorf("error %v, want one saying the stub is missing", err)
	}
}
