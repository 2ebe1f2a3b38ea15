package render

import (
	"io"
	"net/netip"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// NewJSON returns a Renderer writing one JSON object per packet, one per
// line (docs/json.md). The JSON is written by hand, not by reflection: keys
// come in a fixed order and optional keys are left out when empty.
func NewJSON(w io.Writer) Renderer {
	return &jsonRenderer{sink: newSink(w)}
}

type jsonRenderer struct {
	sink
	memo jsonMemo
}

// jsonMemo keeps the JSON of what hops repeat, so that it is formatted
// once: a path's hops mostly show its tuple again, and a trace's hops the
// same few devices.
type jsonMemo struct {
	src, dst endpointMemo
	where    [64]whereMemo
	hook     [32]hookMemo
	outer    struct {
		o     stitch.Outer
		valid bool
		text  []byte
	}
	backend [256][]byte // by hop.Backend: its key
	start   timeMemo
}

// hookMemo is the JSON of a hop's hook and its devices (appendJSONHook).
type hookMemo struct {
	hook    hop.Hook
	in, out string
	valid   bool
	text    []byte
}

// endpointMemo is the text of the endpoint appendEndpoint rendered last.
type endpointMemo struct {
	ap    netip.AddrPort
	ports bool
	valid bool
	text  []byte
}

func (m *endpointMemo) append(b []byte, ap netip.AddrPort, proto uint8) []byte {
	if ports := hasPorts(proto); !m.valid || m.ap != ap || m.ports != ports {
		m.text = appendEndpoint(m.text[:0], ap, proto)
		m.ap, m.ports, m.valid = ap, ports, true
	}
	return append(b, m.text...)
}

// whereMemo is the JSON of a hop's kind, device and namespace
// (appendJSONWhere).
type whereMemo struct {
	kind       hop.Kind
	dev, netns string
	ifindex    uint32
	inode      uint32
	valid      bool
	text       []byte
}

func (m *jsonMemo) appendWhere(b []byte, h *stitch.Hop) []byte {
	w := &m.where[(uint32(h.Kind)*31+h.Ifindex*17+h.NetnsInode)%uint32(len(m.where))]
	if !w.valid || w.kind != h.Kind || w.ifindex != h.Ifindex || w.inode != h.NetnsInode || w.dev != h.Dev || w.netns != h.Netns {
		w.text = appendJSONWhere(w.text[:0], h)
		w.kind, w.dev, w.netns, w.ifindex, w.inode, w.valid = h.Kind, h.Dev, h.Netns, h.Ifindex, h.NetnsInode, true
	}
	return append(b, w.text...)
}

func (r *jsonRenderer) Render(p *stitch.Path) error {
	if r.closed {
		return errClosed
	}
	if p == nil {
		return errNilPath
	}
	r.buf = r.memo.appendPath(r.buf[:0], p)
	return r.emit()
}

func (r *jsonRenderer) Close() error { return r.close() }

// appendPath appends p as one JSON line, newline included.
func (m *jsonMemo) appendPath(b []byte, p *stitch.Path) []byte {
	b = append(b, `{"id":`...)
	b = appendUint(b, p.ID)
	b = append(b, `,"start":"`...)
	b = m.start.appendTime(b, p.Start, false)
	b = append(b, '"')
	if p.SKB != 0 {
		b = append(b, `,"skb":"`...)
		b = appendHex(b, p.SKB)
		b = append(b, '"')
	}
	b = append(b, `,"proto":"`...)
	b = appendProto(b, p.Proto)
	b = append(b, `","src":"`...)
	b = appendEndpoint(b, p.Src, p.Proto)
	b = append(b, `","dst":"`...)
	b = appendEndpoint(b, p.Dst, p.Proto)
	b = append(b, '"')
	if p.Service != "" {
		b = append(b, `,"service":`...)
		b = appendJSONString(b, p.Service)
	}
	if p.SrcPod != "" {
		b = append(b, `,"src_pod":`...)
		b = appendJSONString(b, p.SrcPod)
	}
	if p.DstPod != "" {
		b = append(b, `,"dst_pod":`...)
		b = appendJSONString(b, p.DstPod)
	}
	if p.SrcNode != "" {
		b = append(b, `,"src_node":`...)
		b = appendJSONString(b, p.SrcNode)
	}
	if p.DstNode != "" {
		b = append(b, `,"dst_node":`...)
		b = appendJSONString(b, p.DstNode)
	}
	if p.Proto == protoTCP && p.TCPFlags != 0 {
		b = append(b, `,"tcp_flags":"`...)
		b = appendTCPFlags(b, p.TCPFlags)
		b = append(b, '"')
	}
	if p.HasICMPID {
		b = append(b, `,"icmp_id":`...)
		b = appendUint(b, uint64(p.ICMPID))
	}
	if p.IPID != 0 {
		b = append(b, `,"ip_id":`...)
		b = appendUint(b, uint64(p.IPID))
	}
	if p.Len != 0 {
		b = append(b, `,"len":`...)
		b = appendUint(b, uint64(p.Len))
	}
	b = append(b, `,"verdict":`...)
	b = appendJSONString(b, string(verdictOrUnknown(p.Verdict)))
	if p.FirstSeen != "" {
		b = append(b, `,"first_seen":`...)
		b = appendJSONString(b, string(p.FirstSeen))
	}
	if p.Fragment {
		b = append(b, `,"fragment":true`...)
	}
	if p.Events != 0 {
		b = append(b, `,"events":`...)
		b = appendInt(b, int64(p.Events))
	}
	if p.Clipped {
		b = append(b, `,"clipped":true`...)
	}
	if l := p.Late; l != nil {
		b = append(b, `,"late":{"of":`...)
		b = appendUint(b, l.Of)
		b = append(b, `,"after_ns":`...)
		b = appendInt(b, int64(l.After))
		b = append(b, `,"verdict":`...)
		b = appendJSONString(b, string(verdictOrUnknown(l.Verdict)))
		if l.Resumed {
			b = append(b, `,"resumed":true`...)
		}
		b = append(b, '}')
	}
	if len(p.Warnings) > 0 {
		b = append(b, `,"warnings":[`...)
		for i, w := range p.Warnings {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, w)
		}
		b = append(b, ']')
	}
	if len(p.Clocks) > 0 {
		b = appendJSONClocks(b, p.Clocks)
	}
	b = append(b, `,"hops":[`...)
	for i := range p.Hops {
		if i > 0 {
			b = append(b, ',')
		}
		b = m.appendHop(b, p, &p.Hops[i])
	}
	return append(b, "]}\n"...)
}

