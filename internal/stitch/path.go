package stitch

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
)

// Verdict is how a packet's path ended.
type Verdict string

const (
	VerdictDelivered Verdict = "delivered" // reached a pod or a local socket
	VerdictDropped   Verdict = "dropped"   // a drop hop ended it
	VerdictForwarded Verdict = "forwarded" // last seen leaving a node device
	VerdictUnknown   Verdict = "unknown"   // the trace ends without telling
)

// NAT is the change a hook made to one side of the tuple. For ICMP the
// ports of From and To are the echo ids (0 where the ICMP header was not
// captured).
type NAT struct {
	Type     hop.NATType
	From, To netip.AddrPort
	// Reverse says the change undoes the connection's translation on a
	// reply (conntrack's view of the packet was the reply direction): a
	// changed source (SNAT) is an un-DNAT, the reply's source restored
	// from the endpoint to the Service; a changed destination (DNAT) an
	// un-SNAT, its destination restored from the masquerade address.
	Reverse bool
	// Service names the Service port whose address the translation
	// changed ("namespace/name:port"): the DNAT of a packet sent to it,
	// the un-DNAT of its reply. "" when unknown; set by an annotator from
	// the node reports (internal/diagnose), never by the stitcher.
	Service string
}

// FirstSeen says where a path starts when that is not the packet's first
// hop on the node.
type FirstSeen string

// FirstSeenAfterNAT: the path's first event is the last view of a
// netfilter hook with no first view before it. The packet matched the
// filter (or a connection the kernel follows) only once a function of that
// hook changed it: the first packet of a connection traced by the address
// it is translated to (a NodePort's backend). Its path starts there, whole
// from then on; the translation itself is not seen (the tuple before it
// was never sent).
const FirstSeenAfterNAT FirstSeen = "after_nat"

// Outer is the outer header of a tunneled packet.
type Outer struct {
	Tunnel   hop.Tunnel
	Src, Dst netip.Addr
	DPort    uint16
	VNI      uint32
	// SrcNode and DstNode name the Kubernetes Nodes whose addresses Src
	// and Dst are; "" when unknown. Set by an annotator (internal/k8s).
	SrcNode, DstNode string
}

// Bridge is what a bridge hop forwarded: the bridge is the hop's Dev.
type Bridge struct {
	In, Out string // ingress and egress ports
}

// IPVS is the connection an IPVS hop sent the packet on.
type IPVS struct {
	Service    netip.AddrPort // the virtual service
	RealServer netip.AddrPort // the real server chosen
	Scheduler  string         // "rr", "wrr", ...; "" where the kernel does not let it be read
	Method     hop.Method     // forwarding method
	// Verdict is hop.VerdictDrop on a hop from IPVS's netfilter hook,
	// which dropped the packet before any connection sent it (no real
	// server available, ...): Service, RealServer and Method are then
	// unset. hop.NoVerdict on transmit hops.
	Verdict hop.Verdict
	// ServiceName names the Service port of the virtual service
	// ("namespace/name:port"); "" when unknown. Set by an annotator.
	// (Service is the virtual service's address.)
	ServiceName string
}

// Table is a rule table's verdict on the packet.
type Table struct {
	Engine  hop.Engine  // nftables (nf_tables, also under iptables-nft) or iptables-legacy (x_tables)
	Family  hop.Family  // hop.NoFamily where the kernel does not let it be read
	Name    string      // the table: "filter", "nat", ...; "" where not readable
	Chain   string      // the base chain the hook entered; "" where not readable
	Verdict hop.Verdict // what the table returned
}

