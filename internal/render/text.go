package render

import (
	"cmp"
	"io"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fatih/color"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// TextOptions configures the text timeline.
type TextOptions struct {
	// Color adds ANSI colors; decide it once with UseColor.
	Color bool
	// Verbose adds the CPU and length to each hop, the kernel address of the
	// freeing caller to drops, and skb, IP ID and event count to the header.
	Verbose bool
}

// NewText returns a Renderer writing one block per packet: a header line,
// one aligned line per hop (time since the first hop, delta, kind, device,
// netns, what happened and what changed) and a blank line. For example
// (docs/output.md explains it, testdata/text.golden pins it):
//
//	#1 TCP 10.244.1.5:40312 → 10.96.0.10:80 [SYN] len=60 delivered  2026-11-28T03:40:01.123456789Z  (22 hops)
//	    5.1µs   +0.8µs  netfilter  cni0          node1                 PREROUTING in=cni0 out=- (12.0µs in hook)
//	   17.1µs  +12.0µs  nat        cni0          node1                 DNAT 10.96.0.10:80 → 10.244.2.7:8080
//	   26.6µs   +2.5µs  tx         flannel.1     node1
//	   28.5µs   +1.9µs  encap      flannel.1     node1                 VXLAN vni=1 192.168.50.11 → 192.168.50.12:8472
//	...
//	#3 TCP 10.244.1.5:51844 → 10.244.2.14:5432 [SYN] len=60 dropped  2026-11-28T03:40:01.201030400Z  (6 hops)
//	   7.6µs +2.2µs  netfilter  cni0          node1                 FORWARD in=cni0 out=flannel.1 [partial]
//	  13.7µs +6.1µs  drop       cni0          node1                 DROPPED reason=NETFILTER_DROP in FORWARD  mark=0x8000
func NewText(w io.Writer, o TextOptions) Renderer {
	return &textRenderer{sink: newSink(w), opts: o, pal: newPalette(o.Color)}
}

type textRenderer struct {
	sink
	opts TextOptions
	pal  palette
	tmp  []byte // scratch for measuring column widths
	// widths holds the widths measure found of each hop's columns.
	widths []hopWidths
	start  timeMemo
	where  [64]textWhereMemo
}

// hopWidths are the display widths of one hop's aligned columns.
type hopWidths struct{ t, delta, kind, dev, netns int }

// style is the pair of escape sequences around a colored span; both are
// empty when color is off.
type style struct{ pre, post string }

type palette struct {
	id, tuple                       style
	delivered, dropped, other       style
	kindDev, kindNF, kindNAT        style
	kindTunnel, kindDrop, kindUsed  style
	natLine, dropLine, vxlan, faint style
	warning, advice                 style
}

// newPalette builds the escape sequences once from per-renderer color
// objects; the global color.NoColor is never consulted.
func newPalette(on bool) palette {
	mk := func(attrs ...color.Attribute) style {
		c := color.New(attrs...)
		if on {
			c.EnableColor()
		} else {
			c.DisableColor()
		}
		s := c.Sprint("\x00")
		i := strings.IndexByte(s, 0)
		return style{pre: s[:i], post: s[i+1:]}
	}
	return palette{
		id:         mk(color.Bold),
		tuple:      mk(color.Bold),
		delivered:  mk(color.FgGreen, color.Bold),
		dropped:    mk(color.FgRed, color.Bold),
		other:      mk(color.FgYellow, color.Bold),
		kindDev:    mk(color.FgCyan),
		kindNF:     mk(color.FgBlue),
		kindNAT:    mk(color.FgMagenta),
		kindTunnel: mk(color.FgHiCyan),
		kindDrop:   mk(color.FgRed, color.Bold),
		kindUsed:   mk(color.FgGreen),
		natLine:    mk(color.FgMagenta, color.Bold),
		dropLine:   mk(color.FgRed, color.Bold),
		vxlan:      mk(color.FgHiCyan),
		faint:      mk(color.Faint),
		warning:    mk(color.FgYellow, color.Bold),
		advice:     mk(color.FgRed),
	}
}

func (pal *palette) verdict(v stitch.Verdict) style {
	switch v {
	case stitch.VerdictDelivered:
		return pal.delivered
	case stitch.VerdictDropped:
		return pal.dropped
	}
	return pal.other
}

// kind is the style of a hop kind, by its class.
func (pal *palette) kind(k hop.Kind) style {
	switch k.Desc().Class {
	case hop.ClassDevice:
		return pal.kindDev
	case hop.ClassNetfilter:
		return pal.kindNF
	case hop.ClassNAT:
		return pal.kindNAT
	case hop.ClassTunnel:
		return pal.kindTunnel
	case hop.ClassDrop:
		return pal.kindDrop
	case hop.ClassConsume:
		return pal.kindUsed
	}
	return style{}
}

func (r *textRenderer) Render(p *stitch.Path) error {
	if r.closed {
		return errClosed
	}
	if p == nil {
		return errNilPath
	}
	r.buf = r.appendPath(r.buf[:0], p)
	return r.emit()
}

func (r *textRenderer) Close() error { return r.close() }

// appendNodeLine starts the hops a node's trace showed (--scope node), with
// the node's clock offset in a merged replay: "  on node2 (clock +1.2ms ±
// 30µs)".
func appendNodeLine(b []byte, p *stitch.Path, node string) []byte {
	b = append(b, "  on "...)
	b = appendText(b, node)
	for _, c := range p.Clocks {
		if c.Node != node {
			continue
		}
		b = append(b, " (clock "...)
		if c.Offset >= 0 {
			b = append(b, '+')
		}
		b = append(b, c.Offset.String()...)
		if c.Known {
			b = append(b, " ± "...)
			b = append(b, c.Uncertainty.String()...)
		} else {
			b = append(b, ", not bounded"...)
		}
		b = append(b, ')')
	}
	return append(b, '\n')
}

const headerTime = "2006-01-02T15:04:05.000000000Z07:00"

// columns holds the display widths of one block's aligned columns.
type columns struct{ t, delta, kind, dev, netns int }

func (r *textRenderer) measure(p *stitch.Path) columns {
	var c columns
	r.widths = r.widths[:0]
	for i := range p.Hops {
		h := &p.Hops[i]
		w := hopWidths{t: durWidth(h.T), kind: r.textWidth(h.Kind.String()), dev: r.textOrWidth(h.Dev), netns: r.textOrWidth(hopNetns(h))}
		if i > 0 {
			w.delta = deltaWidth(h.Delta)
		}
		r.widths = append(r.widths, w)
		c.t = max(c.t, w.t)
		c.delta = max(c.delta, w.delta)
		c.kind = max(c.kind, w.kind)
		c.dev = max(c.dev, w.dev)
		c.netns = max(c.netns, w.netns)
	}
	return c
}

// textWhereMemo is the text of a hop's kind, device and namespace columns,
// padded to the widths of the block (appendWhere).
type textWhereMemo struct {
	kind                hop.Kind
	dev, netns          string
	ckind, cdev, cnetns int
	valid               bool
	text                []byte
}

// appendWhere appends the kind, device and namespace columns of h, whose
// widths are w, in a block whose widths are c; remembered, as a trace's
// hops show the same few.
func (r *textRenderer) appendWhere(b []byte, h *stitch.Hop, w *hopWidths, c columns) []byte {
	netns := hopNetns(h)
	m := &r.where[(uint32(h.Kind)*31+uint32(len(h.Dev))*7+uint32(len(netns))+uint32(c.dev))%uint32(len(r.where))]
	if !m.valid || m.kind != h.Kind || m.dev != h.Dev || m.netns != netns || m.ckind != c.kind || m.cdev != c.dev || m.cnetns != c.netns {
		t := m.text[:0]
		ks := r.pal.kind(h.Kind)
		t = append(t, ks.pre...)
		t = appendText(t, h.Kind.String())
		t = append(t, ks.post...)
		t = pad(t, c.kind-w.kind+2)
		t = appendTextOr(t, h.Dev)
		t = pad(t, c.dev-w.dev+2)
		t = appendTextOr(t, netns)
		t = pad(t, c.netns-w.netns+2)
		*m = textWhereMemo{kind: h.Kind, dev: h.Dev, netns: netns, ckind: c.kind, cdev: c.dev, cnetns: c.netns, valid: true, text: t}
	}
	return append(b, m.text...)
}

// textWidth is the display width of appendText(s): its length when s is
// printable ASCII, which appendText leaves as it is.
func (r *textRenderer) textWidth(s string) int {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '\\' {
			return r.width(appendText(r.tmp[:0], s))
		}
	}
	return len(s)
}

