package record

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/bpf"
	"github.com/pathtrace/pathtrace/internal/decode"
)

const (
	nsNode   uint32 = 4026531840
	nsClient uint32 = 4026532281
	nsServer uint32 = 4026532400
)

var (
	clientIP = netip.MustParseAddr("10.244.1.5")
	svcIP    = netip.MustParseAddr("10.96.0.10")
	serverIP = netip.MustParseAddr("10.244.1.9")
)

func testMeta() Meta {
	return Meta{
		PathtraceVersion: "v0.1.0-test",
		Kernel:           "6.1.0-18-amd64",
		Hostname:         "node1",
		Backend:          "tracepoint+netfilter",
		Filter: Filter{
			PodIPs:     []netip.Addr{clientIP},
			VXLANPorts: []uint16{8472},
			Snaplen:    128,
		},
		StartWall:   time.Date(2025, 3, 14, 9, 26, 53, 589793238, time.UTC),
		StartMono:   1_000_000_000,
		Netns:       map[uint32]string{nsNode: "node1"},
		Nodes:       []uint32{nsNode},
		DropReasons: map[uint32]string{2: "NOT_SPECIFIED", 5: "NETFILTER_DROP"},
		Symbols:     map[uint64]string{0xffffffff81c3a400: "nf_hook_slow+0x0"},
		Reports:     json.RawMessage(`{"4026531840":{"kernel_release":"6.1.0-18-amd64"}}`),
	}
}

func testFinal() Meta {
	return Meta{
		Netns:       map[uint32]string{nsNode: "node1", nsClient: "default/client", nsServer: "default/server"},
		Nodes:       []uint32{nsNode},
		DropReasons: map[uint32]string{2: "NOT_SPECIFIED", 5: "NETFILTER_DROP", 6: "OTHERHOST"},
		Symbols:     map[uint64]string{0xffffffff81c3a400: "nf_hook_slow+0x0", 0xffffffff81c3a5e0: "nf_hook_slow+0x1e0"},
		EndWall:     time.Date(2025, 3, 14, 9, 27, 3, 0, time.UTC),
		Lost:        3,
		LostPerCPU:  []uint64{1, 2},
		Report:      json.RawMessage(`{"node":"node1","devices":["eth0","cni0"]}`),
		Connections: &Connections{Followed: 7, Evicted: 1},
	}
}

// wantMeta is what a reader returns after io.EOF for a recording written
// with testMeta, testFinal and n records.
func wantMeta(n int) Meta {
	m, f := testMeta(), testFinal()
	m.FormatVersion = FormatVersion
	m.Arch = runtime.GOARCH
	m.Netns = f.Netns
	m.DropReasons = f.DropReasons
	m.Symbols = f.Symbols
	m.EndWall = f.EndWall
	m.Records = uint64(n)
	m.Lost = f.Lost
	m.LostPerCPU = f.LostPerCPU
	m.Report = f.Report
	m.Connections = f.Connections
	return m
}

// tcpPacket returns a 40-byte IPv4/TCP SYN packet with a valid IP checksum.
func tcpPacket(src, dst netip.AddrPort, id uint16) []byte {
	p := make([]byte, 40)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], 40)
	binary.BigEndian.PutUint16(p[4:], id)
	p[6] = 0x40 // DF
	p[8] = 64
	p[9] = 6
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(p[20:], src.Port())
	binary.BigEndian.PutUint16(p[22:], dst.Port())
	binary.BigEndian.PutUint32(p[24:], 0x01020304)
	p[32] = 5 << 4
	p[33] = 0x02 // SYN
	binary.BigEndian.PutUint16(p[34:], 64240)
	return p
}

func devName(s string) (d [16]int8) {
	for i := 0; i < len(s) && i < 15; i++ {
		d[i] = int8(s[i])
	}
	return d
}

func be32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

