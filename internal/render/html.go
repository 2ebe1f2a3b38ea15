package render

import (
	"bytes"
	_ "embed"
	"html/template"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// HTMLOptions configures the HTML report.
type HTMLOptions struct {
	// MaxPackets bounds the packets the table keeps (a long live trace);
	// the map counts them all. 0: DefaultMaxPackets.
	MaxPackets int
}

// DefaultMaxPackets is how many packets the report's table keeps by default.
const DefaultMaxPackets = 100_000

var (
	//go:embed assets/report.html
	reportTemplate string
	//go:embed assets/report.css
	reportCSS string
	//go:embed assets/report.js
	reportJS string

	reportTmpl = template.Must(template.New("report").Parse(reportTemplate))
)

// NewHTML returns a Renderer writing one self-contained HTML document (no
// network: styles, script and data inline) when it is closed: the map of the
// trace (nodes, namespaces, devices and netfilter hooks, the arrows packets
// took between them with counts and latencies, how to watch each point and
// what node settings shape it) and the packets (a table, and each packet's
// timeline as swimlanes per namespace beside its reply). docs/output.md
// describes it; the output depends only on the paths and the TraceInfo, so
// it can be compared byte for byte.
func NewHTML(w io.Writer, o HTMLOptions) Renderer {
	if o.MaxPackets <= 0 {
		o.MaxPackets = DefaultMaxPackets
	}
	return &htmlRenderer{w: w, pg: newPage(true, o.MaxPackets)}
}

type htmlRenderer struct {
	w      io.Writer
	pg     *page
	closed bool
}

func (r *htmlRenderer) Render(p *stitch.Path) error {
	if r.closed {
		return errClosed
	}
	if p == nil {
		return errNilPath
	}
	r.pg.add(p)
	return nil
}

func (r *htmlRenderer) DescribeTrace(info TraceInfo) { r.pg.describe(info) }

func (r *htmlRenderer) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	pg := r.pg
	pg.finish()
	svg := pg.appendMapSVG(nil, svgOptions{links: true})
	d := reportData{
		CSS:       template.CSS(reportCSS),
		JS:        template.JS(reportJS),
		Map:       template.HTML(svg),
		Data:      template.JS(pg.appendData(nil)),
		Packets:   pg.count,
		Omitted:   pg.omitted,
		Kept:      len(pg.packets),
		Info:      pg.info,
		Described: pg.described,
		Points:    pg.pointViews(),
		Nodes:     pg.nodeViews(),
	}
	d.Info.Hostname, d.Info.Kernel, d.Info.Backend = clean(d.Info.Hostname), clean(d.Info.Kernel), clean(d.Info.Backend)
	if !pg.info.Start.IsZero() {
		d.Start = pg.info.Start.UTC().Format(headerTime)
	}
	for _, v := range []stitch.Verdict{stitch.VerdictDelivered, stitch.VerdictDropped, stitch.VerdictForwarded,
		stitch.VerdictReassembled, stitch.VerdictFragmented, stitch.VerdictUnknown} {
		if n := pg.verdicts[v]; n > 0 {
			d.Verdicts = append(d.Verdicts, verdictCount{string(v), n})
		}
	}
	for _, a := range pg.info.PodIPs {
		d.PodIPs = append(d.PodIPs, a.String())
	}
	var buf bytes.Buffer
	if err := reportTmpl.Execute(&buf, d); err != nil {
		return err
	}
	_, err := r.w.Write(buf.Bytes())
	return err
}

// reportData is what the template shows.
type reportData struct {
	CSS       template.CSS
	JS        template.JS
	Map       template.HTML
	Data      template.JS
	Packets   int
	Omitted   int
	Kept      int
	Verdicts  []verdictCount
	Info      TraceInfo
	Described bool // the trace said what it was: events and lost counts are known
	Start     string
	PodIPs    []string
	Points    []pointGroup
	Nodes     []nodeView
}

type verdictCount struct {
	Verdict string
	N       int
}

// pointGroup is the points of one namespace.
type pointGroup struct {
	Title  string
	Points []pointView
}

type pointView struct {
	ID       int
	Title    string
	Packets  int
	Status   string
	Marks    []markView
	Next     []edgeView
	Watch    []observation
	Shaped   []doctor.Item
	NoReport bool
}

type markView struct {
	Class, Text string
	N           int
}

