package decode

import (
	"fmt"
	"net/netip"

	"github.com/pathtrace/pathtrace/internal/hop"
)

// Kind says which kernel hook produced an event. The values are those of
// enum pathtrace_kind in bpf/include/event.h and are part of the recording
// format.
type Kind uint8

const (
	KindRx      Kind = 1 // net:netif_receive_skb
	KindTx      Kind = 2 // net:net_dev_queue
	KindNF      Kind = 3 // a netfilter hook, first or last priority slot
	KindDrop    Kind = 4 // skb:kfree_skb
	KindConsume Kind = 5 // skb:consume_skb
	KindBridge  Kind = 6 // br_forward: bridged from In to Out on Dev
	KindIPVS    Kind = 7 // IPVS transmit to a real server; IPVS holds the connection
	// KindEncap: a tunnel device's transmit function (vxlan_xmit,
	// geneve_xmit, ipip_tunnel_xmit), about to encapsulate the packet on
	// Dev; TunnelFunc says which tunnel and what the program read of the
	// device. Named KindVXLAN before Geneve and IPIP had function hops
	// (the same value: recordings made before carry VXLAN's).
	KindEncap Kind = 8
	// KindTable: a rule table (ipt_do_table, nft_do_chain) returned a
	// verdict; Table holds the table, Verdict the verdict.
	KindTable Kind = 9
	// KindIPVSVerdict: IPVS's netfilter hook dropped the packet.
	KindIPVSVerdict Kind = 10
	// KindDecap: a tunnel's receive function (vxlan_rcv,
	// geneve_udp_encap_recv, ipip_rcv), about to decapsulate a packet
	// received on Dev (the underlay device); TunnelFunc.Tunnel says
	// which tunnel. Named KindVXLANRcv before.
	KindDecap Kind = 11
)

// kindInfo is the event contract's table: per event kind its name (in
// recording comments), the hop kind a path shows it as, and the backend
// that made it when neither backend flag is set.
var kindInfo = [...]struct {
	name    string
	hop     hop.Kind
	backend hop.Backend
}{
	KindRx:          {"rx", hop.Rx, hop.Tracepoint},
	KindTx:          {"tx", hop.Tx, hop.Tracepoint},
	KindNF:          {"netfilter", hop.Netfilter, hop.NetfilterLink},
	KindDrop:        {"drop", hop.Drop, hop.Tracepoint},
	KindConsume:     {"consume", hop.Consume, hop.Tracepoint},
	KindBridge:      {"bridge", hop.Bridge, hop.NoBackend},
	KindIPVS:        {"ipvs", hop.IPVS, hop.NoBackend},
	KindEncap:       {"encap", hop.Encap, hop.NoBackend},
	KindTable:       {"table", hop.Table, hop.NoBackend},
	KindIPVSVerdict: {"ipvs-verdict", hop.IPVS, hop.NoBackend},
	KindDecap:       {"decap", hop.Decap, hop.NoBackend},
}

// Kinds lists every event kind of the contract.
func Kinds() []Kind {
	var ks []Kind
	for k, info := range kindInfo {
		if info.name != "" {
			ks = append(ks, Kind(k))
		}
	}
	return ks
}

