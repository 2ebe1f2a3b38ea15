package record

import (
	"bytes"
	"net"
	"slices"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/pathtrace/pathtrace/internal/decode"
)

var payload = []byte("PAYLOAD-MARKER-0123456789")

func serialize(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func ip4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: net.IP{10, 244, 1, 5}, DstIP: net.IP{10, 96, 0, 10}}
}

func TestHeaderLen(t *testing.T) {
	ports := []uint16{8472, 4789}
	tcp := &layers.TCP{SrcPort: 40312, DstPort: 80, SYN: true, Window: 64240,
		Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{5, 0xb4}}}}
	udp := &layers.UDP{SrcPort: 5353, DstPort: 53}
	inner := func() []byte {
		t4 := *tcp
		ip := ip4(layers.IPProtocolTCP)
		t4.SetNetworkLayerForChecksum(ip)
		return serialize(t, ip, &t4, gopacket.Payload(payload))
	}()
	vxlan := func(vlan bool) []byte {
		u := &layers.UDP{SrcPort: 33000, DstPort: 8472}
		ip := ip4(layers.IPProtocolUDP)
		u.SetNetworkLayerForChecksum(ip)
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		ls := []gopacket.SerializableLayer{ip, u, &layers.VXLAN{ValidIDFlag: true, VNI: 1}, eth}
		if vlan {
			eth.EthernetType = layers.EthernetTypeDot1Q
			ls = append(ls, &layers.Dot1Q{VLANIdentifier: 7, Type: layers.EthernetTypeIPv4})
		}
		return serialize(t, append(ls, gopacket.Payload(inner))...)
	}
	ipUDP := ip4(layers.IPProtocolUDP)
	udp.SetNetworkLayerForChecksum(ipUDP)
	udpPkt := serialize(t, ipUDP, udp, gopacket.Payload(payload))
	frag := bytes.Clone(udpPkt)
	frag[6], frag[7] = 0, 3 // fragment offset 24 bytes
	ipip := serialize(t, ip4(layers.IPProtocolIPv4), gopacket.Payload(inner))
	// Geneve with opts bytes of options, then Ethernet or IPv4 directly.
	geneve := func(opts int, eth bool) []byte {
		g := make([]byte, 8+opts)
		g[0], g[2], g[3], g[6] = byte(opts/4), 0x08, 0x00, 7
		if eth {
			g[2], g[3] = 0x65, 0x58
			e := make([]byte, 14)
			e[12] = 0x08
			g = append(g, e...)
		}
		ip, u := ip4(layers.IPProtocolUDP), &layers.UDP{SrcPort: 33000, DstPort: 6081}
		u.SetNetworkLayerForChecksum(ip)
		return serialize(t, ip, u, gopacket.Payload(append(g, inner...)))
	}
	ip6 := func(next layers.IPProtocol) *layers.IPv6 {
		return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next,
			SrcIP: net.ParseIP("fd77:1::5"), DstIP: net.ParseIP("fd77:96::10")}
	}
	tcp6 := func() []byte {
		t6 := *tcp
		ip := ip6(layers.IPProtocolTCP)
		t6.SetNetworkLayerForChecksum(ip)
		return serialize(t, ip, &t6, gopacket.Payload(payload))
	}()
	// A hop-by-hop options header (8 bytes) before TCP.
	hbh := slices.Concat(tcp6[:6], []byte{0}, tcp6[7:40], []byte{6, 0, 1, 4, 0, 0, 0, 0}, tcp6[40:])
	vxlan6 := func() []byte {
		u := &layers.UDP{SrcPort: 33000, DstPort: 8472}
		ip := ip4(layers.IPProtocolUDP)
		u.SetNetworkLayerForChecksum(ip)
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv6}
		return serialize(t, ip, u, &layers.VXLAN{ValidIDFlag: true, VNI: 1}, eth, gopacket.Payload(tcp6))
	}()
	icmp6Err := slices.Concat(serialize(t, ip6(layers.IPProtocolICMPv6))[:40], []byte{1, 4, 0, 0, 0, 0, 0, 0}, tcp6)
	icmp6Err[5] = byte(len(icmp6Err) - 40)

	for _, tc := range []struct {
		name string
		pkt  []byte
		want int
	}{
		{"tcp with options", inner, 20 + 24},
		{"udp", udpPkt, 20 + 8},
		{"vxlan", vxlan(false), 20 + 8 + 8 + 14 + 20 + 24},
		{"vxlan with a vlan tag", vxlan(true), 20 + 8 + 8 + 14 + 4 + 20 + 24},
		{"vxlan on another port", vxlan(false), 20 + 8},
		{"ipip", ipip, 20 + 20 + 24},
		{"geneve", geneve(0, true), 20 + 8 + 8 + 14 + 20 + 24},
		{"geneve with options", geneve(12, true), 20 + 8 + 8 + 12 + 14 + 20 + 24},
		{"geneve with options, ipv4 inside", geneve(8, false), 20 + 8 + 8 + 8 + 20 + 24},
		{"icmp echo", serialize(t, ip4(layers.IPProtocolICMPv4), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0)}, gopacket.Payload(payload)), 20 + 8},
		{"icmp unreachable", serialize(t, ip4(layers.IPProtocolICMPv4), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4)}, gopacket.Payload(udpPkt)), 20 + 8 + 20 + 8},
		{"later fragment", frag, 20},
		{"cut in the tcp header", inner[:30], 30},
		{"cut in the ip header", inner[:12], 12},
		{"ipv6 tcp", tcp6, 40 + 24},
		{"ipv6 hop-by-hop", hbh, 40 + 8 + 24},
		{"ipv6 in vxlan", vxlan6, 20 + 8 + 8 + 14 + 40 + 24},
		{"icmpv6 unreachable", icmp6Err, 40 + 8 + 40 + 8},
		{"not ip", append([]byte{0x50}, inner[1:]...), 0},
		{"empty", nil, 0},
	} {
		p := ports
		if tc.name == "vxlan on another port" {
			p = []uint16{4789}
		}
		got := HeaderLen(tc.pkt, p)
		if got != tc.want {
			t.Errorf("%s: HeaderLen = %d, want %d", tc.name, got, tc.want)
		}
		if bytes.Contains(tc.pkt[:got], payload) {
			t.Errorf("%s: the payload is in the headers", tc.name)
		}
	}
}

