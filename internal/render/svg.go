package render

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/pathtrace/pathtrace/internal/stitch"
)

// SVGOptions configures the SVG picture of one packet.
type SVGOptions struct {
	Packet uint64 // the packet's ID (#id in the text output)
}

// NewSVG returns a Renderer that draws one packet's path as an SVG document
// when it is closed, to paste into an incident report: the map of the
// report (docs/output.md) with only the points and arrows of that packet,
// each arrow numbered in the order the packet took it with the time it
// took, under a header with the packet's tuple and verdict, over its
// warnings and the advice on its drop. Close fails when no path rendered
// had that ID.
func NewSVG(w io.Writer, o SVGOptions) Renderer {
	return &svgRenderer{w: w, opts: o}
}

type svgRenderer struct {
	w      io.Writer
	opts   SVGOptions
	info   TraceInfo
	path   *stitch.Path // a copy: the caller reuses the path's memory
	closed bool
}

func (r *svgRenderer) Render(p *stitch.Path) error {
	if r.closed {
		return errClosed
	}
	if p == nil {
		return errNilPath
	}
	if p.ID == r.opts.Packet && r.path == nil {
		r.path = p.Clone()
	}
	return nil
}

func (r *svgRenderer) DescribeTrace(info TraceInfo) { r.info = info }

func (r *svgRenderer) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	if r.path == nil {
		return fmt.Errorf("draw packet: no packet #%d in the trace", r.opts.Packet)
	}
	b := appendPacketSVG(nil, r.path, r.info)
	_, err := r.w.Write(b)
	return err
}

// Lines of the header and footer.
const (
	svgLineH   = 16.0
	svgCharW   = 6.4 // of the 11px sans-serif text, for wrapping
	svgHeadPad = 10.0
)

// appendPacketSVG appends the SVG document of one packet.
func appendPacketSVG(b []byte, p *stitch.Path, info TraceInfo) []byte {
	pg := newPage(false, 0)
	pg.add(p)
	pg.describe(info)
	m := pg.layout(svgOptions{single: true})

	title := string(appendPacketTitle(nil, p))
	// Wide enough for the title, and for the advice to read well.
	width := max(m.w, float64(len([]rune(title))+25)*7.6+2*mapMargin, 760)
	sub := p.Start.UTC().Format(headerTime) + "  ·  " + plural(len(p.Hops), "hop", "hops")
	if p.Clipped {
		sub += " (clipped)"
	}
	var foot []footLine
	chars := int((width-2*mapMargin)/svgCharW) - 2
	for _, w := range p.Warnings {
		for _, l := range wrap("warning: "+w, chars) {
			foot = append(foot, footLine{l, "s-warn"})
		}
	}
	for i := range p.Hops {
		h := &p.Hops[i]
		if h.Advice == "" {
			continue
		}
		for j, l := range strings.Split(h.Advice, "\n") {
			if j == 0 {
				l = "advice (hop " + strconv.Itoa(i+1) + ", " + string(appendHopWhat(nil, p, i)) + "): " + l
			}
			for _, wl := range wrap(l, chars) {
				cls := "s-advice"
				if strings.HasPrefix(l, "$ ") {
					cls = "s-cmd"
				}
				foot = append(foot, footLine{wl, cls})
			}
		}
	}
	headH := svgHeadPad + 2*svgLineH
	footH := 0.0
	if len(foot) > 0 {
		footH = float64(len(foot))*svgLineH + svgHeadPad
	}
	b = appendSVGOpen(b, width, headH+m.h+footH, "")
	b = append(b, `<style>.s-title{font-weight:bold;font-size:13px;fill:#1f2933}.s-sub{fill:#52606d}.s-warn{fill:#8a6d00}.s-advice{fill:#c62828}.s-cmd{fill:#323f4b;font-family:monospace}.s-delivered{fill:#2b8a3e}.s-dropped{fill:#c62828}.s-forwarded,.s-unknown{fill:#b7791f}.s-reassembled,.s-fragmented{fill:#52606d}</style>`+"\n"...)
	b = append(b, `<text x="`...)
	b = appendNum(b, mapMargin)
	b = append(b, `" y="`...)
	b = appendNum(b, svgHeadPad+svgLineH-4)
	b = append(b, `" class="s-title">`...)
	b = appendXML(b, title)
	b = append(b, ` <tspan class="s-`...)
	b = append(b, verdictOrUnknown(p.Verdict)...)
	b = append(b, `">`...)
	b = append(b, verdictOrUnknown(p.Verdict)...)
	b = append(b, "</tspan>"...)
	if n := len(p.Hops); n > 0 {
		b = append(b, " in "...)
		b = appendDur(b, p.Hops[n-1].T)
	}
	b = append(b, "</text>\n"...)
	b = appendSVGText(b, mapMargin, svgHeadPad+2*svgLineH-4, "s-sub", sub)
	b = append(b, '\n')
	b = append(b, `<g transform="translate(0,`...)
	b = appendNum(b, headH)
	b = append(b, ")\">\n"...)
	b = pg.appendMap(b, m, svgOptions{single: true})
	b = append(b, "</g>\n"...)
	for i, l := range foot {
		b = appendSVGText(b, mapMargin, headH+m.h+float64(i+1)*svgLineH-4, l.class, l.text)
		b = append(b, '\n')
	}
	return append(b, "</svg>\n"...)
}

type footLine struct {
	text, class string
}

// appendPacketTitle appends "#1 TCP 10.244.1.5:40312 → 10.96.0.10:80 [SYN]
// len=60".
func appendPacketTitle(b []byte, p *stitch.Path) []byte {
	b = append(b, '#')
	b = strconv.AppendUint(b, p.ID, 10)
	b = append(b, ' ')
	if p.Proto == protoICMPv6 {
		b = append(b, "ICMPv6"...)
	} else {
		b = appendUpper(b, string(appendProto(nil, p.Proto)))
	}
	b = append(b, ' ')
	b = appendTuple(b, p.Src, p.Dst, p.Proto)
	if p.Proto == protoTCP && p.TCPFlags != 0 {
		b = append(b, " ["...)
		b = appendTCPFlags(b, p.TCPFlags)
		b = append(b, ']')
	}
	if p.Len != 0 {
		b = append(b, " len="...)
		b = strconv.AppendUint(b, uint64(p.Len), 10)
	}
	return b
}

// wrap breaks s into lines of at most n runes, at spaces where it can.
func wrap(s string, n int) []string {
	n = max(n, 20)
	var lines []string
	for len([]rune(s)) > n {
		r := []rune(s)
		cut := n
		for cut > n/2 && r[cut] != ' ' {
			cut--
		}
		if r[cut] != ' ' {
			cut = n
		}
		lines = append(lines, strings.TrimRight(string(r[:cut]), " "))
		s = "  " + strings.TrimLeft(string(r[cut:]), " ")
	}
	return append(lines, s)
}
