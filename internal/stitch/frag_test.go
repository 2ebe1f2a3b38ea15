package stitch

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
)

// udpFrag is the tuple of a UDP datagram's fragment as the kernel programs
// show it: the first one with the ports, the others without.
func udpFrag(src, dst string, id uint16, first bool) decode.Tuple {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	t := decode.Tuple{Proto: decode.ProtoUDP, Src: s, Dst: d, IPID: id, HasPorts: true}
	if !first {
		t.Src, t.Dst, t.HasPorts = netip.AddrPortFrom(s.Addr(), 0), netip.AddrPortFrom(d.Addr(), 0), false
	}
	return t
}

// captured gives the events of s from i on captured bytes (Data): an IP
// header of s's family, a fragment's or not; and length n.
func captured(s *seq, i int, frag bool, n uint32) *seq {
	var hdr []byte
	if s.tuple.Src.Addr().Is4() {
		hdr = make([]byte, 28)
		hdr[0], hdr[9] = 0x45, decode.ProtoUDP
		if frag {
			hdr[6] = 0x20 // more fragments
		}
	} else {
		hdr = make([]byte, 56)
		hdr[0], hdr[6] = 0x60, decode.ProtoUDP
		if frag {
			hdr[6], hdr[40], hdr[43] = 44, decode.ProtoUDP, 1 // a fragment header, more fragments
		}
	}
	for j := i; j < len(s.events); j++ {
		s.events[j].Data, s.events[j].Len = hdr, n
	}
	return s
}

// stolen adds the first slot of node1's PREROUTING only: conntrack's
// defragmentation takes the fragment there.
func (s *seq) stolen(netns uint32, in string) *seq {
	return s.add(decode.Event{Kind: decode.KindNF, Hook: hop.Prerouting, Slot: decode.SlotFirst, Netns: netns, Dev: in, In: in})
}

// heldFrag is a fragment the client pod sent, of length n, taken by node1's
// conntrack at PREROUTING.
func heldFrag(skb, ts uint64, src, dst string, id uint16, first bool, n uint32) *seq {
	s := newSeq(skb, ts, udpFrag(src, dst, id, first))
	captured(s.dev(decode.KindTx, nsClient, "eth0"), 0, true, n)
	return s.dev(decode.KindRx, nsNode1, "veth1a2b3c4d").stolen(nsNode1, "cni0")
}

func (s *seq) free(k decode.Kind, dev string, netns uint32) *seq {
	return s.add(decode.Event{Kind: k, Dev: dev, Netns: netns, Location: 0x1000})
}

