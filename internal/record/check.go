package record

import (
	"encoding/json"
	"fmt"
	"math/bits"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of what a recording's header and names hold. The writer keeps to
// them (text it is given is cleaned with printable); the reader refuses a
// recording that does not, since the names end up on a terminal.
const (
	maxText       = 256  // bytes of a header string (kernel, hostname, ...)
	maxName       = 255  // bytes of a namespace name (a file name under /run/netns)
	maxSymbolName = 512  // bytes of a kernel symbol with its offset
	maxCPUs       = 8192 // entries of lost_per_cpu (the kernel's NR_CPUS limit)
	maxFilterIPs  = 64   // pod IPs in the filter (pathtrace takes 16)
	maxFilterPort = 64   // VXLAN ports in the filter (pathtrace takes 4)
)

// isPrintable reports whether s is valid UTF-8 of printable characters
// (and spaces), at most max bytes long.
func isPrintable(s string, max int) bool {
	if len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if !unicode.IsPrint(c) {
			return false
		}
	}
	return true
}

// printable returns s with every character that is not printable replaced
// by '?' and cut to max bytes: what the writer puts in a recording.
func printable(s string, max int) string {
	if isPrintable(s, max) {
		return s
	}
	s = strings.Map(func(c rune) rune {
		if c == utf8.RuneError || !unicode.IsPrint(c) {
			return '?'
		}
		return c
	}, strings.ToValidUTF8(s, "?"))
	for len(s) > max {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return s
}

// check says what is wrong with a header, "" if nothing; data is the size
// of a record's data[].
func (h *header) check(data int) string {
	for _, f := range []struct{ name, val string }{
		{"pathtrace_version", h.PathtraceVersion}, {"kernel", h.Kernel}, {"hostname", h.Hostname},
		{"node_name", h.NodeName}, {"scope", h.Scope},
		{"arch", h.Arch}, {"backend", h.Backend},
	} {
		if !isPrintable(f.val, maxText) {
			return fmt.Sprintf("%s %q is not printable text of at most %d bytes", f.name, clipQuoted(f.val), maxText)
		}
	}
	if h.StartWall.IsZero() {
		return "no start time"
	}
	f := &h.Filter
	if f.Snaplen < 0 || f.Snaplen > data {
		return fmt.Sprintf("snaplen %d is out of range 0..%d", f.Snaplen, data)
	}
	if len(f.PodIPs) > maxFilterIPs || len(f.VXLANPorts) > maxFilterPort {
		return fmt.Sprintf("a filter of %d pod IPs and %d VXLAN ports", len(f.PodIPs), len(f.VXLANPorts))
	}
	for _, ip := range f.PodIPs {
		if !ip.IsValid() || ip.Is4In6() || ip.Zone() != "" {
			return fmt.Sprintf("filter pod IP %s is not an IPv4 or IPv6 address", ip)
		}
	}
	for _, p := range f.VXLANPorts {
		if p == 0 {
			return "filter VXLAN port 0"
		}
	}
	if h.FileIndex < 0 {
		return fmt.Sprintf("file index %d", h.FileIndex)
	}
	return ""
}

// check says what is wrong with a names block, "" if nothing.
func (n *names) check() string {
	for ino, name := range n.Netns {
		if name == "" || !isPrintable(name, maxName) {
			return fmt.Sprintf("netns %d is named %q: not printable text of 1 to %d bytes", ino, clipQuoted(name), maxName)
		}
	}
	for code, name := range n.DropReasons {
		if name == "" || !isPrintable(name, maxText) {
			return fmt.Sprintf("drop reason %d is named %q: not printable text of 1 to %d bytes", code, clipQuoted(name), maxText)
		}
	}
	for addr, name := range n.Symbols {
		if name == "" || !isPrintable(name, maxSymbolName) {
			return fmt.Sprintf("address %#x is named %q: not printable text of 1 to %d bytes", addr, clipQuoted(name), maxSymbolName)
		}
	}
	for _, ino := range n.Nodes {
		if ino == 0 {
			return "a node of netns inode 0"
		}
	}
	for _, u := range n.Kubernetes {
		if !json.Valid(u.Names) || len(u.Names) > MaxKubeUpdate {
			return "Kubernetes names update that is not valid JSON"
		}
	}
	return ""
}

// check says what is wrong with a trailer, "" if nothing.
func (t *trailer) check() string {
	if len(t.LostPerCPU) > maxCPUs {
		return fmt.Sprintf("lost counts of %d CPUs", len(t.LostPerCPU))
	}
	if len(t.LostPerCPU) == 0 {
		return ""
	}
	var sum, carry uint64
	for _, n := range t.LostPerCPU {
		sum, carry = bits.Add64(sum, n, 0)
		if carry != 0 {
			return "lost counts overflow"
		}
	}
	if sum != t.Lost {
		return fmt.Sprintf("%d events lost in all, %d by CPU", t.Lost, sum)
	}
	return ""
}

// clipQuoted bounds a bad value quoted in an error.
func clipQuoted(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
