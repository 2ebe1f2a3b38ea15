package doctor

import (
	"slices"
	"strconv"
	"strings"
)

// Facts are the node's settings that decide a packet's path, as values for
// programs: internal/diagnose reads them, and the items of the sysctls
// section are made from them. The MTUs of the pod bridges, overlays and
// underlays are in Report.Network (Bridge.MTU, Overlay.MTU and
// Overlay.UnderlayMTU), not repeated here.
type Facts struct {
	// IPForward is net.ipv4.ip_forward: 1 routes between pods, overlay and
	// uplink, 0 drops what the node should route.
	IPForward Sysctl `json:"ip_forward"`
	// IPv6Forwarding is net.ipv6.conf.all.forwarding; absent when IPv6 is
	// disabled.
	IPv6Forwarding Sysctl `json:"ipv6_forwarding"`
	// BridgeNFCallIPTables, BridgeNFCallIP6Tables and BridgeNFCallARPTables
	// are net.bridge.bridge-nf-call-{iptables,ip6tables,arptables}: 1 shows
	// bridged traffic to those rules; absent when br_netfilter is not loaded.
	BridgeNFCallIPTables  Sysctl `json:"bridge_nf_call_iptables"`
	BridgeNFCallIP6Tables Sysctl `json:"bridge_nf_call_ip6tables"`
	BridgeNFCallARPTables Sysctl `json:"bridge_nf_call_arptables"`
	// Conntrack is how full the connection tracking table is.
	Conntrack Conntrack `json:"conntrack"`
	// ConntrackTCPEstablished is
	// net.netfilter.nf_conntrack_tcp_timeout_established, in seconds;
	// absent when nf_conntrack is not loaded.
	ConntrackTCPEstablished Sysctl `json:"conntrack_tcp_timeout_established"`
	// IPVSConntrack is net.ipv4.vs.conntrack; absent without IPVS.
	IPVSConntrack Sysctl   `json:"ipvs_conntrack"`
	RPFilter      RPFilter `json:"rp_filter"`
}

// Sysctl is one integer setting as read from /proc/sys.
type Sysctl struct {
	// State is Present when the value was read as a number (Value holds
	// it), and Absent when the file could not be read: the setting does not
	// exist in the namespace (its module is not loaded, IPv6 is off).
	// Unsure ("unknown"), or empty, means the value is not known: what was
	// read is not a number (Text holds it), or a report read back did not
	// tell (DecodeReports says why).
	State Presence `json:"state"`
	Value *int64   `json:"value,omitempty"`
	Text  string   `json:"text,omitempty"`
}

// Int returns the value and whether it is known.
func (s Sysctl) Int() (int64, bool) {
	if s.State != Present || s.Value == nil {
		return 0, false
	}
	return *s.Value, true
}

// Is reports whether the value is known and is v.
func (s Sysctl) Is(v int64) bool {
	n, ok := s.Int()
	return ok && n == v
}

// String is the value for people: the number, "absent", or the text read.
func (s Sysctl) String() string {
	if n, ok := s.Int(); ok {
		return strconv.FormatInt(n, 10)
	}
	if s.State == Absent {
		return "absent"
	}
	return s.Text
}

func present(n int64) Sysctl { return Sysctl{State: Present, Value: &n} }

// parseSysctl makes the fact of a value read as text.
func parseSysctl(v string) Sysctl {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return Sysctl{State: Unsure, Text: v}
	}
	return present(n)
}

// Conntrack table fill thresholds, in percent: from the warn one the table
// is filling up, from the bad one nf_conntrack is about to drop packets of
// new connections.
const (
	conntrackWarnPercent = 80
	conntrackBadPercent  = 95
)

// Conntrack is the fill of the connection tracking table.
type Conntrack struct {
	Count Sysctl `json:"count"` // net.netfilter.nf_conntrack_count
	Max   Sysctl `json:"max"`   // net.netfilter.nf_conntrack_max
}

// Percent is how full the table is, in percent; ok is false when the count
// or the maximum is not known, or the maximum is 0.
func (c Conntrack) Percent() (pct float64, ok bool) {
	n, okN := c.Count.Int()
	m, okM := c.Max.Int()
	if !okN || !okM || n < 0 || m <= 0 {
		return 0, false
	}
	return float64(n) * 100 / float64(m), true
}

