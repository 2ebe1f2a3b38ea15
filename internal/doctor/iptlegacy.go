package doctor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Legacy x_tables socket options and layout, the same for both families
// (include/uapi/linux/netfilter_ipv4/ip_tables.h, netfilter_ipv6/ip6_tables.h).
const (
	iptSoGetInfo    = 64 // IPT_SO_GET_INFO, IP6T_SO_GET_INFO
	iptSoGetEntries = 65 // IPT_SO_GET_ENTRIES, IP6T_SO_GET_ENTRIES

	iptGetinfoSize   = 84 // struct ipt_getinfo, ip6t_getinfo
	iptInfoSizeOff   = 80 // ipt_getinfo.size
	xtTargetNameOff  = 2  // xt_entry_target.u.user.name
	xtTargetNameLen  = 29 // XT_EXTENSION_MAXNAMELEN
	xtTargetDataOff  = 32 // xt_entry_target.data
	xtErrorTarget    = "ERROR"
	iptGetEntriesTry = 3
)

// xtFamily is where a legacy x_tables family keeps what the report reads:
// its socket, the file listing its tables, and the layout of its entry
// (struct ipt_entry and its ipt_ip, or ip6t_entry and its ip6t_ip6).
type xtFamily struct {
	name, tool  string // "ip", "iptables-legacy"; "ip6", "ip6tables-legacy"
	names       string // the file under /proc listing its tables
	domain      int    // AF_INET, AF_INET6
	level       int    // SOL_IP, SOL_IPV6
	addrLen     int
	entrySize   int  // the entry without matches and target
	targetOff   int  // .target_offset
	nextOff     int  // .next_offset
	dst         int  // ip.dst
	smsk, dmsk  int  // ip.smsk, ip.dmsk
	ifaces      int  // ip.iniface, outiface and their masks: 64 bytes
	proto       int  // ip.proto (u16)
	flags       int  // ip.flags
	invflags    int  // ip.invflags
	strictFlags byte // flags that make a rule match on something more
}

var (
	xtIPv4 = xtFamily{name: "ip", tool: "iptables-legacy", names: "proc/net/ip_tables_names",
		domain: unix.AF_INET, level: unix.SOL_IP, addrLen: 4,
		entrySize: 112, targetOff: 88, nextOff: 90,
		dst: 4, smsk: 8, dmsk: 12, ifaces: 16, proto: 80, flags: 82, invflags: 83,
		strictFlags: 0x01} // IPT_F_FRAG; IPT_F_GOTO is the target's
	xtIPv6 = xtFamily{name: "ip6", tool: "ip6tables-legacy", names: "proc/net/ip6_tables_names",
		domain: unix.AF_INET6, level: unix.SOL_IPV6, addrLen: 16,
		entrySize: 168, targetOff: 140, nextOff: 142,
		dst: 16, smsk: 32, dmsk: 48, ifaces: 64, proto: 128, flags: 131, invflags: 132,
		strictFlags: 0x02} // IP6T_F_TOS; IP6T_F_PROTO only says -p is set
	xtFamilies = []xtFamily{xtIPv4, xtIPv6}
)

// source says where the report read a table of the family from.
func (fam xtFamily) source(table string) string {
	if fam.name == "ip6" {
		return "IP6T_SO_GET_ENTRIES on the legacy ip6 " + table + " table"
	}
	return "IPT_SO_GET_ENTRIES on the legacy " + table + " table"
}

// hasLegacy reports whether the family's table names file lists table: only then
// may the table be asked for (asking creates it).
func (c *collector) hasLegacy(fam xtFamily, table string) bool {
	names, err := c.read(fam.names)
	return err == nil && slices.Contains(strings.Fields(string(names)), table)
}

// xtFamilyOf is the legacy family named "ip" or "ip6".
func xtFamilyOf(name string) (xtFamily, error) {
	for _, f := range xtFamilies {
		if f.name == name {
			return f, nil
		}
	}
	return xtFamily{}, fmt.Errorf("no legacy x_tables family %q", name)
}

// iptGetEntriesHdr is the offset of ipt_get_entries.entrytable: name[32],
// size, padded to the alignment of the u64 counters in struct ipt_entry.
var iptGetEntriesHdr = (32 + 4 + int(unsafe.Alignof(uint64(0))) - 1) &^ (int(unsafe.Alignof(uint64(0))) - 1)

// iptLegacyChains reads the user-defined chain names of a legacy iptables
// or ip6tables table with the same getsockopt calls iptables-legacy uses.
// Asking for a table the namespace does not have instantiates it, so
// callers first check the family's table names file.
func iptLegacyChains(fam xtFamily, table string) ([]string, error) {
	b, err := iptLegacyEntries(fam, table)
	if err != nil {
		return nil, err
	}
	return fam.parseEntries(b)
}

