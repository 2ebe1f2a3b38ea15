package loader

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/pathtrace/pathtrace/internal/testutil"
)

// ringWriter is a socket filter that copies the first n bytes of the packet
// it runs on into the ring as one record, or reserves n bytes and discards
// them.
func ringWriter(t *testing.T, ring *ebpf.Map, n int32, discard bool) *ebpf.Program {
	t.Helper()
	var insns asm.Instructions
	if discard {
		insns = asm.Instructions{
			asm.LoadMapPtr(asm.R1, ring.FD()),
			asm.Mov.Imm(asm.R2, n),
			asm.Mov.Imm(asm.R3, 0),
			asm.FnRingbufReserve.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.Mov.Reg(asm.R1, asm.R0),
			asm.Mov.Imm(asm.R2, 0),
			asm.FnRingbufDiscard.Call(),
		}
	} else {
		insns = asm.Instructions{
			// The context is in R1. The test run's skb starts after the
			// Ethernet header (runWriter).
			asm.Mov.Imm(asm.R2, 0),
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, -512),
			asm.Mov.Imm(asm.R4, n),
			asm.FnSkbLoadBytes.Call(),
			asm.JNE.Imm(asm.R0, 0, "out"),
			asm.LoadMapPtr(asm.R1, ring.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -512),
			asm.Mov.Imm(asm.R3, n),
			asm.Mov.Imm(asm.R4, 0),
			asm.FnRingbufOutput.Call(),
		}
	}
	insns = append(insns,
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.SocketFilter, License: "GPL", Instructions: insns,
	})
	if err != nil {
		t.Fatalf("load ring writer: %v", err)
	}
	t.Cleanup(func() { _ = prog.Close() })
	return prog
}

func newTestRing(t *testing.T, size uint32) *ebpf.Map {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: size})
	if err != nil {
		t.Fatalf("create ring buffer: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// ringPacket is what the writers copy: a sequence number, then bytes that
// depend on it and on their offset.
func ringPacket(seq uint32) []byte {
	b := make([]byte, 512)
	binary.LittleEndian.PutUint32(b, seq)
	for i := 4; i < len(b); i++ {
		b[i] = byte(seq*7 + uint32(i))
	}
	return b
}

func runWriter(t *testing.T, prog *ebpf.Program, data []byte) {
	t.Helper()
	frame := append(make([]byte, 14), data...) // an Ethernet header of zeros
	if _, err := prog.Run(&ebpf.RunOptions{Data: frame}); err != nil {
		t.Fatalf("run ring writer: %v", err)
	}
}

// TestRingRecords writes records of several sizes into a one-page ring, with
// discarded ones among them, and reads them back: every record whole and in
// order, those that wrap around the ring's end too.
func TestRingRecords(t *testing.T) {
	testutil.RequireRoot(t)
	page := os.Getpagesize()
	m := newTestRing(t, uint32(page))
	sizes := []int32{8, 100, 248, 504, 13, 333, 1}
	writers := make([]*ebpf.Program, len(sizes))
	for i, n := range sizes {
		writers[i] = ringWriter(t, m, n, false)
	}
	discard := ringWriter(t, m, 40, true)
	r, err := OpenRing(m)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Size() != page {
		t.Errorf("Size() = %d, want %d", r.Size(), page)
	}

	var rec ringbuf.Record
	seq, wrapped := uint32(0), 0
	for round := 0; round < 200; round++ {
		// Fewer bytes than the ring holds: nothing is refused.
		var want []uint32
		for i := range 5 {
			w := (round + i) % len(sizes)
			runWriter(t, writers[w], ringPacket(seq))
			want = append(want, seq)
			seq++
			if (round+i)%3 == 0 {
				runWriter(t, discard, ringPacket(0))
			}
		}
		r.SetDeadline(time.Now())
		for j, s := range want {
			if err := r.Read(&rec); err != nil {
				t.Fatalf("round %d, record %d: %v", round, j, err)
			}
			n := int(sizes[(round+j)%len(sizes)])
			full := ringPacket(s)
			if !bytes.Equal(rec.RawSample, full[:n]) {
				t.Fatalf("round %d, record %d (sequence %d, %d bytes): got %x", round, j, s, n, rec.RawSample)
			}
			if p := uintptr(unsafe.Pointer(unsafe.SliceData(rec.RawSample))); p < uintptr(unsafe.Pointer(&r.data[0])) || p >= uintptr(unsafe.Pointer(&r.data[0]))+uintptr(len(r.data)) {
				wrapped++
			}
			// What is left after the last: a discarded record (40
			// bytes and the header) when one followed it.
			left := 0
			if (round+j)%3 == 0 {
				left = 48
			}
			if last := j == len(want)-1; last && rec.Remaining != left || !last && rec.Remaining <= left {
				t.Errorf("round %d, record %d of %d: Remaining %d", round, j, len(want), rec.Remaining)
			}
		}
		if err := r.Read(&rec); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("round %d: read of an empty ring past its deadline: %v, want os.ErrDeadlineExceeded", round, err)
		}
	}
	if wrapped == 0 {
		t.Error("no record wrapped around the ring's end: the test did not cover it")
	}
	t.Logf("%d records, %d wrapped around the end", seq, wrapped)
}

// TestRingWaits checks that a Read waiting without a deadline wakes for a
// record and ends at Close.
func TestRingWaits(t *testing.T) {
	testutil.RequireRoot(t)
	m := newTestRing(t, uint32(os.Getpagesize()))
	w := ringWriter(t, m, 64, false)
	r, err := OpenRing(m)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var rec ringbuf.Record
	go func() { done <- r.Read(&rec) }()
	time.Sleep(50 * time.Millisecond)
	runWriter(t, w, ringPacket(42))
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		if got := binary.LittleEndian.Uint32(rec.RawSample); got != 42 {
			t.Errorf("read record %d, want 42", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a waiting Read did not wake for a record")
	}

	go func() { done <- r.Read(&rec) }()
	time.Sleep(50 * time.Millisecond)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ringbuf.ErrClosed) {
			t.Errorf("waiting Read at Close: %v, want ringbuf.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a waiting Read")
	}
	if err := r.Read(&rec); !errors.Is(err, ringbuf.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestRingResidentOnce checks that the ring's data pages count once in the
// process's resident memory: the kernel fills the mapping's page tables
// when it is made, so a mapping of both copies would count twice the size.
func TestRingResidentOnce(t *testing.T) {
	testutil.RequireRoot(t)
	const size = 8 << 20
	m := newTestRing(t, size)
	r, err := OpenRing(m)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rss, err := mappingRSS(uintptr(unsafe.Pointer(&r.prod[0])))
	if err != nil {
		t.Fatal(err)
	}
	if limit := size + os.Getpagesize(); rss > limit {
		t.Errorf("the ring's mapping holds %d KiB resident, more than its %d KiB of pages", rss>>10, limit>>10)
	}
	if rss < size {
		// The premise: had the kernel not filled the mapping, this test
		// would say nothing.
		t.Errorf("the ring's mapping holds %d KiB resident, less than its size %d KiB", rss>>10, size>>10)
	}
}

// mappingRSS reads the resident bytes of this process's mapping that
// starts at addr, from /proc/self/smaps.
func mappingRSS(addr uintptr) (int, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	start := fmt.Sprintf("%x-", addr)
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if fields := strings.Fields(line); len(fields) > 0 && strings.Contains(fields[0], "-") {
			in = strings.HasPrefix(line, start)
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok && in {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				return 0, fmt.Errorf("smaps: %q: %w", line, err)
			}
			return kb << 10, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no mapping at %#x in /proc/self/smaps", addr)
}