// fragmentedOnNode1 is a 4000-byte datagram sent by the client pod as
// three fragments, reassembled by node1's conntrack at PREROUTING onto
// the skb of the last one, and split again on its way out to flannel.1:
// IP output makes three new fragments and consumes it (the slow path), or
// keeps its skb for the first fragment (the fast path). With dnat, the
// datagram was sent to a ClusterIP, translated at PREROUTING after its
// reassembly: the datagram is first seen with its backend's address.
//
// With table, the nat table's verdict at PREROUTING is the datagram's
// first event, which captures nothing (as fentry programs show it); with
// old too, no event of the datagram is marked new or captures anything
// (as 5.10 to 6.12 show it).
func fragmentedOnNode1(fast, dnat, table, old bool) []decode.Event {
	const id = 4660
	src, dst := "10.244.1.5:40000", "10.244.2.7:7100"
	sent := dst
	if dnat {
		sent = "10.96.0.10:7100"
	}
	a := heldFrag(0xa00, 0, src, sent, id, true, 1458)
	b := heldFrag(0xb00, 100, src, sent, id, false, 1458)
	c := heldFrag(0xc00, 200, src, sent, id, false, 1194)
	// The queue is complete: the first fragment is consumed, and the
	// last one's skb goes on with the whole datagram.
	a.ts, b.ts, c.ts = 4000, 4000, 4000
	a.free(decode.KindConsume, "cni0", nsNode1)
	d := newSeq(0xc00, 4100, udpFrag(src, dst, id, true))
	if table {
		// The nat table sees the datagram before its DNAT.
		d.tuple = udpFrag(src, sent, id, true)
		d.add(decode.Event{Kind: decode.KindTable, Hook: hop.Prerouting, Netns: nsNode1, Len: 4028, Verdict: hop.VerdictAccept})
		d.tuple = udpFrag(src, dst, id, true)
	}
	d.add(decode.Event{Kind: decode.KindNF, Hook: hop.Prerouting, Slot: decode.SlotLast, Netns: nsNode1, Dev: "cni0", In: "cni0"})
	if old {
		d.events[0].Flags &^= decode.FlagNew
		d.events[len(d.events)-1].Len = 4028
	} else {
		captured(d, len(d.events)-1, false, 4028)
	}
	d.dev(decode.KindRx, nsNode1, "cni0").
		hook(hop.Forward, nsNode1, "cni0", "flannel.1", nil).
		hook(hop.Postrouting, nsNode1, "cni0", "flannel.1", nil)
	var out [][]decode.Event
	var frags []*seq
	for i, skb := range []uint64{0xd00, 0xe00, 0xf00} {
		if fast && i == 0 {
			skb = 0xc00 // the datagram's own skb, a new packet on it
		}
		f := newSeq(skb, d.ts+uint64(i)*100, udpFrag(src, dst, id, i == 0))
		captured(f.dev(decode.KindTx, nsNode1, "flannel.1"), 0, true, 1458)
		f.dev(decode.KindTx, nsNode1, "eth0")
		frags = append(frags, f)
	}
	if !fast {
		d.ts = frags[2].ts
		d.free(decode.KindConsume, "", 0)
	}
	// The datagram's frag_list, freed with it.
	b.ts = d.ts + 500
	b.free(decode.KindConsume, "", 0)
	out = append(out, a.events, b.events, c.events, d.events)
	for _, f := range frags {
		out = append(out, f.events)
	}
	evs := slices.Concat(out...)
	slices.SortStableFunc(evs, func(x, y decode.Event) int {
		switch {
		case x.TS < y.TS:
			return -1
		case x.TS > y.TS:
			return 1
		}
		return 0
	})
	return evs
}

func TestFragmentsReassembledAndSplitAgain(t *testing.T) {
	for _, tc := range []struct{ fast, dnat, table, old bool }{
		{false, false, false, false}, {true, false, false, false}, {false, true, false, false},
		{false, false, true, false}, {false, false, true, true}, {false, true, true, true},
	} {
		paths, _ := collect(t, Config{}, fragmentedOnNode1(tc.fast, tc.dnat, tc.table, tc.old))
		var got []string
		for _, p := range paths {
			got = append(got, string(p.Verdict)+"/"+string(p.FirstSeen)+"/"+map[bool]string{true: "frag", false: "whole"}[p.Fragment])
		}
		want := []string{
			"reassembled//frag", "reassembled//frag", "reassembled//frag",
			"fragmented/reassembled/whole",
			"forwarded//frag", "forwarded//frag", "forwarded//frag",
		}
		// The DNAT after the reassembly, from the first fragment's
		// destination.
		var nat *NAT
		if len(paths) > 3 {
			for _, h := range paths[3].Hops {
				if h.NAT != nil {
					nat = h.NAT
				}
			}
		}
		wantNAT := tc.dnat && (nat == nil || nat.Type != hop.DNAT || nat.From != ap("10.96.0.10:7100") || nat.To != ap("10.244.2.7:7100"))
		if !tc.dnat && nat != nil || wantNAT || (tc.dnat && paths[3].Dst != ap("10.96.0.10:7100")) {
			t.Errorf("%+v: the datagram's NAT %+v\n%s", tc, nat, kinds(paths[3]))
		}
		// A later fragment's datagram endpoints: its first fragment's.
		for _, p := range paths {
			if !p.Fragment || p.Src.Port() != 0 {
				continue
			}
			if p.DatagramSrc != ap("10.244.1.5:40000") || p.DatagramDst != netip.AddrPortFrom(p.Dst.Addr(), 7100) {
				t.Errorf("%+v: later fragment #%d to %s: datagram %s → %s", tc, p.ID, p.Dst, p.DatagramSrc, p.DatagramDst)
			}
		}
		if !slices.Equal(got, want) {
			for _, p := range paths {
				t.Logf("#%d %s %s: %s", p.ID, p.Verdict, p.FirstSeen, kinds(p))
			}
			t.Errorf("%+v: verdict/first seen/fragment of the paths\n got %q\nwant %q", tc, got, want)
		}
	}
}

