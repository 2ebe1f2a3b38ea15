package decode

import (
	"encoding/binary"
	"net/netip"
)

// ProtoSCTP is SCTP's IP protocol number: its ports sit where TCP's and
// UDP's do.
const ProtoSCTP uint8 = 132

// IPv4 and ICMP header layout (RFC 791, RFC 792).
const (
	ipv4MinHeader = 20
	icmpHeader    = 8
	ipv4FragMask  = 0x1fff // fragment offset, in the flags-and-offset word
)

// ICMPError reports whether an ICMP type is an error that quotes the
// packet it answers: destination unreachable, source quench, redirect,
// time exceeded, parameter problem.
func ICMPError(typ uint8) bool {
	switch typ {
	case 3, 4, 5, 11, 12:
		return true
	}
	return false
}

// ICMPQuote reads the packet an ICMP error answers from data, an event's
// captured bytes from its IPv4 header: the IPv4 header the error quotes
// and the ports after it (for ICMP, the type and the code; TCP flags when
// the quote reaches them). ok is false when data is not an ICMP error, or
// is cut before the quoted ports. The quote of a packet that was not a
// first fragment has no ports (HasPorts false).
func ICMPQuote(data []byte) (t Tuple, ok bool) {
	hl, ok := ipv4HeaderLen(data)
	if !ok || data[9] != ProtoICMP || len(data) < hl+icmpHeader || !ICMPError(data[hl]) {
		return Tuple{}, false
	}
	inner := data[hl+icmpHeader:]
	hl, ok = ipv4HeaderLen(inner)
	if !ok {
		return Tuple{}, false
	}
	t = Tuple{Proto: inner[9], IPID: binary.BigEndian.Uint16(inner[4:])}
	src, dst := netip.AddrFrom4([4]byte(inner[12:16])), netip.AddrFrom4([4]byte(inner[16:20]))
	l4 := inner[hl:]
	var sport, dport uint16
	if binary.BigEndian.Uint16(inner[6:])&ipv4FragMask == 0 {
		switch t.Proto {
		case ProtoTCP, ProtoUDP, ProtoSCTP:
			if len(l4) < 4 {
				return Tuple{}, false
			}
			sport, dport, t.HasPorts = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:]), true
			if t.Proto == ProtoTCP && len(l4) > 13 {
				t.TCPFlags = l4[13]
			}
		case ProtoICMP:
			if len(l4) < 2 {
				return Tuple{}, false
			}
			sport, dport, t.HasPorts = uint16(l4[0]), uint16(l4[1]), true
		}
	}
	t.Src, t.Dst = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	return t, true
}

// ipv4HeaderLen is the length of the IPv4 header data starts with; ok is
// false when data does not start with a whole one.
func ipv4HeaderLen(data []byte) (int, bool) {
	if len(data) < ipv4MinHeader || data[0]>>4 != 4 {
		return 0, false
	}
	hl := int(data[0]&0x0f) * 4
	return hl, hl >= ipv4MinHeader && len(data) >= hl
}
