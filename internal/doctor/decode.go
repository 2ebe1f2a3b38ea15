package doctor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// DecodeReports decodes the node reports a recording holds: a JSON object
// of reports by the inode of each node's network namespace. It never
// panics, and it leaves out only what it cannot read. err says why the
// object as a whole does not decode; then there are no reports. Otherwise
// problems lists, by inode, what is wrong with each report, one clause
// each ("net.ipv4.ip_forward is empty"): a report that does not decode is
// left out, a value that is missing or not a number leaves its fact
// unknown. A report written before facts existed gets them from its items
// (factsFromItems).
func DecodeReports(b []byte) (reports map[uint32]*Report, problems map[uint32][]string, err error) {
	var raw map[uint32]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, nil, fmt.Errorf("decode node reports: %w", err)
	}
	reports = make(map[uint32]*Report, len(raw))
	for inode, js := range raw {
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue
		}
		r, p := decodeReport(js)
		if r != nil {
			reports[inode] = r
		}
		if len(p) > 0 {
			if problems == nil {
				problems = make(map[uint32][]string)
			}
			problems[inode] = p
		}
	}
	return reports, problems, nil
}

// decodeReport decodes one report; nil when it does not decode.
func decodeReport(js []byte) (*Report, []string) {
	var r Report
	if err := json.Unmarshal(js, &r); err != nil {
		return nil, []string{fmt.Sprintf("it does not decode (%v)", err)}
	}
	if r.Facts == nil {
		var problems []string
		r.Facts, problems = factsFromItems(&r)
		return &r, problems
	}
	return &r, r.Facts.check()
}

// check makes every fact whose state is not one Collect writes unknown,
// and says which.
func (f *Facts) check() []string {
	var problems []string
	checkOne := func(name string, s *Sysctl) {
		switch s.State {
		case Present:
			if s.Value != nil {
				return
			}
			problems = append(problems, name+" has no value")
		case Absent, Unsure, "":
			return
		default:
			problems = append(problems, fmt.Sprintf("%s has the state %q", name, s.State))
		}
		*s = Sysctl{State: Unsure}
	}
	for _, n := range f.sysctls() {
		checkOne(n.name, n.fact)
	}
	for _, dev := range slices.Sorted(maps.Keys(f.RPFilter.Devices)) {
		s := f.RPFilter.Devices[dev]
		checkOne(rpFilterName(dev), &s)
		f.RPFilter.Devices[dev] = s
	}
	return problems
}

// namedSysctl is a fact with the sysctl name its item has (its id without
// "sysctl.").
type namedSysctl struct {
	name string
	fact *Sysctl
}

// sysctls lists every fact that is one sysctl, but rp_filter per device.
func (f *Facts) sysctls() []namedSysctl {
	return []namedSysctl{
		{"net.bridge.bridge-nf-call-iptables", &f.BridgeNFCallIPTables},
		{"net.bridge.bridge-nf-call-ip6tables", &f.BridgeNFCallIP6Tables},
		{"net.bridge.bridge-nf-call-arptables", &f.BridgeNFCallARPTables},
		{"net.ipv4.ip_forward", &f.IPForward},
		{"net.ipv6.conf.all.forwarding", &f.IPv6Forwarding},
		{"net.netfilter.nf_conntrack_count", &f.Conntrack.Count},
		{"net.netfilter.nf_conntrack_max", &f.Conntrack.Max},
		{"net.netfilter.nf_conntrack_tcp_timeout_established", &f.ConntrackTCPEstablished},
		{"net.ipv4.vs.conntrack", &f.IPVSConntrack},
		{"net.ipv4.conf.all.rp_filter", &f.RPFilter.All},
		{"net.ipv4.conf.default.rp_filter", &f.RPFilter.Default},
	}
}

// The items factsFromItems reads besides those of sysctls.
const (
	conntrackUsageID = "sysctl.net.netfilter.nf_conntrack_usage"
	rpFilterPrefix   = "sysctl.net.ipv4.conf."
	rpFilterSuffix   = ".rp_filter"
)

