package k8s

import (
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NameNetns names the network namespaces under dir (/run/netns, where CNI
// plugins put pods' namespaces) that hold a pod's address: Netns gets the
// pod by the namespace's inode. Namespaces for which skip is true (the
// traced nodes) are left alone, and so are pods on the host network. A
// namespace that cannot be read is left unnamed.
func (n *Names) NameNetns(dir string, skip func(inode uint32) bool) {
	byAddr := map[netip.Addr]string{}
	for i := range n.Pods {
		p := &n.Pods[i]
		if p.HostNetwork {
			continue
		}
		for _, a := range p.IPs {
			byAddr[a] = p.Key()
		}
	}
	if len(byAddr) == 0 {
		return
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		var st unix.Stat_t
		if unix.Stat(path, &st) != nil || skip != nil && skip(uint32(st.Ino)) || n.Netns[uint32(st.Ino)] != "" {
			continue // a node's, or named by the container runtime
		}
		for _, a := range netnsAddrs(path) {
			if pod, ok := byAddr[a]; ok {
				if n.Netns == nil {
					n.Netns = map[uint32]string{}
				}
				n.Netns[uint32(st.Ino)] = pod
				break
			}
		}
	}
}

// netnsAddrs lists the addresses of the namespace at path.
func netnsAddrs(path string) []netip.Addr {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil
	}
	defer h.Close()
	list, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range list {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out
}
