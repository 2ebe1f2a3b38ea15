package render

import (
	"cmp"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// page is what the HTML report and the SVG picture are drawn from: the map
// of the trace (namespaces, the points in them where hops happened, the
// edges packets took between points) and, for the report, the packets. It
// keeps no stitch.Path: each path is turned into the page's own data as it
// is added, so a live trace can reuse the path's memory.
type page struct {
	info      TraceInfo
	described bool // DescribeTrace was called
	ns        []*pageNS
	nsBy      map[string]int
	points    []*point
	pointBy   map[pointKey]int
	edges     []*edge
	edgeBy    map[[2]int]int

	// keep says whether packets are kept (the report's table) and how
	// many at most; the map counts every packet.
	keep    bool
	max     int
	packets []*packet
	omitted int // packets not kept, beyond max
	strs    interner

	count    int                    // packets added
	verdicts map[stitch.Verdict]int // packets by verdict

	// Scratch, reused between paths.
	hopPoint []int
	tmp      []byte
}

func newPage(keepPackets bool, max int) *page {
	return &page{
		nsBy:     map[string]int{},
		pointBy:  map[pointKey]int{},
		edgeBy:   map[[2]int]int{},
		keep:     keepPackets,
		max:      max,
		verdicts: map[stitch.Verdict]int{},
		strs:     interner{index: map[string]int{}},
	}
}

// order is where something was first seen: the packet's ID and the hop's
// index in it. Ordering by it makes the map the same whatever order paths
// were rendered in.
type order struct {
	id  uint64
	hop int
}

func (o order) less(p order) bool { return o.id < p.id || o.id == p.id && o.hop < p.hop }

func (o *order) see(p order) {
	if o.id == 0 || p.less(*o) {
		*o = p
	}
}

// pageNS is a network namespace seen in the paths.
type pageNS struct {
	name  string // as the paths name it; "-" when they do not
	inode uint32
	first order
	// node: a traced node (from TraceInfo, or netfilter hooks seen in it:
	// pathtrace attaches them only to nodes).
	node bool
	// adj counts the hops that went between this namespace and another,
	// to place a pod's namespace on the node it is attached to.
	adj map[int]int
}

// pointKey identifies a point: a device of a namespace, or a netfilter hook
// as a packet passed it at a device (PREROUTING at cni0 is not PREROUTING
// at eth0: other rules match, and the picture reads along the devices).
type pointKey struct {
	ns   int
	dev  string
	hook hop.Hook // hop.NoHook for the device itself
}

// markKind is something that happened at a point that the map marks.
type markKind uint8

const (
	markNAT markKind = iota
	markIPVS
	markTable
	markTunnel
	markBridge
	markDrop
	markConsume
)

type mark struct {
	kind markKind
	text string
	bad  bool // a drop, a verdict other than accept
}

// point is a box of the map.
type point struct {
	key     pointKey
	first   order
	packets int    // packets that passed it
	last    uint64 // the ID of the last packet counted
	marks   map[mark]int
}

// edge is an arrow of the map: packets that went from one point to the
// next, with the time it took them (from the first hop at from to the first
// hop at to, the sum of the deltas in the text timeline).
type edge struct {
	from, to int
	first    order
	lat      latency
}

// packet is one path as the report's table and timeline show it.
type packet struct {
	id       uint64
	start    time.Time
	proto    uint8
	src, dst netip.AddrPort
	flags    uint8
	len      uint32
	verdict  stitch.Verdict
	total    time.Duration
	clipped  bool
	hops     []pageHop
	warnings []string
	advice   []hopText
	fromNS   int // namespace of the first hop, -1 when unknown
	toNS     int // of the last hop
	// The tuple as first and as last seen, to pair requests and replies.
	last      tuple
	reply     uint64 // the first packet the other way after this one
	request   uint64 // the last packet this one answers
	replyDone bool
}

type tuple struct {
	proto    uint8
	src, dst netip.AddrPort
}

func (t tuple) reverse() tuple { return tuple{t.proto, t.dst, t.src} }

// pageHop is one hop of a kept packet: strings are interned.
type pageHop struct {
	t     time.Duration
	kind  hop.Kind
	dev   int // string index
	what  int // string index
	ns    int // namespace index, -1 when unknown
	point int // point index
}

type hopText struct {
	hop  int
	text string
}

// clean makes s safe to show as appendText does: control characters,
// non-printable runes and invalid UTF-8 escaped, line breaks kept.
func clean(s string) string {
	var b []byte
	for i, line := range strings.Split(s, "\n") {
		if i > 0 {
			b = append(b, '\n')
		}
		b = appendText(b, line)
	}
	return string(b)
}

func cleanAll(ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = clean(s)
	}
	return out
}