// textOrWidth is the display width of appendTextOr(s).
func (r *textRenderer) textOrWidth(s string) int {
	if s == "" {
		return 1
	}
	return r.textWidth(s)
}

// durWidth is the display width of appendDur(d), computed without
// formatting it.
func durWidth(d time.Duration) int {
	ns, w := int64(d), 0
	if ns < 0 {
		ns, w = -ns, 1
	}
	switch {
	case ns < 0 || ns > math.MaxInt64-1000: // where appendDur overflows
		return utf8.RuneCount(appendDur(nil, d))
	case ns < int64(time.Second):
		return w + digits((ns+50)/100/10) + len(".0µs") - 1 // µ is two bytes
	}
	return w + digits((ns+500)/1000/1e6) + len(".000000s")
}

// deltaWidth is the display width of appendDelta(d).
func deltaWidth(d time.Duration) int {
	if d >= 0 {
		return 1 + durWidth(d)
	}
	return durWidth(d)
}

// digits is the number of decimal digits of v ≥ 0.
func digits(v int64) int {
	n := 1
	for v >= 10 {
		v /= 10
		n++
	}
	return n
}

// width keeps b as scratch for reuse and returns its display width.
func (r *textRenderer) width(b []byte) int {
	r.tmp = b
	return utf8.RuneCount(b)
}