type edgeView struct {
	To, ToTitle int
	Title       string
	N           uint64
	Median, P99 string
}

type nodeView struct {
	Title     string
	HasReport bool
	Notable   []doctor.Item // warn and bad items
	Sections  []doctor.Section
}

// cleanItems copies items with every text made safe to show (clean).
func cleanItems(items []doctor.Item) []doctor.Item {
	out := make([]doctor.Item, len(items))
	for i, it := range items {
		out[i] = doctor.Item{ID: clean(it.ID), Name: clean(it.Name), Value: clean(it.Value), Status: doctor.Status(clean(string(it.Status))),
			Explain: clean(it.Explain), Check: clean(it.Check), Source: clean(it.Source)}
	}
	return out
}

// pointViews lists the points namespace by namespace, in the map's order.
func (pg *page) pointViews() []pointGroup {
	nodes, pods, others := pg.groups()
	var order []int
	for _, n := range nodes {
		order = append(order, n)
		order = append(order, pods[n]...)
	}
	order = append(order, others...)
	var gs []pointGroup
	for _, ns := range order {
		g := pointGroup{Title: "netns " + clean(pg.nsLabel(ns))}
		if pg.ns[ns].node {
			g.Title = "node " + clean(pg.nodeName(ns))
		}
		for _, c := range pg.columns(ns) {
			ids := c.hooks
			if c.point >= 0 {
				ids = append([]int{c.point}, ids...)
			}
			for _, id := range ids {
				g.Points = append(g.Points, pg.pointView(id))
			}
		}
		gs = append(gs, g)
	}
	return gs
}

func (pg *page) pointView(id int) pointView {
	pt := pg.points[id]
	v := pointView{ID: id, Title: clean(pg.pointLabel(pt)), Packets: pt.packets}
	for _, o := range pg.observe(pt) {
		v.Watch = append(v.Watch, observation{o.How, clean(o.Cmd)})
	}
	shaped := pg.governs(pt)
	v.Shaped = cleanItems(shaped)
	v.Status = string(worst(shaped))
	if n := pg.node(pg.ns[pt.key.ns]); pg.ns[pt.key.ns].node && (n == nil || n.Report == nil) {
		v.NoReport = true
	}
	for _, m := range pt.sortedMarks() {
		v.Marks = append(v.Marks, markView{markClass[m.kind], clean(m.text), pt.marks[m]})
	}
	for _, e := range pg.edges {
		if e.from != id {
			continue
		}
		v.Next = append(v.Next, edgeView{To: e.to, Title: clean(pg.pointTitle(pg.points[e.to])), N: e.lat.n,
			Median: durString(e.lat.quantile(0.5)), P99: durString(e.lat.quantile(0.99))})
	}
	slices.SortStableFunc(v.Next, func(a, b edgeView) int { return int(b.N) - int(a.N) })
	return v
}

// nodeViews lists the traced nodes with their reports.
func (pg *page) nodeViews() []nodeView {
	var vs []nodeView
	for _, n := range pg.info.Nodes {
		v := nodeView{Title: clean(n.Netns), HasReport: n.Report != nil}
		if n.Name != "" {
			v.Title = clean(n.Name + " (" + n.Netns + ")")
		}
		if v.Title == "" {
			v.Title = "netns:" + strconv.FormatUint(uint64(n.Inode), 10)
		}
		if n.Report != nil {
			for _, s := range n.Report.Sections {
				v.Sections = append(v.Sections, doctor.Section{ID: s.ID, Title: clean(s.Title), Items: cleanItems(s.Items)})
				for _, it := range s.Items {
					if it.Status == doctor.StatusWarn || it.Status == doctor.StatusBad {
						v.Notable = append(v.Notable, cleanItems([]doctor.Item{it})...)
					}
				}
			}
		}
		vs = append(vs, v)
	}
	return vs
}

