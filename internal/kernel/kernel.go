package kernel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// Release returns the running kernel's release (uname -r).
func Release() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
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

// NetnsNames names network namespaces by inode: the names under /run/netns
// (ip netns, CNI plugins), and the tracer's own namespace as "host". Unknown
// inodes are named "netns:<inode>". It rescans at most once a second on a
// miss, so a pod created during the trace is named. Safe for concurrent use.
type NetnsNames struct {
	mu      sync.Mutex
	names   map[uint32]string
	scanned time.Time
	// OnName, when set, is called once for each inode the first time it is
	// named, so a recording can keep the same names.
	OnName func(inode uint32, name string)
	given  map[uint32]string
}

// NewNetnsNames scans the system once.
func NewNetnsNames() *NetnsNames {
	n := &NetnsNames{given: map[uint32]string{}}
	n.scan()
	return n
}

// Netns returns the name of the namespace with the given inode. The first
// answer for an inode is kept for the rest of the trace, so every hop of a
// trace (and its replay) names a namespace the same way.
func (n *NetnsNames) Netns(inode uint32) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if name, ok := n.given[inode]; ok {
		return name
	}
	name, ok := n.names[inode]
	if !ok && time.Since(n.scanned) > time.Second {
		n.scan()
		name, ok = n.names[inode]
	}
	if !ok {
		name = fmt.Sprintf("netns:%d", inode)
	}
	n.given[inode] = name
	if n.OnName != nil {
		n.OnName(inode, name)
	}
	return name
}

func (n *NetnsNames) scan() {
	n.scanned = time.Now()
	names := map[uint32]string{}
	if ino, err := inode("/proc/self/ns/net"); err == nil {
		names[ino] = "host"
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if ino, err := inode(filepath.Join("/run/netns", e.Name())); err == nil {
			names[ino] = e.Name()
		}
	}
	n.names = names
}

func inode(path string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return uint32(st.Ino), nil
}