// appendJSONClocks appends the clock offsets of a merged path's nodes.
func appendJSONClocks(b []byte, clocks []stitch.Clock) []byte {
	b = append(b, `,"clocks":[`...)
	for i, c := range clocks {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"node":`...)
		b = appendJSONString(b, c.Node)
		b = append(b, `,"offset_ns":`...)
		b = appendInt(b, int64(c.Offset))
		if c.Known {
			b = append(b, `,"uncertainty_ns":`...)
			b = appendInt(b, int64(c.Uncertainty))
		}
		b = append(b, `,"known":`...)
		if c.Known {
			b = append(b, "true"...)
		} else {
			b = append(b, "false"...)
		}
		b = append(b, `,"pairs":`...)
		b = appendInt(b, int64(c.Pairs))
		b = append(b, '}')
	}
	return append(b, ']')
}

func (m *jsonMemo) appendHop(b []byte, p *stitch.Path, h *stitch.Hop) []byte {
	b = append(b, `{"t_ns":`...)
	b = appendInt(b, int64(h.T))
	b = append(b, `,"delta_ns":`...)
	b = appendInt(b, int64(h.Delta))
	b = m.appendWhere(b, h)
	if h.LastSeen {
		b = append(b, `,"last_seen":true`...)
	}
	if h.Node != "" {
		b = append(b, `,"node":`...)
		b = appendJSONString(b, h.Node)
	}
	if h.Pod != "" {
		b = append(b, `,"pod":`...)
		b = appendJSONString(b, h.Pod)
	}
	b = append(b, `,"cpu":`...)
	b = appendUint(b, uint64(h.CPU))
	if h.Len != 0 {
		b = append(b, `,"len":`...)
		b = appendUint(b, uint64(h.Len))
	}
	if h.Mark != 0 {
		b = append(b, `,"mark":"`...)
		b = appendHex(b, uint64(h.Mark))
		b = append(b, '"')
	}
	proto := hopProto(p, h)
	if proto != p.Proto {
		b = append(b, `,"proto":"`...)
		b = appendProto(b, proto)
		b = append(b, '"')
	}
	b = append(b, `,"src":"`...)
	b = m.src.append(b, h.Src, proto)
	b = append(b, `","dst":"`...)
	b = m.dst.append(b, h.Dst, proto)
	b = append(b, '"')
	if proto == protoTCP && h.TCPFlags != 0 && h.TCPFlags != p.TCPFlags {
		b = append(b, `,"tcp_flags":"`...)
		b = appendTCPFlags(b, h.TCPFlags)
		b = append(b, '"')
	}
	if h.HasICMPID && (!p.HasICMPID || h.ICMPID != p.ICMPID) {
		b = append(b, `,"icmp_id":`...)
		b = appendUint(b, uint64(h.ICMPID))
	}
	if h.Kind == hop.Netfilter || h.Hook != hop.NoHook {
		b = m.appendHook(b, h)
	}
	if h.Kind == hop.Netfilter {
		b = append(b, `,"dur_ns":`...)
		b = appendInt(b, int64(h.Dur))
	}
	if h.Partial {
		b = append(b, `,"partial":true`...)
	}
	if n := h.NAT; n != nil {
		b = append(b, `,"nat":{"type":`...)
		b = appendJSONString(b, n.Type.String())
		b = append(b, `,"from":"`...)
		b = appendAddrPort(b, n.From)
		b = append(b, `","to":"`...)
		b = appendAddrPort(b, n.To)
		b = append(b, '"')
		if n.Reverse {
			b = append(b, `,"reverse":true`...)
		}
		b = append(b, '}')
	}
	if o := h.Outer; o != nil {
		if !m.outer.valid || m.outer.o != *o {
			m.outer.text = appendJSONOuter(m.outer.text[:0], o)
			m.outer.o, m.outer.valid = *o, true
		}
		b = append(b, m.outer.text...)
	}
	if br := h.Bridge; br != nil {
		b = append(b, `,"bridge":{"in":`...)
		b = appendJSONString(b, br.In)
		b = append(b, `,"out":`...)
		b = appendJSONString(b, br.Out)
		b = append(b, '}')
	}
	if v := h.IPVS; v != nil {
		b = append(b, `,"ipvs":{"service":"`...)
		b = appendAddrPort(b, v.Service)
		b = append(b, `","real_server":"`...)
		b = appendAddrPort(b, v.RealServer)
		b = append(b, `","scheduler":`...)
		b = appendJSONString(b, v.Scheduler)
		b = append(b, `,"method":`...)
		b = appendJSONString(b, v.Method.String())
		if v.Verdict != hop.NoVerdict {
			b = append(b, `,"verdict":`...)
			b = appendJSONString(b, v.Verdict.String())
		}
		b = append(b, '}')
	}
	if name := hopService(h); name != "" {
		b = append(b, `,"service":`...)
		b = appendJSONString(b, name)
	}
	if tb := h.Table; tb != nil {
		b = append(b, `,"table":{"engine":`...)
		b = appendJSONString(b, tb.Engine.String())
		b = append(b, `,"family":`...)
		b = appendJSONString(b, tb.Family.String())
		b = append(b, `,"name":`...)
		b = appendJSONString(b, tb.Name)
		b = append(b, `,"chain":`...)
		b = appendJSONString(b, tb.Chain)
		b = append(b, `,"verdict":`...)
		b = appendJSONString(b, tb.Verdict.String())
		b = append(b, '}')
	}
	if h.Backend != hop.NoBackend {
		bt := &m.backend[h.Backend]
		if *bt == nil {
			*bt = appendJSONString([]byte(`,"backend":`), h.Backend.String())
		}
		b = append(b, *bt...)
	}
	if h.Kind == hop.Drop || h.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, h.Reason)
	}
	if h.Kind == hop.Drop || h.ReasonCode != 0 {
		b = append(b, `,"reason_code":`...)
		b = appendUint(b, uint64(h.ReasonCode))
	}
	if h.Location != 0 {
		b = append(b, `,"location":"`...)
		b = appendHex(b, h.Location)
		b = append(b, '"')
	}
	if h.Func != "" {
		b = append(b, `,"function":`...)
		b = appendJSONString(b, h.Func)
	}
	if h.Advice != "" {
		b = append(b, `,"advice":`...)
		b = appendJSONString(b, h.Advice)
	}
	return append(b, '}')
}

