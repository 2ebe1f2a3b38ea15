package kernel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where `ip netns` and CNI plugins keep named network namespaces.
const NetnsDir = "/run/netns"

// A network namespace is given as a name or a path, by one rule: a value
// without "/" is a name under NetnsDir, anything with "/" is a path
// (/proc/PID/ns/net, /run/netns/NAME). "" is the caller's own namespace.

// NetnsPath resolves a network namespace given as a name or a path to its
// path; "" stays "".
func NetnsPath(spec string) string {
	if spec == "" || strings.ContainsRune(spec, '/') {
		return spec
	}
	return NetnsDir + "/" + spec
}

// ErrNotNetns is returned by OpenNetns for a file that is not a network
// namespace: a regular file, a FIFO, another kind of namespace.
var ErrNotNetns = errors.New("not a network namespace")

// nsGetNstype is NS_GET_NSTYPE (linux/nsfs.h, Linux 4.11): the CLONE_NEW*
// type of a namespace file.
const nsGetNstype = 0xb703

// nsTypes names the namespace types NS_GET_NSTYPE returns.
var nsTypes = map[int]string{
	unix.CLONE_NEWNS: "mount", unix.CLONE_NEWUTS: "UTS", unix.CLONE_NEWIPC: "IPC", unix.CLONE_NEWUSER: "user",
	unix.CLONE_NEWPID: "PID", unix.CLONE_NEWCGROUP: "cgroup", unix.CLONE_NEWTIME: "time",
}

// OpenNetns opens the network namespace given as a name or a path (not ""),
// and checks that it is one: anything else (a regular file, another kind of
// namespace) is an error wrapping ErrNotNetns. A FIFO does not block it.
func OpenNetns(spec string) (netns.NsHandle, error) {
	path := NetnsPath(spec)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return 0, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	if err := checkNetns(fd); err != nil {
		unix.Close(fd)
		return 0, fmt.Errorf("%s is %w", path, err)
	}
	return netns.NsHandle(fd), nil
}

// checkNetns asks the kernel the namespace type of an open file.
func checkNetns(fd int) error {
	typ, err := unix.IoctlRetInt(fd, nsGetNstype)
	switch {
	case err == unix.ENOTTY || err == unix.EINVAL:
		return ErrNotNetns // not a namespace file at all
	case err != nil:
		return fmt.Errorf("%w (the namespace type could not be read: %v)", ErrNotNetns, err)
	case typ == unix.CLONE_NEWNET:
		return nil
	}
	name, ok := nsTypes[typ]
	if !ok {
		name = fmt.Sprintf("type %#x", typ)
	}
	return fmt.Errorf("%w but a %s namespace", ErrNotNetns, name)
}

// NetnsName returns the `ip netns` name of a namespace given as a name or a
// path, and false for a path outside /run/netns (or /var/run/netns) and "".
func NetnsName(spec string) (string, bool) {
	switch dir := filepath.Dir(spec); {
	case spec == "":
		return "", false
	case !strings.ContainsRune(spec, '/'):
		return spec, true
	case dir == NetnsDir || dir == "/var"+NetnsDir:
		return filepath.Base(spec), true
	}
	return "", false
}

// NetnsExec returns the shell prefix that runs a command in a namespace given
// as a name or a path: "ip netns exec NAME " for a name (or a path under
// /run/netns), "nsenter --net=PATH " for another path, "" for "".
func NetnsExec(spec string) string {
	if name, ok := NetnsName(spec); ok {
		return "ip netns exec " + name + " "
	}
	if spec == "" {
		return ""
	}
	return "nsenter --net=" + spec + " "
}

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
	entries, _ := os.ReadDir(NetnsDir)
	for _, e := range entries {
		if ino, err := inode(filepath.Join(NetnsDir, e.Name())); err == nil {
			names[ino] = printableName(e.Name())
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

// printableName replaces each character of a namespace's file name that is
// not printable (a control character, invalid UTF-8) by '?': the names go
// to terminals and into recordings.
func printableName(name string) string {
	return strings.Map(func(c rune) rune {
		if c == utf8.RuneError || !unicode.IsPrint(c) {
			return '?'
		}
		return c
	}, name)
}