// interner numbers strings, so that the many hops with the same device or
// the same "PREROUTING in=cni0 out=-" carry a number.
type interner struct {
	index map[string]int
	strs  []string
}

func (in *interner) bytes(b []byte) int {
	if i, ok := in.index[string(b)]; ok {
		return i
	}
	return in.add(string(b))
}

func (in *interner) add(s string) int {
	if i, ok := in.index[s]; ok {
		return i
	}
	in.index[s] = len(in.strs)
	in.strs = append(in.strs, s)
	return len(in.strs) - 1
}

// describe sets what the trace says of itself; nodes it names are nodes
// even where no netfilter hop was seen.
func (pg *page) describe(info TraceInfo) {
	pg.info, pg.described = info, true
	for _, n := range info.Nodes {
		if n.Netns != "" {
			pg.ns[pg.nsIndex(n.Netns, n.Inode, order{})].node = true
		}
	}
}

// node returns the trace's node info of a namespace, or nil.
func (pg *page) node(ns *pageNS) *NodeInfo {
	for i := range pg.info.Nodes {
		n := &pg.info.Nodes[i]
		if n.Netns == ns.name || ns.inode != 0 && n.Inode == ns.inode && n.Netns == "" {
			return n
		}
	}
	return nil
}

func (pg *page) nsIndex(name string, inode uint32, at order) int {
	if name == "" {
		name = "-"
	}
	i, ok := pg.nsBy[name]
	if !ok {
		i = len(pg.ns)
		pg.nsBy[name] = i
		pg.ns = append(pg.ns, &pageNS{name: name, inode: inode, adj: map[int]int{}})
	}
	n := pg.ns[i]
	if n.inode == 0 {
		n.inode = inode
	}
	if at.id != 0 {
		n.first.see(at)
	}
	return i
}

func (pg *page) pointIndex(k pointKey, at order) int {
	i, ok := pg.pointBy[k]
	if !ok {
		i = len(pg.points)
		pg.pointBy[k] = i
		pg.points = append(pg.points, &point{key: k, marks: map[mark]int{}})
	}
	pg.points[i].first.see(at)
	return i
}

// inHook says whether a hop happened inside a netfilter hook.
func inHook(h *stitch.Hop) bool {
	switch h.Kind {
	case hop.Netfilter:
		return true
	case hop.NAT, hop.Table, hop.IPVS:
		return h.Hook != hop.NoHook
	}
	return false
}

// add turns one path into the map's counts and, when packets are kept, a
// packet of the table.
func (pg *page) add(p *stitch.Path) {
	if l := p.Late; l != nil && pg.verdicts[verdictOrUnknown(l.Verdict)] > 0 {
		// The end of a packet counted before: its verdict changes.
		pg.verdicts[verdictOrUnknown(l.Verdict)]--
	} else {
		pg.count++
	}
	pg.verdicts[verdictOrUnknown(p.Verdict)]++
	pg.hopPoint = pg.hopPoint[:0]
	prevNS, prevPoint := -1, -1
	for i := range p.Hops {
		h := &p.Hops[i]
		at := order{p.ID, i}
		ns := prevNS
		if h.Netns != "" || prevNS < 0 {
			ns = pg.nsIndex(h.Netns, h.NetnsInode, at)
		}
		if prevNS >= 0 && ns != prevNS {
			pg.ns[ns].adj[prevNS]++
			pg.ns[prevNS].adj[ns]++
		}
		if inHook(h) {
			pg.ns[ns].node = true
		}
		pt := pg.pointOf(p, i, ns, prevNS, prevPoint, at)
		pg.hopPoint = append(pg.hopPoint, pt)
		pg.markHop(p, i, pt)
		prevNS, prevPoint = ns, pt
	}
	// Count packets per point and the edges between runs of hops at one
	// point.
	runStart := 0
	for i, pt := range pg.hopPoint {
		po := pg.points[pt]
		if po.last != p.ID || po.packets == 0 {
			po.packets++
			po.last = p.ID
		}
		if i == 0 || pt == pg.hopPoint[i-1] {
			continue
		}
		from := pg.hopPoint[i-1]
		e := pg.edgeIndex(from, pt, order{p.ID, i})
		e.lat.add(p.Hops[i].T - p.Hops[runStart].T)
		runStart = i
	}
	if !pg.keep {
		return
	}
	if pg.max > 0 && len(pg.packets) >= pg.max {
		pg.omitted++
		return
	}
	pg.packets = append(pg.packets, pg.packetOf(p))
}