// testRecord returns the i-th record of a synthetic trace: a SYN from a
// client pod to a service, through the node to the server, every fourth
// packet dropped by netfilter. garbage fills data[] past cap_len, as the
// ring buffer leaves it.
func testRecord(tb testing.TB, i int, garbage bool) []byte {
	tb.Helper()
	src := netip.AddrPortFrom(clientIP, uint16(40000+i/5))
	dst := netip.AddrPortFrom(svcIP, 80)
	var e bpf.TracepointEvent
	e.Skb = 0xffff888004a1c000 + uint64(i/5)*0x100
	e.Ts = 1_000_000_000 + uint64(i)*12_345
	e.Cpu = uint16(i % 2)
	e.Flags = uint8(decode.FlagL3 | decode.FlagL4)
	e.Mark = 0
	switch i % 5 {
	case 0:
		e.Kind, e.Netns, e.Ifindex, e.Dev = uint8(decode.KindTx), nsClient, 3, devName("eth0")
		e.Flags |= uint8(decode.FlagNew)
	case 1:
		e.Kind, e.Netns, e.Ifindex, e.Dev = uint8(decode.KindRx), nsNode, 7, devName("veth1a2b3c4d")
	case 2:
		e.Kind, e.Netns, e.Ifindex, e.Dev = uint8(decode.KindNF), nsNode, 7, devName("veth1a2b3c4d")
		e.Hook, e.Slot, e.InIfindex, e.InDev = 0 /* NF_INET_PRE_ROUTING */, uint8(decode.SlotFirst), 4, devName("cni0")
	case 3:
		e.Kind, e.Netns, e.Ifindex, e.Dev = uint8(decode.KindTx), nsNode, 4, devName("cni0")
		dst = netip.AddrPortFrom(serverIP, 8080)
	case 4:
		if i%4 == 0 {
			e.Kind, e.Netns = uint8(decode.KindDrop), nsNode
			e.DropReason = 5
			e.Flags |= uint8(decode.FlagReason)
		} else {
			e.Kind, e.Netns, e.Ifindex, e.Dev = uint8(decode.KindRx), nsServer, 2, devName("eth0")
			dst = netip.AddrPortFrom(serverIP, 8080)
		}
	}
	pkt := tcpPacket(src, dst, uint16(i))
	e.Len = uint32(len(pkt))
	e.Outer.Saddr[0], e.Outer.Daddr[0] = be32(src.Addr()), be32(dst.Addr())
	e.Outer.Sport, e.Outer.Dport, e.Outer.IpId = src.Port(), dst.Port(), uint16(i)
	e.Outer.Proto, e.Outer.TcpFlags = 6, 0x02
	if e.Kind != uint8(decode.KindDrop) {
		e.CapLen = uint16(copy(e.Data[:], pkt))
	}
	if garbage {
		for j := int(e.CapLen); j < len(e.Data); j++ {
			e.Data[j] = byte(j*7 + i)
		}
	}
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, &e); err != nil {
		tb.Fatal(err)
	}
	if buf.Len() != decode.RecordSize {
		tb.Fatalf("encoded record is %d bytes, want %d", buf.Len(), decode.RecordSize)
	}
	if e.CapLen == 0 && !garbage {
		// As the kernel sends an event that captured nothing.
		return buf.Bytes()[:decode.RecordPrefix]
	}
	return buf.Bytes()
}

// comment describes a hop the way the live run would.
func comment(ev *decode.Event) string {
	switch ev.Kind {
	case decode.KindNF:
		return "netfilter " + ev.Hook.String() + " " + ev.Slot.String() + " in=" + ev.In + " " +
			ev.Outer.Src.String() + " → " + ev.Outer.Dst.String()
	case decode.KindDrop:
		return "drop NETFILTER_DROP"
	}
	return ev.Kind.String() + " on " + ev.Dev
}

// writeRecording writes n synthetic records with testMeta and testFinal,
// naming the pod namespaces just before their first record, and returns
// the file and the records written.
func writeRecording(tb testing.TB, n int, garbage bool) ([]byte, [][]byte) {
	tb.Helper()
	var out bytes.Buffer
	w, err := NewWriter(&out, testMeta())
	if err != nil {
		tb.Fatal(err)
	}
	var d decode.Decoder
	var ev decode.Event
	recs := make([][]byte, n)
	for i := range n {
		rec := testRecord(tb, i, garbage)
		recs[i] = rec
		if err := d.Decode(rec, &ev); err != nil {
			tb.Fatal(err)
		}
		switch ev.Netns {
		case nsClient:
			w.SetNetnsName(nsClient, "default/client")
		case nsServer:
			w.SetNetnsName(nsServer, "default/server")
		}
		if ev.Kind == decode.KindDrop {
			w.SetDropReason(6, "OTHERHOST")
			w.SetSymbol(0xffffffff81c3a5e0, "nf_hook_slow+0x1e0")
		}
		if err := w.Write(rec, &ev, comment(&ev)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(testFinal()); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes(), recs
}

// readAll reads a whole recording and returns the records read (copied),
// the final meta and the first error other than io.EOF.
func readAll(data []byte) ([][]byte, Meta, error) {
	r, err := Open(bytes.NewReader(data))
	if err != nil {
		return nil, Meta{}, err
	}
	var recs [][]byte
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return recs, r.Meta(), nil
		}
		if err != nil {
			return recs, r.Meta(), err
		}
		recs = append(recs, bytes.Clone(rec))
	}
}

// blocks returns the offsets of the blocks of a well-formed recording and
// its length.
func blocks(tb testing.TB, data []byte) []int {
	tb.Helper()
	var offs []int
	for off := 0; off < len(data); {
		offs = append(offs, off)
		n := int(ne.Uint32(data[off+4:]))
		if n < minBlock || off+n > len(data) {
			tb.Fatalf("bad block at %d", off)
		}
		off += n
	}
	return offs
}

func mkfifo(path string) error { return unix.Mkfifo(path, 0o600) }

// sameRecord reports whether got, a record as Next returns it, holds sent,
// a record as written: a record that captured nothing is written without
// data[], which a reader returns as zero.
func sameRecord(got, sent []byte) bool {
	return len(got) == decode.RecordSize && bytes.Equal(got[:len(sent)], sent) &&
		bytes.Count(got[len(sent):], []byte{0}) == len(got)-len(sent)
}
