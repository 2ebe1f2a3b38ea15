package merge

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

var (
	clientAddr = netip.MustParseAddrPort("10.244.1.5:40000")
	serverAddr = netip.MustParseAddrPort("10.244.2.7:8080")
	under1     = netip.MustParseAddr("192.168.50.11")
	under2     = netip.MustParseAddr("192.168.50.12")
	epoch      = time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
)

func outer(src, dst netip.Addr) *stitch.Outer {
	return &stitch.Outer{Tunnel: hop.TunnelVXLAN, Src: src, Dst: dst, DPort: 8472, VNI: 1}
}

// sender is a node's half of a packet it sends through the tunnel: from
// the pod to the underlay, starting at start (the node's clock), each hop
// step after the one before.
func sender(node string, start time.Time, ipid uint16, flags uint8, src, dst netip.AddrPort, o *stitch.Outer, step time.Duration) *stitch.Path {
	return half(node, start, ipid, flags, src, dst, o, step, stitch.VerdictForwarded,
		[]hop.Kind{hop.Tx, hop.Rx, hop.Encap, hop.Tx}, func(i int) bool { return i >= 2 })
}

// receiver is the other node's half: from the underlay to the pod.
func receiver(node string, start time.Time, ipid uint16, flags uint8, src, dst netip.AddrPort, o *stitch.Outer, step time.Duration) *stitch.Path {
	return half(node, start, ipid, flags, src, dst, o, step, stitch.VerdictDelivered,
		[]hop.Kind{hop.Rx, hop.Decap, hop.Tx, hop.Rx}, func(i int) bool { return i < 2 })
}

// half is a path of hops of kinds, the ones where outer says carrying o.
func half(node string, start time.Time, ipid uint16, flags uint8, src, dst netip.AddrPort, o *stitch.Outer, step time.Duration,
	v stitch.Verdict, kinds []hop.Kind, outer func(int) bool) *stitch.Path {
	p := &stitch.Path{Start: start, Proto: 6, Src: src, Dst: dst, IPID: ipid, TCPFlags: flags, Verdict: v, Events: len(kinds)}
	for i, k := range kinds {
		h := stitch.Hop{T: time.Duration(i) * step, Kind: k, Node: node, Netns: node, Proto: 6, Src: src, Dst: dst, TCPFlags: flags}
		if i > 0 {
			h.Delta = step
		}
		if outer(i) {
			o := *o
			h.Outer = &o
		}
		p.Hops = append(p.Hops, h)
	}
	return p
}

// exchange makes n request/reply exchanges between node1 and node2, node2's
// clock reading offset ahead, with one-way delays delay(i) on the underlay.
func exchange(n int, offset time.Duration, there, back func(i int) time.Duration) (a, b Node) {
	a, b = Node{Name: "node1"}, Node{Name: "node2"}
	const step = 10 * time.Microsecond
	for i := range n {
		t := epoch.Add(time.Duration(i) * 10 * time.Millisecond)
		ipid := uint16(100 + i)
		req := sender("node1", t, ipid, 0x02, clientAddr, serverAddr, outer(under1, under2), step)
		arrive := t.Add(3*step + there(i))
		a.Paths = append(a.Paths, req)
		b.Paths = append(b.Paths, receiver("node2", arrive.Add(offset), ipid, 0x02, clientAddr, serverAddr, outer(under1, under2), step))
		replyAt := arrive.Add(100 * time.Microsecond)
		b.Paths = append(b.Paths, sender("node2", replyAt.Add(offset), ipid+1000, 0x12, serverAddr, clientAddr, outer(under2, under1), step))
		a.Paths = append(a.Paths, receiver("node1", replyAt.Add(3*step+back(i)), ipid+1000, 0x12, serverAddr, clientAddr, outer(under2, under1), step))
	}
	return a, b
}