func (r *textRenderer) appendPath(b []byte, p *stitch.Path) []byte {
	pal := &r.pal
	b = r.appendHeader(b, p)
	for _, w := range p.Warnings {
		b = append(b, "  "...)
		b = append(b, pal.warning.pre...)
		b = append(b, "warning:"...)
		b = append(b, pal.warning.post...)
		b = append(b, ' ')
		b = appendText(b, w)
		b = append(b, '\n')
	}

	c := r.measure(p)
	// The tuple, outer header and mark last shown, to print only changes.
	lastSrc, lastDst, lastProto := p.Src, p.Dst, p.Proto
	lastID := echoID{p.HasICMPID, p.ICMPID}
	var lastOuter stitch.Outer
	var lastMark uint32
	for i := range p.Hops {
		h := &p.Hops[i]
		if h.Node != "" && (i == 0 || h.Node != p.Hops[i-1].Node) {
			b = appendNodeLine(b, p, h.Node)
		}
		line := len(b)
		// Right-aligned: the padding first, by the widths measured.
		w := &r.widths[i]
		b = pad(b, 2+c.t-w.t)
		b = appendDur(b, h.T)
		b = pad(b, 1+c.delta-w.delta)
		if i > 0 {
			b = appendDelta(b, h.Delta)
		}
		b = append(b, "  "...)

		b = r.appendWhere(b, h, w, c)
		what := len(b)

		// What happened.
		proto := hopProto(p, h)
		var tupleShown bool
		b, tupleShown = pal.appendWhat(b, p, i, proto)

		if h.Src.Addr().IsValid() {
			id := echoID{h.HasICMPID, h.ICMPID}
			if !tupleShown && (h.Src != lastSrc || h.Dst != lastDst || proto != lastProto || id != lastID) {
				b = sep(b, what)
				b = append(b, pal.tuple.pre...)
				b = appendTuple(b, h.Src, h.Dst, proto)
				b = id.append(b)
				b = append(b, pal.tuple.post...)
			}
			lastSrc, lastDst, lastProto, lastID = h.Src, h.Dst, proto, id
		}
		if h.Outer != nil && *h.Outer != lastOuter && h.Kind != hop.Encap && h.Kind != hop.Decap {
			b = sep(b, what)
			b = append(b, "in "...)
			b = pal.appendOuter(b, h.Outer)
		}
		if h.Outer != nil {
			lastOuter = *h.Outer
		} else {
			lastOuter = stitch.Outer{}
		}
		if h.Mark != lastMark && h.Mark != 0 {
			b = sep(b, what)
			b = append(b, "mark="...)
			b = appendHex(b, uint64(h.Mark))
		}
		lastMark = h.Mark
		if r.opts.Verbose {
			b = sep(b, what)
			b = append(b, pal.faint.pre...)
			b = append(b, "cpu="...)
			b = strconv.AppendUint(b, uint64(h.CPU), 10)
			if h.Len != 0 {
				b = append(b, " len="...)
				b = strconv.AppendUint(b, uint64(h.Len), 10)
			}
			if h.Func != "" {
				b = append(b, " at "...)
				b = appendText(b, h.Func)
			} else if h.Location != 0 {
				b = append(b, " at "...)
				b = appendHex(b, h.Location)
			}
			if h.Backend != hop.NoBackend {
				b = append(b, " via "...)
				b = appendText(b, h.Backend.String())
			}
			b = append(b, pal.faint.post...)
		}
		b = trimSpaces(b, line)
		b = append(b, '\n')
		if h.Advice != "" {
			// Under the kind column: "advice: why", then "$ check" lines.
			b = r.appendAdvice(b, h.Advice, 2+c.t+1+c.delta+2)
		}
	}
	if p.Clipped {
		b = append(b, "  … more hops clipped"...)
		if p.Events != 0 {
			b = append(b, " ("...)
			b = strconv.AppendInt(b, int64(p.Events), 10)
			b = append(b, " events in all)"...)
		}
		b = append(b, '\n')
	}
	return append(b, '\n')
}

