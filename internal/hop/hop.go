package hop

import (
	"fmt"
	"strconv"
)

// enum is the name table of one vocabulary type: names[v] is the name of
// value v ("" for the zero value, which means none). A value without a name
// prints as what(n), n being the kernel's number: the value less offset.
type enum struct {
	what   string
	offset int
	names  []string
}

func (e *enum) name(v int) string {
	if v == 0 {
		return ""
	}
	if v < len(e.names) && e.names[v] != "" {
		return e.names[v]
	}
	return e.what + "(" + strconv.Itoa(v-e.offset) + ")"
}

func (e *enum) parse(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	for v, n := range e.names {
		if n == s && n != "" {
			return v, nil
		}
	}
	return 0, fmt.Errorf("unknown %s %q", e.what, s)
}

// Kind is what happened to a packet at a hop, and the row of `pathtrace
// features` that says how a kernel shows it. The names are part of the
// JSON output (docs/json.md): add kinds, never rename them. Values are not
// part of any format; Kinds lists them in their display order.
type Kind uint8

const (
	NoKind    Kind = iota
	Rx             // received on a device
	Tx             // queued for transmit on a device
	Netfilter      // passed a netfilter hook
	NAT            // addresses changed within a netfilter hook
	Table          // a rule table (iptables, nftables) returned a verdict
	Bridge         // forwarded by a bridge from one port to another
	IPVS           // sent by IPVS to the real server it chose, or dropped by IPVS
	// IPVSDrop is IPVS's own netfilter hook dropping a packet: a row of
	// `pathtrace features` of its own (other kernel functions show it), its
	// hops are IPVS hops with verdict drop.
	IPVSDrop
	Encap   // wrapped in a tunnel header on a tunnel device
	Decap   // unwrapped from a tunnel header on a tunnel device
	Drop    // freed as a drop
	Consume // freed after normal use (delivered to a socket, ...)
	numKinds
)

// Class groups hop kinds the way renderers show them (color, emphasis).
type Class uint8

const (
	NoClass        Class = iota
	ClassDevice          // on a device: rx, tx, bridge
	ClassNetfilter       // a hook or a table inside it
	ClassNAT             // an address translation: NAT, IPVS
	ClassTunnel          // a tunnel header added or removed
	ClassDrop            // the packet ended as a drop
	ClassConsume         // the packet ended after normal use
)

// Desc describes a hop kind.
type Desc struct {
	Kind  Kind
	Class Class
	// What says in one line what a hop of this kind means (docs,
	// `pathtrace features -o json`).
	What string
	// Shown is the kind a path shows hops of this kind as: the kind
	// itself, or IPVS for IPVSDrop.
	Shown Kind
}

var kinds = [numKinds]Desc{
	Rx:        {Rx, ClassDevice, "received on a device", Rx},
	Tx:        {Tx, ClassDevice, "queued for transmit on a device", Tx},
	Netfilter: {Netfilter, ClassNetfilter, "passed a netfilter hook", Netfilter},
	NAT:       {NAT, ClassNAT, "addresses changed within a netfilter hook", NAT},
	Table:     {Table, ClassNetfilter, "a rule table (iptables, nftables) returned a verdict inside a hook", Table},
	Bridge:    {Bridge, ClassDevice, "forwarded by a bridge from one port to another", Bridge},
	IPVS:      {IPVS, ClassNAT, "sent by IPVS to the real server it chose", IPVS},
	IPVSDrop:  {IPVSDrop, ClassNAT, "dropped by IPVS's netfilter hook (no real server available, ...)", IPVS},
	Encap:     {Encap, ClassTunnel, "wrapped in a tunnel header on a tunnel device", Encap},
	Decap:     {Decap, ClassTunnel, "unwrapped from a tunnel header on a tunnel device", Decap},
	Drop:      {Drop, ClassDrop, "freed as a drop", Drop},
	Consume:   {Consume, ClassConsume, "freed after normal use (delivered to a socket, ...)", Consume},
}

var kindNames = enum{what: "kind", names: []string{
	Rx: "rx", Tx: "tx", Netfilter: "netfilter", NAT: "nat", Table: "table", Bridge: "bridge",
	IPVS: "ipvs", IPVSDrop: "ipvs-drop", Encap: "encap", Decap: "decap", Drop: "drop", Consume: "consume",
}}

