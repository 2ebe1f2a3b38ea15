package stitch

import (
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
)

func ack(src, dst string) decode.Tuple {
	return decode.Tuple{Proto: decode.ProtoTCP, Src: ap(src), Dst: ap(dst), TCPFlags: 0x10, IPID: 9, HasPorts: true}
}

// other is an event of another packet on skb at ts: without FlagL3 (not
// IPv4, as the kernel sends it for a tracked skb reused by ARP or IPv6)
// unless tup is given.
func other(skb, ts uint64, k decode.Kind, netns uint32, dev string, length uint32, tup *decode.Tuple) decode.Event {
	ev := decode.Event{Kind: k, SKB: skb, TS: ts, Netns: netns, Dev: dev, Len: length}
	if tup != nil {
		ev.Flags |= decode.FlagL3 | decode.FlagL4
		ev.Outer = *tup
	}
	ev.Backend = decode.BackendOf(k, ev.Flags)
	return ev
}

// requireOwnHops checks that every hop with a tuple shows the path's.
func requireOwnHops(t *testing.T, p *Path) {
	t.Helper()
	if p.Proto == 0 || !p.Src.Addr().IsValid() || !p.Dst.Addr().IsValid() {
		t.Errorf("path #%d has no tuple: proto=%d %s → %s", p.ID, p.Proto, p.Src, p.Dst)
	}
	for i, h := range p.Hops {
		if h.Src.Addr().IsValid() && (h.Src != p.Src || h.Dst != p.Dst) {
			t.Errorf("path #%d %s → %s: hop %d (%s %s) carries %s → %s", p.ID, p.Src, p.Dst, i, h.Kind, h.Dev, h.Src, h.Dst)
		}
	}
}

// An ACK's skb, freed by TCP without a tracepoint at the server, is reused
// for an IPv6 frame: its tx, rx and drop by ip6_mc_input join no path.
func TestReusedSKBNotIPv4JoinsNoPath(t *testing.T) {
	const skb = 0x5100
	s := newSeq(skb, 1e9, ack("10.244.1.5:40312", "10.244.1.6:8080"))
	s.dev(decode.KindTx, nsClient, "eth0").
		dev(decode.KindRx, nsNode1, "veth1a2b3c4d").
		dev(decode.KindTx, nsNode1, "veth5e6f7a8b").
		dev(decode.KindRx, nsServer, "eth0")
	late := s.ts + uint64(359*time.Millisecond)
	evs := append(s.events,
		other(skb, late, decode.KindTx, nsServer, "eth0", 118, nil),
		other(skb, late+2000, decode.KindRx, nsNode1, "veth5e6f7a8b", 104, nil),
		other(skb, late+4000, decode.KindDrop, nsClient, "eth0", 104, nil))
	paths, st := collect(t, Config{}, evs)
	if len(paths) != 1 {
		t.Fatalf("got %d paths, want 1", len(paths))
	}
	p := paths[0]
	if got, want := kinds(p), "tx:eth0 rx:veth1a2b3c4d tx:veth5e6f7a8b rx:eth0"; got != want {
		t.Errorf("hops %s, want %s", got, want)
	}
	if p.Verdict != VerdictDelivered {
		t.Errorf("verdict %s, want delivered", p.Verdict)
	}
	if st.Stats().Foreign != 3 {
		t.Errorf("stats %+v, want 3 foreign events", st.Stats())
	}
}

// A 118-byte frame that is not IPv4 between two hops of a 66-byte ACK does
// not join the ACK's path, which goes on.
func TestFrameInsideAnotherPacketsPath(t *testing.T) {
	const skb = 0x5200
	s := newSeq(skb, 1e9, ack("10.244.1.5:40312", "10.244.1.6:8080"))
	s.add(decode.Event{Kind: decode.KindTx, Netns: nsClient, Dev: "eth0", Len: 66})
	evs := append(s.events, other(skb, s.ts+500, decode.KindTx, nsClient, "eth0", 118, nil))
	s.events = nil
	s.add(decode.Event{Kind: decode.KindRx, Netns: nsNode1, Dev: "veth1a2b3c4d", Len: 52})
	s.events[0].Flags &^= decode.FlagNew
	evs = append(evs, s.events...)
	paths, st := collect(t, Config{}, evs)
	if len(paths) != 1 {
		t.Fatalf("got %d paths, want 1", len(paths))
	}
	if got, want := kinds(paths[0]), "tx:eth0 rx:veth1a2b3c4d"; got != want {
		t.Errorf("hops %s, want %s", got, want)
	}
	for _, h := range paths[0].Hops {
		if h.Len == 118 {
			t.Errorf("the 118-byte frame joined the ACK's path: %+v", h)
		}
	}
	if st.Stats().Foreign != 1 {
		t.Errorf("stats %+v, want 1 foreign event", st.Stats())
	}
}

