package trace

import (
	"strconv"
	"strings"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/record"
)

// recorder writes every decoded record to a recording, with a comment
// saying what happened at the hop.
type recorder struct {
	w       *record.Writer
	netns   func(uint32) string
	reasons map[uint32]string
	symbol  func(uint64) string
	pods    map[uint32]string // the pod of a network namespace, by inode
	buf     []byte
}

// write records one event. It names the event's namespace first, so the
// name is in the recording before the record that needs it.
func (r *recorder) write(rec []byte, ev *decode.Event) error {
	ns := ""
	if ev.Netns != 0 {
		ns = r.netns(ev.Netns)
		if pod := r.pods[ev.Netns]; pod != "" {
			ns += " (pod " + pod + ")"
		}
	}
	if ev.Kind == decode.KindDrop && ev.Location != 0 && r.symbol != nil {
		if s := r.symbol(ev.Location); s != "" {
			r.w.SetSymbol(ev.Location, s)
		}
	}
	r.buf = appendComment(r.buf[:0], ev, ns, r.reasons)
	return r.w.Write(rec, ev, string(r.buf))
}

// appendComment describes an event for a person reading the recording in
// Wireshark: "netfilter PREROUTING first in=cni0 in node1: TCP 10.244.1.5:40312 → 10.96.0.10:80".
func appendComment(b []byte, ev *decode.Event, ns string, reasons map[uint32]string) []byte {
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
		b = appendTuple(b, t)
	}
	if ev.Encapsulated() {
		b = append(b, " in "...)
		b = append(b, strings.ToUpper(ev.Tunnel.String())...)
		if ev.Tunnel.HasVNI() {
			b = append(b, " vni "...)
			b = strconv.AppendUint(b, uint64(ev.VNI), 10)
		}
		b = append(b, ' ')
		b = ev.Outer.Src.Addr().AppendTo(b)
		b = append(b, " → "...)
		b = ev.Outer.Dst.AppendTo(b)
	}
	return b
}

func appendTuple(b []byte, t decode.Tuple) []byte {
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
		b = append(b, " → "...)
		return t.Dst.AppendTo(b)
	}
	b = t.Src.Addr().AppendTo(b)
	b = append(b, " → "...)
	return t.Dst.Addr().AppendTo(b)
}
