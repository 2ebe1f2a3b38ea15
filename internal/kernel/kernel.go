package kernel

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// Release returns the running kernel's release (uname -r), or "unknown".
func Release() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// Version is a kernel's major.minor version: the series ("6.12").
type Version struct{ Major, Minor int }

// ParseVersion reads the version at the start of a release
// ("6.1.0-28-amd64", "6.12-rc1", "5.4").
func ParseVersion(release string) (Version, error) {
	major, rest, _ := strings.Cut(release, ".")
	minor := rest
	if i := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minor = rest[:i]
	}
	ma, err1 := strconv.Atoi(major)
	mi, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil || ma < 0 || mi < 0 {
		return Version{}, fmt.Errorf("parse kernel release %q: not major.minor", release)
	}
	return Version{ma, mi}, nil
}

// Below reports whether v is older than major.minor.
func (v Version) Below(major, minor int) bool {
	return v.Major < major || (v.Major == major && v.Minor < minor)
}

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// VersionBelow reports whether the running kernel is older than
// major.minor; false when its release cannot be read.
func VersionBelow(major, minor int) bool {
	v, err := ParseVersion(Release())
	return err == nil && v.Below(major, minor)
}

// DropReasons reads enum skb_drop_reason from the running kernel's BTF and
// returns the names by value, without the SKB_DROP_REASON_ prefix. The
// numbering differs between kernels, which is why it is read, not compiled
// in. A kernel without the enum (before 5.17) gives an empty map.
var DropReasons = sync.OnceValues(func() (map[uint32]string, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("load kernel BTF: %w", err)
	}
	var enum *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &enum); err != nil {
		if errors.Is(err, btf.ErrNotFound) {
			return map[uint32]string{}, nil
		}
		return nil, fmt.Errorf("find enum skb_drop_reason: %w", err)
	}
	names := make(map[uint32]string, len(enum.Values))
	for _, v := range enum.Values {
		names[uint32(v.Value)] = strings.TrimPrefix(v.Name, "SKB_DROP_REASON_")
	}
	return names, nil
})