// iptLegacyEntries reads the entry blob of a legacy table
// (ipt_get_entries.entrytable), as iptLegacyChains says.
func iptLegacyEntries(fam xtFamily, table string) ([]byte, error) {
	if len(table) >= 32 {
		return nil, fmt.Errorf("%s table name %q too long", fam.tool, table)
	}
	fd, err := unix.Socket(fam.domain, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("open raw socket: %w", err)
	}
	defer unix.Close(fd)
	for range iptGetEntriesTry {
		info := make([]byte, iptGetinfoSize)
		copy(info, table)
		if err := getsockopt(fd, fam.level, iptSoGetInfo, info); err != nil {
			return nil, fmt.Errorf("get %s %s info: %w", fam.tool, table, err)
		}
		size := binary.NativeEndian.Uint32(info[iptInfoSizeOff:])
		buf := make([]byte, iptGetEntriesHdr+int(size))
		copy(buf, table)
		binary.NativeEndian.PutUint32(buf[32:], size)
		err := getsockopt(fd, fam.level, iptSoGetEntries, buf)
		if errors.Is(err, unix.EAGAIN) {
			continue // the table changed between the two calls
		}
		if err != nil {
			return nil, fmt.Errorf("get %s %s entries: %w", fam.tool, table, err)
		}
		return buf[iptGetEntriesHdr:], nil
	}
	return nil, fmt.Errorf("get %s %s entries: %w", fam.tool, table, unix.EAGAIN)
}

