package merge

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// Node is the paths one node's trace showed, in the order its stitcher
// emitted them, with hops that carry the node's name.
type Node struct {
	Name string
	// Paths are the node's paths as its stitcher emitted them, every one:
	// the late end of a packet (stitch.Path.Late) names the path it ends
	// by its place here, Late.Of = index + 1.
	Paths []*stitch.Path
}

// Window bounds how far apart in time (after the clock offset is applied)
// a packet's encap on one node and its decap on another may be to be taken
// for the same packet when their headers match more than one candidate.
const Window = time.Second

// key is what a packet's half shows of the packet at a tunnel's end: the
// inner packet (its signature: protocol, addresses, IP ID, TCP flags) and
// the tunnel's outer header.
type key struct {
	proto    uint8
	src, dst netip.AddrPort
	ipid     uint16
	flags    uint8
	outer    stitch.Outer
}

// end is one tunnel end of a path: where it left a node (an encap, exit)
// or reached one (a decap, entry).
type end struct {
	node int
	path int
	at   int64 // wall-clock ns on the node's own clock: the last hop (exit) or the first (entry)
}

// pair is a packet matched across a tunnel: from exit to entry.
type pair struct{ exit, entry end }

// Result is the merged trace.
type Result struct {
	// Paths are every path of every node, the matched halves joined, on
	// the first node's clock, in the order of their first hop. A late
	// end's Late.Of is the place here (index + 1) of the path it ends, 0
	// when that is not known.
	Paths []*stitch.Path
	// Clocks are the offsets of the nodes after the first, in their order.
	Clocks []stitch.Clock
	// Matched is the number of halves joined to the half before them.
	Matched int
}

// Merge joins the nodes' paths. The first node's clock is the reference.
// The paths are not modified: joined and moved paths are copies.
func Merge(nodes []Node) Result {
	pairs := match(nodes)
	off := estimate(len(nodes), pairs, nodes)
	return join(nodes, pairs, off)
}

// wall is the wall-clock time of a hop of p, in ns, on its node's clock.
func wall(p *stitch.Path, h *stitch.Hop) int64 { return p.Start.UnixNano() + int64(h.T) }

// exitKey is the key of the last encap hop of p; ok is false without one.
func exitKey(p *stitch.Path) (key, bool) {
	for i := len(p.Hops) - 1; i >= 0; i-- {
		if h := &p.Hops[i]; h.Kind == hop.Encap && h.Outer != nil {
			return keyOf(p, h), true
		}
	}
	return key{}, false
}

// entryKey is the key of the first decap hop of p, when p starts
// encapsulated (its first hop carries the outer header): the half of a
// packet that reached the node through the tunnel.
func entryKey(p *stitch.Path) (key, bool) {
	if len(p.Hops) == 0 || p.Hops[0].Outer == nil {
		return key{}, false
	}
	for i := range p.Hops {
		if h := &p.Hops[i]; h.Kind == hop.Decap && h.Outer != nil {
			return keyOf(p, h), true
		}
	}
	return key{}, false
}

func keyOf(p *stitch.Path, h *stitch.Hop) key {
	return key{proto: h.Proto, src: h.Src, dst: h.Dst, ipid: p.IPID, flags: h.TCPFlags, outer: *h.Outer}
}

// match pairs each exit with an entry of the same key on another node: a
// key seen once each way first, then, for keys seen more often (a
// retransmission, a protocol without IP IDs), the nearest entry in time
// after the offsets the unique pairs give, within Window.
func match(nodes []Node) []pair {
	exits := map[key][]end{}
	entries := map[key][]end{}
	var order []key // of the exits' keys, first seen first: deterministic
	for n := range nodes {
		for i, p := range nodes[n].Paths {
			if len(p.Hops) == 0 {
				continue
			}
			if k, ok := exitKey(p); ok {
				if _, seen := exits[k]; !seen {
					order = append(order, k)
				}
				exits[k] = append(exits[k], end{n, i, wall(p, &p.Hops[len(p.Hops)-1])})
			}
			if k, ok := entryKey(p); ok {
				entries[k] = append(entries[k], end{n, i, wall(p, &p.Hops[0])})
			}
		}
	}
	var pairs []pair
	var ambiguous []key
	for _, k := range order {
		x, e := exits[k], entries[k]
		switch {
		case len(e) == 0:
		case len(x) == 1 && len(e) == 1 && x[0].node != e[0].node:
			pairs = append(pairs, pair{x[0], e[0]})
		default:
			ambiguous = append(ambiguous, k)
		}
	}
	if len(ambiguous) == 0 {
		return pairs
	}
	off := estimate(len(nodes), pairs, nodes)
	used := map[end]bool{}
	for _, k := range ambiguous {
		for _, x := range exits[k] {
			best, bestD := -1, int64(Window)+1
			for j, e := range entries[k] {
				if e.node == x.node || used[e] {
					continue
				}
				// The one-way delay on the first node's clock.
				d := (e.at - int64(off[e.node].Offset)) - (x.at - int64(off[x.node].Offset))
				if d < 0 {
					d = -d
				}
				if d < bestD {
					best, bestD = j, d
				}
			}
			if best >= 0 {
				used[entries[k][best]] = true
				pairs = append(pairs, pair{x, entries[k][best]})
			}
		}
	}
	return pairs
}