// Hop is one step of a packet's path.
type Hop struct {
	T     time.Duration // since the packet's first hop
	Delta time.Duration // since the previous hop
	Kind  hop.Kind

	Dev        string
	Ifindex    uint32
	Netns      string // resolved name; the inode in decimal when unknown
	NetnsInode uint32
	// LastSeen marks a drop or consume hop whose device and namespace are
	// those of the packet's last hop with a device, because the kernel
	// gave the free none (freeDevice): where the packet was last seen,
	// which is where it was freed only when no hop between went unseen.
	LastSeen bool
	// Node names the node whose trace showed the hop (--node-name of a
	// --scope node trace, Config.Node). In a trace of the whole kernel, the
	// Kubernetes Node whose namespace, or whose pod's, the hop is in, where
	// an annotator knows it (internal/k8s); else "".
	Node string
	CPU  uint16
	Len  uint32
	Mark uint32

	// The packet's tuple at this hop; the inner one when encapsulated.
	Proto    uint8
	Src, Dst netip.AddrPort
	TCPFlags uint8
	// An ICMP echo's id at this hop, where its header was captured.
	HasICMPID bool
	ICMPID    uint16

	// Netfilter hops, and the table and ipvs hops inside a hook.
	Hook    hop.Hook      // hop.NoHook outside a hook
	In, Out string        // hook devices
	Dur     time.Duration // between the first and last priority slots
	Partial bool          // only one slot was seen (dropped or stolen in between)

	NAT   *NAT   // nat hops
	Outer *Outer // encap and decap hops, and hops of an encapsulated packet

	Bridge *Bridge // bridge hops
	IPVS   *IPVS   // ipvs hops
	Table  *Table  // table hops

	// Backend is the kind of kernel program that showed the hop, or
	// hop.Inferred for encap and decap hops seen in what changed between
	// two hops; hop.NoBackend when unknown.
	Backend hop.Backend

	// Drop hops.
	Reason     string // the kernel's drop reason name, without the SKB_DROP_REASON_ prefix
	ReasonCode uint32
	Location   uint64 // kernel address of the freeing caller
	// Func names Location ("nf_hook_slow+0x9e", "... [module]" in a
	// module) where the kernel's symbols were readable when tracing.
	Func string

	// Advice says, on a drop hop, what on the node likely caused it and how
	// to check; filled by internal/diagnose from the node report.
	Advice string

	// Pod names the Kubernetes pod ("namespace/name") whose network
	// namespace the hop is in; "" when unknown. Set by an annotator
	// (internal/k8s), never by the stitcher.
	Pod string
}

// FuncName is the function of Func, without offset or module:
// "nf_hook_slow" of "nf_hook_slow+0xa0"; "" when unknown.
func (h *Hop) FuncName() string {
	fn, _, _ := strings.Cut(h.Func, "+")
	return fn
}

// Path is the journey of one packet through the traced nodes.
type Path struct {
	ID    uint64    // 1, 2, ... in order of each packet's first event
	SKB   uint64    // the sk_buff that carried it
	Start time.Time // wall-clock time of the first hop
	Mono  uint64    // CLOCK_MONOTONIC ns of the first hop

	// The packet as first seen (inner header when first seen encapsulated).
	Proto    uint8
	Src, Dst netip.AddrPort
	TCPFlags uint8
	IPID     uint16
	Len      uint32
	// An ICMP echo's id as first seen, where its header was captured.
	HasICMPID bool
	ICMPID    uint16
	// FirstSeen is FirstSeenAfterNAT when the path starts after a
	// translation, FirstSeenReassembled with a datagram reassembled from
	// fragments (frag.go); "" when it starts at the packet's first hop.
	FirstSeen FirstSeen
	// Fragment says the packet is an IP fragment as first seen (its
	// captured header said so); IPID, shared with its datagram, links
	// them (frag.go).
	Fragment bool
	// DatagramSrc and DatagramDst are, on the path of a fragment other
	// than the first (no ports of its own), its datagram's endpoints as
	// the first fragment was first seen with them (for an IPv6 one: the
	// newest first fragment between its addresses); invalid when that
	// was not seen.
	DatagramSrc, DatagramDst netip.AddrPort

	Verdict Verdict
	Hops    []Hop
	Events  int  // events stitched into this path
	Clipped bool // more hops than the stitcher keeps per path; the rest were counted, not kept
	// Late, on a path of one free hop, says it ended a packet whose path
	// was emitted before, when that packet went quiet (late.go); nil on
	// every other path.
	Late *Late

	// Answers is, on the path of an ICMP error, the packet the error
	// answers as the error quotes it, read from the bytes captured of it;
	// nil when none were (no snaplen) or the path is no ICMP error.
	Answers *decode.Tuple

	// Warnings are things on the path worth knowing even without a drop
	// (bridged traffic that netfilter cannot see, a packet larger than the
	// overlay MTU, ...); filled by internal/diagnose.
	Warnings []string
	// Service names the Service port ("namespace/name:port") the packet
	// was sent to, or for a reply came from; "" when none is known. Set
	// by an annotator from the node reports (internal/diagnose).
	Service string

	// Clocks are, on a path of a merged replay with hops of other nodes
	// than the first recording's, how each such node's clock was moved
	// onto the first's (internal/merge); nil otherwise.
	Clocks []Clock
	// SrcPod and DstPod name the Kubernetes pods ("namespace/name") whose
	// addresses the packet's source (as first seen) and destination (after
	// the translations on the path: a Service's backend) are; "" when
	// unknown. Set by an annotator (internal/k8s).
	SrcPod, DstPod string
	// SrcNode and DstNode name the Kubernetes Nodes whose addresses the
	// packet's source and destination (as SrcPod, DstPod) are, where no
	// pod's is: a NodePort, a host-network pod; "" when unknown.
	SrcNode, DstNode string
}

