package trace

import (
	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/render"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// describeTrace gives a renderer that shows the trace as a whole (the HTML
// report) what it shows besides the paths: info, and the traced nodes, by
// the inodes of their namespaces, named as the paths name them, with the
// node reports taken at the start.
func describeTrace(out render.Renderer, info render.TraceInfo, names stitch.Names, nodes []uint32, reports map[uint32]*doctor.Report) {
	d, ok := out.(render.TraceDescriber)
	if !ok {
		return
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