// TestHeadersOnly: a recording made with Filter.HeadersOnly keeps each
// packet up to its headers, and its records say so in cap_len.
func TestHeadersOnly(t *testing.T) {
	ipUDP := ip4(layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: 5353, DstPort: 53}
	udp.SetNetworkLayerForChecksum(ipUDP)
	pkt := serialize(t, ipUDP, udp, gopacket.Payload(payload))

	for _, headersOnly := range []bool{false, true} {
		meta := testMeta()
		meta.Filter.HeadersOnly = headersOnly
		var out bytes.Buffer
		w, err := NewWriter(&out, meta)
		if err != nil {
			t.Fatal(err)
		}
		rec := testRecord(t, 0, false)
		copy(rec[recordPrefix:], pkt)
		ne.PutUint16(rec[capLenOff:], uint16(len(pkt)))
		var ev decode.Event
		var d decode.Decoder
		if err := d.Decode(rec, &ev); err != nil {
			t.Fatal(err)
		}
		if err := w.Write(rec, &ev, "udp"); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(Meta{}); err != nil {
			t.Fatal(err)
		}
		recs, m, err := readAll(out.Bytes())
		if err != nil || len(recs) != 1 || m.Filter.HeadersOnly != headersOnly {
			t.Fatalf("read back: %d records, headers only %v, %v", len(recs), m.Filter.HeadersOnly, err)
		}
		want := len(pkt)
		if headersOnly {
			want = 28
		}
		if got := int(ne.Uint16(recs[0][capLenOff:])); got != want {
			t.Errorf("headers only %v: cap_len %d, want %d", headersOnly, got, want)
		}
		if bytes.Contains(out.Bytes(), payload) != !headersOnly {
			t.Errorf("headers only %v: the payload in the file: %v", headersOnly, !headersOnly)
		}
	}
}

// FuzzHeaderLen: any bytes give a length within them.
func FuzzHeaderLen(f *testing.F) {
	f.Add([]byte{0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x80, 0xe8, 0x21, 0x18, 0, 8, 0, 0})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if n := HeaderLen(pkt, []uint16{8472}); n < 0 || n > len(pkt) {
			t.Fatalf("HeaderLen %d of %d bytes", n, len(pkt))
		}
	})
}