// A free 139 ms after a SYN-ACK's last hop, on its reused skb, of a frame of
// another length: not the SYN-ACK's end. Neither is the free of an IPv4
// packet with another tuple.
func TestLateFreeOfAnotherPacket(t *testing.T) {
	synack := decode.Tuple{Proto: decode.ProtoTCP, Src: ap("10.244.1.6:8080"), Dst: ap("10.244.1.5:40312"), TCPFlags: 0x12, HasPorts: true}
	udp := decode.Tuple{Proto: decode.ProtoUDP, Src: ap("10.244.1.5:5353"), Dst: ap("10.244.1.6:53"), HasPorts: true}
	for _, tc := range []struct {
		name string
		tup  *decode.Tuple
	}{{"not IPv4", nil}, {"another IPv4 packet", &udp}} {
		t.Run(tc.name, func(t *testing.T) {
			const skb = 0x5300
			s := newSeq(skb, 1e9, synack)
			s.add(decode.Event{Kind: decode.KindTx, Netns: nsServer, Dev: "eth0", Len: 74}).
				add(decode.Event{Kind: decode.KindRx, Netns: nsNode1, Dev: "veth5e6f7a8b", Len: 60}).
				add(decode.Event{Kind: decode.KindTx, Netns: nsNode1, Dev: "veth1a2b3c4d", Len: 74}).
				add(decode.Event{Kind: decode.KindRx, Netns: nsClient, Dev: "eth0", Len: 60})
			free := other(skb, s.ts+uint64(139*time.Millisecond), decode.KindConsume, 0, "", 101, tc.tup)
			paths, st := collect(t, Config{}, append(s.events, free))
			if len(paths) != 1 {
				t.Fatalf("got %d paths, want 1", len(paths))
			}
			p := paths[0]
			if last := p.Hops[len(p.Hops)-1]; last.Kind != hop.Rx || len(p.Hops) != 4 {
				t.Errorf("the late free joined the path: %s", kinds(p))
			}
			if p.Verdict != VerdictDelivered {
				t.Errorf("verdict %s, want delivered (reached the client pod)", p.Verdict)
			}
			if st.Stats().Foreign != 1 || st.Stats().Freed != 0 {
				t.Errorf("stats %+v, want the free counted as foreign", st.Stats())
			}
			requireOwnHops(t, p)
		})
	}
}

// Frames that are not IPv4 on a tracked skb whose path already ended make
// no path: a packet never prints as "proto=0 ? → ?".
func TestNoPathWithoutTuple(t *testing.T) {
	const skb = 0x5400
	s := newSeq(skb, 1e9, ack("10.244.1.5:40312", "10.244.1.6:8080"))
	s.dev(decode.KindTx, nsClient, "eth0").dev(decode.KindRx, nsNode1, "veth1a2b3c4d")
	evs := append(s.events,
		other(skb, s.ts+uint64(2*time.Second), decode.KindTx, nsClient, "eth0", 42, nil),
		other(skb, s.ts+uint64(2*time.Second)+1000, decode.KindRx, nsNode1, "veth1a2b3c4d", 28, nil),
		other(skb, s.ts+uint64(2*time.Second)+2000, decode.KindConsume, nsNode1, "cni0", 28, nil))
	paths, st := collect(t, Config{}, evs)
	if len(paths) != 1 {
		t.Fatalf("got %d paths, want 1", len(paths))
	}
	requireOwnHops(t, paths[0])
	if st.Stats().Foreign != 3 {
		t.Errorf("stats %+v, want 3 foreign events", st.Stats())
	}
}