// appendJSONOuter appends a hop's outer key.
func appendJSONOuter(b []byte, o *stitch.Outer) []byte {
	b = append(b, `,"outer":{"tunnel":`...)
	b = appendJSONString(b, o.Tunnel.String())
	b = append(b, `,"src":"`...)
	if o.Src.IsValid() {
		b = o.Src.AppendTo(b)
	}
	b = append(b, `","dst":"`...)
	if o.Dst.IsValid() {
		b = o.Dst.AppendTo(b)
	}
	b = append(b, '"')
	if o.Tunnel.HasVNI() {
		b = append(b, `,"dport":`...)
		b = appendUint(b, uint64(o.DPort))
		b = append(b, `,"vni":`...)
		b = appendUint(b, uint64(o.VNI))
	}
	if o.SrcNode != "" {
		b = append(b, `,"src_node":`...)
		b = appendJSONString(b, o.SrcNode)
	}
	if o.DstNode != "" {
		b = append(b, `,"dst_node":`...)
		b = appendJSONString(b, o.DstNode)
	}
	return append(b, '}')
}

// appendHook appends a hop's hook keys, remembered.
func (m *jsonMemo) appendHook(b []byte, h *stitch.Hop) []byte {
	k := &m.hook[(uint32(h.Hook)*31+uint32(len(h.In))*7+uint32(len(h.Out)))%uint32(len(m.hook))]
	if !k.valid || k.hook != h.Hook || k.in != h.In || k.out != h.Out {
		k.text = appendJSONHook(k.text[:0], h)
		k.hook, k.in, k.out, k.valid = h.Hook, h.In, h.Out, true
	}
	return append(b, k.text...)
}