// Grade grades the fill: StatusBad from 95% (new connections are dropped
// when it is full), StatusWarn from 80%, StatusOK below, and StatusUnknown
// when Percent is not known. Doctor's item and diagnose's advice both grade
// with it.
func (c Conntrack) Grade() Status {
	pct, ok := c.Percent()
	switch {
	case !ok:
		return StatusUnknown
	case pct >= conntrackBadPercent:
		return StatusBad
	case pct >= conntrackWarnPercent:
		return StatusWarn
	}
	return StatusOK
}

// RPFilter is net.ipv4.conf.*.rp_filter: 0 off, 1 strict, 2 loose.
type RPFilter struct {
	All Sysctl `json:"all"`
	// Default is what devices created from now on start with.
	Default Sysctl `json:"default"`
	// Devices holds each pod bridge, overlay and underlay device of
	// Network by name, with the device's own value (not max'ed with All).
	Devices map[string]Sysctl `json:"devices"`
}

// Effective is the mode the kernel applies to packets received on dev,
// max(all, dev), as far as the report tells it: All's value alone when
// dev's is not known, dev's alone when All's is not. ok is false when
// neither is known.
func (r RPFilter) Effective(dev string) (mode int64, ok bool) {
	all, okAll := r.All.Int()
	own, okDev := r.Devices[dev].Int()
	switch {
	case okAll && okDev:
		return max(all, own), true
	case okDev:
		return own, true
	}
	return all, okAll
}

// rpFilterName is the name of dev's rp_filter in item ids (a dot in a
// device name kept).
func rpFilterName(dev string) string { return "net.ipv4.conf." + dev + ".rp_filter" }

// facts reads the facts of the inspected namespace; rp_filter of the
// devices of nw.
func (c *collector) facts(nw Network) *Facts {
	read := func(name string) Sysctl { return c.readSysctl(strings.ReplaceAll(name, ".", "/")) }
	f := &Facts{
		IPForward:             read("net.ipv4.ip_forward"),
		IPv6Forwarding:        read("net.ipv6.conf.all.forwarding"),
		BridgeNFCallIPTables:  read("net.bridge.bridge-nf-call-iptables"),
		BridgeNFCallIP6Tables: read("net.bridge.bridge-nf-call-ip6tables"),
		BridgeNFCallARPTables: read("net.bridge.bridge-nf-call-arptables"),
		Conntrack: Conntrack{
			Count: read("net.netfilter.nf_conntrack_count"),
			Max:   read("net.netfilter.nf_conntrack_max"),
		},
		ConntrackTCPEstablished: read("net.netfilter.nf_conntrack_tcp_timeout_established"),
		IPVSConntrack:           read("net.ipv4.vs.conntrack"),
		RPFilter: RPFilter{
			All:     c.readSysctl("net/ipv4/conf/all/rp_filter"),
			Default: c.readSysctl("net/ipv4/conf/default/rp_filter"),
			Devices: map[string]Sysctl{},
		},
	}
	for _, dev := range rpFilterDevices(nw) {
		// The path keeps a dot in a device name.
		f.RPFilter.Devices[dev] = c.readSysctl("net/ipv4/conf/" + dev + "/rp_filter")
	}
	return f
}

// readSysctl reads proc/sys/<rel>.
func (c *collector) readSysctl(rel string) Sysctl {
	v, ok := c.sysctlPath(rel)
	if !ok {
		return Sysctl{State: Absent}
	}
	return parseSysctl(v)
}

// rpFilterDevices lists the devices whose rp_filter the report holds: the
// pod bridges, the overlays and their underlays, sorted.
func rpFilterDevices(nw Network) []string {
	var devs []string
	for _, b := range nw.Bridges {
		devs = append(devs, b.Name)
	}
	for _, o := range nw.Overlays {
		devs = append(devs, o.Name)
		if o.Underlay != "" {
			devs = append(devs, o.Underlay)
		}
	}
	slices.Sort(devs)
	return slices.Compact(devs)
}