// An IPv4 event whose tuple neither is the path's nor a NAT form of it
// starts a path of its own: here the reply direction on the same skb,
// which the kernel could not tell from the request (same signature).
func TestAnotherTupleStartsAPath(t *testing.T) {
	const skb = 0x5500
	req := newSeq(skb, 1e9, ack("10.244.1.5:40312", "10.244.1.6:8080"))
	req.dev(decode.KindTx, nsClient, "eth0").dev(decode.KindRx, nsNode1, "veth1a2b3c4d")
	rep := newSeq(skb, req.ts, ack("10.244.1.6:8080", "10.244.1.5:40312"))
	rep.dev(decode.KindTx, nsNode1, "veth1a2b3c4d").dev(decode.KindRx, nsClient, "eth0")
	rep.events[0].Flags &^= decode.FlagNew
	paths, _ := collect(t, Config{}, append(req.events, rep.events...))
	if len(paths) != 2 {
		t.Fatalf("got %d paths, want 2", len(paths))
	}
	for _, p := range paths {
		requireOwnHops(t, p)
		if len(p.Hops) != 2 {
			t.Errorf("path %s → %s: %s", p.Src, p.Dst, kinds(p))
		}
	}
}

// NAT forms continue the path: a DNAT between the two views of PREROUTING,
// an SNAT seen only in POSTROUTING's last view; a translation of both sides
// in one step does not.
func TestNATFormsContinue(t *testing.T) {
	const skb = 0x5600
	s := newSeq(skb, 1e9, ack("10.244.1.5:40312", "10.96.0.10:80"))
	s.dev(decode.KindRx, nsNode1, "veth1a2b3c4d").
		hook(hop.Prerouting, nsNode1, "cni0", "", func(t *decode.Tuple) { t.Dst = ap("10.244.2.7:8080") })
	s.tuple.Src = ap("192.168.50.11:61000")
	s.add(decode.Event{Kind: decode.KindNF, Hook: hop.Postrouting, Slot: decode.SlotLast, Netns: nsNode1, Dev: "eth0", Out: "eth0"}).
		dev(decode.KindTx, nsNode1, "eth0")
	s.tuple.Src, s.tuple.Dst = ap("10.1.1.1:1"), ap("10.2.2.2:2")
	s.dev(decode.KindTx, nsNode1, "eth0")
	paths, _ := collect(t, Config{}, s.events)
	if len(paths) != 2 {
		t.Fatalf("got %d paths, want 2 (the last event translated both sides)", len(paths))
	}
	if got, want := kinds(paths[0]), "rx:veth1a2b3c4d netfilter:PREROUTING nat:PREROUTING netfilter:POSTROUTING tx:eth0"; got != want {
		t.Errorf("hops %s, want %s", got, want)
	}
}

// Drop and consume hops carry the device and namespace of the skb at the
// free, else the last hop's, marked as such.
func TestFreeHopDevice(t *testing.T) {
	s := newSeq(0x5700, 1e9, ack("10.244.1.5:40312", "10.244.1.6:8080"))
	s.dev(decode.KindTx, nsClient, "eth0").
		dev(decode.KindRx, nsServer, "eth0").
		add(decode.Event{Kind: decode.KindDrop, DropReason: 12, Flags: decode.FlagReason})
	paths, _ := collect(t, Config{}, s.events)
	d := paths[0].Hops[2]
	if d.Kind != hop.Drop || d.Dev != "eth0" || d.Netns != "server" || d.NetnsInode != nsServer || !d.LastSeen {
		t.Errorf("drop hop %s %s (%d), last seen %v, want eth0 in server, marked last seen", d.Dev, d.Netns, d.NetnsInode, d.LastSeen)
	}
	s = newSeq(0x5800, 1e9, ack("10.244.1.5:40312", "10.244.1.6:8080"))
	s.dev(decode.KindTx, nsClient, "eth0").
		dev(decode.KindRx, nsNode1, "veth1a2b3c4d").
		add(decode.Event{Kind: decode.KindDrop, Netns: nsNode1, Dev: "cni0", DropReason: 12, Flags: decode.FlagReason})
	paths, _ = collect(t, Config{}, s.events)
	if d := paths[0].Hops[2]; d.Dev != "cni0" || d.Netns != "node1" || d.LastSeen {
		t.Errorf("drop hop %s %s, last seen %v, want the kernel's cni0 in node1, not marked", d.Dev, d.Netns, d.LastSeen)
	}
}
