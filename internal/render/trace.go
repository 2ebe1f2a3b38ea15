package render

import (
	"net/netip"
	"time"

	"github.com/pathtrace/pathtrace/internal/doctor"
)

// TraceInfo is what a report of a whole trace shows besides its paths: where
// and how it was taken, what it lost, and the traced nodes with their node
// reports. Live traces and replays fill it from what they know; every field
// may be empty.
type TraceInfo struct {
	Backend  string
	Kernel   string
	Hostname string
	Start    time.Time
	PodIPs   []netip.Addr // the trace's filter; none: every IPv4 packet
	Events   uint64       // events read
	// Lost counts the events the kernel could not deliver (ring buffer
	// full), in all and by CPU.
	Lost       uint64
	LostPerCPU []uint64
	Nodes      []NodeInfo
	// Names are what people call the namespaces (a pod's
	// "namespace/name"), by the name paths give them (stitch.Hop.Netns),
	// and AddrNames the pods and Services by address, where pathtrace
	// knows them; the report shows them beside the namespaces and the
	// tuples.
	Names     map[string]string
	AddrNames map[netip.Addr]string
}

// NodeInfo is one traced node: a network namespace where netfilter programs
// were attached.
type NodeInfo struct {
	Inode uint32
	Netns string // as paths name it (stitch.Hop.Netns)
	// Name is what people call the node (a Kubernetes node name) where
	// known; "" shows Netns.
	Name string
	// Report is the node report taken when the trace started (pathtrace
	// doctor); nil when none could be taken.
	Report *doctor.Report
}

// TraceDescriber is a Renderer that shows the trace as a whole (the HTML
// report, the SVG of a packet): a trace calls DescribeTrace once, after the
// last event was read and before Close (the paths still being stitched are
// rendered in between).
type TraceDescriber interface {
	DescribeTrace(TraceInfo)
}
