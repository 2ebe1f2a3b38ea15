package decode

import (
	"fmt"
	"net/netip"
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
	KindIPVS    Kind = 7 // IPVS transmit to a real server; Ext holds the connection
	KindVXLAN   Kind = 8 // vxlan_xmit: about to be encapsulated on Dev
	// KindTable: a rule table (ipt_do_table, nft_do_chain) returned a
	// verdict; Ext holds the table, Ext.Chain the base chain.
	KindTable Kind = 9
	// KindIPVSVerdict: IPVS's netfilter hook dropped the packet.
	KindIPVSVerdict Kind = 10
	// KindVXLANRcv: vxlan_rcv, about to decapsulate a packet received on
	// Dev (the underlay device).
	KindVXLANRcv Kind = 11
)

func (k Kind) String() string {
	switch k {
	case KindRx:
		return "rx"
	case KindTx:
		return "tx"
	case KindNF:
		return "netfilter"
	case KindDrop:
		return "drop"
	case KindConsume:
		return "consume"
	case KindBridge:
		return "bridge"
	case KindIPVS:
		return "ipvs"
	case KindVXLAN:
		return "vxlan"
	case KindTable:
		return "table"
	case KindIPVSVerdict:
		return "ipvs-verdict"
	case KindVXLANRcv:
		return "vxlan-rcv"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Hook is an IPv4 netfilter hook (enum nf_inet_hooks).
type Hook uint8

const (
	HookPrerouting  Hook = 0
	HookInput       Hook = 1
	HookForward     Hook = 2
	HookOutput      Hook = 3
	HookPostrouting Hook = 4
	// HookUnknown: the program could not read the hook (a table event
	// without BTF for nf_tables).
	HookUnknown Hook = 0xff
)

var hookNames = [...]string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

func (h Hook) String() string {
	if int(h) < len(hookNames) {
		return hookNames[h]
	}
	return fmt.Sprintf("hook(%d)", uint8(h))
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
	FlagL3      Flags = 1 << 1 // Outer holds a parsed IPv4 header
	FlagInner   Flags = 1 << 2 // Inner and VNI hold a VXLAN payload
	FlagL4      Flags = 1 << 3 // Outer ports and TCP flags are valid
	FlagInnerL4 Flags = 1 << 4 // Inner ports and TCP flags are valid
	FlagReason  Flags = 1 << 5 // DropReason was given by the kernel
	FlagFentry  Flags = 1 << 6 // made by an fentry/fexit program
	FlagKprobe  Flags = 1 << 7 // made by a kprobe/kretprobe program
)

// Backend names the kind of kernel program that made the event:
// "tracepoint", "netfilter-link", "fentry" or "kprobe" (the loader's
// Backend values).
func (e *Event) Backend() string {
	switch {
	case e.Flags&FlagFentry != 0:
		return "fentry"
	case e.Flags&FlagKprobe != 0:
		return "kprobe"
	case e.Kind == KindNF:
		return "netfilter-link"
	case e.Kind >= KindRx && e.Kind <= KindConsume:
		return "tracepoint"
	}
	return ""
}

// IP protocol numbers the decoder names.
const (
	ProtoICMP uint8 = 1
	ProtoTCP  uint8 = 6
	ProtoUDP  uint8 = 17
)

// Tuple is an IPv4 header and its ports as seen at one hop. For ICMP, the
// ports hold the type (Src) and code (Dst).
type Tuple struct {
	Proto    uint8
	Src, Dst netip.AddrPort
	IPID     uint16
	TCPFlags uint8
	HasPorts bool
}

// Valid reports whether the tuple was parsed from a packet.
func (t Tuple) Valid() bool { return t.Src.Addr().IsValid() }

// Event is one hop of one packet, as the kernel saw it.
type Event struct {
	Kind  Kind
	Flags Flags
	SKB   uint64 // struct sk_buff address: the packet's identity while it lives
	TS    uint64 // CLOCK_MONOTONIC nanoseconds
	CPU   uint16

	Netns   uint32 // network namespace inode
	Ifindex uint32
	Dev     string // device the packet is on ("" when unknown)

	// Netfilter events.
	Hook       Hook
	Slot       Slot
	In, Out    string
	InIfindex  uint32
	OutIfindex uint32

	Len  uint32 // skb->len
	Mark uint32 // skb->mark

	Outer Tuple
	Inner Tuple  // valid with FlagInner
	VNI   uint32 // valid with FlagInner

	DropReason uint32 // enum skb_drop_reason of the running kernel; valid with FlagReason
	Location   uint64 // caller of kfree_skb/consume_skb

	Ext Ext

	// Data holds the first bytes of the packet from its network header, as
	// captured (snaplen); empty when nothing was captured. It aliases the
	// decoder's input: copy it to keep it past the next Decode.
	Data []byte
}

// Ext carries the extra fields of function hops; zero for tracepoint and
// netfilter-link events. What each field means depends on the kind
// (bpf/include/event.h): for KindIPVS, Addr[0]:Port[0] is the virtual
// service, Addr[1]:Port[1] the real server, Val[0] the forwarding method
// (IPVSMethod), Val[1] the IP protocol, and Name the scheduler when Val[2]
// is 1; for KindVXLAN, Val[0] is the VNI and Port[1] the UDP destination
// port when Val[2] is 1; for KindTable, Name is the table, Chain the base
// chain ("" where not readable), Val[0] the verdict (Verdict), Val[1] the
// family (Family) and Val[2] the engine (Engine); for KindIPVSVerdict,
// Val[0] is the verdict.
type Ext struct {
	Addr  [2]netip.Addr
	Port  [2]uint16
	Val   [3]uint32
	Name  string
	Chain string
}

// IPVS forwarding methods (IP_VS_CONN_F_FWD_MASK values of cp->flags), as
// ipvsadm names them.
var ipvsMethods = [...]string{"masq", "local", "tunnel", "route", "bypass"}

// IPVSMethod names the forwarding method of a KindIPVS event.
func (e *Event) IPVSMethod() string {
	if m := e.Ext.Val[0]; int(m) < len(ipvsMethods) {
		return ipvsMethods[m]
	}
	return fmt.Sprintf("method(%d)", e.Ext.Val[0])
}

// Netfilter verdicts (NF_DROP ...), as returned by hook functions and
// tables; the bits above the low byte carry an errno with NF_DROP.
var verdicts = [...]string{"drop", "accept", "stolen", "queue", "repeat", "stop"}

// Verdict names the verdict of a KindTable or KindIPVSVerdict event.
func (e *Event) Verdict() string {
	if v := e.Ext.Val[0] & 0xff; int(v) < len(verdicts) {
		return verdicts[v]
	}
	return fmt.Sprintf("verdict(%d)", e.Ext.Val[0]&0xff)
}

// Families as nft names them, by NFPROTO_* value.
var families = map[uint32]string{1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}

// Family names the family of a KindTable event's table ("" where not
// readable).
func (e *Event) Family() string {
	if e.Ext.Val[1] == 0 {
		return ""
	}
	if f, ok := families[e.Ext.Val[1]]; ok {
		return f
	}
	return fmt.Sprintf("family(%d)", e.Ext.Val[1])
}

// Table engines (bpf/include/tables.h).
const (
	EngineXtables  = 1 // ipt_do_table: iptables-legacy
	EngineNftables = 2 // nft_do_chain: nftables, iptables-nft
)

// Engine names what ran a KindTable event's table: "iptables-legacy" or
// "nftables".
func (e *Event) Engine() string {
	switch e.Ext.Val[2] {
	case EngineXtables:
		return "iptables-legacy"
	case EngineNftables:
		return "nftables"
	}
	return fmt.Sprintf("engine(%d)", e.Ext.Val[2])
}

// Encapsulated reports whether the event saw a VXLAN packet with an inner
// IPv4 header.
func (e *Event) Encapsulated() bool { return e.Flags&FlagInner != 0 }