func (pg *page) edgeIndex(from, to int, at order) *edge {
	k := [2]int{from, to}
	i, ok := pg.edgeBy[k]
	if !ok {
		i = len(pg.edges)
		pg.edgeBy[k] = i
		pg.edges = append(pg.edges, &edge{from: from, to: to})
	}
	e := pg.edges[i]
	e.first.see(at)
	return e
}

// pointOf says at which point hop i happened: a hook hop at its hook (a
// NAT, table or IPVS hop inside the hook of the hop before at that hook),
// a drop or consume hop where the packet was (a drop inside a hook at the
// hook), anything else at its device.
func (pg *page) pointOf(p *stitch.Path, i, ns, prevNS, prevPoint int, at order) int {
	h := &p.Hops[i]
	var prev *point
	if prevPoint >= 0 && prevNS == ns {
		prev = pg.points[prevPoint]
	}
	switch h.Kind {
	case hop.Netfilter:
		return pg.pointIndex(pointKey{ns, h.Dev, h.Hook}, at)
	case hop.NAT, hop.Table, hop.IPVS:
		if h.Hook == hop.NoHook && prev != nil {
			return prevPoint
		}
		if prev != nil && prev.key.hook == h.Hook {
			return prevPoint
		}
		if h.Hook != hop.NoHook {
			return pg.pointIndex(pointKey{ns, h.Dev, h.Hook}, at)
		}
	case hop.Drop, hop.Consume:
		// Where the hop before was, unless the hop names another device,
		// or a drop came after the hook before had accepted the packet
		// (it died after it, at its device).
		if prev == nil || h.Kind == hop.Drop && prev.key.hook != hop.NoHook && h.Dev != "" && p.DropHook(i) != prev.key.hook {
			break
		}
		if h.Dev == "" || prev.key.hook != hop.NoHook || prev.key.dev == h.Dev {
			return prevPoint
		}
	}
	return pg.pointIndex(pointKey{ns, h.Dev, hop.NoHook}, at)
}

// markHop marks at the hop's point what the map shows of it.
func (pg *page) markHop(p *stitch.Path, i, pt int) {
	h := &p.Hops[i]
	var m mark
	b := pg.tmp[:0]
	switch h.Kind {
	case hop.NAT:
		m.kind = markNAT
		if h.NAT != nil {
			b = appendNAT(b, h.NAT, hopProto(p, h), h.HasICMPID)
		} else {
			b = append(b, "NAT"...)
		}
	case hop.IPVS:
		m.kind = markIPVS
		if v := h.IPVS; v != nil && v.Verdict != hop.NoVerdict {
			b = append(b, "IPVS verdict "...)
			b = appendText(b, v.Verdict.String())
			m.bad = v.Verdict != hop.VerdictAccept
		} else if v != nil {
			b = plain.appendIPVS(b, v)
		} else {
			b = append(b, "IPVS"...)
		}
	case hop.Table:
		if h.Table == nil {
			return
		}
		m.kind = markTable
		b = plain.appendTable(b, h.Table)
		m.bad = h.Table.Verdict != hop.VerdictAccept
	case hop.Encap, hop.Decap:
		m.kind = markTunnel
		if h.Outer != nil {
			b = appendUpper(b, h.Outer.Tunnel.String())
			if h.Outer.Tunnel.HasVNI() {
				b = append(b, " vni="...)
				b = strconv.AppendUint(b, uint64(h.Outer.VNI), 10)
			}
		} else {
			b = append(b, "tunnel"...)
		}
	case hop.Bridge:
		m.kind = markBridge
		if br := h.Bridge; br != nil {
			b = append(b, "bridged "...)
			b = appendTextOr(b, br.In)
			b = append(b, " → "...)
			b = appendTextOr(b, br.Out)
		} else {
			b = append(b, "bridged"...)
		}
	case hop.Drop:
		m.kind, m.bad = markDrop, true
		b = append(b, "drop"...)
		b = appendReason(b, h)
		if h.LastSeen {
			b = append(b, " (no device from the kernel: where last seen)"...)
		}
	case hop.Consume:
		m.kind = markConsume
		b = append(b, "delivered"...)
	default:
		return
	}
	pg.tmp = b
	m.text = string(b)
	pg.points[pt].marks[m]++
}