// A fragment that waits at PREROUTING for the rest of its datagram, which
// never comes, is not said to be reassembled; nor is one that reassembly
// drops; nor is a datagram consumed after its POSTROUTING where fragments
// of another datagram started.
func TestFragmentsNotReassembled(t *testing.T) {
	src, dst := "10.244.1.5:40000", "10.244.2.7:7100"
	waits := heldFrag(0xa00, 0, src, dst, 1, false, 1458)
	dropped := heldFrag(0xb00, 0, src, dst, 2, false, 1458)
	dropped.add(decode.Event{Kind: decode.KindDrop, Netns: nsNode1, Dev: "cni0", DropReason: 7, Flags: decode.FlagReason})

	whole := newSeq(0xc00, 0, udpFrag(src, dst, 3, true))
	captured(whole.dev(decode.KindTx, nsClient, "eth0"), 0, false, 1000)
	whole.dev(decode.KindRx, nsNode1, "veth1a2b3c4d").
		hook(hop.Prerouting, nsNode1, "cni0", "", nil).
		hook(hop.Forward, nsNode1, "cni0", "flannel.1", nil).
		hook(hop.Postrouting, nsNode1, "cni0", "flannel.1", nil)
	other := newSeq(0xd00, whole.ts, udpFrag(src, dst, 4, true))
	captured(other.dev(decode.KindTx, nsNode1, "flannel.1"), 0, true, 1458)
	whole.free(decode.KindConsume, "flannel.1", nsNode1)

	for _, tc := range []struct {
		name string
		evs  []decode.Event
		want Verdict
	}{
		{"waits", waits.events, VerdictUnknown},
		{"dropped", dropped.events, VerdictDropped},
		{"whole", slices.Concat(whole.events[:len(whole.events)-1], other.events, whole.events[len(whole.events)-1:]), VerdictDelivered},
	} {
		paths, _ := collect(t, Config{}, tc.evs)
		if len(paths) == 0 || paths[0].Verdict != tc.want {
			for _, p := range paths {
				t.Logf("#%d %s: %s", p.ID, p.Verdict, kinds(p))
			}
			t.Errorf("%s: want the first path %s", tc.name, tc.want)
		}
	}
}

// A fragment last seen at PREROUTING where its datagram was reassembled
// after it (its skb freed with the datagram without a tracepoint, as IPv6
// defragmentation does) was reassembled.
func TestFragmentLastSeenWhereReassembled(t *testing.T) {
	src, dst := "[fd77:1::5]:40000", "[fd77:2::7]:7100"
	held := heldFrag(0xa00, 0, src, dst, 9, false, 1458)
	last := heldFrag(0xb00, 0, src, dst, 9, false, 1194)
	// IPv6 datagrams show no id but in their fragments.
	whole := newSeq(0xb00, last.ts, decode.Tuple{Proto: decode.ProtoUDP, Src: ap(src), Dst: ap(dst), HasPorts: true})
	whole.add(decode.Event{Kind: decode.KindNF, Hook: hop.Prerouting, Slot: decode.SlotLast, Netns: nsNode1, Dev: "cni0", In: "cni0"})
	captured(whole, 0, false, 4048)
	whole.dev(decode.KindRx, nsNode1, "cni0")
	paths, _ := collect(t, Config{}, slices.Concat(held.events, last.events, whole.events))
	if len(paths) != 3 || paths[0].Verdict != VerdictReassembled || paths[1].Verdict != VerdictReassembled ||
		paths[2].FirstSeen != FirstSeenReassembled {
		for _, p := range paths {
			t.Logf("#%d %s %s: %s", p.ID, p.Verdict, p.FirstSeen, kinds(p))
		}
		t.Errorf("want two fragments reassembled and the datagram reassembled from them")
	}
}