// appendWhat appends what happened at hop i of p, the "what" column of the
// text timeline (docs/output.md) before what changed since the hop above,
// styled by pal (the zero palette: plain text, as the HTML report and the
// SVG use it). tupleShown says it showed the hop's tuple (a NAT hop).
func (pal *palette) appendWhat(b []byte, p *stitch.Path, i int, proto uint8) (_ []byte, tupleShown bool) {
	h := &p.Hops[i]
	switch h.Kind {
	case hop.Netfilter:
		b = appendText(b, h.Hook.String())
		b = append(b, " in="...)
		b = appendTextOr(b, h.In)
		b = append(b, " out="...)
		b = appendTextOr(b, h.Out)
		if h.Dur > 0 {
			b = append(b, " ("...)
			b = appendDur(b, h.Dur)
			b = append(b, " in hook)"...)
		}
		if h.Partial {
			b = append(b, " [partial]"...)
		}
	case hop.NAT:
		b = append(b, pal.natLine.pre...)
		if h.NAT != nil {
			b = appendNAT(b, h.NAT, proto, h.HasICMPID)
		} else {
			b = append(b, "NAT "...)
			b = appendTuple(b, h.Src, h.Dst, proto)
		}
		b = append(b, pal.natLine.post...)
		// The hook, unless the line above names it already.
		if h.Hook != hop.NoHook && (i == 0 || p.Hops[i-1].Kind != hop.Netfilter || p.Hops[i-1].Hook != h.Hook) {
			b = append(b, " in "...)
			b = appendText(b, h.Hook.String())
		}
		tupleShown = true
	case hop.Encap, hop.Decap:
		if h.Outer != nil {
			b = pal.appendOuter(b, h.Outer)
		}
	case hop.Drop:
		b = append(b, pal.dropLine.pre...)
		b = append(b, "DROPPED"...)
		if h.Reason != "" {
			b = append(b, " reason="...)
			b = appendText(b, h.Reason)
		} else if h.ReasonCode != 0 {
			b = append(b, " reason=#"...)
			b = strconv.AppendUint(b, uint64(h.ReasonCode), 10)
		}
		if hk := p.DropHook(i); hk != hop.NoHook {
			b = append(b, " in "...)
			b = appendText(b, hk.String())
		}
		b = append(b, pal.dropLine.post...)
		if fn := h.FuncName(); fn != "" {
			b = append(b, " by "...)
			b = appendText(b, fn)
		}
		if h.LastSeen {
			// Its device is the packet's last seen: with hops lost, not
			// necessarily where it died.
			b = append(b, " (no device from the kernel: shown where last seen)"...)
		}
	case hop.Consume:
		b = append(b, "consumed"...)
		if fn := h.FuncName(); fn != "" {
			b = append(b, " by "...)
			b = appendText(b, fn)
		}
		if h.Reason != "" {
			b = append(b, " ("...)
			b = appendText(b, h.Reason)
			b = append(b, ')')
		}
	case hop.Bridge:
		if br := h.Bridge; br != nil {
			b = appendTextOr(b, br.In)
			b = append(b, " → "...)
			b = appendTextOr(b, br.Out)
		}
	case hop.Table:
		if tb := h.Table; tb != nil {
			b = pal.appendTable(b, tb)
		}
	case hop.IPVS:
		if v := h.IPVS; v != nil && v.Verdict != hop.NoVerdict {
			b = append(b, pal.dropLine.pre...)
			b = append(b, "IPVS verdict "...)
			b = appendText(b, v.Verdict.String())
			b = append(b, pal.dropLine.post...)
			if h.Hook != hop.NoHook {
				b = append(b, " in "...)
				b = appendText(b, h.Hook.String())
			}
		} else if v != nil {
			b = pal.appendIPVS(b, v)
		}
	}
	return b, tupleShown
}