func TestMergeRecoversOffset(t *testing.T) {
	const offset = 1234567 * time.Microsecond
	// Queueing adds to some packets' delays; the shortest are equal both
	// ways (30µs).
	there := func(i int) time.Duration { return 30*time.Microsecond + time.Duration(i%3)*50*time.Microsecond }
	back := func(i int) time.Duration { return 30*time.Microsecond + time.Duration(i%4)*70*time.Microsecond }
	a, b := exchange(8, offset, there, back)
	res := Merge([]Node{a, b})
	if len(res.Clocks) != 1 {
		t.Fatalf("clocks %+v, want node2's", res.Clocks)
	}
	c := res.Clocks[0]
	if !c.Known || c.Node != "node2" || c.Pairs != 16 {
		t.Fatalf("clock %+v, want node2's, known, from 16 packets", c)
	}
	if d := (c.Offset - offset).Abs(); d > c.Uncertainty {
		t.Errorf("offset %v ± %v, true %v", c.Offset, c.Uncertainty, offset)
	}
	if c.Offset != offset || c.Uncertainty != 30*time.Microsecond {
		t.Errorf("offset %v ± %v, want exactly %v ± 30µs (symmetric shortest delays)", c.Offset, c.Uncertainty, offset)
	}
	if len(res.Paths) != 16 || res.Matched != 16 {
		t.Fatalf("%d paths, %d halves joined; want 16 paths of 2 halves", len(res.Paths), res.Matched)
	}
	for i, p := range res.Paths {
		if len(p.Hops) != 8 || p.Verdict != stitch.VerdictDelivered {
			t.Fatalf("path %d: %d hops, verdict %s; want 8, delivered", i, len(p.Hops), p.Verdict)
		}
		if p.Hops[3].Node == p.Hops[4].Node {
			t.Errorf("path %d: hops 4 and 5 on one node %s", i, p.Hops[3].Node)
		}
		for j := 1; j < len(p.Hops); j++ {
			if p.Hops[j].T < p.Hops[j-1].T || p.Hops[j].Delta != p.Hops[j].T-p.Hops[j-1].T {
				t.Errorf("path %d hop %d: t %v delta %v after t %v", i, j, p.Hops[j].T, p.Hops[j].Delta, p.Hops[j-1].T)
			}
		}
		if len(p.Clocks) != 1 || p.Clocks[0] != c {
			t.Errorf("path %d clocks %+v, want %+v", i, p.Clocks, c)
		}
		if i > 0 && p.Start.Before(res.Paths[i-1].Start) {
			t.Errorf("path %d starts before path %d", i, i-1)
		}
	}
	// The request's half on node2 starts, on node1's clock, at the
	// one-way delay after the last hop on node1.
	req := res.Paths[0]
	if got := req.Hops[4].Delta; got != 30*time.Microsecond {
		t.Errorf("first request's underlay delay %v, want 30µs", got)
	}
	if req.Src != clientAddr || req.Start != epoch {
		t.Errorf("first path %s at %v, want the request at %v", req.Src, req.Start, epoch)
	}
}

// Asymmetric delays move the estimate off the truth, but never past its
// uncertainty.
func TestMergeAsymmetric(t *testing.T) {
	const offset = -5 * time.Millisecond
	a, b := exchange(4, offset,
		func(int) time.Duration { return 200 * time.Microsecond },
		func(int) time.Duration { return 20 * time.Microsecond })
	c := Merge([]Node{a, b}).Clocks[0]
	if !c.Known || (c.Offset-offset).Abs() > c.Uncertainty {
		t.Errorf("offset %v ± %v, true %v", c.Offset, c.Uncertainty, offset)
	}
	if c.Offset == offset {
		t.Errorf("offset %v exact with asymmetric delays: the estimate assumes symmetry", c.Offset)
	}
}

// Halves matched one way only give an offset that keeps every delay at
// least 0, not known; halves of no other node stay one-node paths.
func TestMergeOneWay(t *testing.T) {
	a, b := exchange(3, 2*time.Second, func(int) time.Duration { return 50 * time.Microsecond },
		func(int) time.Duration { return 50 * time.Microsecond })
	// Keep the requests only.
	var ra, rb Node = Node{Name: a.Name}, Node{Name: b.Name}
	for _, p := range a.Paths {
		if p.TCPFlags == 0x02 {
			ra.Paths = append(ra.Paths, p)
		}
	}
	for _, p := range b.Paths {
		if p.TCPFlags == 0x02 {
			rb.Paths = append(rb.Paths, p)
		}
	}
	lone := sender("node2", epoch.Add(time.Hour), 7, 0x02, serverAddr, netip.MustParseAddrPort("10.244.9.9:1"), outer(under2, netip.MustParseAddr("192.168.50.99")), time.Microsecond)
	rb.Paths = append(rb.Paths, lone)
	res := Merge([]Node{ra, rb})
	c := res.Clocks[0]
	if c.Known {
		t.Errorf("clock %+v known from one direction", c)
	}
	for _, p := range res.Paths[:3] {
		for j := 1; j < len(p.Hops); j++ {
			if p.Hops[j].Delta < 0 {
				t.Errorf("negative delay %v at hop %d", p.Hops[j].Delta, j)
			}
		}
	}
	if len(res.Paths) != 4 || len(res.Paths[3].Hops) != 4 || res.Paths[3].Hops[0].Node != "node2" {
		t.Fatalf("%d paths; want 3 joined and node2's lone one last", len(res.Paths))
	}
}

