package scope

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/kernel"
)

// Scope is what one node would see.
type Scope string

const (
	// Kernel traces every namespace of the kernel: several nodes when
	// they are namespaces of one kernel (the demo), one node otherwise.
	Kernel Scope = "kernel"
	// Node traces the --netns namespaces and their pods only.
	Node Scope = "node"
)

// Parse checks a --scope value; "" is Kernel.
func Parse(s string) (Scope, error) {
	switch Scope(s) {
	case "", Kernel:
		return Kernel, nil
	case Node:
		return Node, nil
	}
	return "", fmt.Errorf("--scope %q is neither kernel nor node", s)
}

// Namespaces returns the inodes of the node namespaces given as names or
// paths ("" or none: the caller's own) and of their pods: a namespace
// holding the far end of a veth pair whose near end is in a node
// namespace, unless that namespace is itself a node's, or has a veth
// whose far end is in a third namespace (then it is not a pod but a node
// or a switch joined to this one, as the demo's nodes are by their
// underlay veth: a pod's veths all lead to its node). A node with no pod
// would be taken for a pod of the node it is joined to by a veth: the
// demo's nodes always have pods, real nodes are joined by NICs.
func Namespaces(nodes []string) (map[uint32]bool, error) {
	if len(nodes) == 0 {
		nodes = []string{""}
	}
	in := map[uint32]bool{}
	var handles []netns.NsHandle
	defer func() {
		for _, h := range handles {
			h.Close()
		}
	}()
	for _, spec := range nodes {
		h, err := openNode(spec)
		if err != nil {
			return nil, err
		}
		handles = append(handles, h)
		ino, err := inodeOf(int(h))
		if err != nil {
			return nil, err
		}
		in[ino] = true
	}
	nodeInodes := map[uint32]bool{}
	for ino := range in {
		nodeInodes[ino] = true
	}
	cands := candidates()
	defer func() {
		for _, c := range cands {
			c.h.Close()
		}
	}()
	for _, h := range handles {
		pods, err := podsOf(h, cands, nodeInodes)
		if err != nil {
			return nil, err
		}
		for _, ino := range pods {
			in[ino] = true
		}
	}
	return in, nil
}

func openNode(spec string) (netns.NsHandle, error) {
	if spec == "" {
		h, err := netns.Get()
		if err != nil {
			return 0, fmt.Errorf("open own network namespace: %w", err)
		}
		return h, nil
	}
	return kernel.OpenNetns(spec)
}

func inodeOf(fd int) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("stat network namespace: %w", err)
	}
	return uint32(st.Ino), nil
}

// candidate is a network namespace a veth may lead to.
type candidate struct {
	h   netns.NsHandle
	ino uint32
}

// candidates opens the network namespaces a pod's may be: the named ones
// (ip netns, CNI plugins: /run/netns, /var/run/netns) and those of the
// processes, one handle per namespace.
func candidates() []candidate {
	seen := map[uint32]bool{}
	var out []candidate
	add := func(path string) {
		h, err := netns.GetFromPath(path)
		if err != nil {
			return
		}
		ino, err := inodeOf(int(h))
		if err != nil || seen[ino] {
			h.Close()
			return
		}
		seen[ino] = true
		out = append(out, candidate{h, ino})
	}
	for _, dir := range []string{kernel.NetnsDir, "/var" + kernel.NetnsDir} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			add(filepath.Join(dir, e.Name()))
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	for _, p := range procs {
		add(p)
	}
	return out
}

// podsOf returns the pod namespaces of the node namespace h (see
// Namespaces).
func podsOf(h netns.NsHandle, cands []candidate, nodes map[uint32]bool) ([]uint32, error) {
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("netlink in node namespace: %w", err)
	}
	defer nl.Close()
	links, err := nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	peers := map[int]bool{} // netns ids, as the node sees them, of its veths' far ends
	for _, l := range links {
		if l.Type() == "veth" && l.Attrs().NetNsID >= 0 {
			peers[l.Attrs().NetNsID] = true
		}
	}
	if len(peers) == 0 {
		return nil, nil
	}
	var pods []uint32
	for _, c := range cands {
		if nodes[c.ino] {
			continue
		}
		id, err := nl.GetNetNsIdByFd(int(c.h))
		if err != nil || id < 0 || !peers[id] {
			continue
		}
		ok, err := onlyToward(c.h, h)
		if err != nil {
			return nil, err
		}
		if ok {
			pods = append(pods, c.ino)
		}
	}
	return pods, nil
}

// onlyToward reports whether every veth of namespace p whose far end is
// in another namespace leads to node.
func onlyToward(p, node netns.NsHandle) (bool, error) {
	nl, err := netlink.NewHandleAt(p)
	if err != nil {
		return false, fmt.Errorf("netlink in pod namespace: %w", err)
	}
	defer nl.Close()
	nodeID, err := nl.GetNetNsIdByFd(int(node))
	if err != nil {
		return false, fmt.Errorf("netns id of the node: %w", err)
	}
	links, err := nl.LinkList()
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil // gone meanwhile
		}
		return false, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		if l.Type() == "veth" && l.Attrs().NetNsID >= 0 && l.Attrs().NetNsID != nodeID {
			return false, nil
		}
	}
	return true, nil
}
