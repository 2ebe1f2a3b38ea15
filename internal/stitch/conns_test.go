package stitch

import (
	"testing"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
)

// withCT sets conntrack's view on the netfilter events of s from index i on.
func withCT(s *seq, i int, ct decode.CT) *seq {
	for j := i; j < len(s.events); j++ {
		if s.events[j].Kind == decode.KindNF {
			s.events[j].CT = ct
		}
	}
	return s
}

// A translation made on a reply is reverse: a changed source is an un-DNAT,
// a changed destination an un-SNAT; without conntrack's view (recordings
// made before it was recorded) it is a plain one.
func TestReverseNAT(t *testing.T) {
	reply := func(ct decode.CT) *Path {
		s := newSeq(0x1100, 1e9, tcp("10.244.2.7:8080", "192.168.50.11:41000"))
		s.dev(decode.KindRx, nsNode1, "flannel.1").
			hook(hop.Prerouting, nsNode1, "flannel.1", "", func(t *decode.Tuple) { t.Dst = ap("10.244.1.5:40312") }).
			hook(hop.Postrouting, nsNode1, "", "cni0", func(t *decode.Tuple) { t.Src = ap("10.96.0.10:80") }).
			dev(decode.KindTx, nsNode1, "veth1a2b3c4d")
		withCT(s, 0, ct)
		// PREROUTING's first view comes before conntrack: no state yet.
		s.events[1].CT = decode.NoCT
		paths, _ := collect(t, Config{}, s.events)
		if len(paths) != 1 {
			t.Fatalf("got %d paths", len(paths))
		}
		return paths[0]
	}
	p := reply(decode.CTEstablishedReply)
	if got, want := kinds(p), "rx:flannel.1 netfilter:PREROUTING nat:PREROUTING netfilter:POSTROUTING nat:POSTROUTING tx:veth1a2b3c4d"; got != want {
		t.Fatalf("hops %s, want %s", got, want)
	}
	unSNAT, unDNAT := p.Hops[2].NAT, p.Hops[4].NAT
	if *unSNAT != (NAT{Type: hop.DNAT, From: ap("192.168.50.11:41000"), To: ap("10.244.1.5:40312"), Reverse: true}) {
		t.Errorf("un-SNAT in PREROUTING = %+v", *unSNAT)
	}
	if *unDNAT != (NAT{Type: hop.SNAT, From: ap("10.244.2.7:8080"), To: ap("10.96.0.10:80"), Reverse: true}) {
		t.Errorf("un-DNAT in POSTROUTING = %+v", *unDNAT)
	}
	for _, ct := range []decode.CT{decode.NoCT, decode.CTEstablished, decode.CTNew, decode.CTUntracked} {
		p := reply(ct)
		if p.Hops[2].NAT.Reverse || p.Hops[4].NAT.Reverse {
			t.Errorf("conntrack state %d: reverse translations %+v %+v", ct, *p.Hops[2].NAT, *p.Hops[4].NAT)
		}
	}
}

// ICMP translations show the echo ids, not the type and code the tuple's
// ports hold.
func TestICMPNATEchoID(t *testing.T) {
	ping := decode.Tuple{Proto: decode.ProtoICMP, Src: ap("10.244.1.5:8"), Dst: ap("192.168.50.100:0"), HasPorts: true, HasICMPID: true, ICMPID: 7}
	s := newSeq(0x1200, 1e9, ping)
	s.dev(decode.KindRx, nsNode1, "veth1a2b3c4d").
		hook(hop.Postrouting, nsNode1, "", "eth0", func(t *decode.Tuple) { t.Src, t.ICMPID = ap("192.168.50.11:8"), 9 }).
		dev(decode.KindTx, nsNode1, "eth0")
	paths, _ := collect(t, Config{}, s.events)
	p := paths[0]
	if !p.HasICMPID || p.ICMPID != 7 {
		t.Errorf("path echo id %v %d, want 7", p.HasICMPID, p.ICMPID)
	}
	nat := p.Hops[2]
	if nat.NAT == nil || *nat.NAT != (NAT{Type: hop.SNAT, From: ap("10.244.1.5:7"), To: ap("192.168.50.11:9")}) {
		t.Fatalf("nat = %+v (hops %s)", nat.NAT, kinds(p))
	}
	if last := p.Hops[3]; !last.HasICMPID || last.ICMPID != 9 {
		t.Errorf("tx hop echo id %v %d, want 9", last.HasICMPID, last.ICMPID)
	}
}

// A path whose first event is a hook's last view was first seen after a
// translation in that hook: not partial. A last view without its first
// later in a path stays partial.
func TestFirstSeenAfterNAT(t *testing.T) {
	s := newSeq(0x1300, 1e9, tcp("192.168.50.100:40000", "10.244.2.7:8080"))
	s.add(decode.Event{Kind: decode.KindNF, Hook: hop.Prerouting, Slot: decode.SlotLast, Netns: nsNode1, Dev: "eth0", In: "eth0", CT: decode.CTNew}).
		hook(hop.Forward, nsNode1, "eth0", "flannel.1", nil).
		add(decode.Event{Kind: decode.KindNF, Hook: hop.Postrouting, Slot: decode.SlotLast, Netns: nsNode1, Dev: "flannel.1", Out: "flannel.1"}).
		dev(decode.KindTx, nsNode1, "flannel.1")
	paths, _ := collect(t, Config{}, s.events)
	p := paths[0]
	if p.FirstSeen != FirstSeenAfterNAT {
		t.Errorf("first seen %q, want %q", p.FirstSeen, FirstSeenAfterNAT)
	}
	if got, want := kinds(p), "netfilter:PREROUTING netfilter:FORWARD netfilter:POSTROUTING tx:flannel.1"; got != want {
		t.Fatalf("hops %s, want %s", got, want)
	}
	if p.Hops[0].Partial {
		t.Error("the first hop of a path first seen after NAT is partial")
	}
	if !p.Hops[2].Partial {
		t.Error("a last view without its first, later in the path, is not partial")
	}

	// Tables that ran in the hook after the translation come first; the
	// path still starts at that hook.
	s = newSeq(0x1500, 1e9, tcp("10.244.1.1:40000", "10.244.2.7:8080"))
	s.add(decode.Event{Kind: decode.KindTable, Hook: hop.Output, Netns: nsNode1, Dev: "flannel.1", Out: "flannel.1", Verdict: hop.VerdictAccept,
		Table: decode.Table{Engine: hop.EngineNFTables, Family: hop.FamilyIPv4, Name: "filter", Chain: "OUTPUT"}}).
		add(decode.Event{Kind: decode.KindNF, Hook: hop.Output, Slot: decode.SlotLast, Netns: nsNode1, Dev: "flannel.1", Out: "flannel.1"})
	paths, _ = collect(t, Config{}, s.events)
	if p := paths[0]; p.FirstSeen != FirstSeenAfterNAT || kinds(p) != "table:flannel.1 netfilter:OUTPUT" || p.Hops[1].Partial {
		t.Errorf("after the tables of OUTPUT: first seen %q, hops %s, partial %v", p.FirstSeen, kinds(p), p.Hops[1].Partial)
	}

	// A path that starts anywhere else was seen from its first hop.
	paths, _ = collect(t, Config{}, crossNode(0x1400, 1e9).events)
	if paths[0].FirstSeen != "" {
		t.Errorf("cross-node path first seen %q", paths[0].FirstSeen)
	}
}