// appendReason appends " NAME" of a drop's reason, " #code" without a name.
func appendReason(b []byte, h *stitch.Hop) []byte {
	if h.Reason != "" {
		b = append(b, ' ')
		return appendText(b, h.Reason)
	}
	if h.ReasonCode != 0 {
		b = append(b, " #"...)
		return strconv.AppendUint(b, uint64(h.ReasonCode), 10)
	}
	return b
}

// packetOf makes the table's packet of a path.
func (pg *page) packetOf(p *stitch.Path) *packet {
	k := &packet{
		id: p.ID, start: p.Start, proto: p.Proto, src: p.Src, dst: p.Dst, flags: p.TCPFlags,
		len: p.Len, verdict: verdictOrUnknown(p.Verdict), clipped: p.Clipped,
		fromNS: -1, toNS: -1,
		warnings: cleanAll(p.Warnings),
		hops:     make([]pageHop, len(p.Hops)),
		last:     tuple{p.Proto, p.Src, p.Dst},
	}
	ns := -1
	for i := range p.Hops {
		h := &p.Hops[i]
		if h.Netns != "" {
			ns = pg.nsBy[h.Netns]
		}
		if h.Src.Addr().IsValid() && h.Kind != hop.Drop && h.Kind != hop.Consume {
			k.last = tuple{hopProto(p, h), h.Src, h.Dst}
		}
		pg.tmp = appendHopWhat(pg.tmp[:0], p, i)
		k.hops[i] = pageHop{
			t: h.T, kind: h.Kind, ns: ns, point: pg.hopPoint[i],
			what: pg.strs.bytes(pg.tmp),
		}
		pg.tmp = appendText(pg.tmp[:0], h.Dev)
		k.hops[i].dev = pg.strs.bytes(pg.tmp)
		if h.Advice != "" {
			k.advice = append(k.advice, hopText{i, clean(h.Advice)})
		}
		if k.fromNS < 0 {
			k.fromNS = ns
		}
		k.toNS = ns
	}
	if n := len(p.Hops); n > 0 {
		k.total = p.Hops[n-1].T
	}
	return k
}

// finish sorts the packets by ID, numbers namespaces, points, edges and
// strings in the order the packets first reached them (so the page is the
// same whatever order the paths came in), and pairs each packet with its
// reply: the first packet after it whose tuple, as first seen, is its own as
// last seen (after NAT) the other way round, or as first seen.
func (pg *page) finish() {
	slices.SortFunc(pg.packets, func(a, b *packet) int { return cmp.Compare(a.id, b.id) })
	pg.renumber()
	waiting := map[tuple][]*packet{} // packets waiting for a reply, by the tuple a reply has
	for _, k := range pg.packets {
		first := tuple{k.proto, k.src, k.dst}
		if ws := waiting[first]; len(ws) > 0 {
			k.request = ws[len(ws)-1].id
			for _, w := range ws {
				if !w.replyDone {
					w.reply, w.replyDone = k.id, true
				}
			}
			delete(waiting, first)
		}
		waiting[k.last.reverse()] = append(waiting[k.last.reverse()], k)
		if rf := first.reverse(); rf != k.last.reverse() {
			waiting[rf] = append(waiting[rf], k)
		}
	}
}