// Three nodes: node3 is matched with node2 only; its offset is node2's
// plus its own relative to node2.
func TestMergeThreeNodes(t *testing.T) {
	const off2, off3 = 3 * time.Millisecond, 7 * time.Millisecond
	d := func(int) time.Duration { return 40 * time.Microsecond }
	a, b := exchange(2, off2, d, d)
	under3 := netip.MustParseAddr("192.168.50.13")
	c := Node{Name: "node3"}
	peer := netip.MustParseAddrPort("10.244.3.9:9000")
	const step = time.Microsecond
	for i := range 2 {
		t0 := epoch.Add(time.Minute + time.Duration(i)*time.Millisecond) // node1's clock
		b.Paths = append(b.Paths, sender("node2", t0.Add(off2), uint16(500+i), 0x02, serverAddr, peer, outer(under2, under3), step))
		arrive := t0.Add(3*step + 40*time.Microsecond)
		c.Paths = append(c.Paths, receiver("node3", arrive.Add(off3), uint16(500+i), 0x02, serverAddr, peer, outer(under2, under3), step))
		back := arrive.Add(time.Millisecond)
		c.Paths = append(c.Paths, sender("node3", back.Add(off3), uint16(600+i), 0x12, peer, serverAddr, outer(under3, under2), step))
		b.Paths = append(b.Paths, receiver("node2", back.Add(3*step+40*time.Microsecond).Add(off2), uint16(600+i), 0x12, peer, serverAddr, outer(under3, under2), step))
	}
	res := Merge([]Node{a, b, c})
	if len(res.Clocks) != 2 {
		t.Fatalf("clocks %+v", res.Clocks)
	}
	for i, want := range []time.Duration{off2, off3} {
		got := res.Clocks[i]
		if !got.Known || (got.Offset-want).Abs() > got.Uncertainty {
			t.Errorf("%s: offset %v ± %v, true %v", got.Node, got.Offset, got.Uncertainty, want)
		}
	}
	if res.Matched != 8 {
		t.Errorf("%d halves joined, want 8", res.Matched)
	}
}

// A packet sent twice with the same header (a retransmission keeps the IP
// ID on some stacks) is matched by time.
func TestMergeRepeatedHeader(t *testing.T) {
	const step = time.Microsecond
	a, b := Node{Name: "node1"}, Node{Name: "node2"}
	for i := range 3 {
		t0 := epoch.Add(time.Duration(i) * 200 * time.Millisecond)
		a.Paths = append(a.Paths, sender("node1", t0, 9, 0x02, clientAddr, serverAddr, outer(under1, under2), step))
		b.Paths = append(b.Paths, receiver("node2", t0.Add(50*time.Microsecond), 9, 0x02, clientAddr, serverAddr, outer(under1, under2), step))
	}
	res := Merge([]Node{a, b})
	if res.Matched != 3 || len(res.Paths) != 3 {
		t.Fatalf("%d joined into %d paths, want 3 into 3", res.Matched, len(res.Paths))
	}
	for i, p := range res.Paths {
		if d := p.Hops[4].Delta; d < 0 || d > time.Millisecond {
			t.Errorf("path %d: delay %v across the tunnel: halves of different sends joined", i, d)
		}
	}
}

// A late end names the path it ends by its place among its node's paths;
// merged, by its place among all.
func TestMergeLateEnd(t *testing.T) {
	quiet := half("node2", epoch.Add(time.Millisecond), 7, 0, clientAddr, serverAddr, nil, time.Microsecond,
		stitch.VerdictUnknown, []hop.Kind{hop.Tx, hop.Netfilter}, func(int) bool { return false })
	late := half("node2", epoch.Add(3*time.Second), 7, 0, clientAddr, serverAddr, nil, 0,
		stitch.VerdictDropped, []hop.Kind{hop.Drop}, func(int) bool { return false })
	late.Late = &stitch.Late{Of: 1, After: 3 * time.Second, Verdict: stitch.VerdictUnknown}
	first := half("node1", epoch, 9, 0, clientAddr, serverAddr, nil, time.Microsecond,
		stitch.VerdictDelivered, []hop.Kind{hop.Tx, hop.Rx}, func(int) bool { return false })
	res := Merge([]Node{{Name: "node1", Paths: []*stitch.Path{first}}, {Name: "node2", Paths: []*stitch.Path{quiet, late}}})
	if len(res.Paths) != 3 {
		t.Fatalf("%d paths", len(res.Paths))
	}
	got := res.Paths[2]
	if got.Late == nil || got.Late.Of != 2 || res.Paths[1].IPID != 7 || res.Paths[1].Late != nil {
		t.Errorf("late end %+v, want of the second path", got.Late)
	}
	if late.Late.Of != 1 {
		t.Errorf("the node's path changed: %+v", late.Late)
	}
}
