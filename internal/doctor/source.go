package doctor

import (
	"io/fs"
	"net/netip"
)

// Options select the namespace to inspect and, for tests, the sources.
type Options struct {
	// Netns is a name under /run/netns or, if it has a "/", a path to a
	// netns file (/proc/PID/ns/net); "" inspects the caller's own namespace.
	Netns string
	// FS reads /proc, /sys, /boot and /lib/modules, with paths relative to
	// "/" ("proc/sys/net/ipv4/ip_forward"). "proc/net/..." must show the
	// inspected namespace. nil: the live filesystem, read from a thread that
	// joined Netns, with proc/net mapped to /proc/thread-self/net.
	FS fs.FS
	// Net answers the netlink questions. nil: live netlink in Netns.
	Net NetSource
	// When both FS and Net are set (tests), Collect enters no namespace.
}

// NetSource answers the questions that need netlink or socket options, as
// seen from the inspected namespace. Errors are reported as "unknown" items,
// never as a Collect error.
type NetSource interface {
	// Links lists the namespace's network devices.
	Links() ([]Link, error)
	// NFTables lists nf_tables tables with their chain names.
	NFTables() ([]NFTable, error)
	// IPVS summarises IPVS virtual services; an error wrapping
	// ErrIPVSUnavailable means the kernel has no IPVS.
	IPVS() (IPVS, error)
	// LegacyChains lists the chain names of a legacy x_tables table of
	// family "ip" (iptables-legacy) or "ip6" (ip6tables-legacy). Collect
	// only asks for a table that /proc/net/ip_tables_names (or
	// ip6_tables_names) lists, so asking never creates it.
	LegacyChains(family, table string) ([]string, error)
	// NFTRules lists the rules of the named chains of an nf_tables table
	// (iptables-nft's rules live in these tables too); a chain the table
	// does not have has none.
	NFTRules(family, table string, chains []string) ([]Rule, error)
	// NFTMap lists the elements of a verdict map of an nf_tables table
	// whose key is an address, a protocol and a port, or a protocol and a
	// port; a map that does not exist has none.
	NFTMap(family, table, name string) ([]MapElement, error)
	// LegacyRules lists the rules of a legacy x_tables table of family
	// "ip" or "ip6". Collect only asks for a table that the family's
	// table names file lists.
	LegacyRules(family, table string) ([]Rule, error)
}

// Rule is a firewall rule as far as the report reads rules: the matches of
// kube-proxy's rules for Services without endpoints, and the verdict.
type Rule struct {
	// Chain is the chain the rule is in; "" for a built-in chain of a
	// legacy table.
	Chain   string
	Comment string       // -m comment
	Dst     netip.Prefix // -d; invalid when the rule does not match the destination
	// DstLocal is -m addrtype --dst-type LOCAL: any address of the node.
	DstLocal bool
	Proto    uint8  // -p; 0 when any
	DPort    uint16 // --dport of one port; 0 when any
	// Verdict is VerdictReject, VerdictDrop, VerdictAccept, "jump CHAIN",
	// "goto CHAIN", or another target's name ("DNAT", "MARK", ...).
	Verdict string
	// Other is set when the rule also matches on something else (a
	// source, an interface, an inverted match, a range of ports, ...): it
	// applies only to some of the packets the fields above describe.
	Other bool
}

// Verdicts of Rule and MapElement.
const (
	VerdictAccept = "accept"
	VerdictDrop   = "drop"
	VerdictReject = "reject"
)

// MapElement is one element of an nf_tables verdict map keyed by address,
// protocol and port.
type MapElement struct {
	Addr    netip.Addr // invalid when the key has no address
	Proto   uint8
	Port    uint16
	Comment string
	// Verdict is VerdictDrop, VerdictAccept, "goto CHAIN" or "jump CHAIN".
	Verdict string
}

// Link is a network device as the report needs it.
type Link struct {
	Index int
	Name  string
	// Kind is the rtnetlink kind: "bridge", "veth", "vxlan", "ipip",
	// "geneve", "device" (physical), ...
	Kind        string
	MTU         int
	MasterIndex int
	Addrs       []netip.Prefix
	// DefaultRoute is set when an IPv4 or IPv6 default route leaves through
	// this device.
	DefaultRoute bool
	// Down is set when the device is administratively down.
	Down bool

	// Tunnel attributes (vxlan, geneve, ipip).
	VNI       uint32
	Port      uint16
	Learning  bool
	FlowBased bool
	// UnderlayIndex is the VXLAN vtep device or the ipip link; 0 if unset.
	UnderlayIndex int
	Local         netip.Addr
	Remote        netip.Addr
}

// NFTable is one nf_tables table.
type NFTable struct {
	// Family is "ip", "ip6", "inet", "arp", "bridge" or "netdev".
	Family string
	Name   string
	Chains []string
}