// Kinds returns every hop kind's description, in display order.
func Kinds() []Desc { return kinds[1:] }

// Desc returns the kind's description; the zero Desc for an unknown kind.
func (k Kind) Desc() Desc {
	if k < numKinds {
		return kinds[k]
	}
	return Desc{}
}

func (k Kind) String() string                { return kindNames.name(int(k)) }
func (k Kind) MarshalText() ([]byte, error)  { return []byte(k.String()), nil }
func (k *Kind) UnmarshalText(b []byte) error { return unmarshal(&kindNames, b, k) }

// unmarshal parses b by e's names into v.
func unmarshal[T ~uint8 | ~uint16](e *enum, b []byte, v *T) error {
	n, err := e.parse(string(b))
	if err != nil {
		return err
	}
	*v = T(n)
	return nil
}

// Hook is an IPv4 netfilter hook (enum nf_inet_hooks, plus one), or none.
type Hook uint8

const (
	NoHook Hook = iota
	Prerouting
	Input
	Forward
	Output
	Postrouting
	// HookUnknown: a program inside a hook could not read which hook it
	// was (a table event without BTF for nf_tables).
	HookUnknown Hook = 0xff
)

var hookNames = enum{what: "hook", offset: 1, names: []string{
	Prerouting: "PREROUTING", Input: "INPUT", Forward: "FORWARD", Output: "OUTPUT", Postrouting: "POSTROUTING",
}}

// HookFromKernel maps the kernel's hook number (0 NF_INET_PRE_ROUTING ...
// 4 NF_INET_POST_ROUTING; 0xff: the program could not read it).
func HookFromKernel(h uint8) Hook {
	if h == 0xff {
		return HookUnknown
	}
	return Hook(min(int(h)+1, 0xfe))
}

// Known reports whether h names one of the five hooks.
func (h Hook) Known() bool { return h >= Prerouting && h <= Postrouting }

func (h Hook) String() string {
	if h == HookUnknown {
		return "hook(255)"
	}
	return hookNames.name(int(h))
}
func (h Hook) MarshalText() ([]byte, error)  { return []byte(h.String()), nil }
func (h *Hook) UnmarshalText(b []byte) error { return unmarshal(&hookNames, b, h) }

// Backend is the kind of kernel program that shows a hop.
type Backend uint8

const (
	NoBackend     Backend = iota
	Tracepoint            // BTF (tp_btf) or raw tracepoints
	NetfilterLink         // BPF netfilter links (6.4+)
	Fentry                // fentry/fexit (BPF trampolines)
	Kprobe                // kprobe/kretprobe
	// Inferred: seen in what changed between two other hops (a tunnel
	// header appearing or going), whatever showed those.
	Inferred
)

var backendNames = enum{what: "backend", names: []string{
	Tracepoint: "tracepoint", NetfilterLink: "netfilter-link", Fentry: "fentry", Kprobe: "kprobe", Inferred: "inferred",
}}

// Programs are the backends that attach programs, best first for the hops
// that have a choice; Inferred is not one.
var Programs = []Backend{Tracepoint, NetfilterLink, Fentry, Kprobe}

func (b Backend) String() string                { return backendNames.name(int(b)) }
func (b Backend) MarshalText() ([]byte, error)  { return []byte(b.String()), nil }
func (b *Backend) UnmarshalText(t []byte) error { return unmarshal(&backendNames, t, b) }

// Verdict is a netfilter verdict (NF_DROP ...) as a hook function or a rule
// table returned it, plus one; NoVerdict where none was returned.
type Verdict uint16

const (
	NoVerdict Verdict = iota
	VerdictDrop
	VerdictAccept
	VerdictStolen
	VerdictQueue
	VerdictRepeat
	VerdictStop
)

var verdictNames = enum{what: "verdict", offset: 1, names: []string{
	VerdictDrop: "drop", VerdictAccept: "accept", VerdictStolen: "stolen", VerdictQueue: "queue",
	VerdictRepeat: "repeat", VerdictStop: "stop",
}}

// VerdictFromKernel maps a returned verdict; the bits above the low byte
// (an errno with NF_DROP, a queue number) are not part of it.
func VerdictFromKernel(v uint32) Verdict { return Verdict(v&0xff) + 1 }

func (v Verdict) String() string                { return verdictNames.name(int(v)) }
func (v Verdict) MarshalText() ([]byte, error)  { return []byte(v.String()), nil }
func (v *Verdict) UnmarshalText(b []byte) error { return unmarshal(&verdictNames, b, v) }