// appendIPVS appends "IPVS 10.96.0.10:80 → 10.244.1.8:8080 (rr, masq)",
// with the Service port's name after the translation when known:
// "IPVS 10.96.0.10:80 → 10.244.1.8:8080 (default/web:http) (rr, masq)".
func (pal *palette) appendIPVS(b []byte, v *stitch.IPVS) []byte {
	b = append(b, pal.natLine.pre...)
	b = append(b, "IPVS "...)
	b = appendAddrPort(b, v.Service)
	b = append(b, " → "...)
	b = appendAddrPort(b, v.RealServer)
	b = appendService(b, v.ServiceName)
	b = append(b, pal.natLine.post...)
	b = append(b, " ("...)
	if v.Scheduler != "" {
		b = appendText(b, v.Scheduler)
		b = append(b, ", "...)
	}
	b = appendText(b, v.Method.String())
	return append(b, ')')
}

func (r *textRenderer) appendHeader(b []byte, p *stitch.Path) []byte {
	pal := &r.pal
	b = append(b, pal.id.pre...)
	b = append(b, '#')
	b = strconv.AppendUint(b, p.ID, 10)
	b = append(b, pal.id.post...)
	b = append(b, ' ')
	if p.Proto == protoICMPv6 {
		b = append(b, "ICMPv6"...)
	} else if isNamedProto(p.Proto) {
		start := len(b)
		b = appendProto(b, p.Proto)
		upper(b[start:])
	} else {
		b = append(b, "proto="...)
		b = strconv.AppendUint(b, uint64(p.Proto), 10)
	}
	b = append(b, ' ')
	eproto := p.Proto
	if p.Fragment && p.Src.Port() == 0 && p.Dst.Port() == 0 {
		eproto = 0 // a later fragment: no ports, not port 0
	}
	b = appendEndpointOr(b, p.Src, eproto)
	b = appendService(b, cmp.Or(p.SrcPod, p.SrcNode))
	b = append(b, " → "...)
	b = appendEndpointOr(b, p.Dst, eproto)
	b = echoID{p.HasICMPID, p.ICMPID}.append(b)
	if dstTranslated(p) {
		b = appendService(b, dstNames(p))
	} else {
		b = appendService(appendService(b, cmp.Or(p.DstPod, p.DstNode)), p.Service)
	}
	if p.Proto == protoTCP && p.TCPFlags != 0 {
		b = append(b, " ["...)
		b = appendTCPFlags(b, p.TCPFlags)
		b = append(b, ']')
	}
	if p.Len != 0 {
		b = append(b, " len="...)
		b = strconv.AppendUint(b, uint64(p.Len), 10)
	}
	v := verdictOrUnknown(p.Verdict)
	vs := pal.verdict(v)
	b = append(b, ' ')
	b = append(b, vs.pre...)
	b = appendText(b, string(v))
	b = append(b, vs.post...)
	b = append(b, "  "...)
	b = r.start.appendTime(b, p.Start, true)
	b = append(b, "  ("...)
	b = strconv.AppendInt(b, int64(len(p.Hops)), 10)
	if len(p.Hops) == 1 {
		b = append(b, " hop"...)
	} else {
		b = append(b, " hops"...)
	}
	if p.Clipped {
		b = append(b, ", clipped"...)
	}
	if p.FirstSeen == stitch.FirstSeenAfterNAT {
		b = append(b, ", first seen after NAT"...)
	}
	b = appendFragment(b, p)
	if l := p.Late; l != nil {
		b = appendLate(b, l)
	}
	b = append(b, ')')
	if r.opts.Verbose {
		b = append(b, pal.faint.pre...)
		if p.SKB != 0 {
			b = append(b, " skb="...)
			b = appendHex(b, p.SKB)
		}
		if p.IPID != 0 {
			b = append(b, " ip_id="...)
			b = strconv.AppendUint(b, uint64(p.IPID), 10)
		}
		if p.Events != 0 {
			b = append(b, " events="...)
			b = strconv.AppendInt(b, int64(p.Events), 10)
		}
		b = append(b, pal.faint.post...)
	}
	return append(b, '\n')
}

