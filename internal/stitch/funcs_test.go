package stitch

import (
	"testing"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
)

// ipvsRemote is a request to a ClusterIP in kube-proxy's IPVS mode on a
// kernel without netfilter links: hooks from fentry on nf_hook_slow, IPVS,
// bridge and vxlan_xmit from fentry. IPVS takes the packet in INPUT (no
// last view) and sends it to a real server on node2.
func ipvsRemote(skb, ts uint64) *seq {
	s := newSeq(skb, ts, tcp("10.244.1.5:40500", "10.96.0.10:80"))
	fentry := func(ev decode.Event) decode.Event { ev.Flags |= decode.FlagFentry; return ev }
	s.dev(decode.KindTx, nsClient, "eth0").
		dev(decode.KindRx, nsNode1, "veth1a2b3c4d").
		add(fentry(decode.Event{Kind: decode.KindNF, Hook: hop.Prerouting, Slot: decode.SlotFirst, Netns: nsNode1, Dev: "cni0", In: "cni0"})).
		add(fentry(decode.Event{Kind: decode.KindNF, Hook: hop.Prerouting, Slot: decode.SlotLast, Netns: nsNode1, Dev: "cni0", In: "cni0"})).
		dev(decode.KindRx, nsNode1, "cni0").
		add(fentry(decode.Event{Kind: decode.KindNF, Hook: hop.Input, Slot: decode.SlotFirst, Netns: nsNode1, Dev: "cni0", In: "cni0"}))
	ipvs := fentry(decode.Event{Kind: decode.KindIPVS, Netns: nsNode1, Dev: "cni0"})
	ipvs.IPVS = decode.IPVS{Service: ap("10.96.0.10:80"), RealServer: ap("10.244.2.7:8080"), Method: hop.MethodMasq, Proto: 6, Scheduler: "rr"}
	s.add(ipvs)
	s.tuple.Dst = ap("10.244.2.7:8080")
	s.add(fentry(decode.Event{Kind: decode.KindNF, Hook: hop.Output, Slot: decode.SlotFirst, Netns: nsNode1, Dev: "flannel.1", Out: "flannel.1"})).
		add(fentry(decode.Event{Kind: decode.KindNF, Hook: hop.Output, Slot: decode.SlotLast, Netns: nsNode1, Dev: "flannel.1", Out: "flannel.1"})).
		dev(decode.KindTx, nsNode1, "flannel.1")
	vx := fentry(decode.Event{Kind: decode.KindEncap, Netns: nsNode1, Dev: "flannel.1"})
	vx.TunnelFunc = decode.TunnelFunc{Tunnel: hop.TunnelVXLAN, Known: true, VNI: 1, DPort: 8472}
	s.add(vx).
		encap("192.168.50.11:48748", "192.168.50.12:8472", 1).
		dev(decode.KindTx, nsNode1, "eth0").
		dev(decode.KindRx, nsNode2, "eth0").
		decap().
		dev(decode.KindRx, nsNode2, "flannel.1").
		dev(decode.KindTx, nsNode2, "cni0")
	br := fentry(decode.Event{Kind: decode.KindBridge, Netns: nsNode2, Dev: "cni0", In: "cni0", Out: "veth5e6f7a8b"})
	s.add(br).
		dev(decode.KindTx, nsNode2, "veth5e6f7a8b").
		dev(decode.KindRx, nsServer, "eth0")
	return s
}

