package decode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/pathtrace/pathtrace/internal/bpf"
	"github.com/pathtrace/pathtrace/internal/hop"
)

func encode(t testing.TB, r *bpf.TracepointEvent) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, r); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ip is an address as a tuple holds it: IPv4 in the first word, IPv6 in
// all four, each in network byte order read in host order.
func ip(s string) (w [4]uint32) {
	a := netip.MustParseAddr(s)
	if a.Is4() {
		b := a.As4()
		w[0] = binary.NativeEndian.Uint32(b[:])
		return w
	}
	b := a.As16()
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	return w
}

func name(s string) (n [16]int8) {
	for i := range min(len(s), 15) {
		n[i] = int8(s[i])
	}
	return n
}

func sampleRecord() bpf.TracepointEvent {
	var r bpf.TracepointEvent
	r.Skb = 0xffff888112345600
	r.Ts = 123456789
	r.Kind = uint8(KindNF)
	r.Hook = 0 // NF_INET_PRE_ROUTING
	r.Slot = uint8(SlotLast)
	r.Flags = uint8(FlagL3 | FlagL4 | FlagInner | FlagInnerL4)
	r.Netns = 4026532177
	r.Ifindex = 7
	r.Dev = name("cni0")
	r.InDev = name("cni0")
	r.InIfindex = 7
	r.Len = 60
	r.Mark = 0x4000
	r.Outer.Saddr, r.Outer.Daddr = ip("192.168.50.11"), ip("192.168.50.12")
	r.Outer.Sport, r.Outer.Dport, r.Outer.Proto = 48748, 8472, ProtoUDP
	r.Inner.Saddr, r.Inner.Daddr = ip("10.244.1.5"), ip("10.96.0.10")
	r.Inner.Sport, r.Inner.Dport, r.Inner.Proto, r.Inner.TcpFlags, r.Inner.IpId = 40312, 80, ProtoTCP, 0x02, 777
	r.Vni = 1
	r.CapLen = 3
	copy(r.Data[:], []byte{0x45, 0x00, 0x00})
	return r
}

func TestDecode(t *testing.T) {
	r := sampleRecord()
	var d Decoder
	var ev Event
	if err := d.Decode(encode(t, &r), &ev); err != nil {
		t.Fatal(err)
	}
	want := Event{
		Kind: KindNF, Flags: FlagL3 | FlagL4 | FlagInner | FlagInnerL4,
		SKB: 0xffff888112345600, TS: 123456789, Netns: 4026532177, Ifindex: 7, Dev: "cni0",
		Backend: hop.NetfilterLink, Hook: hop.Prerouting, Slot: SlotLast, In: "cni0", InIfindex: 7, Len: 60, Mark: 0x4000,
		Outer: Tuple{Proto: ProtoUDP, Src: netip.MustParseAddrPort("192.168.50.11:48748"),
			Dst: netip.MustParseAddrPort("192.168.50.12:8472"), HasPorts: true},
		Inner: Tuple{Proto: ProtoTCP, Src: netip.MustParseAddrPort("10.244.1.5:40312"),
			Dst: netip.MustParseAddrPort("10.96.0.10:80"), IPID: 777, TCPFlags: 0x02, HasPorts: true},
		VNI: 1, Tunnel: hop.TunnelVXLAN,
	}
	got := ev
	if !bytes.Equal(got.Data, []byte{0x45, 0, 0}) {
		t.Errorf("Data = %x", got.Data)
	}
	got.Data = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded\n got %+v\nwant %+v", got, want)
	}
	if !ev.Encapsulated() {
		t.Error("Encapsulated() = false")
	}
}