// appendData appends the packets and what the script needs to show them,
// as JSON safe inside a <script> element: one packet per line, strings
// numbered once.
func (pg *page) appendData(b []byte) []byte {
	b = append(b, "{\"kinds\":{"...)
	for i, d := range hop.Kinds() {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, d.Kind.String())
		b = append(b, ':')
		b = appendJSONString(b, className(d.Class))
	}
	b = append(b, "},\n\"ns\":["...)
	for i, n := range pg.ns {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendJSONString(b, clean(n.name))
		if l := pg.info.Names[n.name]; l != "" {
			b = append(b, `,"label":`...)
			b = appendJSONString(b, clean(l))
		}
		if n.node {
			b = append(b, `,"node":true`...)
		}
		b = append(b, '}')
	}
	b = append(b, "],\n\"points\":["...)
	for i, pt := range pg.points {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, clean(pg.pointTitle(pt)))
	}
	b = append(b, "],\n\"omitted\":"...)
	b = strconv.AppendInt(b, int64(pg.omitted), 10)
	b = append(b, ",\n\"packets\":["...)
	for i, k := range pg.packets {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '\n')
		b = pg.appendPacketJSON(b, k)
	}
	b = append(b, "],\n\"strings\":["...)
	for i, s := range pg.strs.strs {
		if i > 0 {
			b = append(b, ',')
		}
		if i%16 == 0 {
			b = append(b, '\n')
		}
		b = appendJSONString(b, s)
	}
	b = append(b, "]}"...)
	// '<' only occurs inside strings: escaped, no "</script>" can end the
	// element early.
	return bytes.ReplaceAll(b, []byte("<"), []byte(`\u003c`))
}

func className(c hop.Class) string {
	switch c {
	case hop.ClassDevice:
		return "device"
	case hop.ClassNetfilter:
		return "netfilter"
	case hop.ClassNAT:
		return "nat"
	case hop.ClassTunnel:
		return "tunnel"
	case hop.ClassDrop:
		return "drop"
	case hop.ClassConsume:
		return "consume"
	}
	return "other"
}

func (pg *page) appendPacketJSON(b []byte, k *packet) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, k.id, 10)
	b = append(b, `,"start":"`...)
	b = k.start.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","proto":"`...)
	b = appendProto(b, k.proto)
	b = append(b, `","src":"`...)
	b = appendEndpoint(b, k.src, k.proto)
	b = append(b, `","dst":"`...)
	b = appendEndpoint(b, k.dst, k.proto)
	b = append(b, '"')
	if k.proto == protoTCP && k.flags != 0 {
		b = append(b, `,"flags":"`...)
		b = appendTCPFlags(b, k.flags)
		b = append(b, '"')
	}
	if k.len != 0 {
		b = append(b, `,"len":`...)
		b = strconv.AppendUint(b, uint64(k.len), 10)
	}
	for _, e := range [...]struct {
		key string
		ap  netip.AddrPort
	}{{`,"src_name":`, k.src}, {`,"dst_name":`, k.dst}} {
		if name := pg.info.AddrNames[e.ap.Addr()]; name != "" {
			b = append(b, e.key...)
			b = appendJSONString(b, clean(name))
		}
	}
	b = append(b, `,"verdict":`...)
	b = appendJSONString(b, string(k.verdict))
	b = append(b, `,"total":`...)
	b = strconv.AppendInt(b, int64(k.total), 10)
	b = append(b, `,"from":`...)
	b = strconv.AppendInt(b, int64(k.fromNS), 10)
	b = append(b, `,"to":`...)
	b = strconv.AppendInt(b, int64(k.toNS), 10)
	if k.reply != 0 {
		b = append(b, `,"reply":`...)
		b = strconv.AppendUint(b, k.reply, 10)
	}
	if k.request != 0 {
		b = append(b, `,"request":`...)
		b = strconv.AppendUint(b, k.request, 10)
	}
	if k.clipped {
		b = append(b, `,"clipped":true`...)
	}
	if len(k.warnings) > 0 {
		b = append(b, `,"warnings":[`...)
		for i, w := range k.warnings {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, w)
		}
		b = append(b, ']')
	}
	if len(k.advice) > 0 {
		b = append(b, `,"advice":[`...)
		for i, a := range k.advice {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '[')
			b = strconv.AppendInt(b, int64(a.hop), 10)
			b = append(b, ',')
			b = appendJSONString(b, a.text)
			b = append(b, ']')
		}
		b = append(b, ']')
	}
	// Hops: [t_ns, kind, dev, netns, what, point]; kind, dev and what
	// number strings, netns a namespace (-1: unknown).
	b = append(b, `,"hops":[`...)
	for i, h := range k.hops {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = strconv.AppendInt(b, int64(h.t), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(pg.strs.add(h.kind.String())), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(h.dev), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(h.ns), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(h.what), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(h.point), 10)
		b = append(b, ']')
	}
	return append(b, "]}"...)
}
