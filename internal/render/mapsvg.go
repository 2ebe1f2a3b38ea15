package render

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/hop"
)

// The map as SVG: each traced node is a box holding its own namespace (a row
// of device columns, each with the netfilter hooks passed at that device
// stacked under it) and, above it, the namespaces attached to it (pods);
// nodes stand side by side in the order packets first reached them. Arrows
// join the points packets went between, labelled with how many did and how
// long it took them.

// Geometry, in SVG user units (pixels at 100%).
const (
	mapMargin   = 16.0
	groupPad    = 12.0
	groupTitleH = 22.0
	groupGap    = 64.0
	laneTitleH  = 18.0
	lanePad     = 8.0
	laneGap     = 56.0 // between the pods' row and the node's own lane
	podGap      = 16.0
	colW        = 184.0
	devW, devH  = 128.0, 40.0
	chipW       = 120.0
	chipH       = 24.0
	chipGap     = 14.0
	devChipGap  = 16.0
)

type rect struct{ x, y, w, h float64 }

func (r rect) cx() float64     { return r.x + r.w/2 }
func (r rect) cy() float64     { return r.y + r.h/2 }
func (r rect) right() float64  { return r.x + r.w }
func (r rect) bottom() float64 { return r.y + r.h }

// column is a device of a namespace and the hooks passed at it.
type column struct {
	dev   string
	point int   // the device's own point, -1 when only hooks were seen at it
	hooks []int // hook points, in hook order
	first order
}

type laneLayout struct {
	ns   int
	box  rect
	node bool // the node's own namespace
	cols []*column
}

type groupLayout struct {
	box   rect
	node  int // namespace index of the node; -1 for the other namespaces
	title string
}

type mapLayout struct {
	w, h   float64
	groups []groupLayout
	lanes  []laneLayout
	boxes  []rect // by point index
	placed []bool
	edges  []edgeDraw
}

// columns groups a namespace's points by device.
func (pg *page) columns(ns int) []*column {
	byDev := map[string]*column{}
	var cols []*column
	for i, pt := range pg.points {
		if pt.key.ns != ns {
			continue
		}
		c := byDev[pt.key.dev]
		if c == nil {
			c = &column{dev: pt.key.dev, point: -1, first: pt.first}
			byDev[pt.key.dev] = c
			cols = append(cols, c)
		}
		c.first.see(pt.first)
		if pt.key.hook == hop.NoHook {
			c.point = i
		} else {
			c.hooks = append(c.hooks, i)
		}
	}
	for _, c := range cols {
		slices.SortFunc(c.hooks, func(a, b int) int { return cmp.Compare(pg.points[a].key.hook, pg.points[b].key.hook) })
	}
	slices.SortFunc(cols, func(a, b *column) int {
		if a.first.less(b.first) {
			return -1
		}
		if b.first.less(a.first) {
			return 1
		}
		return strings.Compare(a.dev, b.dev)
	})
	return cols
}

func (pg *page) nsLess(a, b int) int {
	na, nb := pg.ns[a], pg.ns[b]
	if na.first.less(nb.first) {
		return -1
	}
	if nb.first.less(na.first) {
		return 1
	}
	return strings.Compare(na.name, nb.name)
}

// groups sorts the namespaces with points into node groups: each node with
// the namespaces attached to it (those most hops went to or came from), and
// the rest.
func (pg *page) groups() (nodes []int, pods map[int][]int, others []int) {
	has := make([]bool, len(pg.ns))
	for _, pt := range pg.points {
		has[pt.key.ns] = true
	}
	for i, n := range pg.ns {
		if has[i] && n.node {
			nodes = append(nodes, i)
		}
	}
	slices.SortFunc(nodes, pg.nsLess)
	pods = map[int][]int{}
	for i, n := range pg.ns {
		if !has[i] || n.node {
			continue
		}
		owner, most := -1, 0
		for _, nd := range nodes {
			if c := n.adj[nd]; c > most {
				owner, most = nd, c
			}
		}
		if owner < 0 {
			others = append(others, i)
		} else {
			pods[owner] = append(pods[owner], i)
		}
	}
	for _, p := range pods {
		slices.SortFunc(p, pg.nsLess)
	}
	slices.SortFunc(others, pg.nsLess)
	return nodes, pods, others
}