// renumber puts namespaces, points and edges in the order they were first
// seen, and strings in the order the sorted packets use them.
func (pg *page) renumber() {
	firstCmp := func(a, b order) int {
		switch {
		case a.less(b):
			return -1
		case b.less(a):
			return 1
		}
		return 0
	}
	nsNew := perm(len(pg.ns), func(a, b int) int {
		if c := firstCmp(pg.ns[a].first, pg.ns[b].first); c != 0 {
			return c
		}
		return strings.Compare(pg.ns[a].name, pg.ns[b].name)
	})
	ns := make([]*pageNS, len(pg.ns))
	for old, n := range pg.ns {
		adj := make(map[int]int, len(n.adj))
		for k, v := range n.adj {
			adj[nsNew[k]] = v
		}
		n.adj = adj
		ns[nsNew[old]] = n
		pg.nsBy[n.name] = nsNew[old]
	}
	pg.ns = ns
	ptNew := perm(len(pg.points), func(a, b int) int { return firstCmp(pg.points[a].first, pg.points[b].first) })
	points := make([]*point, len(pg.points))
	clear(pg.pointBy)
	for old, pt := range pg.points {
		pt.key.ns = nsNew[pt.key.ns]
		points[ptNew[old]] = pt
		pg.pointBy[pt.key] = ptNew[old]
	}
	pg.points = points
	clear(pg.edgeBy)
	for _, e := range pg.edges {
		e.from, e.to = ptNew[e.from], ptNew[e.to]
	}
	slices.SortFunc(pg.edges, func(a, b *edge) int {
		if c := firstCmp(a.first, b.first); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.from, b.from), cmp.Compare(a.to, b.to))
	})
	for i, e := range pg.edges {
		pg.edgeBy[[2]int{e.from, e.to}] = i
	}
	old := pg.strs
	pg.strs = interner{index: map[string]int{}}
	for _, k := range pg.packets {
		if k.fromNS >= 0 {
			k.fromNS = nsNew[k.fromNS]
		}
		if k.toNS >= 0 {
			k.toNS = nsNew[k.toNS]
		}
		for i := range k.hops {
			h := &k.hops[i]
			if h.ns >= 0 {
				h.ns = nsNew[h.ns]
			}
			h.point = ptNew[h.point]
			h.dev = pg.strs.add(old.strs[h.dev])
			h.what = pg.strs.add(old.strs[h.what])
		}
	}
}

// perm sorts the indices 0..n-1 by cmp and returns, for each index, its
// place in that order.
func perm(n int, cmp func(a, b int) int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, cmp)
	place := make([]int, n)
	for i, old := range idx {
		place[old] = i
	}
	return place
}

// latency is a histogram of durations, exact below 256ns and within 1/128
// (0.8%) above, so that its memory does not grow with the packets of a long
// live trace.
type latency struct {
	n        uint64
	min, max time.Duration
	buckets  map[uint32]uint64
}

const latSubBits = 7

func latBucket(v uint64) uint32 {
	k := bits.Len64(v)
	if k <= latSubBits+1 {
		return uint32(v)
	}
	s := k - latSubBits - 1
	return uint32(s)<<latSubBits + uint32(v>>s)
}

// latValue is the middle of a bucket.
func latValue(b uint32) uint64 {
	if b < 1<<(latSubBits+1) {
		return uint64(b)
	}
	s := b>>latSubBits - 1
	m := uint64(b&(1<<latSubBits-1) | 1<<latSubBits)
	return m<<s + (1<<s)/2
}

func (l *latency) add(d time.Duration) {
	d = max(d, 0)
	if l.n == 0 || d < l.min {
		l.min = d
	}
	if d > l.max {
		l.max = d
	}
	l.n++
	if l.buckets == nil {
		l.buckets = map[uint32]uint64{}
	}
	l.buckets[latBucket(uint64(d))]++
}

// quantile is the q-quantile (nearest rank), clamped to the exact minimum
// and maximum.
func (l *latency) quantile(q float64) time.Duration {
	if l.n == 0 {
		return 0
	}
	rank := uint64(q*float64(l.n) + 0.999999)
	rank = min(max(rank, 1), l.n)
	keys := make([]uint32, 0, len(l.buckets))
	for k := range l.buckets {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var seen uint64
	for _, k := range keys {
		seen += l.buckets[k]
		if seen >= rank {
			return min(max(time.Duration(latValue(k)), l.min), l.max)
		}
	}
	return l.max
}