// Engine is what ran a rule table.
type Engine uint8

const (
	NoEngine       Engine = 0
	EngineXTables  Engine = 1 // ipt_do_table: iptables-legacy
	EngineNFTables Engine = 2 // nft_do_chain: nftables, also under iptables-nft
)

var engineNames = enum{what: "engine", names: []string{EngineXTables: "iptables-legacy", EngineNFTables: "nftables"}}

func (e Engine) String() string                { return engineNames.name(int(e)) }
func (e Engine) MarshalText() ([]byte, error)  { return []byte(e.String()), nil }
func (e *Engine) UnmarshalText(b []byte) error { return unmarshal(&engineNames, b, e) }

// Family is a netfilter family (NFPROTO_*) as nft names it; NoFamily where
// the kernel does not let it be read.
type Family uint8

const (
	NoFamily     Family = 0
	FamilyInet   Family = 1
	FamilyIPv4   Family = 2
	FamilyARP    Family = 3
	FamilyNetdev Family = 5
	FamilyBridge Family = 7
	FamilyIPv6   Family = 10
)

var familyNames = enum{what: "family", names: []string{
	FamilyInet: "inet", FamilyIPv4: "ip", FamilyARP: "arp", FamilyNetdev: "netdev", FamilyBridge: "bridge", FamilyIPv6: "ip6",
}}

func (f Family) String() string                { return familyNames.name(int(f)) }
func (f Family) MarshalText() ([]byte, error)  { return []byte(f.String()), nil }
func (f *Family) UnmarshalText(b []byte) error { return unmarshal(&familyNames, b, f) }

// Method is an IPVS forwarding method (IP_VS_CONN_F_FWD_MASK of a
// connection's flags, plus one) as ipvsadm names it.
type Method uint8

const (
	NoMethod Method = iota
	MethodMasq
	MethodLocal
	MethodTunnel
	MethodRoute
	MethodBypass
)

var methodNames = enum{what: "method", offset: 1, names: []string{
	MethodMasq: "masq", MethodLocal: "local", MethodTunnel: "tunnel", MethodRoute: "route", MethodBypass: "bypass",
}}

// MethodFromKernel maps cp->flags & IP_VS_CONN_F_FWD_MASK.
func MethodFromKernel(v uint32) Method { return Method(min(v, 0xfe) + 1) }

func (m Method) String() string                { return methodNames.name(int(m)) }
func (m Method) MarshalText() ([]byte, error)  { return []byte(m.String()), nil }
func (m *Method) UnmarshalText(b []byte) error { return unmarshal(&methodNames, b, m) }

// NATType says which side of the tuple a NAT hop rewrote.
type NATType uint8

const (
	NoNAT NATType = iota
	DNAT
	SNAT
)

var natNames = enum{what: "nat type", names: []string{DNAT: "dnat", SNAT: "snat"}}

func (t NATType) String() string                { return natNames.name(int(t)) }
func (t NATType) MarshalText() ([]byte, error)  { return []byte(t.String()), nil }
func (t *NATType) UnmarshalText(b []byte) error { return unmarshal(&natNames, b, t) }

// Tunnel is the encapsulation of a packet's outer header.
type Tunnel uint8

const (
	NoTunnel     Tunnel = iota
	TunnelVXLAN         // UDP, flannel 8472, IANA 4789 (Calico's vxlan.calico)
	TunnelGeneve        // UDP 6081 (OVN-Kubernetes, Antrea), variable options
	TunnelIPIP          // IPv4 in IPv4, protocol 4 (Calico's tunl0): no port, no VNI
)

var tunnelNames = enum{what: "tunnel", names: []string{TunnelVXLAN: "vxlan", TunnelGeneve: "geneve", TunnelIPIP: "ipip"}}

// HasVNI reports whether the tunnel's header carries a VNI (and its outer
// header a UDP destination port).
func (t Tunnel) HasVNI() bool { return t == TunnelVXLAN || t == TunnelGeneve }

func (t Tunnel) String() string                { return tunnelNames.name(int(t)) }
func (t Tunnel) MarshalText() ([]byte, error)  { return []byte(t.String()), nil }
func (t *Tunnel) UnmarshalText(b []byte) error { return unmarshal(&tunnelNames, b, t) }