// laneSize lays out a namespace's columns at (0,0) and returns its size.
func (pg *page) lane(ns int, node bool) laneLayout {
	l := laneLayout{ns: ns, node: node, cols: pg.columns(ns)}
	hooks := 0
	for _, c := range l.cols {
		hooks = max(hooks, len(c.hooks))
	}
	h := laneTitleH + devH + lanePad
	if hooks > 0 {
		h += devChipGap + float64(hooks)*chipH + float64(hooks-1)*chipGap
	}
	l.box = rect{0, 0, float64(len(l.cols))*colW + 2*lanePad, h + lanePad}
	return l
}

// place puts a lane at (x, y) and its points in it.
func (m *mapLayout) place(l laneLayout, x, y float64) {
	l.box.x, l.box.y = x, y
	for i, c := range l.cols {
		cx := x + lanePad + float64(i)*colW + colW/2
		top := y + laneTitleH
		if c.point >= 0 {
			m.boxes[c.point], m.placed[c.point] = rect{cx - devW/2, top, devW, devH}, true
		}
		for k, pt := range c.hooks {
			cy := top + devH + devChipGap + float64(k)*(chipH+chipGap)
			m.boxes[pt], m.placed[pt] = rect{cx - chipW/2, cy, chipW, chipH}, true
		}
	}
	m.lanes = append(m.lanes, l)
}

// layout places everything.
func (pg *page) layout(o svgOptions) *mapLayout {
	m := &mapLayout{boxes: make([]rect, len(pg.points)), placed: make([]bool, len(pg.points))}
	nodes, pods, others := pg.groups()
	x := mapMargin
	bottom := mapMargin
	for _, nd := range nodes {
		g := groupLayout{node: nd, title: "node " + pg.nodeName(nd)}
		nl := pg.lane(nd, true)
		// Pods above the node's column they connect to, left to right.
		var pls []laneLayout
		want := map[int]float64{}
		for _, pd := range pods[nd] {
			pl := pg.lane(pd, false)
			want[pd] = pg.attachX(pd, nd, nl) - pl.box.w/2
			pls = append(pls, pl)
		}
		slices.SortStableFunc(pls, func(a, b laneLayout) int { return cmp.Compare(want[a.ns], want[b.ns]) })
		podsH := 0.0
		cursor := 0.0
		podX := make([]float64, len(pls))
		for i, pl := range pls {
			podX[i] = max(want[pl.ns], cursor)
			cursor = podX[i] + pl.box.w + podGap
			podsH = max(podsH, pl.box.h)
		}
		// Pods pushed past the node's lane shift the whole row back.
		if n := len(pls); n > 0 {
			over := podX[n-1] + pls[n-1].box.w - nl.box.w
			shift := min(max(over, 0), podX[0])
			for i := range podX {
				podX[i] -= shift
			}
		}
		inner := nl.box.w
		for i, pl := range pls {
			inner = max(inner, podX[i]+pl.box.w)
		}
		top := mapMargin + groupTitleH + groupPad
		for i, pl := range pls {
			m.place(pl, x+groupPad+podX[i], top)
		}
		nodeY := top
		if len(pls) > 0 {
			nodeY += podsH + laneGap
		}
		m.place(nl, x+groupPad, nodeY)
		g.box = rect{x, mapMargin, inner + 2*groupPad, nodeY + nl.box.h + groupPad - mapMargin}
		m.groups = append(m.groups, g)
		x += g.box.w + groupGap
		bottom = max(bottom, g.box.bottom())
	}
	if len(others) > 0 {
		g := groupLayout{node: -1, title: "other namespaces"}
		top := mapMargin + groupTitleH + groupPad
		gx := x + groupPad
		h := 0.0
		for _, o := range others {
			l := pg.lane(o, false)
			m.place(l, gx, top)
			gx += l.box.w + podGap
			h = max(h, l.box.h)
		}
		g.box = rect{x, mapMargin, gx - podGap + groupPad - x, top + h + groupPad - mapMargin}
		m.groups = append(m.groups, g)
		x += g.box.w + groupGap
		bottom = max(bottom, g.box.bottom())
	}
	m.w = max(x-groupGap+mapMargin, 200)
	m.h = bottom + mapMargin
	pg.routeEdges(m, o)
	return m
}

