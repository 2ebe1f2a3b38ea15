package diagnose

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"

	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// Services names the Service ports on paths from the Service ports
// kube-proxy's rules name in the node reports taken when the trace started
// (doctor.KubeProxy.ServicePorts): the DNAT of a packet sent to a Service
// address (stitch.NAT.Service), the un-DNAT of its reply, the virtual
// service of an IPVS hop (stitch.IPVS.ServiceName), and the path
// (stitch.Path.Service). It implements trace.Annotator.
//
// Like the Advisor, its output is a pure function of the path and the
// reports: replay, given the reports stored in a recording, names the same
// Services. A hop is named from the report of its own node; a node without
// a report names nothing. It is safe for concurrent use once made.
type Services struct {
	nodes map[uint32]*serviceNode
	order []*serviceNode // by namespace inode: the path's Service from the first that names it
}

// serviceNode is one node's Service ports.
type serviceNode struct {
	// addrs names the Service ports at an address (cluster, external and
	// load-balancer IPs), nodePorts those open on every local address.
	addrs     map[serviceKey]string
	nodePorts map[serviceKey]string // key without address
	local     map[netip.Addr]bool   // the node's own addresses
}

type serviceKey struct {
	proto uint8
	addr  netip.Addr
	port  uint16
}

// NewServices returns a Services for the nodes whose reports are given, by
// network namespace inode as for New. Reports without Service ports name
// nothing.
func NewServices(reports map[uint32]*doctor.Report) *Services {
	s := &Services{nodes: make(map[uint32]*serviceNode, len(reports))}
	for _, inode := range slices.Sorted(maps.Keys(reports)) {
		r := reports[inode]
		if r == nil || len(r.KubeProxy.ServicePorts) == 0 {
			continue
		}
		n := &serviceNode{addrs: map[serviceKey]string{}, nodePorts: map[serviceKey]string{}, local: map[netip.Addr]bool{}}
		for _, sp := range r.KubeProxy.ServicePorts {
			m, k := n.addrs, serviceKey{sp.Proto, sp.Addr.Unmap(), sp.Port}
			if sp.Kind == doctor.KindNodePort {
				m, k.addr = n.nodePorts, netip.Addr{}
			} else if !k.addr.IsValid() {
				continue
			}
			if _, dup := m[k]; !dup && sp.Service != "" {
				m[k] = sp.Service // the first, in the report's order
			}
		}
		for _, a := range r.Network.Addresses {
			n.local[a.Unmap()] = true
		}
		s.nodes[inode] = n
		s.order = append(s.order, n)
	}
	return s
}

// name is the Service port packets of protocol proto to dst go to on node
// n: the one at dst's address, else, when that is an address of the node,
// the node port. "" when none.
func (n *serviceNode) name(proto uint8, dst netip.AddrPort) string {
	if n == nil || doctor.ProtocolName(proto) == "" || !dst.IsValid() {
		return ""
	}
	a := dst.Addr().Unmap()
	if name, ok := n.addrs[serviceKey{proto, a, dst.Port()}]; ok {
		return name
	}
	if n.local[a] {
		return n.nodePorts[serviceKey{proto: proto, port: dst.Port()}]
	}
	return ""
}

// Name is the Service port that packets of protocol proto to dst go to,
// on the node with the namespace inode, else on any node; "" when none.
func (s *Services) Name(inode uint32, proto uint8, dst netip.AddrPort) string {
	if name := s.nodes[inode].name(proto, dst); name != "" {
		return name
	}
	return s.anyName(proto, dst)
}

// anyName is the Service port at dst on any node, the first by namespace
// inode that names one.
func (s *Services) anyName(proto uint8, dst netip.AddrPort) string {
	for _, n := range s.order {
		if name := n.name(proto, dst); name != "" {
			return name
		}
	}
	return ""
}

// Annotate names the Service ports of p's NAT and IPVS hops and of p. A
// name already set stays when the reports tell none.
func (s *Services) Annotate(p *stitch.Path) {
	if len(s.nodes) == 0 {
		return
	}
	hopName := ""
	for i := range p.Hops {
		h := &p.Hops[i]
		proto := h.Proto
		if proto == 0 {
			proto = p.Proto
		}
		n := s.nodes[h.NetnsInode]
		name := ""
		switch {
		case h.NAT != nil && h.NAT.Type == hop.DNAT && !h.NAT.Reverse:
			// A packet sent to the Service, translated to an endpoint.
			if name = n.name(proto, h.NAT.From); name != "" {
				h.NAT.Service = name
			}
		case h.NAT != nil && h.NAT.Type == hop.SNAT && h.NAT.Reverse:
			// Its reply, its source restored to the Service.
			if name = n.name(proto, h.NAT.To); name != "" {
				h.NAT.Service = name
			}
		case h.IPVS != nil && h.IPVS.Service.IsValid():
			if name = n.name(proto, h.IPVS.Service); name != "" {
				h.IPVS.ServiceName = name
			}
		}
		if hopName == "" {
			hopName = name
		}
	}
	// Else a request first seen to the Service address, or a reply first
	// seen from it (its un-DNAT not on the path).
	if name := cmp.Or(hopName, s.anyName(p.Proto, p.Dst), s.anyName(p.Proto, p.Src)); name != "" {
		p.Service = name
	}
}
