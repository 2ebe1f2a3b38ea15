package trace

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"unsafe"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/diagnose"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/k8s"
	"github.com/pathtrace/pathtrace/internal/record"
)

// recorder writes every decoded record to a recording, with a comment
// saying what happened at the hop.
type recorder struct {
	w       *record.Writer
	stream  bool // flushed at every empty ring (Options.RecordTo)
	netns   func(uint32) string
	reasons map[uint32]string
	symbol  func(uint64) string
	// kube names pods and Nodes by namespace and address; nil: none.
	kube *k8s.Pods
	// services names the Service ports kube-proxy's rules name; nil: none.
	services *diagnose.Services
	buf      []byte
	// labels holds the last names label gave (see labelSlot).
	labels [labelSlots]labelEntry
	// names holds what namespace returned, by inode, with the name r.netns
	// gave then: a namespace can be named later.
	names map[uint32]nsName
}

type nsName struct{ netns, full string }

// labelSlots is how many names the recorder keeps: a flood's events name
// the same few endpoints over and over, and a name costs up to three map
// lookups a node, misses for every pod address (diagnose.Services.Name).
// Recording a UDP flood, that was a sixth of the reader's CPU, a third of
// what the recording took.
const labelSlots = 256

type labelKey struct {
	inode uint32
	proto uint8
	ports bool
	a     netip.AddrPort
}

type labelEntry struct {
	key  labelKey
	name string
	set  bool
}

// labelSlot is k's slot in labels: a hash of the namespace, the port and
// the address's last four bytes, which tell a node's pods apart.
func labelSlot(k labelKey) int {
	var low uint32
	if a := k.a.Addr(); a.Is4() {
		b := a.As4() // As16's copy through the stack costs more than the rest
		low = binary.BigEndian.Uint32(b[:])
	} else {
		b := a.As16()
		low = binary.BigEndian.Uint32(b[12:])
	}
	h := k.inode*0x9e3779b1 ^ uint32(k.a.Port())<<8 ^ uint32(k.proto) ^ low
	h ^= h >> 15
	h *= 0x85ebca6b
	h ^= h >> 13
	return int(h % labelSlots)
}

// setKube names pods and Nodes by kube from now on.
func (r *recorder) setKube(kube *k8s.Pods) {
	r.kube = kube
	r.labels = [labelSlots]labelEntry{}
	clear(r.names)
}

// write records one event. It names the event's namespace first, so the
// name is in the recording before the record that needs it.
func (r *recorder) write(rec []byte, ev *decode.Event) error {
	ns := r.namespace(ev.Netns)
	if ev.Kind == decode.KindDrop && ev.Location != 0 && r.symbol != nil {
		if s := r.symbol(ev.Location); s != "" {
			r.w.SetSymbol(ev.Location, s)
		}
	}
	r.buf = appendComment(r.buf[:0], ev, ns, r.reasons, r.label)
	// The comment as a string without a copy: Write keeps none of its
	// arguments, and r.buf is not written again before it returns. A copy
	// for every event kept the allocator and the GC busy when recording a
	// flood.
	return r.w.Write(rec, ev, unsafe.String(unsafe.SliceData(r.buf), len(r.buf)))
}

// namespace names the network namespace with the inode, and its pod and
// Node where known: "cni-3f2a... (pod default/client on node1)"; "" for 0.
func (r *recorder) namespace(inode uint32) string {
	if inode == 0 {
		return ""
	}
	ns := r.netns(inode)
	if n, ok := r.names[inode]; ok && n.netns == ns {
		return n.full
	}
	if r.names == nil {
		r.names = make(map[uint32]nsName)
	}
	full := r.describe(inode, ns)
	r.names[inode] = nsName{ns, full}
	return full
}

// describe is namespace without the names kept.
func (r *recorder) describe(inode uint32, ns string) string {
	if r.kube != nil {
		switch pod, node := r.kube.Netns(inode); {
		case pod != "" && node != "":
			ns += " (pod " + pod + " on " + node + ")"
		case pod != "":
			ns += " (pod " + pod + ")"
		case node != "":
			ns += " (node " + node + ")"
		}
	}
	return ns
}

// label names an address of a packet in the namespace with the inode: its
// pod, else (with ports) the Service port it is, else its Node; "" when
// none is known.
func (r *recorder) label(inode uint32, proto uint8, a netip.AddrPort, ports bool) string {
	k := labelKey{inode, proto, ports, a}
	e := &r.labels[labelSlot(k)]
	if !e.set || e.key != k {
		*e = labelEntry{key: k, name: r.lookup(inode, proto, a, ports), set: true}
	}
	return e.name
}

// lookup is label without the cache.
func (r *recorder) lookup(inode uint32, proto uint8, a netip.AddrPort, ports bool) string {
	if r.kube != nil {
		if pod := r.kube.Pod(a.Addr()); pod != "" {
			return pod
		}
	}
	if ports && r.services != nil {
		if name := r.services.Name(inode, proto, a); name != "" {
			return name
		}
	}
	if r.kube != nil {
		return r.kube.Node(a.Addr())
	}
	return ""
}

// labeler names an address of a packet (recorder.label); nil names none.
type labeler func(inode uint32, proto uint8, a netip.AddrPort, ports bool) string