// attachX is the x, in the node lane, of the column the pod's hops went to
// or came from most.
func (pg *page) attachX(pod, node int, nl laneLayout) float64 {
	count := map[int]int{}
	for _, e := range pg.edges {
		a, b := pg.points[e.from], pg.points[e.to]
		switch {
		case a.key.ns == pod && b.key.ns == node:
			count[e.to] += int(e.lat.n)
		case b.key.ns == pod && a.key.ns == node:
			count[e.from] += int(e.lat.n)
		}
	}
	best, most := -1, 0
	for pt, c := range count {
		if c > most || c == most && pt < best {
			best, most = pt, c
		}
	}
	for i, c := range nl.cols {
		if c.point == best || slices.Contains(c.hooks, best) {
			return lanePad + float64(i)*colW + colW/2
		}
	}
	return lanePad + colW/2
}

// nodeName is a node's name for people: its Kubernetes name where known,
// else its namespace.
func (pg *page) nodeName(ns int) string {
	if n := pg.node(pg.ns[ns]); n != nil && n.Name != "" {
		return n.Name
	}
	return pg.ns[ns].name
}

// nsLabel names a namespace for people: "default/web-6c9f8 (netns
// cni-1234)" where its pod's name is known, else its name.
func (pg *page) nsLabel(ns int) string {
	n := pg.ns[ns]
	if l := pg.info.Names[n.name]; l != "" && l != n.name {
		return l + " (" + n.name + ")"
	}
	return n.name
}

// pointLabel names a point within its namespace: "cni0", "PREROUTING at cni0".
func (pg *page) pointLabel(pt *point) string {
	dev := pt.key.dev
	if dev == "" {
		dev = "-"
	}
	if pt.key.hook == hop.NoHook {
		return dev
	}
	return pt.key.hook.String() + " at " + dev
}

// pointTitle names a point in the trace: "ptrec-node1 PREROUTING at cni0".
func (pg *page) pointTitle(pt *point) string {
	return pg.ns[pt.key.ns].name + " " + pg.pointLabel(pt)
}