// appendFragment appends what ties a fragment, a datagram reassembled
// from fragments or one split into them to the others: the IP id they
// share (IPv4; an IPv6 datagram shows one only in its fragments).
// ", a fragment of IP id 4660", ", reassembled from the fragments of IP
// id 4660", ", IP id 4660".
func appendFragment(b []byte, p *stitch.Path) []byte {
	id := p.IPID
	if !p.Src.Addr().Is4() {
		id = 0 // IPv6: the low bits of a fragment's own identification, which each fragmenting changes
	}
	switch {
	case p.Fragment:
		b = append(b, ", a fragment"...)
		if id == 0 {
			return b
		}
		b = append(b, " of"...)
	case p.FirstSeen == stitch.FirstSeenReassembled:
		if id == 0 {
			return append(b, ", reassembled from fragments"...)
		}
		b = append(b, ", reassembled from the fragments of"...)
	case p.Verdict == stitch.VerdictFragmented && id != 0:
		b = append(b, ',')
	default:
		return b
	}
	b = append(b, " IP id "...)
	return strconv.AppendUint(b, uint64(id), 10)
}

// appendLate appends what a late end ended: ", late end of #3, freed
// 2.980112s after it was last seen", or for the rest of a packet's way
// ", the rest of #3, resumed 2.012004s after it was last seen".
func appendLate(b []byte, l *stitch.Late) []byte {
	if l.Resumed {
		b = append(b, ", the rest of "...)
	} else {
		b = append(b, ", late end of "...)
	}
	if l.Of != 0 {
		b = append(b, '#')
		b = strconv.AppendUint(b, l.Of, 10)
	} else {
		b = append(b, "an earlier packet"...)
	}
	if l.Resumed {
		b = append(b, ", resumed "...)
	} else {
		b = append(b, ", freed "...)
	}
	b = appendDur(b, l.After)
	return append(b, " after it was last seen"...)
}

// appendAdvice appends a drop's advice, one line per line of it, indented
// by indent columns; lines after the first align with the first's text.
func (r *textRenderer) appendAdvice(b []byte, advice string, indent int) []byte {
	const label = "advice: "
	first := true
	for advice != "" {
		line, rest, _ := strings.Cut(advice, "\n")
		advice = rest
		b = pad(b, indent)
		if first {
			b = append(b, r.pal.advice.pre...)
			b = append(b, label[:len(label)-1]...)
			b = append(b, r.pal.advice.post...)
			b = append(b, ' ')
			first = false
		} else {
			b = pad(b, len(label))
		}
		b = appendText(b, line)
		b = append(b, '\n')
	}
	return b
}

// echoID is an ICMP echo's id, where known.
type echoID struct {
	known bool
	id    uint16
}

// append appends " id=N" when the id is known.
func (e echoID) append(b []byte) []byte {
	if !e.known {
		return b
	}
	b = append(b, " id="...)
	return strconv.AppendUint(b, uint64(e.id), 10)
}

