package k8s

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"sync"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// Pods names the pods on paths from Names: the packet's source and
// destination pods (stitch.Path.SrcPod, DstPod) and the pod whose network
// namespace a hop is in (stitch.Hop.Pod). Its output is a pure function of
// the path and the names, so replay, given the names stored in a
// recording, names the same. It implements trace.Annotator; safe for
// concurrent use once made.
type Pods struct {
	byAddr    map[netip.Addr]string
	netns     map[uint32]string
	nodeAddr  map[netip.Addr]string // a Node's address → its name
	nodeNetns map[uint32]string
	podNode   map[string]string // "namespace/name" → the pod's Node
	// Service ports by protocol, address and port (cluster, external and
	// load-balancer IPs), and by protocol and node port (address zero).
	svcAddr, svcNodePort map[svcKey]string
}

type svcKey struct {
	proto uint8
	addr  netip.Addr
	port  uint16
}

// NewPods returns a Pods for n; nil names nothing. Pods on the host
// network are not named by address: their addresses are their node's.
func NewPods(n *Names) *Pods {
	p := &Pods{byAddr: map[netip.Addr]string{}, nodeAddr: map[netip.Addr]string{}, podNode: map[string]string{},
		svcAddr: map[svcKey]string{}, svcNodePort: map[svcKey]string{}}
	if n == nil {
		return p
	}
	for i := range n.Services {
		svc := &n.Services[i]
		for _, sp := range svc.Ports {
			proto := protoNumber(sp.Protocol)
			name := svc.Key() + ":" + cmp.Or(sp.Name, strconv.Itoa(int(sp.Port)))
			for _, a := range slices.Concat(svc.ClusterIPs, svc.ExternalIPs) {
				k := svcKey{proto, a, sp.Port}
				if _, dup := p.svcAddr[k]; !dup {
					p.svcAddr[k] = name
				}
			}
			if k := (svcKey{proto: proto, port: sp.NodePort}); sp.NodePort != 0 {
				if _, dup := p.svcNodePort[k]; !dup {
					p.svcNodePort[k] = name
				}
			}
		}
	}
	for _, node := range n.Nodes {
		for _, a := range node.IPs {
			if _, dup := p.nodeAddr[a]; !dup {
				p.nodeAddr[a] = node.Name
			}
		}
	}
	p.nodeNetns = n.NodeNetns
	for i := range n.Pods {
		pod := &n.Pods[i]
		if pod.Node != "" {
			p.podNode[pod.Key()] = pod.Node
		}
		if pod.HostNetwork {
			continue
		}
		for _, a := range pod.IPs {
			if _, dup := p.byAddr[a]; !dup {
				p.byAddr[a] = pod.Key()
			}
		}
	}
	p.netns = n.Netns
	return p
}

// Pod is the pod whose address a is; "" when none is known.
func (p *Pods) Pod(a netip.Addr) string { return p.byAddr[a.Unmap()] }

// Node is the Node whose address a is; "" when none is known.
func (p *Pods) Node(a netip.Addr) string { return p.nodeAddr[a.Unmap()] }

// Service is the Service port packets of protocol proto to a go to: by
// its cluster, external or load-balancer IP, or a node port on a Node's
// address; "" when none is known.
func (p *Pods) Service(proto uint8, a netip.AddrPort) string {
	addr := a.Addr().Unmap()
	if name := p.svcAddr[svcKey{proto, addr, a.Port()}]; name != "" {
		return name
	}
	if p.nodeAddr[addr] != "" {
		return p.svcNodePort[svcKey{proto: proto, port: a.Port()}]
	}
	return ""
}

// protoNumber is the IP protocol of a Service port's protocol; TCP when
// it is not given (the API's default).
func protoNumber(s string) uint8 {
	switch s {
	case "UDP":
		return 17
	case "SCTP":
		return 132
	}
	return 6
}

// Netns names what the network namespace with the inode is: the pod in it
// and the Node it is on, or the Node it is; "" for what is not known.
func (p *Pods) Netns(inode uint32) (pod, node string) {
	pod = p.netns[inode]
	return pod, cmp.Or(p.nodeNetns[inode], p.podNode[pod])
}

