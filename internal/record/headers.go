package record

import (
	"encoding/binary"
	"slices"
)

// HeaderLen returns how many bytes of pkt, a packet from its IPv4 or IPv6
// header as the kernel programs capture it, are headers: up to the end of
// the innermost transport header. Tunnels keep their outer and inner
// headers: VXLAN (UDP to one of vxlanPorts: UDP, VXLAN, the inner Ethernet
// header with its VLAN tags, then the inner packet's headers), Geneve (UDP
// to 6081: UDP, Geneve with its options, the inner Ethernet header or none,
// then the inner packet's headers) and IPIP. An ICMP or ICMPv6 error keeps
// the header of the packet it is about and that packet's first 8 bytes
// (RFC 792: its ports). IPv6 extension headers are headers. A fragment
// after the first keeps its IP header only; an unknown protocol, its IP
// header. A packet cut short keeps what there is. Anything that is not IP
// keeps nothing.
func HeaderLen(pkt []byte, vxlanPorts []uint16) int {
	return min(headersEnd(pkt, 0, vxlanPorts, 0), len(pkt))
}

// Protocol numbers and types HeaderLen reads.
const (
	ipprotoICMP   = 1
	ipprotoIPIP   = 4
	ipprotoTCP    = 6
	ipprotoUDP    = 17
	ipprotoICMPv6 = 58

	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeTEB  = 0x6558 // Ethernet inside a tunnel
	etherTypeVLAN = 0x8100
	etherTypeQinQ = 0x88a8

	vxlanLen   = 8
	geneveLen  = 8
	genevePort = 6081
	udpLen     = 8
	icmpLen    = 8
	tcpMin     = 20
	ipv4Min    = 20
	ipv6Len    = 40

	maxTunnels = 2 // tunnels inside tunnels followed
	maxExtHdrs = 4 // IPv6 extension headers followed
)

var be = binary.BigEndian

// headersEnd returns the end of the headers of the IP packet at off,
// which may lie past the end of b.
func headersEnd(b []byte, off int, vxlanPorts []uint16, depth int) int {
	if len(b) <= off {
		return len(b)
	}
	if b[off]>>4 == 6 {
		return ipv6End(b, off, vxlanPorts, depth)
	}
	if len(b) < off+ipv4Min {
		return len(b)
	}
	if b[off]>>4 != 4 || int(b[off]&0x0f)*4 < ipv4Min {
		return off // not IP: not a header pathtrace knows
	}
	l4 := off + int(b[off]&0x0f)*4
	if be.Uint16(b[off+6:])&0x1fff != 0 {
		return l4 // a later fragment: no transport header
	}
	return transportEnd(b, l4, b[off+9], vxlanPorts, depth)
}

// ipv6End is headersEnd for the IPv6 packet at off: the fixed header,
// the extension headers (at most maxExtHdrs), then the transport header.
func ipv6End(b []byte, off int, vxlanPorts []uint16, depth int) int {
	if len(b) < off+ipv6Len {
		return len(b)
	}
	next, l4 := b[off+6], off+ipv6Len
	for range maxExtHdrs {
		switch next {
		case 0, 43, 60, 51: // hop-by-hop, routing, destination options, AH
			if len(b) < l4+2 {
				return len(b)
			}
			n := (int(b[l4+1]) + 1) * 8
			if next == 51 {
				n = (int(b[l4+1]) + 2) * 4
			}
			next, l4 = b[l4], l4+n
			continue
		case 44: // fragment
			if len(b) < l4+8 {
				return len(b)
			}
			if be.Uint16(b[l4+2:])&0xfff8 != 0 {
				return l4 + 8 // a later fragment: no transport header
			}
			next, l4 = b[l4], l4+8
			continue
		}
		break
	}
	return transportEnd(b, l4, next, vxlanPorts, depth)
}

// transportEnd returns the end of the transport header of protocol proto
// at l4 (and of what a tunnel or an ICMP error holds).
func transportEnd(b []byte, l4 int, proto uint8, vxlanPorts []uint16, depth int) int {
	switch proto {
	case ipprotoTCP:
		if len(b) < l4+13 {
			return len(b)
		}
		return l4 + max(int(b[l4+12]>>4)*4, tcpMin)
	case ipprotoUDP:
		end := l4 + udpLen
		if len(b) < end || depth >= maxTunnels {
			return end
		}
		switch dport := be.Uint16(b[l4+2:]); {
		case slices.Contains(vxlanPorts, dport):
			return etherEnd(b, end+vxlanLen, vxlanPorts, depth+1)
		case dport == genevePort:
			return geneveEnd(b, end, vxlanPorts, depth+1)
		}
		return end
	case ipprotoICMP:
		end := l4 + icmpLen
		if len(b) < end {
			return len(b)
		}
		switch b[l4] {
		case 3, 4, 5, 11, 12: // unreachable, source quench, redirect, time exceeded, parameter problem
			if len(b) >= end+ipv4Min && b[end]>>4 == 4 && int(b[end]&0x0f)*4 >= ipv4Min {
				return end + int(b[end]&0x0f)*4 + 8
			}
		}
		return end
	case ipprotoICMPv6:
		end := l4 + icmpLen
		if len(b) < end {
			return len(b)
		}
		if b[l4] >= 1 && b[l4] <= 4 && len(b) >= end+ipv6Len && b[end]>>4 == 6 { // an error: the quoted header and 8 bytes
			return end + ipv6Len + 8
		}
		return end
	case ipprotoIPIP:
		if depth >= maxTunnels {
			return l4
		}
		return headersEnd(b, l4, vxlanPorts, depth+1)
	}
	return l4
}

// geneveEnd returns the end of the headers of the Geneve packet at off.
func geneveEnd(b []byte, off int, vxlanPorts []uint16, depth int) int {
	if len(b) < off+geneveLen {
		return off + geneveLen
	}
	if b[off]>>6 != 0 {
		return off // a version pathtrace does not know
	}
	end := off + geneveLen + int(b[off]&0x3f)*4
	switch be.Uint16(b[off+2:]) {
	case etherTypeTEB:
		return etherEnd(b, end, vxlanPorts, depth)
	case etherTypeIPv4, etherTypeIPv6:
		return headersEnd(b, end, vxlanPorts, depth)
	}
	return end
}

// etherEnd returns the end of the headers of the Ethernet frame at off
// (inside VXLAN or Geneve).
func etherEnd(b []byte, off int, vxlanPorts []uint16, depth int) int {
	typ := off + 12
	for range 3 { // the type, behind up to two VLAN tags
		if len(b) < typ+2 {
			return typ + 2
		}
		switch be.Uint16(b[typ:]) {
		case etherTypeVLAN, etherTypeQinQ:
			typ += 4
			continue
		case etherTypeIPv4, etherTypeIPv6:
			return headersEnd(b, typ+2, vxlanPorts, depth)
		}
		return typ + 2
	}
	return typ
}