// link is what the matched packets tell of the clock of node b relative
// to node a: the smallest one-way delay each way, measured on the two
// clocks (b's receive minus a's send, a's receive minus b's send).
type link struct {
	ab, ba   int64
	hasAB    bool
	hasBA    bool
	nab, nba int
}

// estimate computes each node's clock offset relative to node 0, NTP's
// way with minimum-delay filtering: over the packets from a to b, the
// smallest receive-minus-send d_ab is the shortest delay plus the offset θ
// of b; from b to a, d_ba is the shortest delay less θ. Both delays are
// at least 0, so θ lies in [-d_ba, d_ab]: its middle (d_ab - d_ba)/2 is the
// estimate, exact when the shortest delays are equal both ways, and half
// its width (d_ab + d_ba)/2 the uncertainty, which holds whatever the
// delays. A node matched one way only gets the offset nearest 0 that keeps
// every matched packet's delay at least 0, unknown. A node matched with
// another than node 0 gets the sum of the offsets along the way (the
// uncertainties add up). A node matched with none keeps offset 0.
func estimate(n int, pairs []pair, nodes []Node) []stitch.Clock {
	links := map[[2]int]*link{}
	get := func(a, b int) *link {
		l := links[[2]int{a, b}]
		if l == nil {
			l = &link{}
			links[[2]int{a, b}] = l
		}
		return l
	}
	for _, p := range pairs {
		a, b := p.exit.node, p.entry.node
		d := p.entry.at - p.exit.at
		if a < b {
			l := get(a, b)
			if !l.hasAB || d < l.ab {
				l.ab = d
			}
			l.hasAB = true
			l.nab++
		} else {
			l := get(b, a)
			if !l.hasBA || d < l.ba {
				l.ba = d
			}
			l.hasBA = true
			l.nba++
		}
	}
	// edge is the offset of b relative to a for a < b, from link l.
	edge := func(l *link) stitch.Clock {
		c := stitch.Clock{Pairs: l.nab + l.nba}
		switch {
		case l.hasAB && l.hasBA:
			c.Offset = time.Duration((l.ab - l.ba) / 2)
			c.Uncertainty = time.Duration((l.ab + l.ba + 1) / 2)
			c.Known = true
		case l.hasAB:
			c.Offset = time.Duration(min(0, l.ab)) // θ ≤ d_ab
		case l.hasBA:
			c.Offset = time.Duration(max(0, -l.ba)) // θ ≥ -d_ba
		}
		return c
	}
	clocks := make([]stitch.Clock, n)
	done := make([]bool, n)
	if n > 0 {
		done[0] = true
	}
	for i := range clocks {
		if i < len(nodes) {
			clocks[i].Node = nodes[i].Name
		}
	}
	// Grow the set of placed nodes from node 0: each round places the
	// node reached by the best edge, two-way edges before one-way ones,
	// then the smallest uncertainty.
	for {
		best := -1
		var bestC stitch.Clock
		better := func(c stitch.Clock) bool {
			if best < 0 || c.Known != bestC.Known {
				return best < 0 || c.Known
			}
			return c.Uncertainty < bestC.Uncertainty
		}
		for ab, l := range sortedLinks(links) {
			a, b := ab[0], ab[1]
			var from, to int
			switch {
			case done[a] && !done[b]:
				from, to = a, b
			case done[b] && !done[a]:
				from, to = b, a
			default:
				continue
			}
			e := edge(l)
			if from == b { // the offset of a relative to b
				e.Offset = -e.Offset
			}
			c := stitch.Clock{
				Node:        clocks[to].Node,
				Offset:      clocks[from].Offset + e.Offset,
				Uncertainty: clocks[from].Uncertainty + e.Uncertainty,
				Known:       e.Known && (from == 0 || clocks[from].Known),
				Pairs:       e.Pairs,
			}
			if better(c) {
				best, bestC = to, c
			}
		}
		if best < 0 {
			break
		}
		clocks[best] = bestC
		done[best] = true
	}
	return clocks
}