// sortedMarks lists a point's marks, bad ones first, then by kind and text.
func (pt *point) sortedMarks() []mark {
	ms := make([]mark, 0, len(pt.marks))
	for m := range pt.marks {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b mark) int {
		if a.bad != b.bad {
			if a.bad {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(a.kind, b.kind); c != 0 {
			return c
		}
		return strings.Compare(a.text, b.text)
	})
	return ms
}

var markClass = [...]string{
	markNAT: "nat", markIPVS: "ipvs", markTable: "table", markTunnel: "tunnel",
	markBridge: "bridge", markDrop: "drop", markConsume: "consume",
}

// markTag is the short tag of a mark on a box.
func markTag(m mark) string {
	switch m.kind {
	case markNAT:
		t, _, _ := strings.Cut(m.text, " ")
		return t
	case markIPVS:
		return "IPVS"
	case markTable:
		if m.bad {
			_, v, _ := strings.Cut(m.text, ": ")
			v, _, _ = strings.Cut(v, " ")
			return v
		}
		return ""
	case markTunnel:
		t, _, _ := strings.Cut(m.text, " ")
		return t
	case markDrop:
		return "drop"
	case markConsume:
		return "✓"
	}
	return ""
}

// svgOptions say what the map is drawn for.
type svgOptions struct {
	links  bool // boxes link to their details in the report (#pt-N)
	single bool // one packet: arrows show its time, not counts
}

// appendSVGOpen appends the opening tag of an SVG document w×h, with
// style as its style attribute unless empty, and the map's style sheet.
func appendSVGOpen(b []byte, w, h float64, style string) []byte {
	b = append(b, `<svg xmlns="http://www.w3.org/2000/svg" class="m-map" width="`...)
	b = appendNum(b, w)
	b = append(b, `" height="`...)
	b = appendNum(b, h)
	b = append(b, `" viewBox="0 0 `...)
	b = appendNum(b, w)
	b = append(b, ' ')
	b = appendNum(b, h)
	b = append(b, `" font-family="sans-serif" font-size="11"`...)
	if style != "" {
		b = append(b, ` style="`...)
		b = append(b, style...)
		b = append(b, '"')
	}
	b = append(b, ">\n"...)
	return append(b, mapStyle...)
}

// appendMapSVG appends the map as an <svg> element.
func (pg *page) appendMapSVG(b []byte, o svgOptions) []byte {
	m := pg.layout(o)
	style := ""
	if o.links {
		// The report shrinks a wide map to the page, down to 60%: below
		// that it scrolls.
		style = "min-width:" + string(appendNum(nil, math.Round(m.w*0.6))) + "px"
	}
	b = appendSVGOpen(b, m.w, m.h, style)
	b = pg.appendMap(b, m, o)
	return append(b, "</svg>"...)
}

// appendMap appends the map's groups, lanes, arrows and boxes.
func (pg *page) appendMap(b []byte, m *mapLayout, o svgOptions) []byte {
	for _, g := range m.groups {
		b = append(b, `<g class="m-group`...)
		if g.node < 0 {
			b = append(b, ` m-others`...)
		}
		b = append(b, `">`...)
		b = appendRect(b, g.box, 8, "")
		b = appendSVGText(b, g.box.x+10, g.box.y+16, "m-gtitle", g.title)
		if g.node >= 0 {
			if n := pg.node(pg.ns[g.node]); n == nil || n.Report == nil {
				b = appendSVGText(b, g.box.right()-10, g.box.y+16, "m-gnote", "no node report")
			}
		}
		b = append(b, "</g>\n"...)
	}
	for _, l := range m.lanes {
		cls := "m-lane"
		if l.node {
			cls += " m-nodelane"
		}
		b = append(b, `<g class="`...)
		b = append(b, cls...)
		b = append(b, `">`...)
		b = appendRect(b, l.box, 6, "")
		title := "netns " + pg.nsLabel(l.ns)
		if l.node {
			title = "host namespace " + pg.ns[l.ns].name
		}
		b = appendSVGText(b, l.box.x+8, l.box.y+13, "m-ltitle", title)
		b = append(b, "</g>\n"...)
	}
	b = pg.appendEdges(b, m)
	for i, pt := range pg.points {
		if m.placed[i] {
			b = pg.appendPoint(b, m.boxes[i], i, pt, o)
		}
	}
	return b
}

const mapStyle = `<defs><marker id="m-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" markerHeight="9" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,1 L10,5 L0,9 z" fill="#5f6b7a"/></marker>` +
	`<marker id="m-arrow-on" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" markerHeight="9" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,1 L10,5 L0,9 z" fill="#e8590c"/></marker></defs>
<style>
.m-group>rect{fill:#f3f4f6;stroke:#9aa3ad}
.m-others>rect{fill:#fbfbfb;stroke-dasharray:4 3}
.m-gtitle{font-weight:bold;font-size:13px;fill:#1f2933}
.m-gnote{fill:#8a6d00;text-anchor:end;font-size:10px}
.m-lane>rect{fill:#fffdf6;stroke:#d6c79a}
.m-nodelane>rect{fill:#ffffff;stroke:#b8c2cc}
.m-ltitle{font-size:10px;fill:#52606d}
.m-pt rect{stroke-width:1.2}
.m-dev rect{fill:#e6f4f8;stroke:#3b8ea5}
.m-hook rect{fill:#eceefb;stroke:#5566c2}
.m-pt.m-hollow rect{stroke-dasharray:3 2;fill:#fafafa}
.m-pt.m-bad rect{stroke:#c62828;stroke-width:2}
.m-name{font-weight:bold;fill:#1f2933}
.m-hook .m-name{font-weight:normal;font-size:10px}
.m-n{fill:#52606d;font-size:10px}
.m-hook .m-n{text-anchor:end}
.m-tag{font-size:9px;font-weight:bold}
.m-tag-nat,.m-tag-ipvs{fill:#a3218e}.m-tag-tunnel{fill:#0b7285}.m-tag-drop,.m-tag-table{fill:#c62828}.m-tag-consume{fill:#2b8a3e}.m-tag-bridge{fill:#3b8ea5}
.m-st-ok{fill:#2b8a3e}.m-st-warn{fill:#e8a200}.m-st-bad{fill:#c62828}
.m-edge path{fill:none;stroke:#5f6b7a;marker-end:url(#m-arrow)}
.m-edge.m-edrop path{stroke:#c62828}
.m-edge text{font-size:9px;fill:#323f4b;font-family:monospace}
.m-edge .m-lbg{fill:#ffffff;opacity:.85;stroke:none}
.m-edge.on path{stroke:#e8590c;marker-end:url(#m-arrow-on)}
.m-edge.off{opacity:.25}.m-pt.off{opacity:.35}.m-pt.on rect{stroke:#e8590c;stroke-width:2.4}
</style>
`

func appendRect(b []byte, r rect, radius float64, cls string) []byte {
	b = append(b, `<rect`...)
	if cls != "" {
		b = append(b, ` class="`...)
		b = append(b, cls...)
		b = append(b, '"')
	}
	b = append(b, ` x="`...)
	b = appendNum(b, r.x)
	b = append(b, `" y="`...)
	b = appendNum(b, r.y)
	b = append(b, `" width="`...)
	b = appendNum(b, r.w)
	b = append(b, `" height="`...)
	b = appendNum(b, r.h)
	b = append(b, `" rx="`...)
	b = appendNum(b, radius)
	return append(b, `"/>`...)
}

func appendSVGText(b []byte, x, y float64, cls, s string) []byte {
	b = append(b, `<text x="`...)
	b = appendNum(b, x)
	b = append(b, `" y="`...)
	b = appendNum(b, y)
	b = append(b, `" class="`...)
	b = append(b, cls...)
	b = append(b, `">`...)
	b = appendXML(b, s)
	return append(b, "</text>"...)
}

// appendNum appends v with at most one decimal.
func appendNum(b []byte, v float64) []byte {
	v = math.Round(v*10) / 10
	if v == math.Trunc(v) {
		return strconv.AppendInt(b, int64(v), 10)
	}
	return strconv.AppendFloat(b, v, 'f', 1, 64)
}

// appendXML appends s made safe for a terminal (appendText: no control
// characters, which XML forbids) and escaped for XML and HTML.
func appendXML(b []byte, s string) []byte {
	var tmp [128]byte
	t := appendText(tmp[:0], s)
	for _, c := range t {
		switch c {
		case '&':
			b = append(b, "&amp;"...)
		case '<':
			b = append(b, "&lt;"...)
		case '>':
			b = append(b, "&gt;"...)
		case '"':
			b = append(b, "&#34;"...)
		case '\'':
			b = append(b, "&#39;"...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// truncate shortens s to n runes with an ellipsis.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func (pg *page) appendPoint(b []byte, r rect, i int, pt *point, o svgOptions) []byte {
	cls := "m-pt m-dev"
	if pt.key.hook != hop.NoHook {
		cls = "m-pt m-hook"
	}
	marks := pt.sortedMarks()
	if len(marks) > 0 && marks[0].bad {
		cls += " m-bad"
	}
	items := pg.governs(pt)
	b = append(b, `<g class="`...)
	b = append(b, cls...)
	b = append(b, `" data-p="`...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, `">`...)
	if o.links {
		b = append(b, `<a href="#pt-`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `">`...)
	}
	// The tooltip: everything the box abbreviates.
	b = append(b, "<title>"...)
	b = appendXML(b, pg.pointTitle(pt))
	b = append(b, ": "...)
	b = appendXML(b, plural(pt.packets, "packet", "packets"))
	for _, m := range marks {
		b = append(b, "&#10;"...)
		b = appendXML(b, m.text)
		b = append(b, " ×"...)
		b = strconv.AppendInt(b, int64(pt.marks[m]), 10)
	}
	for _, it := range items {
		if it.Status == doctor.StatusWarn || it.Status == doctor.StatusBad {
			b = append(b, "&#10;"...)
			b = appendXML(b, string(it.Status)+": "+it.Name+" = "+it.Value)
		}
	}
	b = append(b, "</title>"...)
	b = appendRect(b, r, 4, "")
	n := strconv.Itoa(pt.packets)
	if o.single {
		n = ""
	}
	// At most two tags on a hook, three on a device: the bad ones first.
	maxTags := 3
	if pt.key.hook != hop.NoHook {
		maxTags = 2
	}
	var tags []mark
	for _, m := range marks {
		if len(tags) < maxTags && markTag(m) != "" && !slices.ContainsFunc(tags, func(t mark) bool { return markTag(t) == markTag(m) }) {
			tags = append(tags, m)
		}
	}
	if pt.key.hook == hop.NoHook {
		b = appendSVGText(b, r.x+7, r.y+16, "m-name", truncate(pg.pointLabel(pt), 18))
		sub := ""
		if n != "" {
			sub = plural(pt.packets, "pkt", "pkts")
		}
		if sub != "" {
			b = appendSVGText(b, r.x+7, r.y+32, "m-n", sub)
		}
		b = appendTags(b, r.right()-6, r.y+32, tags)
	} else {
		b = appendSVGText(b, r.x+6, r.y+16, "m-name", pt.key.hook.String())
		if len(tags) > 0 {
			b = appendTags(b, r.right()-6, r.y+16, tags)
		} else if n != "" {
			b = appendSVGText(b, r.right()-6, r.y+16, "m-n", n)
		}
	}
	if st := worst(items); st != "" {
		b = append(b, `<circle class="m-st-`...)
		b = append(b, st...)
		b = append(b, `" cx="`...)
		b = appendNum(b, r.right()-1)
		b = append(b, `" cy="`...)
		b = appendNum(b, r.y+1)
		b = append(b, `" r="4"/>`...)
	}
	if o.links {
		b = append(b, "</a>"...)
	}
	return append(b, "</g>\n"...)
}

// appendTags appends the tags right-aligned at x.
func appendTags(b []byte, x, y float64, tags []mark) []byte {
	if len(tags) == 0 {
		return b
	}
	b = append(b, `<text text-anchor="end" x="`...)
	b = appendNum(b, x)
	b = append(b, `" y="`...)
	b = appendNum(b, y)
	b = append(b, `" class="m-tag">`...)
	for i, m := range tags {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, `<tspan class="m-tag-`...)
		b = append(b, markClass[m.kind]...)
		b = append(b, `">`...)
		b = appendXML(b, markTag(m))
		b = append(b, "</tspan>"...)
	}
	return append(b, "</text>"...)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// edgeDraw is an arrow as drawn: its curve and its label.
type edgeDraw struct {
	e     *edge
	c     bezier
	cls   string
	label rect
	lines []string
}

// routeEdges draws the arrows between the placed boxes and places their
// labels, each where it covers no box and no label placed before it, if it
// can; the map grows to hold the labels.
func (pg *page) routeEdges(m *mapLayout, o svgOptions) {
	// One packet's arrows are numbered in the order it took them.
	step := map[*edge]int{}
	if o.single {
		es := slices.Clone(pg.edges)
		slices.SortFunc(es, func(a, b *edge) int {
			if a.first.less(b.first) {
				return -1
			}
			return 1
		})
		for i, e := range es {
			step[e] = i + 1
		}
	}
	var taken []rect
	for i := range pg.points {
		if m.placed[i] {
			r := m.boxes[i]
			taken = append(taken, rect{r.x - 2, r.y - 2, r.w + 4, r.h + 4})
		}
	}
	for _, e := range pg.edges {
		if !m.placed[e.from] || !m.placed[e.to] {
			continue
		}
		d := edgeDraw{e: e, c: route(m.boxes[e.from], m.boxes[e.to]), cls: "m-edge", lines: pg.edgeLabel(e, step[e])}
		if pg.points[e.to].hasMark(markDrop) {
			d.cls += " m-edrop"
		}
		w := 0.0
		for _, l := range d.lines {
			w = max(w, float64(len([]rune(l)))*5.5)
		}
		d.label = placeLabel(d.c, w+2, float64(len(d.lines))*10+2, taken)
		taken = append(taken, d.label)
		m.w = max(m.w, d.label.right()+mapMargin)
		m.h = max(m.h, d.label.bottom()+mapMargin)
		m.edges = append(m.edges, d)
	}
}

// appendEdges appends the arrows, then their labels over them.
func (pg *page) appendEdges(b []byte, m *mapLayout) []byte {
	for _, d := range m.edges {
		e := d.e
		b = appendEdgeOpen(b, d.cls, e)
		b = append(b, `<title>`...)
		b = appendXML(b, pg.pointTitle(pg.points[e.from])+" → "+pg.pointTitle(pg.points[e.to]))
		b = append(b, ": "...)
		b = appendXML(b, pg.edgeSummary(e))
		b = append(b, `</title><path d="`...)
		b = d.c.appendPath(b)
		b = append(b, `" stroke-width="`...)
		b = appendNum(b, edgeWidth(e.lat.n))
		b = append(b, "\"/></g>\n"...)
	}
	for _, d := range m.edges {
		r := d.label
		b = appendEdgeOpen(b, d.cls+" m-elabel", d.e)
		b = appendRect(b, r, 2, "m-lbg")
		for i, l := range d.lines {
			b = append(b, `<text x="`...)
			b = appendNum(b, r.x+1)
			b = append(b, `" y="`...)
			b = appendNum(b, r.y+9+float64(i)*10)
			b = append(b, `">`...)
			b = appendXML(b, l)
			b = append(b, "</text>"...)
		}
		b = append(b, "</g>\n"...)
	}
	return b
}

func appendEdgeOpen(b []byte, cls string, e *edge) []byte {
	b = append(b, `<g class="`...)
	b = append(b, cls...)
	b = append(b, `" data-e="`...)
	b = strconv.AppendInt(b, int64(e.from), 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(e.to), 10)
	return append(b, `">`...)
}

func edgeWidth(n uint64) float64 {
	return min(1.2+math.Log2(float64(max(n, 1)))*0.3, 3.2)
}

// edgeLabel is the label of an arrow: "10× 3.6µs" over "p99 20.0µs"; a
// single packet's arrow shows its step (from 1) and its time.
func (pg *page) edgeLabel(e *edge, step int) []string {
	if step > 0 {
		return []string{strconv.Itoa(step) + ": +" + durString(e.lat.quantile(0.5))}
	}
	if e.lat.n == 1 {
		return []string{"+" + durString(e.lat.quantile(0.5))}
	}
	return []string{
		strconv.FormatUint(e.lat.n, 10) + "× " + durString(e.lat.quantile(0.5)),
		"p99 " + durString(e.lat.quantile(0.99)),
	}
}

func (pg *page) edgeSummary(e *edge) string {
	if e.lat.n == 1 {
		return "1 packet, " + durString(e.lat.quantile(0.5))
	}
	return plural(int(e.lat.n), "packet", "packets") + ", median " + durString(e.lat.quantile(0.5)) + ", p99 " + durString(e.lat.quantile(0.99))
}

func durString(d time.Duration) string { return string(appendDur(nil, d)) }

// bezier is a cubic curve, and which side of it its label prefers.
type bezier struct {
	x1, y1, c1x, c1y, c2x, c2y, x2, y2 float64
	side                               byte // 'a'bove, 'b'elow, 'l'eft, 'r'ight
}

func (c bezier) at(t float64) (x, y float64) {
	u := 1 - t
	x = u*u*u*c.x1 + 3*u*u*t*c.c1x + 3*u*t*t*c.c2x + t*t*t*c.x2
	y = u*u*u*c.y1 + 3*u*u*t*c.c1y + 3*u*t*t*c.c2y + t*t*t*c.y2
	return x, y
}

func (c bezier) appendPath(b []byte) []byte {
	pts := [...]float64{c.x1, c.y1, c.c1x, c.c1y, c.c2x, c.c2y, c.x2, c.y2}
	for i := 0; i < len(pts); i += 2 {
		switch i {
		case 0:
			b = append(b, 'M')
		case 2:
			b = append(b, " C"...)
		default:
			b = append(b, ' ')
		}
		b = appendNum(b, pts[i])
		b = append(b, ',')
		b = appendNum(b, pts[i+1])
	}
	return b
}

// route draws an arrow from box a to box z. Arrows between boxes of one
// column bulge out to the right going down and to the left going up; side
// by side boxes are joined side to side, rightward arrows a little higher
// than leftward ones; boxes above one another top to bottom, downward
// arrows a little to the left.
func route(a, z rect) bezier {
	var c bezier
	switch {
	case math.Abs(a.cx()-z.cx()) < 1:
		bulge := 16 + math.Abs(z.cy()-a.cy())*0.12
		if z.y > a.y {
			c = bezier{x1: a.right(), y1: a.cy() + 3, x2: z.right(), y2: z.cy() - 3, side: 'r'}
		} else {
			c = bezier{x1: a.x, y1: a.cy() - 3, x2: z.x, y2: z.cy() + 3, side: 'l'}
			bulge = -bulge
		}
		c.c1x, c.c1y, c.c2x, c.c2y = c.x1+bulge, c.y1, c.x2+bulge, c.y2
	case z.x >= a.right() || a.x >= z.right():
		if z.x >= a.right() {
			c = bezier{x1: a.right(), y1: a.cy() - 4, x2: z.x, y2: z.cy() - 4, side: 'a'}
		} else {
			c = bezier{x1: a.x, y1: a.cy() + 4, x2: z.right(), y2: z.cy() + 4, side: 'b'}
		}
		mx := (c.x1 + c.x2) / 2
		c.c1x, c.c1y, c.c2x, c.c2y = mx, c.y1, mx, c.y2
		if math.Abs(c.y2-c.y1) > math.Abs(c.x2-c.x1) {
			c.side = map[bool]byte{true: 'l', false: 'r'}[c.y2 > c.y1]
		}
	default:
		if z.y > a.y {
			c = bezier{x1: a.cx() - 8, y1: a.bottom(), x2: z.cx() - 8, y2: z.y, side: 'l'}
		} else {
			c = bezier{x1: a.cx() + 8, y1: a.y, x2: z.cx() + 8, y2: z.bottom(), side: 'r'}
		}
		my := (c.y1 + c.y2) / 2
		c.c1x, c.c1y, c.c2x, c.c2y = c.x1, my, c.x2, my
	}
	return c
}

// placeLabel finds a w×h place for an arrow's label beside the curve, on
// its preferred side, near its middle, that overlaps nothing in taken; the
// least overlapping one when none is free.
func placeLabel(c bezier, w, h float64, taken []rect) rect {
	best, bestOver := rect{}, math.Inf(1)
	for _, t := range [...]float64{0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8, 0.15, 0.85} {
		x, y := c.at(t)
		for _, side := range [...]byte{c.side, 0} {
			var r rect
			switch side {
			case 'a':
				r = rect{x - w/2, y - 3 - h, w, h}
			case 'b':
				r = rect{x - w/2, y + 3, w, h}
			case 'l':
				r = rect{x - 4 - w, y - h/2, w, h}
			case 'r':
				r = rect{x + 4, y - h/2, w, h}
			default:
				r = rect{x - w/2, y - h/2, w, h}
			}
			over := 0.0
			for _, o := range taken {
				over += overlap(r, o)
			}
			if over == 0 {
				return r
			}
			if over < bestOver {
				best, bestOver = r, over
			}
		}
	}
	return best
}

func overlap(a, b rect) float64 {
	w := min(a.right(), b.right()) - max(a.x, b.x)
	h := min(a.bottom(), b.bottom()) - max(a.y, b.y)
	if w <= 0 || h <= 0 {
		return 0
	}
	return w * h
}