func TestFunctionHops(t *testing.T) {
	paths, _ := collect(t, Config{}, ipvsRemote(0xb00, 1e9).events)
	if len(paths) != 1 {
		t.Fatalf("got %d paths, want 1", len(paths))
	}
	p := paths[0]
	want := "tx:eth0 rx:veth1a2b3c4d netfilter:PREROUTING rx:cni0 netfilter:INPUT ipvs:cni0 " +
		"netfilter:OUTPUT tx:flannel.1 encap:flannel.1 tx:eth0 rx:eth0 decap:flannel.1 rx:flannel.1 " +
		"tx:cni0 bridge:cni0 tx:veth5e6f7a8b rx:eth0"
	if got := kinds(p); got != want {
		t.Fatalf("hops\n got %s\nwant %s", got, want)
	}
	in := p.Hops[4]
	if !in.Partial || in.Backend != hop.Fentry {
		t.Errorf("INPUT hop partial=%v backend=%q, want a partial hop from fentry (IPVS took the packet)", in.Partial, in.Backend)
	}
	ipvs := p.Hops[5]
	wantIPVS := IPVS{Service: ap("10.96.0.10:80"), RealServer: ap("10.244.2.7:8080"), Scheduler: "rr", Method: hop.MethodMasq}
	if ipvs.IPVS == nil || *ipvs.IPVS != wantIPVS || ipvs.Backend != hop.Fentry {
		t.Errorf("ipvs hop %+v backend %q, want %+v from fentry", ipvs.IPVS, ipvs.Backend, wantIPVS)
	}
	enc := p.Hops[8]
	wantOuter := Outer{Tunnel: hop.TunnelVXLAN, Src: ap("192.168.50.11:1").Addr(), Dst: ap("192.168.50.12:1").Addr(), DPort: 8472, VNI: 1}
	if enc.Outer == nil || *enc.Outer != wantOuter || enc.Backend != hop.Fentry || enc.Dev != "flannel.1" {
		t.Errorf("encap hop outer %+v backend %q dev %s, want %+v from fentry on flannel.1", enc.Outer, enc.Backend, enc.Dev, wantOuter)
	}
	if dec := p.Hops[11]; dec.Backend != hop.Inferred {
		t.Errorf("decap hop backend %q, want inferred", dec.Backend)
	}
	br := p.Hops[14]
	if br.Bridge == nil || *br.Bridge != (Bridge{In: "cni0", Out: "veth5e6f7a8b"}) || br.Backend != hop.Fentry {
		t.Errorf("bridge hop %+v backend %q", br.Bridge, br.Backend)
	}
	if tx := p.Hops[0]; tx.Backend != hop.Tracepoint {
		t.Errorf("tx hop backend %q, want tracepoint", tx.Backend)
	}
	if p.Verdict != VerdictDelivered {
		t.Errorf("verdict %s, want delivered", p.Verdict)
	}
}

// A vxlan_xmit hop whose packet never shows encapsulated keeps what the
// program read, the tunnel, and no addresses.
func TestVXLANHopWithoutOuter(t *testing.T) {
	s := newSeq(0xc00, 1e9, tcp("10.244.1.5:1", "10.244.2.7:2"))
	vx := decode.Event{Kind: decode.KindEncap, Flags: decode.FlagKprobe, Netns: nsNode1, Dev: "flannel.1"}
	vx.TunnelFunc.Tunnel = hop.TunnelVXLAN // no BTF: no VNI, no port
	s.dev(decode.KindTx, nsNode1, "flannel.1").add(vx).
		add(decode.Event{Kind: decode.KindDrop, Netns: nsNode1, Dev: "flannel.1"})
	paths, _ := collect(t, Config{}, s.events)
	if len(paths) != 1 || kinds(paths[0]) != "tx:flannel.1 encap:flannel.1 drop:flannel.1" {
		t.Fatalf("paths %d, hops %s", len(paths), kinds(paths[0]))
	}
	if h := paths[0].Hops[1]; h.Outer == nil || *h.Outer != (Outer{Tunnel: hop.TunnelVXLAN}) || h.Backend != hop.Kprobe {
		t.Errorf("encap hop outer %+v backend %q, want VXLAN without addresses from kprobe", h.Outer, h.Backend)
	}
}