// appendComment describes an event for a person reading the recording in
// Wireshark: "netfilter PREROUTING first in=cni0 in node1: TCP 10.244.1.5:40312 → 10.96.0.10:80",
// each address followed by its pod, Service port or Node where label
// names it: "10.96.0.10:80 (default/web:http)".
func appendComment(b []byte, ev *decode.Event, ns string, reasons map[uint32]string, label labeler) []byte {
	b = append(b, ev.Kind.String()...)
	switch ev.Kind {
	case decode.KindNF:
		b = append(b, ' ')
		b = append(b, ev.Hook.String()...)
		b = append(b, ' ')
		b = append(b, ev.Slot.String()...)
		if ev.In != "" {
			b = append(b, " in="...)
			b = append(b, ev.In...)
		}
		if ev.Out != "" {
			b = append(b, " out="...)
			b = append(b, ev.Out...)
		}
	case decode.KindTable, decode.KindIPVSVerdict:
		if ev.Kind == decode.KindTable {
			for _, s := range []string{ev.Table.Family.String(), ev.Table.Name, ev.Table.Chain} {
				if s != "" {
					b = append(b, ' ')
					b = append(b, s...)
				}
			}
		}
		b = append(b, ' ')
		b = append(b, ev.Verdict.String()...)
		if ev.Dev != "" {
			b = append(b, " on "...)
			b = append(b, ev.Dev...)
		}
	case decode.KindEncap, decode.KindDecap:
		// "encap ipip on tunl0", "decap geneve on eth0"
		if tf := ev.TunnelFunc; tf.Tunnel != hop.NoTunnel {
			b = append(b, ' ')
			b = append(b, tf.Tunnel.String()...)
			if tf.Known && tf.Tunnel.HasVNI() {
				b = append(b, " vni "...)
				b = strconv.AppendUint(b, uint64(tf.VNI), 10)
			}
		}
		if ev.Dev != "" {
			b = append(b, " on "...)
			b = append(b, ev.Dev...)
		}
	case decode.KindDrop:
		if ev.Flags&decode.FlagReason != 0 {
			b = append(b, ' ')
			if name, ok := reasons[ev.DropReason]; ok {
				b = append(b, name...)
			} else {
				b = append(b, "reason "...)
				b = strconv.AppendUint(b, uint64(ev.DropReason), 10)
			}
		}
		fallthrough
	default:
		if ev.Dev != "" {
			b = append(b, " on "...)
			b = append(b, ev.Dev...)
		}
	}
	if ns != "" {
		b = append(b, " in "...)
		b = append(b, ns...)
	}
	t := ev.Outer
	if ev.Encapsulated() {
		t = ev.Inner
	}
	if t.Valid() {
		b = append(b, ": "...)
		b = appendTuple(b, t, ev.Netns, label)
	}
	if ev.Encapsulated() {
		b = append(b, " in "...)
		for _, c := range []byte(ev.Tunnel.String()) { // upper case, without a copy
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			b = append(b, c)
		}
		if ev.Tunnel.HasVNI() {
			b = append(b, " vni "...)
			b = strconv.AppendUint(b, uint64(ev.VNI), 10)
		}
		b = append(b, ' ')
		b = ev.Outer.Src.Addr().AppendTo(b)
		b = appendLabel(b, label, ev.Netns, ev.Outer.Proto, ev.Outer.Src, false)
		b = append(b, " → "...)
		b = ev.Outer.Dst.AppendTo(b)
		b = appendLabel(b, label, ev.Netns, ev.Outer.Proto, ev.Outer.Dst, false)
	}
	return b
}

// appendLabel appends " (NAME)" where label names a, nothing otherwise.
func appendLabel(b []byte, label labeler, inode uint32, proto uint8, a netip.AddrPort, ports bool) []byte {
	if label == nil {
		return b
	}
	if !ports {
		a = netip.AddrPortFrom(a.Addr(), 0)
	}
	if name := label(inode, proto, a, ports); name != "" {
		b = append(b, " ("...)
		b = append(b, name...)
		b = append(b, ')')
	}
	return b
}

func appendTuple(b []byte, t decode.Tuple, inode uint32, label labeler) []byte {
	switch t.Proto {
	case decode.ProtoTCP:
		b = append(b, "TCP "...)
	case decode.ProtoUDP:
		b = append(b, "UDP "...)
	case decode.ProtoICMP:
		b = append(b, "ICMP "...)
	case decode.ProtoICMPv6:
		b = append(b, "ICMPv6 "...)
	default:
		b = append(b, "proto "...)
		b = strconv.AppendUint(b, uint64(t.Proto), 10)
		b = append(b, ' ')
	}
	if t.HasPorts && !decode.IsICMP(t.Proto) {
		b = t.Src.AppendTo(b)
		b = appendLabel(b, label, inode, t.Proto, t.Src, true)
		b = append(b, " → "...)
		b = t.Dst.AppendTo(b)
		return appendLabel(b, label, inode, t.Proto, t.Dst, true)
	}
	b = t.Src.Addr().AppendTo(b)
	b = appendLabel(b, label, inode, t.Proto, t.Src, false)
	b = append(b, " → "...)
	b = t.Dst.Addr().AppendTo(b)
	return appendLabel(b, label, inode, t.Proto, t.Dst, false)
}
