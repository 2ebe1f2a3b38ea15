package doctor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os/exec"
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
		return parseIPTEntries(buf[iptGetEntriesHdr:])
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
	for off := 0; off < len(b); {
		if off+iptEntrySize > len(b) {
			return nil, fmt.Errorf("parse iptables entry at %d: short blob (%d bytes)", off, len(b))
		}
		toff := int(binary.NativeEndian.Uint16(b[off+iptTargetOffOff:]))
		next := int(binary.NativeEndian.Uint16(b[off+iptNextOffOff:]))
		if next < iptEntrySize || off+next > len(b) || toff < iptEntrySize || toff+xtTargetDataOff > next {
			return nil, fmt.Errorf("parse iptables entry at %d: bad offsets target %d next %d", off, toff, next)
		}
		t := b[off+toff : off+next]
		if cstring(t[xtTargetNameOff:xtTargetNameOff+xtTargetNameLen]) == xtErrorTarget {
			if name := cstring(t[xtTargetDataOff:]); name != xtErrorTarget {
				chains = append(chains, name)
			}
		}
		off += next
	}
	return chains, nil
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