// Clock is a node's clock offset relative to the first recording's node
// in a merged replay: the node's clock read Offset ahead of the first's,
// within ± Uncertainty. Known is false when the offset could not be
// bounded from both directions (no packets matched one way): Offset is
// then only kept from breaking causality, and Uncertainty means nothing.
type Clock struct {
	Node        string
	Offset      time.Duration
	Uncertainty time.Duration
	Known       bool
	Pairs       int // packets matched across the node's tunnel, both ways
}

// pathMem is the memory of a path the stitcher follows: the path, and the
// arena of what its hops point to, reused together.
type pathMem struct {
	path  Path
	arena arena
}

// arena is the memory of what a path's hops point to (Outer, NAT, ...):
// one allocation for a path's few, none for a recycled path's.
type arena struct {
	outers  []Outer
	nats    []NAT
	bridges []Bridge
	ipvs    []IPVS
	tables  []Table
}

// reset empties the arena for the path's next packet; the hops pointing
// into it must be gone.
func (a *arena) reset() {
	a.outers = resetBuf(a.outers)
	a.nats = resetBuf(a.nats)
	a.bridges = resetBuf(a.bridges)
	a.ipvs = resetBuf(a.ipvs)
	a.tables = resetBuf(a.tables)
}

func resetBuf[T any](b []T) []T {
	clear(b)
	return b[:0]
}

// alloc returns a pointer to a copy of v in *buf. A full buffer is
// replaced, not grown, so the pointers already handed out stay valid.
func alloc[T any](buf *[]T, v T) *T {
	if len(*buf) == cap(*buf) {
		*buf = make([]T, 0, max(4, 2*cap(*buf)))
	}
	*buf = append(*buf, v)
	return &(*buf)[len(*buf)-1]
}

// DropHook is the netfilter hook the free at hop i (a drop) happened in:
// the hook whose first view was seen and whose last never ran, which the
// stitcher names on the hop; or, where no view of the hook was seen, the
// hook of the table or IPVS verdict right before it, in its namespace,
// that returned the drop. NoHook otherwise: a packet freed right after a
// hook's last view (or the NAT hops that view shows) was accepted by the
// hook and died after it (in the bridge, in routing).
func (p *Path) DropHook(i int) hop.Hook {
	h := &p.Hops[i]
	if h.Hook != hop.NoHook || i == 0 {
		return h.Hook
	}
	prev := &p.Hops[i-1]
	if prev.NetnsInode != h.NetnsInode {
		return hop.NoHook
	}
	if (prev.Table != nil && prev.Table.Verdict == hop.VerdictDrop) || (prev.IPVS != nil && prev.IPVS.Verdict == hop.VerdictDrop) {
		return prev.Hook
	}
	return hop.NoHook
}

// Clone returns a deep copy of p, for an emit function or renderer that
// keeps paths while the stitcher recycles them (Config.Recycle).
func (p *Path) Clone() *Path {
	c := *p
	c.Hops = slices.Clone(p.Hops)
	c.Warnings = slices.Clone(p.Warnings)
	c.Clocks = slices.Clone(p.Clocks)
	c.Answers = clonePtr(p.Answers)
	c.Late = clonePtr(p.Late)
	for i := range c.Hops {
		h := &c.Hops[i]
		h.NAT = clonePtr(h.NAT)
		h.Outer = clonePtr(h.Outer)
		h.Bridge = clonePtr(h.Bridge)
		h.IPVS = clonePtr(h.IPVS)
		h.Table = clonePtr(h.Table)
	}
	return &c
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}