func getsockopt(fd, level, opt int, buf []byte) error {
	l := uint32(len(buf))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// parseEntries walks an x_tables entry blob and returns the user-defined
// chain names: each chain starts with an entry whose target is ERROR with
// the chain name as data; the table ends with an ERROR entry named ERROR.
func (fam xtFamily) parseEntries(b []byte) ([]string, error) {
	var chains []string
	err := fam.walk(b, func(e, target []byte) {
		if name, ok := iptChainHead(target); ok {
			chains = append(chains, name)
		}
	})
	return chains, err
}

// walk calls fn with each entry of an x_tables entry blob and its target
// (xt_entry_target), checking the offsets.
func (fam xtFamily) walk(b []byte, fn func(entry, target []byte)) error {
	for off := 0; off < len(b); {
		if off+fam.entrySize > len(b) {
			return fmt.Errorf("parse %s entry at %d: short blob (%d bytes)", fam.tool, off, len(b))
		}
		toff := int(binary.NativeEndian.Uint16(b[off+fam.targetOff:]))
		next := int(binary.NativeEndian.Uint16(b[off+fam.nextOff:]))
		if next < fam.entrySize || off+next > len(b) || toff < fam.entrySize || toff+xtTargetDataOff > next {
			return fmt.Errorf("parse %s entry at %d: bad offsets target %d next %d", fam.tool, off, toff, next)
		}
		fn(b[off:off+next], b[off+toff:off+next])
		off += next
	}
	return nil
}

// iptChainHead returns the chain name of an entry's target when the entry
// starts a user-defined chain (an ERROR target named after the chain).
func iptChainHead(target []byte) (string, bool) {
	if cstring(target[xtTargetNameOff:xtTargetNameOff+xtTargetNameLen]) != xtErrorTarget {
		return "", false
	}
	name := cstring(target[xtTargetDataOff:])
	return name, name != xtErrorTarget
}

// Values of the x_tables matches and targets kube-proxy's rules use.
const (
	xtMatchSize   = 0  // xt_entry_match.match_size (also target_size)
	xtStandard    = "" // the standard target: a verdict or a jump
	xtVerdictDrop = -1 // -NF_DROP - 1
	xtVerdictAcc  = -2 // -NF_ACCEPT - 1
	xtReturn      = -5 // XT_RETURN: -NF_REPEAT - 1
	xtSCTPSize    = 68 // struct xt_sctp_info
	xtSCTPFlags   = 60 // xt_sctp_info.flags
	xtSCTPInv     = 64 // xt_sctp_info.invflags
	xtSCTPPorts   = 3  // XT_SCTP_SRC_PORTS | XT_SCTP_DEST_PORTS
)

// parseRules walks an x_tables entry blob like parseEntries and
// summarises each rule as Rule: the chain it is in ("" for a built-in
// chain), -d, -p, the tcp, udp and sctp destination port, -m comment, -m
// addrtype --dst-type LOCAL and the target. A rule that also matches on
// anything else (a source, an interface, an inversion, another match) has
// Other set.
func (fam xtFamily) parseRules(b []byte) ([]Rule, error) {
	var rules []Rule
	chain := ""
	err := fam.walk(b, func(e, target []byte) {
		if name, ok := iptChainHead(target); ok {
			chain = name
			return
		}
		if cstring(target[xtTargetNameOff:xtTargetNameOff+xtTargetNameLen]) == xtErrorTarget {
			return // the table's end
		}
		r := Rule{Chain: chain, Proto: uint8(binary.NativeEndian.Uint16(e[fam.proto:]))}
		n := fam.addrLen
		dst, dmsk := e[fam.dst:fam.dst+n], e[fam.dmsk:fam.dmsk+n]
		switch {
		case !slices.ContainsFunc(dmsk, func(c byte) bool { return c != 0 }):
		case !slices.ContainsFunc(dmsk, func(c byte) bool { return c != 0xff }):
			a, _ := netip.AddrFromSlice(dst)
			r.Dst = netip.PrefixFrom(a, n*8)
		default:
			r.Other = true
		}
		if e[fam.invflags] != 0 || binary.NativeEndian.Uint16(e[fam.proto:]) > 0xff || e[fam.flags]&fam.strictFlags != 0 ||
			slices.ContainsFunc(e[fam.smsk:fam.smsk+n], func(c byte) bool { return c != 0 }) ||
			slices.ContainsFunc(e[fam.ifaces:fam.ifaces+64], func(c byte) bool { return c != 0 }) {
			r.Other = true
		}
		toff := len(e) - len(target)
		for off := fam.entrySize; off < toff; {
			size := int(binary.NativeEndian.Uint16(e[off+xtMatchSize:]))
			if size < xtTargetDataOff || off+size > toff {
				r.Other = true
				break
			}
			m := e[off : off+size]
			r.legacyMatch(cstring(m[xtTargetNameOff:xtTargetNameOff+xtTargetNameLen]), m[xtTargetNameOff+xtTargetNameLen], m[xtTargetDataOff:])
			off += size
		}
		switch name := cstring(target[xtTargetNameOff : xtTargetNameOff+xtTargetNameLen]); name {
		case xtStandard:
			r.Verdict = "jump"
			if len(target) >= xtTargetDataOff+4 {
				switch int32(binary.NativeEndian.Uint32(target[xtTargetDataOff:])) {
				case xtVerdictDrop:
					r.Verdict = VerdictDrop
				case xtVerdictAcc:
					r.Verdict = VerdictAccept
				case xtReturn:
					r.Verdict = "return"
				}
			}
		case "REJECT":
			r.Verdict = VerdictReject
		default:
			r.Verdict = name
		}
		rules = append(rules, r)
	})
	return rules, err
}

// legacyMatch reads one x_tables match of a rule (name, revision, data).
func (r *Rule) legacyMatch(name string, rev byte, data []byte) {
	u16 := func(off int) uint16 { return binary.NativeEndian.Uint16(data[off:]) }
	switch {
	case name == "comment":
		r.Comment = cstring(data)
	case (name == "tcp" && len(data) >= 12) || (name == "udp" && len(data) >= 9):
		// struct xt_tcp / xt_udp: spts[2], dpts[2], then options and
		// invflags (the last byte used).
		plain := data[8] == 0
		if name == "tcp" {
			plain = data[8] == 0 && data[9] == 0 && data[11] == 0 // option, flg_mask, invflags
		}
		r.ports([2]uint16{u16(0), u16(2)}, [2]uint16{u16(4), u16(6)}, plain)
	case name == "sctp" && len(data) >= xtSCTPSize:
		// struct xt_sctp_info: dpts[2] first, then spts[2]; a rule on
		// chunks is not kube-proxy's.
		u32 := func(off int) uint32 { return binary.NativeEndian.Uint32(data[off:]) }
		plain := u32(xtSCTPFlags)&^xtSCTPPorts == 0 && u32(xtSCTPInv) == 0
		r.ports([2]uint16{u16(4), u16(6)}, [2]uint16{u16(0), u16(2)}, plain)
	case name == "addrtype" && rev == 1 && len(data) >= 8:
		r.addrType(u16(0), u16(2), binary.NativeEndian.Uint32(data[4:]) == 0)
	case name == "addrtype" && rev == 0 && len(data) >= 12:
		r.addrType(u16(0), u16(2), binary.NativeEndian.Uint32(data[4:]) == 0 && binary.NativeEndian.Uint32(data[8:]) == 0)
	default:
		r.Other = true
	}
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

var lookPath = exec.LookPath

// runCommand runs a command on the calling thread; started from inside
// inNetns, the child inherits that thread's network namespace.
var runCommand = func(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).Output()
}