// appendJSONHook appends a hop's hook keys.
func appendJSONHook(b []byte, h *stitch.Hop) []byte {
	b = append(b, `,"hook":`...)
	b = appendJSONString(b, h.Hook.String())
	b = append(b, `,"in":`...)
	b = appendJSONString(b, h.In)
	b = append(b, `,"out":`...)
	return appendJSONString(b, h.Out)
}

// appendJSONWhere appends a hop's kind, device and namespace keys.
func appendJSONWhere(b []byte, h *stitch.Hop) []byte {
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, h.Kind.String())
	b = append(b, `,"dev":`...)
	b = appendJSONString(b, h.Dev)
	if h.Ifindex != 0 {
		b = append(b, `,"ifindex":`...)
		b = appendUint(b, uint64(h.Ifindex))
	}
	b = append(b, `,"netns":`...)
	b = appendJSONString(b, h.Netns)
	if h.NetnsInode != 0 {
		b = append(b, `,"netns_inode":`...)
		b = appendUint(b, uint64(h.NetnsInode))
	}
	return b
}

// verdictOrUnknown maps an empty verdict to unknown, so the field always
// holds one of the documented values.
func verdictOrUnknown(v stitch.Verdict) stitch.Verdict {
	if v == "" {
		return stitch.VerdictUnknown
	}
	return v
}

// hopService is the Service port a nat or ipvs hop translates, "" when
// unknown.
func hopService(h *stitch.Hop) string {
	switch {
	case h.NAT != nil:
		return h.NAT.Service
	case h.IPVS != nil:
		return h.IPVS.ServiceName
	}
	return ""
}