// appendNAT appends a translation: "DNAT 10.96.0.10:80 → 10.244.2.7:8080",
// "un-DNAT ..." for a reverse one, followed by the Service port's name when
// known ("DNAT 10.96.0.10:80 → 10.244.2.7:8080 (default/web:http)"); for ICMP the addresses and the echo id
// (idKnown), "SNAT 10.244.1.5 → 192.168.50.11 id=7", or each end's id when
// conntrack changed it.
func appendNAT(b []byte, n *stitch.NAT, proto uint8, idKnown bool) []byte {
	switch {
	case n.Reverse && n.Type == hop.SNAT:
		b = append(b, "un-DNAT"...)
	case n.Reverse && n.Type == hop.DNAT:
		b = append(b, "un-SNAT"...)
	default:
		b = appendUpper(b, n.Type.String())
	}
	b = append(b, ' ')
	if proto != protoICMP && proto != protoICMPv6 {
		b = appendAddrPort(b, n.From)
		b = append(b, " → "...)
		b = appendAddrPort(b, n.To)
		return appendService(b, n.Service)
	}
	from, to := echoID{idKnown, n.From.Port()}, echoID{idKnown, n.To.Port()}
	b = appendEndpointOr(b, n.From, proto)
	if from != to {
		b = from.append(b)
	}
	b = append(b, " → "...)
	b = appendEndpointOr(b, n.To, proto)
	return appendService(to.append(b), n.Service)
}

// dstTranslated reports whether a DNAT or IPVS on the path sent the packet
// to another destination than the one it was sent to (not the un-SNAT of
// a reply).
func dstTranslated(p *stitch.Path) bool {
	for i := range p.Hops {
		h := &p.Hops[i]
		if h.NAT != nil && h.NAT.Type == hop.DNAT && !h.NAT.Reverse || h.IPVS != nil && h.IPVS.RealServer.IsValid() {
			return true
		}
	}
	return false
}

// dstNames names the destination of a packet that a translation sent
// elsewhere on the header line: its Service port, then its pod
// ("default/web:http → default/server").
func dstNames(p *stitch.Path) string {
	switch {
	case p.DstPod == "":
		return p.Service
	case p.Service == "":
		return p.DstPod
	}
	return p.Service + " → " + p.DstPod
}

// hopNetns is a hop's namespace as the timeline names it: its pod where
// known, else the namespace's name.
func hopNetns(h *stitch.Hop) string {
	if h.Pod != "" {
		return h.Pod
	}
	return h.Netns
}

// appendService appends " (default/web:http)", the Service port a
// translation or a packet is for; nothing when name is "".
func appendService(b []byte, name string) []byte {
	if name == "" {
		return b
	}
	b = append(b, " ("...)
	b = appendText(b, name)
	return append(b, ')')
}

// appendOuter appends "VXLAN vni=1 192.168.50.11 → 192.168.50.12:8472".
func (pal *palette) appendOuter(b []byte, o *stitch.Outer) []byte {
	b = append(b, pal.vxlan.pre...)
	b = appendUpper(b, o.Tunnel.String())
	if o.Tunnel.HasVNI() {
		b = append(b, " vni="...)
		b = strconv.AppendUint(b, uint64(o.VNI), 10)
	}
	b = append(b, ' ')
	if o.Src.IsValid() {
		b = o.Src.AppendTo(b)
	} else {
		b = append(b, '?')
	}
	b = appendService(b, o.SrcNode)
	b = append(b, " → "...)
	switch {
	case o.Dst.IsValid() && o.DPort != 0:
		b = netip.AddrPortFrom(o.Dst, o.DPort).AppendTo(b) // [IPv6]:port
	case o.Dst.IsValid():
		b = o.Dst.AppendTo(b)
	case o.DPort != 0:
		b = append(b, "?:"...)
		b = strconv.AppendUint(b, uint64(o.DPort), 10)
	default:
		b = append(b, '?')
	}
	b = appendService(b, o.DstNode)
	return append(b, pal.vxlan.post...)
}

func isNamedProto(p uint8) bool {
	switch p {
	case protoTCP, protoUDP, protoICMP, protoICMPv6, protoSCTP:
		return true
	}
	return false
}

