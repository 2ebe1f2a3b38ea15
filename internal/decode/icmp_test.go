package decode

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// ipv4 builds an IPv4 header (with opts, a multiple of 4 bytes) and payload.
func ipv4(proto uint8, src, dst string, id, frag uint16, opts []byte, payload []byte) []byte {
	hl := 20 + len(opts)
	b := make([]byte, hl, hl+len(payload))
	b[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(hl+len(payload)))
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8], b[9] = 64, proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], opts)
	return append(b, payload...)
}

// icmpErr is an ICMP error of type and code from src to dst quoting q.
func icmpErr(typ, code uint8, src, dst string, q []byte) []byte {
	return ipv4(ProtoICMP, src, dst, 0, 0, nil, append([]byte{typ, code, 0, 0, 0, 0, 0, 0}, q...))
}

func tcpSeg(sport, dport uint16, flags uint8) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12], b[13] = 5<<4, flags
	return b
}

func TestICMPQuote(t *testing.T) {
	syn := ipv4(ProtoTCP, "10.244.1.5", "10.96.0.11", 0x1234, 0x4000, nil, tcpSeg(40312, 80, 0x02))
	udp := ipv4(ProtoUDP, "10.244.1.5", "10.96.0.10", 7, 0, nil, []byte{0x9c, 0x40, 0, 53, 0, 8, 0, 0})
	echo := ipv4(ProtoICMP, "10.244.1.5", "10.244.2.7", 9, 0, nil, []byte{8, 0, 0, 0, 0x12, 0x34, 0, 1})
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		name string
		data []byte
		want Tuple
		ok   bool
	}{
		{"port unreachable for a TCP SYN", icmpErr(3, 3, "10.244.1.1", "10.244.1.5", syn),
			Tuple{Proto: ProtoTCP, Src: ap("10.244.1.5:40312"), Dst: ap("10.96.0.11:80"), IPID: 0x1234, TCPFlags: 0x02, HasPorts: true}, true},
		{"the 8 bytes RFC 792 asks for: no TCP flags", icmpErr(3, 3, "10.244.1.1", "10.244.1.5", syn[:28]),
			Tuple{Proto: ProtoTCP, Src: ap("10.244.1.5:40312"), Dst: ap("10.96.0.11:80"), IPID: 0x1234, HasPorts: true}, true},
		{"port unreachable for UDP", icmpErr(3, 3, "10.96.0.10", "10.244.1.5", udp),
			Tuple{Proto: ProtoUDP, Src: ap("10.244.1.5:40000"), Dst: ap("10.96.0.10:53"), IPID: 7, HasPorts: true}, true},
		{"time exceeded for an echo request", icmpErr(11, 0, "192.168.50.1", "10.244.1.5", echo),
			Tuple{Proto: ProtoICMP, Src: ap("10.244.1.5:8"), Dst: ap("10.244.2.7:0"), IPID: 9, HasPorts: true}, true},
		{"IP options on both headers", ipv4(ProtoICMP, "10.244.1.1", "10.244.1.5", 0, 0, []byte{1, 1, 1, 0},
			append([]byte{3, 3, 0, 0, 0, 0, 0, 0}, ipv4(ProtoUDP, "10.244.1.5", "10.96.0.10", 7, 0, []byte{1, 1, 1, 0}, udp[20:])...)),
			Tuple{Proto: ProtoUDP, Src: ap("10.244.1.5:40000"), Dst: ap("10.96.0.10:53"), IPID: 7, HasPorts: true}, true},
		{"a later fragment has no ports", icmpErr(3, 3, "10.244.1.1", "10.244.1.5", ipv4(ProtoUDP, "10.244.1.5", "10.96.0.10", 7, 185, nil, udp[20:])),
			Tuple{Proto: ProtoUDP, Src: ap("10.244.1.5:0"), Dst: ap("10.96.0.10:0"), IPID: 7}, true},
		{"cut before the ports", icmpErr(3, 3, "10.244.1.1", "10.244.1.5", syn[:22]), Tuple{}, false},
		{"cut in the quoted header", icmpErr(3, 3, "10.244.1.1", "10.244.1.5", syn[:12]), Tuple{}, false},
		{"an echo reply is no error", icmpErr(0, 0, "10.244.2.7", "10.244.1.5", syn), Tuple{}, false},
		{"not ICMP", syn, Tuple{}, false},
		{"not IPv4", append([]byte{0x60}, syn[1:]...), Tuple{}, false},
		{"nothing captured", nil, Tuple{}, false},
	} {
		got, ok := ICMPQuote(tc.data)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: %+v %v, want %+v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzICMPQuote(f *testing.F) {
	f.Add(icmpErr(3, 3, "10.244.1.1", "10.244.1.5", ipv4(ProtoTCP, "10.244.1.5", "10.96.0.11", 1, 0, nil, tcpSeg(1, 80, 2))))
	f.Add([]byte{0x4f})
	f.Fuzz(func(t *testing.T, b []byte) {
		if q, ok := ICMPQuote(b); ok && !q.Valid() {
			t.Errorf("quote %+v has no address", q)
		}
	})
}

// ipv6 builds an IPv6 header with next header next and payload.
func ipv6(next uint8, src, dst string, payload []byte) []byte {
	b := make([]byte, 40, 40+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6], b[7] = next, 64
	copy(b[8:], netip.MustParseAddr(src).AsSlice())
	copy(b[24:], netip.MustParseAddr(dst).AsSlice())
	return append(b, payload...)
}

func TestICMPv6Quote(t *testing.T) {
	syn := ipv6(ProtoTCP, "fd77:1::5", "fd96::10", tcpSeg(40312, 80, 0x02))
	frag := ipv6(44, "fd77:1::5", "fd96::10", append([]byte{ProtoUDP, 0, 0, 0x18, 0, 0, 0x12, 0x34}, 0x9c, 0x40, 0, 53))
	err := func(typ uint8, q []byte) []byte {
		return ipv6(ProtoICMPv6, "fd77:1::1", "fd77:1::5", append([]byte{typ, 4, 0, 0, 0, 0, 0, 0}, q...))
	}
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		name string
		data []byte
		want Tuple
		ok   bool
	}{
		{"port unreachable for a TCP SYN", err(1, syn),
			Tuple{Proto: ProtoTCP, Src: ap("[fd77:1::5]:40312"), Dst: ap("[fd96::10]:80"), TCPFlags: 0x02, HasPorts: true}, true},
		{"a later fragment has no ports", err(3, frag),
			Tuple{Proto: ProtoUDP, Src: ap("[fd77:1::5]:0"), Dst: ap("[fd96::10]:0"), IPID: 0x1234}, true},
		{"an echo request is no error", err(128, syn), Tuple{}, false},
		{"ICMP types in ICMPv6 are not errors", err(11, syn), Tuple{}, false},
		{"cut in the quoted header", err(1, syn[:30]), Tuple{}, false},
	} {
		got, ok := ICMPQuote(tc.data)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: %+v %v, want %+v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