// factsFromItems is the converter for reports written before facts existed
// (schema version 1 without "facts"): it makes the facts from the sysctls
// section's items by their stable ids, reading their values as Collect
// wrote them ("1", "absent", "1 (strict)", "86400s", "12 / 262144 (0.0%
// full)"). A value that is missing, empty or not a number leaves its fact
// unknown and is a problem.
func factsFromItems(r *Report) (*Facts, []string) {
	f := &Facts{RPFilter: RPFilter{Devices: map[string]Sysctl{}}}
	s := r.Section(SectionSysctls)
	if s == nil {
		return f, []string{"it has no sysctls section"}
	}
	items := make(map[string]string, len(s.Items))
	var devs []string
	for _, it := range s.Items {
		items[it.ID] = it.Value
		if dev, ok := strings.CutPrefix(it.ID, rpFilterPrefix); ok {
			if dev, ok := strings.CutSuffix(dev, rpFilterSuffix); ok && dev != "all" && dev != "default" {
				devs = append(devs, dev)
			}
		}
	}
	var problems []string
	read := func(name string) Sysctl {
		v, ok := items["sysctl."+name]
		if !ok {
			problems = append(problems, "it has no "+name+" item")
			return Sysctl{State: Unsure}
		}
		s, p := itemValue(name, v)
		if p != "" {
			problems = append(problems, p)
		}
		return s
	}
	for _, n := range f.sysctls() {
		if n.fact != &f.Conntrack.Count && n.fact != &f.Conntrack.Max {
			*n.fact = read(n.name)
		}
	}
	for _, dev := range devs {
		f.RPFilter.Devices[dev] = read(rpFilterName(dev))
	}
	v, ok := items[conntrackUsageID]
	if !ok {
		return f, append(problems, "it has no "+strings.TrimPrefix(conntrackUsageID, "sysctl.")+" item")
	}
	var p string
	f.Conntrack, p = conntrackValue(v)
	if p != "" {
		problems = append(problems, p)
	}
	return f, problems
}

// itemValue reads the value of a one-sysctl item: "absent", or a number
// first ("1", "1 (strict)", "0 (effective 1: strict, from all)"), with an
// "s" after it for seconds.
func itemValue(name, v string) (Sysctl, string) {
	if v == "absent" {
		return Sysctl{State: Absent}, ""
	}
	if v == "" {
		return Sysctl{State: Unsure}, name + " is empty"
	}
	num, _, _ := strings.Cut(v, " ")
	n, err := strconv.ParseInt(strings.TrimSuffix(num, "s"), 10, 64)
	if err != nil {
		return Sysctl{State: Unsure, Text: v}, fmt.Sprintf("%s is %q, not a number", name, clipValue(v))
	}
	return present(n), ""
}

// conntrackValue reads the conntrack usage item: "absent", "COUNT / MAX
// (P% full)", "COUNT / 0", or `count "C", max "M"` for values that could
// not be read ("") or were not numbers.
func conntrackValue(v string) (Conntrack, string) {
	const name = "net.netfilter.nf_conntrack_usage"
	var count, limit int64
	var cs, ms string
	switch {
	case v == "absent":
		return Conntrack{Count: Sysctl{State: Absent}, Max: Sysctl{State: Absent}}, ""
	case v == "":
		return Conntrack{}, name + " is empty"
	case strings.HasPrefix(v, "count "):
		if k, _ := fmt.Sscanf(v, "count %q, max %q", &cs, &ms); k == 2 {
			read := func(s string) Sysctl {
				if s == "" {
					return Sysctl{State: Absent}
				}
				return parseSysctl(s)
			}
			return Conntrack{Count: read(cs), Max: read(ms)}, ""
		}
	default:
		if k, _ := fmt.Sscanf(v, "%d / %d", &count, &limit); k == 2 {
			return Conntrack{Count: present(count), Max: present(limit)}, ""
		}
	}
	return Conntrack{}, fmt.Sprintf("%s is %q, not a count and a maximum", name, clipValue(v))
}

// clipValue shortens a damaged value for a problem: a sentence, not a dump.
func clipValue(v string) string {
	const most = 40
	if len(v) <= most {
		return v
	}
	return v[:most] + "..."
}