// appendTuple appends "src → dst", "?" standing in for an unknown endpoint.
func appendTuple(b []byte, src, dst netip.AddrPort, proto uint8) []byte {
	b = appendEndpointOr(b, src, proto)
	b = append(b, " → "...)
	return appendEndpointOr(b, dst, proto)
}

func appendEndpointOr(b []byte, ap netip.AddrPort, proto uint8) []byte {
	if !ap.Addr().IsValid() {
		return append(b, '?')
	}
	return appendEndpoint(b, ap, proto)
}

// appendDur appends d in µs with one decimal ("12.3µs"), or in seconds with
// µs precision from one second up ("1.234567s").
func appendDur(b []byte, d time.Duration) []byte {
	ns := int64(d)
	if ns < 0 {
		b = append(b, '-')
		ns = -ns
	}
	if ns < int64(time.Second) {
		t := (ns + 50) / 100 // tenths of a µs
		b = strconv.AppendInt(b, t/10, 10)
		b = append(b, '.', byte('0'+t%10))
		return append(b, "µs"...)
	}
	us := (ns + 500) / 1000
	b = strconv.AppendInt(b, us/1e6, 10)
	b = append(b, '.')
	frac := us % 1e6
	for div := int64(1e5); div > 0; div /= 10 {
		b = append(b, byte('0'+frac/div%10))
	}
	return append(b, 's')
}

// appendDelta appends d with a sign: "+3.2µs".
func appendDelta(b []byte, d time.Duration) []byte {
	if d >= 0 {
		b = append(b, '+')
	}
	return appendDur(b, d)
}

const spaces = "                                                                "

func pad(b []byte, n int) []byte {
	for n > len(spaces) {
		b = append(b, spaces...)
		n -= len(spaces)
	}
	if n > 0 {
		b = append(b, spaces[:n]...)
	}
	return b
}

// sep appends the two spaces separating items of the what column, which
// starts at offset what, unless the item is the column's first.
func sep(b []byte, what int) []byte {
	if len(b) == what {
		return b
	}
	return append(b, "  "...)
}

// trimSpaces drops trailing spaces after offset line.
func trimSpaces(b []byte, line int) []byte {
	for len(b) > line && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	return b
}

func appendUpper(b []byte, s string) []byte {
	start := len(b)
	b = appendText(b, s)
	upper(b[start:])
	return b
}

func upper(b []byte) {
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
}

// appendTextOr appends s made safe for a terminal, or "-" when s is empty.
func appendTextOr(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return appendText(b, s)
}

// appendText appends s made safe for a terminal: control characters,
// non-printable runes and invalid UTF-8 are escaped as \xNN or \u{NNNN}, so a
// device or namespace name can never move the cursor or change colors.
func appendText(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '\\' {
			// A run of printable ASCII, appended at once.
			j := i + 1
			for j < len(s) && s[j] >= 0x20 && s[j] < 0x7f && s[j] != '\\' {
				j++
			}
			b = append(b, s[i:j]...)
			i = j
			continue
		}
		if c < utf8.RuneSelf {
			if c == '\\' {
				b = append(b, '\\', '\\')
			} else {
				b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
		case !unicode.IsPrint(r):
			b = append(b, `\u{`...)
			b = strconv.AppendUint(b, uint64(r), 16)
			b = append(b, '}')
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return b
}

// appendTable appends a table verdict as nft names its objects: "ip nat
// PREROUTING: accept (nftables)"; a verdict other than accept stands out.
func (pal *palette) appendTable(b []byte, tb *stitch.Table) []byte {
	for _, part := range []string{tb.Family.String(), tb.Name, tb.Chain} {
		if part != "" {
			b = appendText(b, part)
			b = append(b, ' ')
		}
	}
	if n := len(b); n > 0 && b[n-1] == ' ' {
		b = b[:n-1]
	}
	b = append(b, ": "...)
	if tb.Verdict != hop.VerdictAccept {
		b = append(b, pal.dropLine.pre...)
		b = appendText(b, tb.Verdict.String())
		b = append(b, pal.dropLine.post...)
	} else {
		b = appendText(b, tb.Verdict.String())
	}
	b = append(b, " ("...)
	b = appendText(b, tb.Engine.String())
	return append(b, ')')
}