// sortedLinks returns the links in the order of their node pairs, so that
// ties are broken the same way on every run.
func sortedLinks(links map[[2]int]*link) func(func([2]int, *link) bool) {
	keys := make([][2]int, 0, len(links))
	for k := range links {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y [2]int) int {
		return cmp.Or(cmp.Compare(x[0], y[0]), cmp.Compare(x[1], y[1]))
	})
	return func(yield func([2]int, *link) bool) {
		for _, k := range keys {
			if !yield(k, links[k]) {
				return
			}
		}
	}
}

// join makes the merged paths: each chain of matched halves one path, on
// node 0's clock; every other path moved to node 0's clock.
func join(nodes []Node, pairs []pair, clocks []stitch.Clock) Result {
	type ref struct{ node, path int }
	next := map[ref]ref{}
	hasPrev := map[ref]bool{}
	for _, p := range pairs {
		x, e := ref{p.exit.node, p.exit.path}, ref{p.entry.node, p.entry.path}
		if _, ok := next[x]; ok || hasPrev[e] {
			continue
		}
		next[x] = e
		hasPrev[e] = true
	}
	type out struct {
		p     *stitch.Path
		start int64
		node  int
		idx   int
		chain []ref // the halves joined after the first
	}
	var res Result
	var all []out
	for n := range nodes {
		for i, p := range nodes[n].Paths {
			r := ref{n, i}
			if hasPrev[r] {
				continue // joined to the half before it
			}
			m := moved(p, clocks[n].Offset)
			// The nodes the chain crosses; a chain may come back to a
			// node (a packet hairpinned through another), never to a
			// half (which would be a loop).
			on := map[int]bool{n: true}
			seen := map[ref]bool{r: true}
			var chain []ref
			for c, ok := next[r]; ok && !seen[c]; c, ok = next[c] {
				appendHalf(m, nodes[c.node].Paths[c.path], clocks[c.node].Offset)
				on[c.node], seen[c] = true, true
				chain = append(chain, c)
				res.Matched++
			}
			for node := range len(nodes) {
				if node != 0 && on[node] {
					m.Clocks = append(m.Clocks, clocks[node])
				}
			}
			all = append(all, out{m, m.Start.UnixNano(), n, i, chain})
		}
	}
	slices.SortStableFunc(all, func(a, b out) int {
		return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(a.node, b.node), cmp.Compare(a.idx, b.idx))
	})
	res.Paths = make([]*stitch.Path, len(all))
	at := make(map[ref]int, len(all)) // where each half went
	for i, o := range all {
		res.Paths[i] = o.p
		at[ref{o.node, o.idx}] = i
		for _, c := range o.chain {
			at[c] = i
		}
	}
	for _, o := range all {
		if l := o.p.Late; l != nil {
			// The path it ends, by its place on its node, then here.
			i, ok := at[ref{o.node, int(l.Of) - 1}]
			l.Of = 0
			if ok {
				l.Of = uint64(i + 1)
			}
		}
	}
	res.Clocks = clocks[min(1, len(clocks)):]
	return res
}

// moved is a copy of p on node 0's clock: p's node reads offset ahead.
func moved(p *stitch.Path, offset time.Duration) *stitch.Path {
	m := p.Clone()
	m.Start = m.Start.Add(-offset)
	return m
}

// appendHalf appends the hops of h, a half of m's packet on a node whose
// clock reads offset ahead of node 0's, with times on m's clock; m's
// verdict becomes h's, the later half's. m shares nothing with h.
func appendHalf(m, h *stitch.Path, offset time.Duration) {
	h = h.Clone()
	base := h.Start.Add(-offset).Sub(m.Start)
	for _, c := range h.Hops {
		c.T = base + c.T
		if n := len(m.Hops); n > 0 {
			c.Delta = c.T - m.Hops[n-1].T
		} else {
			c.Delta = c.T
		}
		m.Hops = append(m.Hops, c)
	}
	m.Verdict = h.Verdict
	m.Events += h.Events
	m.Clipped = m.Clipped || h.Clipped
	m.Warnings = append(m.Warnings, h.Warnings...)
}
