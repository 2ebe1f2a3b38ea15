package trace

import (
	"net/netip"
	"slices"

	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/k8s"
	"github.com/pathtrace/pathtrace/internal/render"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// describeTrace gives a renderer that shows the trace as a whole (the HTML
// report) what it shows besides the paths: info, and the traced nodes, by
// the inodes of their namespaces, named as the paths name them, with the
// node reports taken at the start, and the Kubernetes names of the
// namespaces and addresses.
func describeTrace(out render.Renderer, info render.TraceInfo, names stitch.Names, nodes []uint32, reports map[uint32]*doctor.Report, kube *k8s.Names) {
	d, ok := out.(render.TraceDescriber)
	if !ok {
		return
	}
	if kube != nil {
		info.Names, info.AddrNames = map[string]string{}, map[netip.Addr]string{}
		if names != nil {
			for inode, pod := range kube.Netns {
				info.Names[names.Netns(inode)] = pod
			}
		}
		for _, s := range kube.Services {
			for _, a := range append(slices.Clone(s.ClusterIPs), s.ExternalIPs...) {
				info.AddrNames[a] = s.Key() + " (Service)"
			}
		}
		for _, p := range kube.Pods {
			for _, a := range p.IPs {
				if !p.HostNetwork {
					info.AddrNames[a] = p.Key()
				}
			}
		}
	}
	for _, inode := range nodes {
		if inode == 0 {
			continue
		}
		n := render.NodeInfo{Inode: inode, Report: reports[inode]}
		if names != nil {
			n.Netns = names.Netns(inode)
		}
		info.Nodes = append(info.Nodes, n)
	}
	d.DescribeTrace(info)
}