// Table verdicts come inside their hook, between its two views: they
// follow the hook's hop (and come before its NAT hop); a hook that never
// returns (a drop) still gets them, in order, before the drop.
func TestTableHops(t *testing.T) {
	kprobe := func(ev decode.Event) decode.Event { ev.Flags |= decode.FlagKprobe; return ev }
	table := func(hook hop.Hook, name string, verdict hop.Verdict) decode.Event {
		ev := kprobe(decode.Event{Kind: decode.KindTable, Hook: hook, Netns: nsNode1, Dev: "cni0", In: "cni0", Verdict: verdict})
		ev.Table = decode.Table{Engine: hop.EngineNFTables, Family: hop.FamilyIPv4, Name: name, Chain: hook.String()}
		return ev
	}
	s := newSeq(0xd00, 1e9, tcp("10.244.1.5:40312", "10.96.0.10:80"))
	s.dev(decode.KindTx, nsClient, "eth0").
		add(kprobe(decode.Event{Kind: decode.KindNF, Hook: hop.Prerouting, Slot: decode.SlotFirst, Netns: nsNode1, Dev: "cni0", In: "cni0"})).
		add(table(hop.Prerouting, "raw", hop.VerdictAccept))
	s.tuple.Dst = ap("10.244.2.7:8080")
	// An nftables event without BTF: no hook, no devices, no table.
	noBTF := kprobe(decode.Event{Kind: decode.KindTable, Hook: hop.HookUnknown, Netns: nsNode1})
	noBTF.Table, noBTF.Verdict = decode.Table{Engine: hop.EngineNFTables, Chain: "PREROUTING"}, hop.VerdictAccept
	s.add(noBTF).
		add(kprobe(decode.Event{Kind: decode.KindNF, Hook: hop.Prerouting, Slot: decode.SlotLast, Netns: nsNode1, Dev: "cni0", In: "cni0"})).
		add(kprobe(decode.Event{Kind: decode.KindNF, Hook: hop.Forward, Slot: decode.SlotFirst, Netns: nsNode1, Dev: "cni0", In: "cni0", Out: "flannel.1"})).
		add(table(hop.Forward, "filter", hop.VerdictDrop)).
		add(decode.Event{Kind: decode.KindDrop, Netns: nsNode1, Dev: "cni0"})
	paths, _ := collect(t, Config{}, s.events)
	if len(paths) != 1 {
		t.Fatalf("got %d paths, want 1", len(paths))
	}
	p := paths[0]
	want := "tx:eth0 netfilter:PREROUTING table:cni0 table:cni0 nat:PREROUTING netfilter:FORWARD table:cni0 drop:cni0"
	if got := kinds(p); got != want {
		t.Fatalf("hops\n got %s\nwant %s", got, want)
	}
	for i, w := range []Table{
		{Engine: hop.EngineNFTables, Family: hop.FamilyIPv4, Name: "raw", Chain: "PREROUTING", Verdict: hop.VerdictAccept},
		{Engine: hop.EngineNFTables, Chain: "PREROUTING", Verdict: hop.VerdictAccept},
		{},
		{},
		{Engine: hop.EngineNFTables, Family: hop.FamilyIPv4, Name: "filter", Chain: "FORWARD", Verdict: hop.VerdictDrop},
	} {
		h := p.Hops[2+i]
		if h.Kind != hop.Table {
			continue
		}
		if h.Table == nil || *h.Table != w || h.Backend != hop.Kprobe {
			t.Errorf("hop %d: table %+v backend %q, want %+v from kprobe", 2+i, h.Table, h.Backend, w)
		}
	}
	if h := p.Hops[3]; h.Hook != hop.Prerouting || h.Dev != "cni0" {
		t.Errorf("table hop without BTF: hook %q dev %q, want the pending hook's PREROUTING on cni0", h.Hook, h.Dev)
	}
	if nf := p.Hops[1]; nf.Partial || nf.Dur == 0 {
		t.Errorf("PREROUTING hop partial=%v dur=%v: the tables inside must not split the hook", nf.Partial, nf.Dur)
	}
	for i := 1; i < len(p.Hops); i++ {
		if p.Hops[i].T < p.Hops[i-1].T {
			t.Errorf("hop %d at %v before hop %d at %v", i, p.Hops[i].T, i-1, p.Hops[i-1].T)
		}
	}
}

