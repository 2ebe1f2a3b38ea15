package doctor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Legacy x_tables socket options and layout (include/uapi/linux/netfilter_ipv4/ip_tables.h).
const (
	iptSoGetInfo    = 64 // IPT_SO_GET_INFO
	iptSoGetEntries = 65 // IPT_SO_GET_ENTRIES

	iptGetinfoSize   = 84  // struct ipt_getinfo
	iptInfoSizeOff   = 80  // ipt_getinfo.size
	iptEntrySize     = 112 // struct ipt_entry (without matches and target)
	iptTargetOffOff  = 88  // ipt_entry.target_offset
	iptNextOffOff    = 90  // ipt_entry.next_offset
	xtTargetNameOff  = 2   // xt_entry_target.u.user.name
	xtTargetNameLen  = 29  // XT_EXTENSION_MAXNAMELEN
	xtTargetDataOff  = 32  // xt_entry_target.data
	xtErrorTarget    = "ERROR"
	iptGetEntriesTry = 3
)

// iptGetEntriesHdr is the offset of ipt_get_entries.entrytable: name[32],
// size, padded to the alignment of the u64 counters in struct ipt_entry.
var iptGetEntriesHdr = (32 + 4 + int(unsafe.Alignof(uint64(0))) - 1) &^ (int(unsafe.Alignof(uint64(0))) - 1)

// iptLegacyChains reads the user-defined chain names of a legacy iptables
// table with the same getsockopt calls iptables-legacy uses. Asking for a
// table the namespace does not have instantiates it, so callers first check
// /proc/net/ip_tables_names.
func iptLegacyChains(table string) ([]string, error) {
	b, err := iptLegacyEntries(table)
	if err != nil {
		return nil, err
	}
	return parseIPTEntries(b)
}

// iptLegacyEntries reads the entry blob of a legacy iptables table
// (ipt_get_entries.entrytable), as iptLegacyChains says.
func iptLegacyEntries(table string) ([]byte, error) {
	if len(table) >= 32 {
		return nil, fmt.Errorf("iptables table name %q too long", table)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("open raw socket: %w", err)
	}
	defer unix.Close(fd)
	for range iptGetEntriesTry {
		info := make([]byte, iptGetinfoSize)
		copy(info, table)
		if err := getsockopt(fd, iptSoGetInfo, info); err != nil {
			return nil, fmt.Errorf("get iptables %s info: %w", table, err)
		}
		size := binary.NativeEndian.Uint32(info[iptInfoSizeOff:])
		buf := make([]byte, iptGetEntriesHdr+int(size))
		copy(buf, table)
		binary.NativeEndian.PutUint32(buf[32:], size)
		err := getsockopt(fd, iptSoGetEntries, buf)
		if errors.Is(err, unix.EAGAIN) {
			continue // the table changed between the two calls
		}
		if err != nil {
			return nil, fmt.Errorf("get iptables %s entries: %w", table, err)
		}
		return buf[iptGetEntriesHdr:], nil
	}
	return nil, fmt.Errorf("get iptables %s entries: %w", table, unix.EAGAIN)
}

func getsockopt(fd, opt int, buf []byte) error {
	l := uint32(len(buf))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_IP, uintptr(opt),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// parseIPTEntries walks an x_tables entry blob and returns the user-defined
// chain names: each chain starts with an entry whose target is ERROR with
// the chain name as data; the table ends with an ERROR entry named ERROR.
func parseIPTEntries(b []byte) ([]string, error) {
	var chains []string
	err := walkIPTEntries(b, func(e, target []byte) {
		if name, ok := iptChainHead(target); ok {
			chains = append(chains, name)
		}
	})
	return chains, err
}

// walkIPTEntries calls fn with each entry of an x_tables entry blob and its
// target (xt_entry_target), checking the offsets.
func walkIPTEntries(b []byte, fn func(entry, target []byte)) error {
	for off := 0; off < len(b); {
		if off+iptEntrySize > len(b) {
			return fmt.Errorf("parse iptables entry at %d: short blob (%d bytes)", off, len(b))
		}
		toff := int(binary.NativeEndian.Uint16(b[off+iptTargetOffOff:]))
		next := int(binary.NativeEndian.Uint16(b[off+iptNextOffOff:]))
		if next < iptEntrySize || off+next > len(b) || toff < iptEntrySize || toff+xtTargetDataOff > next {
			return fmt.Errorf("parse iptables entry at %d: bad offsets target %d next %d", off, toff, next)
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

// Offsets in struct ipt_ip, at the start of struct ipt_entry, and in the
// x_tables matches kube-proxy's rules use.
const (
	iptIPDst      = 4  // ipt_ip.dst
	iptIPSmsk     = 8  // ipt_ip.smsk
	iptIPDmsk     = 12 // ipt_ip.dmsk
	iptIPIfaces   = 16 // ipt_ip.iniface, outiface (and their masks): 64 bytes
	iptIPProto    = 80 // ipt_ip.proto
	iptIPInvflags = 83 // ipt_ip.invflags
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

// parseIPTRules walks an x_tables entry blob like parseIPTEntries and
// summarises each rule as Rule: the chain it is in ("" for a built-in
// chain), -d, -p, the tcp, udp and sctp destination port, -m comment, -m
// addrtype --dst-type LOCAL and the target. A rule that also matches on
// anything else (a source, an interface, an inversion, another match) has
// Other set.
func parseIPTRules(b []byte) ([]Rule, error) {
	var rules []Rule
	chain := ""
	err := walkIPTEntries(b, func(e, target []byte) {
		if name, ok := iptChainHead(target); ok {
			chain = name
			return
		}
		if cstring(target[xtTargetNameOff:xtTargetNameOff+xtTargetNameLen]) == xtErrorTarget {
			return // the table's end
		}
		r := Rule{Chain: chain, Proto: uint8(binary.NativeEndian.Uint16(e[iptIPProto:]))}
		dst, dmsk := [4]byte(e[iptIPDst:iptIPDst+4]), [4]byte(e[iptIPDmsk:iptIPDmsk+4])
		switch dmsk {
		case [4]byte{}:
		case [4]byte{255, 255, 255, 255}:
			r.Dst = netip.PrefixFrom(netip.AddrFrom4(dst), 32)
		default:
			r.Other = true
		}
		if e[iptIPInvflags] != 0 || binary.NativeEndian.Uint16(e[iptIPProto:]) > 0xff ||
			[4]byte(e[iptIPSmsk:iptIPSmsk+4]) != [4]byte{} || slices.ContainsFunc(e[iptIPIfaces:iptIPProto], func(c byte) bool { return c != 0 }) {
			r.Other = true
		}
		toff := len(e) - len(target)
		for off := iptEntrySize; off < toff; {
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