// Annotate names the pods of p: its source pod by the source as first
// seen, its destination pod by the destination after the last translation
// of it on the path (a DNAT, an un-SNAT, the real server IPVS chose: the
// backend of a Service), else as first seen, and each hop's pod by its
// network namespace. It names the Nodes too: a source or destination
// that is a Node's address and no pod's, the ends of a tunnel's outer
// header, and the Node of each hop not named yet (a --scope node trace
// names its own), by its namespace, or its pod's.
func (p *Pods) Annotate(path *stitch.Path) {
	if len(p.byAddr) == 0 && len(p.netns) == 0 && len(p.nodeAddr) == 0 && len(p.nodeNetns) == 0 && len(p.svcAddr) == 0 && len(p.svcNodePort) == 0 {
		return
	}
	p.services(path)
	dst := path.Dst
	for i := range path.Hops {
		h := &path.Hops[i]
		if pod := p.netns[h.NetnsInode]; pod != "" {
			h.Pod = pod
		}
		if h.Node == "" {
			h.Node = cmp.Or(p.nodeNetns[h.NetnsInode], p.podNode[h.Pod])
		}
		if o := h.Outer; o != nil && (p.Node(o.Src) != "" || p.Node(o.Dst) != "") {
			named := *o // the stitcher's may be shared
			named.SrcNode, named.DstNode = p.Node(o.Src), p.Node(o.Dst)
			h.Outer = &named
		}
		switch {
		case h.NAT != nil && h.NAT.Type == hop.DNAT && h.NAT.To.IsValid():
			dst = h.NAT.To
		case h.IPVS != nil && h.IPVS.RealServer.IsValid():
			dst = h.IPVS.RealServer
		}
	}
	if pod := p.Pod(path.Src.Addr()); pod != "" {
		path.SrcPod = pod
	}
	if pod := p.Pod(dst.Addr()); pod != "" {
		path.DstPod = pod
	} else if pod := p.Pod(path.Dst.Addr()); pod != "" {
		path.DstPod = pod
	}
	if path.SrcPod == "" {
		path.SrcNode = p.Node(path.Src.Addr())
	}
	if path.DstPod == "" {
		path.DstNode = cmp.Or(p.Node(dst.Addr()), p.Node(path.Dst.Addr()))
	}
}

// services names, from the API server's Services, the Service ports of
// the path's NAT and IPVS hops and of the path that kube-proxy's rules did
// not name (internal/diagnose.Services runs first): IPVS mode, whose
// virtual services carry no names, or rules that could not be read. The
// same places as there: a DNAT's original destination, an un-DNAT's
// restored source, an IPVS virtual service, then the path's by its first
// named hop, its destination or its source.
func (p *Pods) services(path *stitch.Path) {
	if len(p.svcAddr) == 0 && len(p.svcNodePort) == 0 {
		return
	}
	first := ""
	for i := range path.Hops {
		h := &path.Hops[i]
		proto := cmp.Or(h.Proto, path.Proto)
		name := ""
		switch {
		case h.NAT != nil && h.NAT.Type == hop.DNAT && !h.NAT.Reverse:
			if name = h.NAT.Service; name == "" {
				name = p.Service(proto, h.NAT.From)
				h.NAT.Service = name
			}
		case h.NAT != nil && h.NAT.Type == hop.SNAT && h.NAT.Reverse:
			if name = h.NAT.Service; name == "" {
				name = p.Service(proto, h.NAT.To)
				h.NAT.Service = name
			}
		case h.IPVS != nil && h.IPVS.Service.IsValid():
			if name = h.IPVS.ServiceName; name == "" {
				name = p.Service(proto, h.IPVS.Service)
				h.IPVS.ServiceName = name
			}
		}
		first = cmp.Or(first, name)
	}
	if path.Service == "" {
		path.Service = cmp.Or(first, p.Service(path.Proto, path.Dst), p.Service(path.Proto, path.Src))
	}
}

// Timeline names the pods on paths from the names of a trace over time:
// those looked up when it started, then each lookup that changed them, in
// effect from its CLOCK_MONOTONIC time on. A path is named from the
// version in effect when it started (stitch.Path.Mono), so a replay that
// adds the versions as its recording tells them names as the live run
// did. Safe for concurrent use.
type Timeline struct {
	mu       sync.RWMutex
	versions []timelineVersion // by from, ascending
}

type timelineVersion struct {
	from uint64
	pods *Pods
}

// NewTimeline starts a timeline with the names at the trace's start (nil:
// none).
func NewTimeline(start *Names) *Timeline {
	return &Timeline{versions: []timelineVersion{{pods: NewPods(start)}}}
}

// Add puts n in effect from the CLOCK_MONOTONIC time from on. A version
// from the same time replaces the one there.
func (t *Timeline) Add(from uint64, n *Names) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, found := slices.BinarySearchFunc(t.versions, from, func(v timelineVersion, f uint64) int { return cmp.Compare(v.from, f) })
	v := timelineVersion{from: from, pods: NewPods(n)}
	if found {
		t.versions[i] = v
		return
	}
	t.versions = slices.Insert(t.versions, i, v)
}

// Annotate names the pods of p from the version in effect at its start.
func (t *Timeline) Annotate(p *stitch.Path) {
	t.mu.RLock()
	i, found := slices.BinarySearchFunc(t.versions, p.Mono, func(v timelineVersion, m uint64) int { return cmp.Compare(v.from, m) })
	if !found {
		i-- // the last version from before p
	}
	pods := t.versions[max(i, 0)].pods
	t.mu.RUnlock()
	pods.Annotate(p)
}