// A vxlan_rcv event makes the decap hop (with its backend), the next event
// names the VXLAN device; no inferred decap hop follows.
func TestVXLANRcvHop(t *testing.T) {
	s := newSeq(0xe00, 1e9, tcp("10.244.1.5:1", "10.244.2.7:2"))
	s.encap("192.168.50.11:48748", "192.168.50.12:8472", 1).
		dev(decode.KindRx, nsNode2, "eth0").
		add(decode.Event{Kind: decode.KindDecap, Flags: decode.FlagFentry, Netns: nsNode2, Dev: "eth0"}).
		decap().
		dev(decode.KindRx, nsNode2, "flannel.1").
		dev(decode.KindTx, nsNode2, "cni0")
	paths, _ := collect(t, Config{}, s.events)
	if len(paths) != 1 {
		t.Fatalf("got %d paths, want 1", len(paths))
	}
	p := paths[0]
	if got, want := kinds(p), "rx:eth0 decap:flannel.1 rx:flannel.1 tx:cni0"; got != want {
		t.Fatalf("hops\n got %s\nwant %s", got, want)
	}
	d := p.Hops[1]
	wantOuter := Outer{Tunnel: hop.TunnelVXLAN, Src: ap("192.168.50.11:1").Addr(), Dst: ap("192.168.50.12:1").Addr(), DPort: 8472, VNI: 1}
	if d.Backend != hop.Fentry || d.Outer == nil || *d.Outer != wantOuter || d.NetnsInode != nsNode2 {
		t.Errorf("decap hop backend %q outer %+v netns %d, want fentry, %+v, node2", d.Backend, d.Outer, d.NetnsInode, wantOuter)
	}

	// vxlan_rcv dropping the packet (no device for its VNI): the drop
	// still sees the outer headers; no encap hop appears.
	s = newSeq(0xe01, 2e9, tcp("10.244.1.5:1", "10.244.2.7:2"))
	s.encap("192.168.50.11:48748", "192.168.50.12:8472", 9).
		dev(decode.KindRx, nsNode2, "eth0").
		add(decode.Event{Kind: decode.KindDecap, Flags: decode.FlagFentry, Netns: nsNode2, Dev: "eth0"}).
		add(decode.Event{Kind: decode.KindDrop, Netns: nsNode2, Dev: "eth0"})
	paths, _ = collect(t, Config{}, s.events)
	if len(paths) != 1 {
		t.Fatalf("got %d paths, want 1", len(paths))
	}
	if got, want := kinds(paths[0]), "rx:eth0 decap:eth0 drop:eth0"; got != want {
		t.Errorf("hops of a packet vxlan_rcv dropped\n got %s\nwant %s", got, want)
	}
}

// A tunnel's receive function on a packet whose headers were not parsed
// as its tunnel's (VXLAN to a port not in --vxlan-port) still names the
// tunnel on the decap hop.
func TestDecapHopTunnelFromFunction(t *testing.T) {
	s := newSeq(0xf10, 1e9, tcp("192.168.50.11:40000", "192.168.50.12:4790"))
	dec := decode.Event{Kind: decode.KindDecap, Flags: decode.FlagFentry, Netns: nsNode2, Dev: "eth0"}
	dec.TunnelFunc = decode.TunnelFunc{Tunnel: hop.TunnelVXLAN}
	s.dev(decode.KindRx, nsNode2, "eth0").add(dec)
	paths, _ := collect(t, Config{}, s.events)
	if len(paths) != 1 || kinds(paths[0]) != "rx:eth0 decap:eth0" {
		t.Fatalf("paths %d, hops %s", len(paths), kinds(paths[0]))
	}
	if h := paths[0].Hops[1]; h.Outer == nil || *h.Outer != (Outer{Tunnel: hop.TunnelVXLAN}) {
		t.Errorf("decap hop outer %+v, want the function's VXLAN", h.Outer)
	}
}