func (k Kind) String() string {
	if int(k) < len(kindInfo) && kindInfo[k].name != "" {
		return kindInfo[k].name
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Hop is the kind of hop a path shows the event as; hop.NoKind for a kind
// the contract does not have.
func (k Kind) Hop() hop.Kind {
	if int(k) < len(kindInfo) {
		return kindInfo[k].hop
	}
	return hop.NoKind
}

// Slot is the priority position of a netfilter program within its hook.
type Slot uint8

const (
	SlotNone  Slot = 0
	SlotFirst Slot = 1 // before every other hook function: before NAT
	SlotLast  Slot = 2 // after every other hook function: after NAT
)

func (s Slot) String() string {
	switch s {
	case SlotFirst:
		return "first"
	case SlotLast:
		return "last"
	}
	return ""
}

// Flags are the event's validity bits (enum pathtrace_flags).
type Flags uint8

const (
	FlagNew     Flags = 1 << 0 // first event of a newly tracked packet on this skb
	FlagL3      Flags = 1 << 1 // Outer holds a parsed IPv4 or IPv6 header
	FlagInner   Flags = 1 << 2 // Inner (and VNI) hold a tunnel's payload; Tunnel says which
	FlagL4      Flags = 1 << 3 // Outer ports and TCP flags are valid
	FlagInnerL4 Flags = 1 << 4 // Inner ports and TCP flags are valid
	FlagReason  Flags = 1 << 5 // DropReason was given by the kernel
	FlagFentry  Flags = 1 << 6 // made by an fentry/fexit program
	FlagKprobe  Flags = 1 << 7 // made by a kprobe/kretprobe program
)

// BackendOf is the kind of kernel program that made an event of kind k with
// flags f.
func BackendOf(k Kind, f Flags) hop.Backend {
	switch {
	case f&FlagFentry != 0:
		return hop.Fentry
	case f&FlagKprobe != 0:
		return hop.Kprobe
	case int(k) < len(kindInfo):
		return kindInfo[k].backend
	}
	return hop.NoBackend
}

// TunnelKind is the tunnel of an encapsulated packet as the kernel
// programs number it (enum pathtrace_tunnel). Recordings made before the
// field carry 0, VXLAN: the only tunnel they knew.
type TunnelKind uint8

const (
	TunnelVXLAN  TunnelKind = 0
	TunnelGeneve TunnelKind = 1
	TunnelIPIP   TunnelKind = 2
)

// TunnelKinds lists the tunnel kinds of the contract.
var TunnelKinds = []TunnelKind{TunnelVXLAN, TunnelGeneve, TunnelIPIP}

// Hop is the tunnel's hop vocabulary value; hop.NoTunnel for a value the
// contract does not have.
func (k TunnelKind) Hop() hop.Tunnel {
	switch k {
	case TunnelVXLAN:
		return hop.TunnelVXLAN
	case TunnelGeneve:
		return hop.TunnelGeneve
	case TunnelIPIP:
		return hop.TunnelIPIP
	}
	return hop.NoTunnel
}

// IP protocol numbers the decoder names.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
)

// Tuple is an IPv4 or IPv6 header and its ports as seen at one hop (IPv6
// addresses are 16-byte netip.Addrs, IPv4 ones 4-byte). For ICMP and
// ICMPv6, the ports hold the type (Src) and code (Dst). For IPv6, Proto is
// the header after the extension headers the kernel programs skip, and
// IPID is 0 but for a fragment (the low bits of its identification).
type Tuple struct {
	Proto    uint8
	Src, Dst netip.AddrPort
	IPID     uint16
	TCPFlags uint8
	HasPorts bool
	// HasICMPID says the tuple is an ICMP echo (request or reply) whose
	// header was captured: ICMPID is its echo id, the one conntrack tracks
	// it by.
	HasICMPID bool
	ICMPID    uint16
}

// CT is a packet's conntrack state at a netfilter event: enum
// ip_conntrack_info plus one, NoCT where the packet had none or the event
// does not say (recordings made before it was recorded).
type CT uint8

const (
	NoCT               CT = 0
	CTEstablished      CT = 1 // IP_CT_ESTABLISHED
	CTRelated          CT = 2 // IP_CT_RELATED
	CTNew              CT = 3 // IP_CT_NEW
	CTEstablishedReply CT = 4 // IP_CT_ESTABLISHED_REPLY
	CTRelatedReply     CT = 5 // IP_CT_RELATED_REPLY
	CTUntracked        CT = 8 // IP_CT_UNTRACKED
)

// Reply reports whether the packet goes in the reply direction of its
// connection (IP_CT_IS_REPLY): conntrack undoes the connection's
// translations on it.
func (c CT) Reply() bool { return c >= CTEstablishedReply && c < CTUntracked }

// Valid reports whether the tuple was parsed from a packet.
func (t Tuple) Valid() bool { return t.Src.Addr().IsValid() }

// Event is one hop of one packet, as the kernel saw it.
type Event struct {
	Kind    Kind
	Flags   Flags
	Backend hop.Backend // the kind of kernel program that made the event
	SKB     uint64      // struct sk_buff address: the packet's identity while it lives
	TS      uint64      // CLOCK_MONOTONIC nanoseconds
	CPU     uint16

	Netns   uint32 // network namespace inode
	Ifindex uint32
	Dev     string // device the packet is on ("" when unknown)

	// Netfilter events, and the table and IPVS verdict events inside a
	// hook (whose Hook may be hop.HookUnknown).
	Hook       hop.Hook
	Slot       Slot
	In, Out    string
	InIfindex  uint32
	OutIfindex uint32

	Len  uint32 // skb->len
	Mark uint32 // skb->mark

	Outer  Tuple
	Inner  Tuple      // valid with FlagInner
	VNI    uint32     // valid with FlagInner, for a tunnel that has one
	Tunnel hop.Tunnel // with FlagInner: the tunnel; hop.NoTunnel otherwise

	DropReason uint32 // enum skb_drop_reason of the running kernel; valid with FlagReason
	Location   uint64 // caller of kfree_skb/consume_skb

	// What function hops and netfilter events carry, decoded from the
	// record's ext by kind (bpf/include/event.h); zero for other kinds.
	CT      CT          // KindNF: the packet's conntrack state
	Verdict hop.Verdict // KindTable, KindIPVSVerdict: the verdict returned
	Table   Table       // KindTable
	IPVS    IPVS        // KindIPVS
	// KindEncap, KindDecap: the tunnel of the function, and for
	// KindEncap the device's VNI and port.
	TunnelFunc TunnelFunc

	// Data holds the first bytes of the packet from its network header, as
	// captured (snaplen); empty when nothing was captured. It aliases the
	// decoder's input: copy it to keep it past the next Decode.
	Data []byte
}

// Table is the rule table of a KindTable event.
type Table struct {
	Engine hop.Engine
	Family hop.Family // hop.NoFamily where not readable
	Name   string     // "" where not readable
	Chain  string     // the base chain; "" where not readable
}

// IPVS is the connection of a KindIPVS event.
type IPVS struct {
	Service    netip.AddrPort // the virtual service
	RealServer netip.AddrPort // the real server chosen
	Method     hop.Method
	Proto      uint8  // the IP protocol
	Scheduler  string // "" where the program could not read it
}

// TunnelFunc is what a tunnel function's event (KindEncap, KindDecap)
// knows of the tunnel: which one (hop.NoTunnel for a value the contract
// does not have) and, for an encapsulation, the device's VNI and UDP
// destination port.
type TunnelFunc struct {
	Tunnel hop.Tunnel
	// Known: the module's BTF let the program read VNI and DPort (VXLAN
	// and Geneve devices with one VNI; never for IPIP, which has none).
	Known bool
	VNI   uint32
	DPort uint16 // UDP destination port
}

// Encapsulated reports whether the event saw a tunnel's packet (VXLAN,
// Geneve, IPIP) with an inner IPv4 or IPv6 header.
func (e *Event) Encapsulated() bool { return e.Flags&FlagInner != 0 }
