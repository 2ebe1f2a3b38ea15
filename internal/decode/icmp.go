package decode

import (
	"encoding/binary"
	"net/netip"
)

// ProtoSCTP is SCTP's IP protocol number: its ports sit where TCP's and
// UDP's do.
const ProtoSCTP uint8 = 132

// IPv4, IPv6 and ICMP header layout (RFC 791, RFC 8200, RFC 792, RFC 4443).
const (
	ipv4MinHeader = 20
	ipv6Header    = 40
	icmpHeader    = 8
	ipv4FragMask  = 0x1fff // fragment offset, in the flags-and-offset word
	ipv6FragMask  = 0xfff8 // fragment offset, in the fragment header's offset word
	ipv4MoreFrags = 0x2000 // more fragments, in IPv4's word
	ipv6MoreFrags = 0x0001 // more fragments, in the fragment header's word
)

// IPv6 extension headers the parsers skip, as the kernel programs do
// (bpf/include/common.h, ipv6_tuple), and how many.
const (
	nextHopByHop  = 0
	nextRouting   = 43
	nextFragment  = 44
	nextAuth      = 51
	nextDestOpts  = 60
	maxIPv6ExtHdr = 4
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

// ICMPv6Error reports whether an ICMPv6 type is an error that quotes the
// packet it answers: destination unreachable, packet too big, time
// exceeded, parameter problem (RFC 4443).
func ICMPv6Error(typ uint8) bool { return typ >= 1 && typ <= 4 }

// IsICMP reports whether proto is ICMP or ICMPv6: a tuple whose ports hold
// the type and the code.
func IsICMP(proto uint8) bool { return proto == ProtoICMP || proto == ProtoICMPv6 }

// ICMPErrorOf reports whether a message of protocol proto (ICMP or
// ICMPv6) and type typ is an error quoting the packet it answers.
func ICMPErrorOf(proto, typ uint8) bool {
	switch proto {
	case ProtoICMP:
		return ICMPError(typ)
	case ProtoICMPv6:
		return ICMPv6Error(typ)
	}
	return false
}

// ipHeader is an IPv4 or IPv6 header as the parsers here read it.
type ipHeader struct {
	src, dst netip.Addr
	proto    uint8  // IPv6: the header after the extension headers skipped
	id       uint16 // IPv4 id; IPv6: the low bits of a fragment's identification
	l4       []byte // from the transport header on; nil when there is none (a later fragment, an unknown extension header)
	first    bool   // no fragment, or the first one: l4 holds the transport header
	frag     bool   // a fragment (the first one too): more fragments follow, or it is not the first
}

// parseIP reads the IPv4 or IPv6 header data starts with; ok is false when
// data does not start with a whole one.
func parseIP(data []byte) (h ipHeader, ok bool) {
	if len(data) == 0 {
		return h, false
	}
	switch data[0] >> 4 {
	case 4:
		hl, ok := ipv4HeaderLen(data)
		if !ok {
			return h, false
		}
		h = ipHeader{
			src: netip.AddrFrom4([4]byte(data[12:16])), dst: netip.AddrFrom4([4]byte(data[16:20])),
			proto: data[9], id: binary.BigEndian.Uint16(data[4:]),
			first: binary.BigEndian.Uint16(data[6:])&ipv4FragMask == 0,
			frag:  binary.BigEndian.Uint16(data[6:])&(ipv4FragMask|ipv4MoreFrags) != 0,
		}
		if h.first {
			h.l4 = data[hl:]
		}
		return h, true
	case 6:
		if len(data) < ipv6Header {
			return h, false
		}
		h = ipHeader{src: netip.AddrFrom16([16]byte(data[8:24])), dst: netip.AddrFrom16([16]byte(data[24:40])), first: true}
		next, off := data[6], ipv6Header
		for range maxIPv6ExtHdr {
			if len(data) < off+8 {
				break
			}
			switch next {
			case nextHopByHop, nextRouting, nextDestOpts:
				next, off = data[off], off+(int(data[off+1])+1)*8
				continue
			case nextAuth:
				next, off = data[off], off+(int(data[off+1])+2)*4
				continue
			case nextFragment:
				h.id = uint16(binary.BigEndian.Uint32(data[off+4:]))
				h.first = binary.BigEndian.Uint16(data[off+2:])&ipv6FragMask == 0
				// An atomic fragment (offset 0, no more) is a whole
				// datagram.
				h.frag = binary.BigEndian.Uint16(data[off+2:])&(ipv6FragMask|ipv6MoreFrags) != 0
				next = data[off]
				h.proto = next
				return h, true // the kernel programs show no ports of a fragment
			}
			break
		}
		h.proto = next
		switch next {
		case nextHopByHop, nextRouting, nextDestOpts, nextAuth, nextFragment:
			return h, true // more extension headers than followed
		}
		if off <= len(data) {
			h.l4 = data[off:]
		}
		return h, true
	}
	return h, false
}

// ICMPQuote reads the packet an ICMP or ICMPv6 error answers from data, an
// event's captured bytes from its IP header: the IP header the error
// quotes and the ports after it (for ICMP, the type and the code; TCP flags
// when the quote reaches them). ok is false when data is not an ICMP
// error, or is cut before the quoted ports. The quote of a packet that was
// not a first fragment has no ports (HasPorts false).
func ICMPQuote(data []byte) (t Tuple, ok bool) {
	outer, ok := parseIP(data)
	if !ok || !IsICMP(outer.proto) || len(outer.l4) < icmpHeader || !ICMPErrorOf(outer.proto, outer.l4[0]) ||
		(outer.proto == ProtoICMP) != outer.src.Is4() {
		return Tuple{}, false
	}
	in, ok := parseIP(outer.l4[icmpHeader:])
	if !ok {
		return Tuple{}, false
	}
	t = Tuple{Proto: in.proto, IPID: in.id}
	var sport, dport uint16
	if in.first {
		l4 := in.l4
		switch t.Proto {
		case ProtoTCP, ProtoUDP, ProtoSCTP:
			if len(l4) < 4 {
				return Tuple{}, false
			}
			sport, dport, t.HasPorts = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:]), true
			if t.Proto == ProtoTCP && len(l4) > 13 {
				t.TCPFlags = l4[13]
			}
		case ProtoICMP, ProtoICMPv6:
			if len(l4) < 2 {
				return Tuple{}, false
			}
			sport, dport, t.HasPorts = uint16(l4[0]), uint16(l4[1]), true
		}
	}
	t.Src, t.Dst = netip.AddrPortFrom(in.src, sport), netip.AddrPortFrom(in.dst, dport)
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
