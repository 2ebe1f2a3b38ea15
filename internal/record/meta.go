package record

import (
	"encoding/json"
	"maps"
	"net/netip"
	"slices"
	"time"
)

// FormatVersion is the recording format this package writes. It reads
// every version up to this one. Version 2 (IPv6) widened the record's
// tuples to 16-byte addresses; version 1 records are read into the current
// layout (v1.go).
const FormatVersion = 2

// marker starts the SHB comment holding the header, followed by the format
// version, a space and the header as JSON: "pathtrace-recording/1 {...}".
const marker = "pathtrace-recording/"

// Meta is everything replay needs besides the records.
type Meta struct {
	// FormatVersion is the version the file was written in; the writer
	// always writes FormatVersion, whatever is set here.
	FormatVersion    int
	PathtraceVersion string
	Kernel           string // release of the recording kernel (uname -r)
	Hostname         string
	// NodeName names the node the trace was made on (--node-name), and
	// Scope is "node" for a trace of that node's namespaces only
	// (--scope node), "" or "kernel" for a trace of the whole kernel.
	// Recordings of several nodes' --scope node traces replay merged.
	NodeName string
	Scope    string
	Arch     string // GOARCH of the recording machine; the writer fills it
	Backend  string
	Filter   Filter

	// StartWall and StartMono are the same instant on the wall clock and on
	// CLOCK_MONOTONIC: a record's time is StartWall + (ts - StartMono).
	StartWall time.Time
	StartMono uint64

	// FileIndex is the place of this file among the files of one trace
	// (Rotation): 0 for the first or only one. The files of one trace share
	// Hostname, StartWall and StartMono.
	FileIndex int

	// Names, learned as the recording goes. A reader has every name set
	// before a record by the time Next returns that record.
	Netns       map[uint32]string // network namespace name by inode
	Nodes       []uint32          // inodes of the namespaces traced as nodes, in the order added
	DropReasons map[uint32]string // enum skb_drop_reason names of the recording kernel
	Symbols     map[uint64]string // kernel text addresses of the recording kernel, named

	// Reports are the node reports taken when the trace started (JSON, as
	// the caller gave them). They are in the section header, so a streaming
	// reader has them before the first record.
	Reports json.RawMessage
	// Kubernetes are the pods and Services looked up when the trace
	// started (JSON of internal/k8s.Names, as the caller gave it), in the
	// section header like Reports; nil when there were none.
	Kubernetes json.RawMessage
	// KubernetesUpdates are the Kubernetes names as looked up again while
	// tracing, each from its CLOCK_MONOTONIC time on, learned as the
	// recording goes (like Netns).
	KubernetesUpdates []KubeUpdate

	// Written at the end (Writer.Close), known to a reader after io.EOF.
	EndWall    time.Time
	Records    uint64   // number of records in the file
	Lost       uint64   // events the kernel could not deliver
	LostPerCPU []uint64 // the same, by CPU
	// Missed counts the program runs the kernel skipped (its recursion
	// check: loader.Tracer.Missed); 0 in recordings made before it was
	// counted.
	Missed uint64
	Report json.RawMessage // the node report, as the caller gave it
	// Connections are what the kernel's connection table did; nil in
	// recordings made before it was counted.
	Connections *Connections
}

// KubeUpdate is the Kubernetes names (JSON of internal/k8s.Names) from a
// CLOCK_MONOTONIC time on.
type KubeUpdate struct {
	FromMono uint64          `json:"from_mono"`
	Names    json.RawMessage `json:"names"`
}

// Connections counts the connections a trace followed whole.
type Connections struct {
	Followed uint64 `json:"followed"` // connections added to the kernel's table
	Evicted  uint64 `json:"evicted"`  // of those, evicted by its size bound
}

// Filter is what the recording traced.
type Filter struct {
	PodIPs     []netip.Addr `json:"pod_ips,omitempty"`
	VXLANPorts []uint16     `json:"vxlan_ports,omitempty"`
	Snaplen    int          `json:"snaplen"`
	// HeadersOnly: each record's packet bytes end at its innermost
	// transport header (HeaderLen); Snaplen bounds them still.
	HeadersOnly bool `json:"headers_only,omitempty"`
}

// clone returns a deep copy of m.
func (m Meta) clone() Meta {
	m.Filter.PodIPs = slices.Clone(m.Filter.PodIPs)
	m.Filter.VXLANPorts = slices.Clone(m.Filter.VXLANPorts)
	m.Netns = maps.Clone(m.Netns)
	m.Nodes = slices.Clone(m.Nodes)
	m.DropReasons = maps.Clone(m.DropReasons)
	m.Symbols = maps.Clone(m.Symbols)
	m.LostPerCPU = slices.Clone(m.LostPerCPU)
	m.Report = slices.Clone(m.Report)
	m.Reports = slices.Clone(m.Reports)
	m.Kubernetes = slices.Clone(m.Kubernetes)
	m.KubernetesUpdates = slices.Clone(m.KubernetesUpdates)
	if m.Connections != nil {
		c := *m.Connections
		m.Connections = &c
	}
	return m
}

// header is the JSON after the marker in the SHB comment.
type header struct {
	FormatVersion    int       `json:"format_version"`
	PathtraceVersion string    `json:"pathtrace_version"`
	Kernel           string    `json:"kernel"`
	Hostname         string    `json:"hostname"`
	NodeName         string    `json:"node_name,omitempty"`
	Scope            string    `json:"scope,omitempty"`
	Arch             string    `json:"arch"`
	Backend          string    `json:"backend"`
	Filter           Filter    `json:"filter"`
	StartWall        time.Time `json:"start_wall"`
	StartMono        uint64    `json:"start_mono"`
	RecordSize       int       `json:"record_size"`   // bytes of one ring-buffer record
	RecordPrefix     int       `json:"record_prefix"` // bytes before data[], kept in each EPB option
	FileIndex        int       `json:"file_index,omitempty"`
}

// names is the JSON of a names custom block. Entries add to (or replace)
// what earlier blocks said.
type names struct {
	Netns       map[uint32]string `json:"netns,omitempty"`
	Nodes       []uint32          `json:"nodes,omitempty"`
	DropReasons map[uint32]string `json:"drop_reasons,omitempty"`
	Symbols     map[uint64]string `json:"symbols,omitempty"`
	Kubernetes  []KubeUpdate      `json:"kubernetes,omitempty"`
}

func (n *names) len() int {
	return len(n.Netns) + len(n.Nodes) + len(n.DropReasons) + len(n.Symbols) + len(n.Kubernetes)
}

// trailer is the JSON of the trailer custom block.
type trailer struct {
	EndWall     *time.Time      `json:"end_wall,omitempty"`
	Records     uint64          `json:"records"`
	Lost        uint64          `json:"lost"`
	LostPerCPU  []uint64        `json:"lost_per_cpu,omitempty"`
	Missed      uint64          `json:"missed,omitempty"`
	Report      json.RawMessage `json:"report,omitempty"`
	Connections *Connections    `json:"connections,omitempty"`
}