func TestDecodeWithoutPorts(t *testing.T) {
	r := sampleRecord()
	r.Flags = uint8(FlagL3) // a later fragment: addresses, no ports
	var d Decoder
	var ev Event
	if err := d.Decode(encode(t, &r), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Outer.Src.Port() != 0 || ev.Outer.HasPorts || ev.Inner.Valid() {
		t.Errorf("got %+v / %+v", ev.Outer, ev.Inner)
	}
}

// icmpEchoRecord is a ping request from 10.244.1.5 with echo id 0x1234,
// its bytes captured from the IPv4 header on; vxlan puts it in VXLAN.
func icmpEchoRecord(vxlan bool) bpf.TracepointEvent {
	var r bpf.TracepointEvent
	r.Kind = uint8(KindTx)
	ipHdr := []byte{0x45, 0, 0, 84, 0, 1, 0x40, 0, 64, ProtoICMP, 0, 0, 10, 244, 1, 5, 10, 244, 2, 7}
	pkt := append(slices.Clone(ipHdr), icmpEcho, 0, 0, 0, 0x12, 0x34, 0, 1)
	if !vxlan {
		r.Flags = uint8(FlagL3 | FlagL4)
		r.Outer.Saddr, r.Outer.Daddr, r.Outer.Sport, r.Outer.Proto = ip("10.244.1.5"), ip("10.244.2.7"), icmpEcho, ProtoICMP
	} else {
		r.Flags = uint8(FlagL3 | FlagL4 | FlagInner | FlagInnerL4)
		r.Outer.Saddr, r.Outer.Daddr, r.Outer.Sport, r.Outer.Dport, r.Outer.Proto = ip("192.168.50.11"), ip("192.168.50.12"), 40000, 8472, ProtoUDP
		r.Inner.Saddr, r.Inner.Daddr, r.Inner.Sport, r.Inner.Proto = ip("10.244.1.5"), ip("10.244.2.7"), icmpEcho, ProtoICMP
		r.Vni = 1
		outer := []byte{0x45, 0, 0, 134, 0, 2, 0, 0, 64, ProtoUDP, 0, 0, 192, 168, 50, 11, 192, 168, 50, 12}
		udp := []byte{0x9c, 0x40, 0x21, 0x18, 0, 114, 0, 0}
		vx := []byte{0x08, 0, 0, 0, 0, 0, 1, 0}
		eth := make([]byte, 14)
		eth[12] = 0x08
		pkt = slices.Concat(outer, udp, vx, eth, pkt)
	}
	r.CapLen = uint16(copy(r.Data[:], pkt))
	return r
}

// decodeRecord decodes one record.
func decodeRecord(t *testing.T, r bpf.TracepointEvent) Event {
	t.Helper()
	var d Decoder
	var ev Event
	if err := d.Decode(encode(t, &r), &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestDecodeICMPEchoID(t *testing.T) {
	ev := decodeRecord(t, icmpEchoRecord(false))
	if !ev.Outer.HasICMPID || ev.Outer.ICMPID != 0x1234 || ev.Outer.Src.Port() != icmpEcho {
		t.Errorf("outer %+v: want echo id 0x1234, type 8 as the source port", ev.Outer)
	}
	ev = decodeRecord(t, icmpEchoRecord(true))
	if !ev.Inner.HasICMPID || ev.Inner.ICMPID != 0x1234 || ev.Outer.HasICMPID {
		t.Errorf("vxlan: inner %+v outer %+v: want the inner echo id 0x1234", ev.Inner, ev.Outer)
	}

	for name, change := range map[string]func(r *bpf.TracepointEvent){
		"not an echo": func(r *bpf.TracepointEvent) { r.Data[20] = 3 }, // destination unreachable
		"short":       func(r *bpf.TracepointEvent) { r.CapLen = 25 },
		"none":        func(r *bpf.TracepointEvent) { r.CapLen = 0 },
		"no ports":    func(r *bpf.TracepointEvent) { r.Flags = uint8(FlagL3) },
		"not ipv4":    func(r *bpf.TracepointEvent) { r.Data[0] = 0x60 },
		"bad ihl":     func(r *bpf.TracepointEvent) { r.Data[0] = 0x4f },
	} {
		r := icmpEchoRecord(false)
		change(&r)
		if ev := decodeRecord(t, r); ev.Outer.HasICMPID {
			t.Errorf("%s: echo id %d", name, ev.Outer.ICMPID)
		}
	}
	r := icmpEchoRecord(true)
	r.CapLen = 60 // ends inside the inner IPv4 header
	if ev := decodeRecord(t, r); ev.Inner.HasICMPID {
		t.Errorf("vxlan, short: echo id %d", ev.Inner.ICMPID)
	}
}

func TestDecodeRejects(t *testing.T) {
	r := sampleRecord()
	b := encode(t, &r)
	var d Decoder
	var ev Event
	if err := d.Decode(b[:RecordPrefix-1], &ev); !errors.Is(err, ErrShort) {
		t.Errorf("record without its whole header: err = %v, want ErrShort", err)
	}
	if err := d.Decode(b[:RecordPrefix+2], &ev); !errors.Is(err, ErrShort) {
		t.Errorf("record shorter than its 3 captured bytes: err = %v, want ErrShort", err)
	}
	// The kernel leaves data[] out of an event that captures nothing.
	r0 := sampleRecord()
	r0.CapLen = 0
	if err := d.Decode(encode(t, &r0)[:RecordPrefix], &ev); err != nil || ev.Data != nil || ev.Dev != "cni0" {
		t.Errorf("record of its header only: err = %v, data %v, dev %q; want it decoded without data", err, ev.Data, ev.Dev)
	}
	r.CapLen = 300
	if err := d.Decode(encode(t, &r), &ev); err == nil {
		t.Error("captured length past the buffer was accepted")
	}
}

func TestDecodeInternsNames(t *testing.T) {
	r := sampleRecord()
	b := encode(t, &r)
	var d Decoder
	var ev Event
	if err := d.Decode(b, &ev); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() { _ = d.Decode(b, &ev) })
	if allocs != 0 {
		t.Errorf("Decode allocates %.1f times per record, want 0", allocs)
	}
}

// TestDecodeNamesPrintable: control bytes and bytes past ASCII in a name
// (a device named by a pod, a hostile recording) decode as '?'.
func TestDecodeNamesPrintable(t *testing.T) {
	r := sampleRecord()
	r.Dev = name("eth\x1b[2J\x9b\xff")
	r.InDev = name("cni0")
	var d Decoder
	var ev Event
	if err := d.Decode(encode(t, &r), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Dev != "eth?[2J??" || ev.In != "cni0" {
		t.Errorf("names %q %q", ev.Dev, ev.In)
	}
}

func FuzzDecode(f *testing.F) {
	r := sampleRecord()
	f.Add(encode(f, &r))
	f.Add(make([]byte, RecordSize))
	f.Add([]byte{1, 2, 3})
	for _, vxlan := range []bool{false, true} {
		r := icmpEchoRecord(vxlan)
		f.Add(encode(f, &r))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Decoder
		var ev Event
		if err := d.Decode(b, &ev); err != nil {
			return
		}
		if len(ev.Data) > len(r.Data) {
			t.Fatalf("Data has %d bytes", len(ev.Data))
		}
		_ = ev.Kind.String() + ev.Hook.String() + ev.Slot.String()
		for _, s := range []string{ev.Dev, ev.In, ev.Out, ev.Table.Name, ev.IPVS.Scheduler} {
			for _, c := range []byte(s) {
				if c < 0x21 || c > 0x7e {
					t.Fatalf("name %q is not printable ASCII", s)
				}
			}
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	r := sampleRecord()
	rec := encode(b, &r)
	var d Decoder
	var ev Event
	b.ReportAllocs()
	b.SetBytes(int64(len(rec)))
	for b.Loop() {
		if err := d.Decode(rec, &ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// The tunnel an encapsulated record names, and the inner echo id found
// behind each tunnel's headers: IPIP's outer IPv4 header only, Geneve's
// variable options and its optional Ethernet header.
func TestDecodeTunnels(t *testing.T) {
	echo := ipv4(ProtoICMP, "10.244.1.5", "10.244.2.7", 9, 0, nil, []byte{icmpEcho, 0, 0, 0, 0x12, 0x34, 0, 1})
	eth := make([]byte, 14)
	eth[12] = 0x08
	udp := func(dport uint16, payload []byte) []byte {
		return ipv4(ProtoUDP, "192.168.50.11", "192.168.50.12", 2, 0, nil,
			slices.Concat([]byte{0x9c, 0x40, byte(dport >> 8), byte(dport), 0, 0, 0, 0}, payload))
	}
	geneve := func(opts int, proto uint16) []byte {
		return append([]byte{byte(opts / 4), 0, byte(proto >> 8), byte(proto), 0, 0, 7, 0}, make([]byte, opts)...)
	}
	for _, tt := range []struct {
		name   string
		kind   TunnelKind
		outer  []byte
		tunnel hop.Tunnel
	}{
		{"recorded before the field: vxlan", TunnelVXLAN, udp(8472, slices.Concat([]byte{0x08, 0, 0, 0, 0, 0, 1, 0}, eth, echo)), hop.TunnelVXLAN},
		{"ipip", TunnelIPIP, ipv4(4, "192.168.50.11", "192.168.50.12", 2, 0, nil, echo), hop.TunnelIPIP},
		{"geneve ethernet", TunnelGeneve, udp(6081, slices.Concat(geneve(0, etherTypeTEB), eth, echo)), hop.TunnelGeneve},
		{"geneve options, ethernet", TunnelGeneve, udp(6081, slices.Concat(geneve(12, etherTypeTEB), eth, echo)), hop.TunnelGeneve},
		{"geneve options, ipv4", TunnelGeneve, udp(6081, slices.Concat(geneve(8, 0x0800), echo)), hop.TunnelGeneve},
		{"unknown tunnel", TunnelKind(9), ipv4(4, "192.168.50.11", "192.168.50.12", 2, 0, nil, echo), hop.NoTunnel},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var r bpf.TracepointEvent
			r.Kind = uint8(KindRx)
			r.Flags = uint8(FlagL3 | FlagInner | FlagInnerL4)
			r.Tunnel = uint8(tt.kind)
			r.Outer.Saddr, r.Outer.Daddr, r.Outer.Proto = ip("192.168.50.11"), ip("192.168.50.12"), tt.outer[9]
			r.Inner.Saddr, r.Inner.Daddr, r.Inner.Sport, r.Inner.Proto = ip("10.244.1.5"), ip("10.244.2.7"), icmpEcho, ProtoICMP
			r.CapLen = uint16(copy(r.Data[:], tt.outer))
			ev := decodeRecord(t, r)
			if ev.Tunnel != tt.tunnel || !ev.Encapsulated() {
				t.Errorf("tunnel %s encapsulated %v, want %s", ev.Tunnel, ev.Encapsulated(), tt.tunnel)
			}
			wantID := tt.tunnel != hop.NoTunnel
			if ev.Inner.HasICMPID != wantID || (wantID && ev.Inner.ICMPID != 0x1234) {
				t.Errorf("inner echo id %v %#x, want %v 0x1234", ev.Inner.HasICMPID, ev.Inner.ICMPID, wantID)
			}
		})
	}
	// Not encapsulated: no tunnel, whatever the field holds.
	r := sampleRecord()
	r.Flags, r.Tunnel = uint8(FlagL3|FlagL4), uint8(TunnelIPIP)
	if ev := decodeRecord(t, r); ev.Tunnel != hop.NoTunnel {
		t.Errorf("tunnel %s without FlagInner", ev.Tunnel)
	}
}

// An IPv6 packet inside VXLAN over IPv4: 16-byte inner addresses, and the
// ICMPv6 echo id read from the captured bytes past an extension header.
func TestDecodeIPv6(t *testing.T) {
	var r bpf.TracepointEvent
	r.Kind = uint8(KindRx)
	r.Flags = uint8(FlagL3 | FlagL4 | FlagInner | FlagInnerL4)
	r.Outer.Family, r.Inner.Family = familyIPv4, familyIPv6
	r.Outer.Saddr, r.Outer.Daddr, r.Outer.Sport, r.Outer.Dport, r.Outer.Proto = ip("192.168.50.11"), ip("192.168.50.12"), 40000, 8472, ProtoUDP
	r.Inner.Saddr, r.Inner.Daddr, r.Inner.Sport, r.Inner.Proto = ip("fd77:1::5"), ip("fd77:2::7"), icmpv6Echo, ProtoICMPv6
	ip6 := make([]byte, 40)
	ip6[0], ip6[6], ip6[7] = 0x60, 0 /* hop-by-hop */, 64
	copy(ip6[8:], netip.MustParseAddr("fd77:1::5").AsSlice())
	copy(ip6[24:], netip.MustParseAddr("fd77:2::7").AsSlice())
	hbh := []byte{ProtoICMPv6, 0, 1, 4, 0, 0, 0, 0}
	echo := []byte{icmpv6Echo, 0, 0, 0, 0x66, 0x66, 0, 1}
	outer := []byte{0x45, 0, 0, 134, 0, 2, 0, 0, 64, ProtoUDP, 0, 0, 192, 168, 50, 11, 192, 168, 50, 12}
	udp := []byte{0x9c, 0x40, 0x21, 0x18, 0, 114, 0, 0}
	vx := []byte{0x08, 0, 0, 0, 0, 0, 1, 0}
	eth := make([]byte, 14)
	eth[12], eth[13] = 0x86, 0xdd
	r.CapLen = uint16(copy(r.Data[:], slices.Concat(outer, udp, vx, eth, ip6, hbh, echo)))
	ev := decodeRecord(t, r)
	if ev.Outer.Src != netip.MustParseAddrPort("192.168.50.11:40000") {
		t.Errorf("outer %+v", ev.Outer)
	}
	want := Tuple{Proto: ProtoICMPv6, Src: netip.MustParseAddrPort("[fd77:1::5]:128"), Dst: netip.MustParseAddrPort("[fd77:2::7]:0"),
		HasPorts: true, HasICMPID: true, ICMPID: 0x6666}
	if ev.Inner != want {
		t.Errorf("inner %+v, want %+v", ev.Inner, want)
	}
	// The ICMP echo type in an ICMPv6 header is no echo.
	r.Inner.Sport, r.Data[len(outer)+len(udp)+len(vx)+len(eth)+40+8] = icmpEcho, icmpEcho
	if ev := decodeRecord(t, r); ev.Inner.HasICMPID {
		t.Errorf("ICMPv6 type 8 taken for an echo: %+v", ev.Inner)
	}
}

// Decode sets every field of the event it fills: decoding into an event
// that held another record gives what decoding into a zero one gives.
func TestDecodeReusedEvent(t *testing.T) {
	var recs []bpf.TracepointEvent
	recs = append(recs, sampleRecord(), icmpEchoRecord(true), icmpEchoRecord(false))
	var ipvs, table bpf.TracepointEvent
	ipvs.Kind, ipvs.Flags = uint8(KindIPVS), uint8(FlagFentry)
	ipvs.Ext.Val, ipvs.Ext.Name = [3]uint32{3, 6, 1}, name("rr")
	table.Kind, table.Hook, table.InDev, table.OutDev = uint8(KindTable), 2, name("cni0"), name("eth0")
	table.Ext.Name, table.Ext.Val = name("filter"), [3]uint32{0, 2, 2}
	recs = append(recs, ipvs, table, bpf.TracepointEvent{Kind: uint8(KindRx)})

	var d Decoder
	for _, r := range recs {
		for _, prev := range recs {
			var ev Event
			poison(reflect.ValueOf(&ev).Elem())
			if err := d.Decode(encode(t, &prev), &ev); err != nil {
				t.Fatal(err)
			}
			if err := d.Decode(encode(t, &r), &ev); err != nil {
				t.Fatal(err)
			}
			var fresh Event
			if err := d.Decode(encode(t, &r), &fresh); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ev, fresh) {
				t.Errorf("kind %s after kind %s:\n%+v\nwant\n%+v", Kind(r.Kind), Kind(prev.Kind), ev, fresh)
			}
		}
	}
	// Every field, also one added later, is overwritten.
	var ev, fresh Event
	poison(reflect.ValueOf(&ev).Elem())
	r := bpf.TracepointEvent{Kind: uint8(KindRx)}
	if err := errors.Join(d.Decode(encode(t, &r), &ev), d.Decode(encode(t, &r), &fresh)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ev, fresh) {
		t.Errorf("fields left from before:\n%+v\nwant\n%+v", ev, fresh)
	}
}

// poison sets every settable field of v to a non-zero value.
func poison(v reflect.Value) {
	switch v.Interface().(type) {
	case netip.AddrPort:
		v.Set(reflect.ValueOf(netip.MustParseAddrPort("1.2.3.4:5")))
		return
	case netip.Addr:
		v.Set(reflect.ValueOf(netip.MustParseAddr("1.2.3.4")))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				poison(v.Field(i))
			}
		}
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Int, reflect.Int64:
		v.SetInt(1)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
	}
}

// Fragment is read from the captured header of the packet the event
// follows: IPv4 with more fragments or an offset, an IPv6 fragment header
// with either, the inner header of a tunnel's packet; not an atomic
// fragment, not a datagram with DF, not a record that captured nothing.
func TestDecodeFragment(t *testing.T) {
	udp := []byte{0x9c, 0x40, 0x1b, 0xbc, 0, 8, 0, 0}
	ip6 := func(frag []byte) []byte {
		b := make([]byte, 40)
		b[0], b[6], b[7] = 0x60, 17, 64
		copy(b[8:], netip.MustParseAddr("fd77:1::5").AsSlice())
		copy(b[24:], netip.MustParseAddr("fd77:2::7").AsSlice())
		if frag != nil {
			b[6] = 44
			return slices.Concat(b, frag, udp)
		}
		return append(b, udp...)
	}
	vxlan := func(inner []byte) []byte {
		eth := make([]byte, 14)
		eth[12] = 0x08
		return ipv4(ProtoUDP, "192.168.50.11", "192.168.50.12", 2, 0, nil,
			slices.Concat([]byte{0x9c, 0x40, 0x21, 0x18, 0, 0, 0, 0}, []byte{0x08, 0, 0, 0, 0, 0, 1, 0}, eth, inner))
	}
	for _, tt := range []struct {
		name   string
		pkt    []byte
		tunnel bool
		want   bool
	}{
		{"ipv4 first fragment", ipv4(ProtoUDP, "10.244.1.5", "10.244.2.7", 9, 0x2000, nil, udp), false, true},
		{"ipv4 last fragment", ipv4(ProtoUDP, "10.244.1.5", "10.244.2.7", 9, 0x00b9, nil, udp), false, true},
		{"ipv4 with DF", ipv4(ProtoUDP, "10.244.1.5", "10.244.2.7", 9, 0x4000, nil, udp), false, false},
		{"ipv6 first fragment", ip6([]byte{17, 0, 0, 1, 0, 0, 0, 9}), false, true},
		{"ipv6 later fragment", ip6([]byte{17, 0, 0x05, 0xa8, 0, 0, 0, 9}), false, true},
		{"ipv6 atomic fragment", ip6([]byte{17, 0, 0, 0, 0, 0, 0, 9}), false, false},
		{"ipv6", ip6(nil), false, false},
		{"inner fragment", vxlan(ipv4(ProtoUDP, "10.244.1.5", "10.244.2.7", 9, 0x2000, nil, udp)), true, true},
		{"inner datagram", vxlan(ipv4(ProtoUDP, "10.244.1.5", "10.244.2.7", 9, 0, nil, udp)), true, false},
		{"outer fragment", ipv4(ProtoUDP, "192.168.50.11", "192.168.50.12", 2, 0x2000, nil, udp), false, true},
		{"nothing captured", nil, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var r bpf.TracepointEvent
			r.Kind = uint8(KindRx)
			r.Flags = uint8(FlagL3)
			if tt.tunnel {
				r.Flags |= uint8(FlagInner)
			}
			r.CapLen = uint16(copy(r.Data[:], tt.pkt))
			if ev := decodeRecord(t, r); ev.IsFragment() != tt.want {
				t.Errorf("IsFragment %v, want %v", ev.IsFragment(), tt.want)
			}
		})
	}
}
