package stitch

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
)

// Namespace inodes of the synthetic cluster.
const (
	nsClient = 101
	nsNode1  = 201
	nsNode2  = 202
	nsServer = 102
)

type testNames struct{}

func (testNames) Netns(inode uint32) string {
	return map[uint32]string{nsClient: "client", nsNode1: "node1", nsNode2: "node2", nsServer: "server"}[inode]
}
func (testNames) IsNode(inode uint32) bool { return inode == nsNode1 || inode == nsNode2 }
func (testNames) Symbol(addr uint64) string {
	if addr == 0xffffffff81c3a49e {
		return "nf_hook_slow+0x9e"
	}
	return ""
}
func (testNames) DropReason(code uint32) string {
	if code == 12 {
		return "NETFILTER_DROP"
	}
	return fmt.Sprintf("reason(%d)", code)
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func tcp(src, dst string) decode.Tuple {
	return decode.Tuple{Proto: decode.ProtoTCP, Src: ap(src), Dst: ap(dst), TCPFlags: 0x02, IPID: 7, HasPorts: true}
}

// seq builds the events of one packet, one microsecond apart.
type seq struct {
	skb    uint64
	ts     uint64
	tuple  decode.Tuple
	outer  *decode.Tuple
	vni    uint32
	tunnel hop.Tunnel
	events []decode.Event
}

func newSeq(skb uint64, ts uint64, t decode.Tuple) *seq { return &seq{skb: skb, ts: ts, tuple: t} }

func (s *seq) add(ev decode.Event) *seq {
	if len(s.events) == 0 {
		ev.Flags |= decode.FlagNew
	}
	s.ts += 1000
	ev.SKB, ev.TS = s.skb, s.ts
	ev.Flags |= decode.FlagL3 | decode.FlagL4
	ev.Outer = s.tuple
	if s.outer != nil {
		ev.Outer, ev.Inner, ev.VNI, ev.Tunnel = *s.outer, s.tuple, s.vni, s.tunnel
		ev.Flags |= decode.FlagInner | decode.FlagInnerL4
	}
	ev.Backend = decode.BackendOf(ev.Kind, ev.Flags)
	s.events = append(s.events, ev)
	return s
}

func (s *seq) dev(k decode.Kind, netns uint32, dev string) *seq {
	return s.add(decode.Event{Kind: k, Netns: netns, Dev: dev})
}

// hook adds both slots of a netfilter hook; nat, when set, rewrites the
// tuple between them.
func (s *seq) hook(h hop.Hook, netns uint32, in, out string, nat func(*decode.Tuple)) *seq {
	dev := in
	if h >= hop.Output || dev == "" {
		dev = out
	}
	s.add(decode.Event{Kind: decode.KindNF, Hook: h, Slot: decode.SlotFirst, Netns: netns, Dev: dev, In: in, Out: out})
	if nat != nil {
		if s.outer != nil {
			nat(s.outer)
		} else {
			nat(&s.tuple)
		}
	}
	return s.add(decode.Event{Kind: decode.KindNF, Hook: h, Slot: decode.SlotLast, Netns: netns, Dev: dev, In: in, Out: out})
}

func (s *seq) encap(src, dst string, vni uint32) *seq {
	o := decode.Tuple{Proto: decode.ProtoUDP, Src: ap(src), Dst: ap(dst), HasPorts: true}
	s.outer, s.vni, s.tunnel = &o, vni, hop.TunnelVXLAN
	return s
}

// encapIPIP wraps the packet in an outer IPv4 header (protocol 4, no
// ports), as tunl0 does.
func (s *seq) encapIPIP(src, dst string) *seq {
	o := decode.Tuple{Proto: 4, Src: netip.AddrPortFrom(netip.MustParseAddr(src), 0), Dst: netip.AddrPortFrom(netip.MustParseAddr(dst), 0)}
	s.outer, s.vni, s.tunnel = &o, 0, hop.TunnelIPIP
	return s
}

// encapGeneve wraps the packet in UDP to 6081 and Geneve with vni.
func (s *seq) encapGeneve(src, dst string, vni uint32) *seq {
	s.encap(src, dst, vni)
	s.tunnel = hop.TunnelGeneve
	return s
}

func (s *seq) decap() *seq { s.outer = nil; return s }

// crossNode is the request of the cross-node ClusterIP exchange, as the
// kernel reports it (KERNEL-NOTES.md).
func crossNode(skb, ts uint64) *seq {
	s := newSeq(skb, ts, tcp("10.244.1.5:40312", "10.96.0.10:80"))
	s.dev(decode.KindTx, nsClient, "eth0").
		dev(decode.KindRx, nsNode1, "veth1a2b3c4d").
		hook(hop.Prerouting, nsNode1, "cni0", "", func(t *decode.Tuple) { t.Dst = ap("10.244.2.7:8080") }).
		dev(decode.KindRx, nsNode1, "cni0").
		hook(hop.Forward, nsNode1, "cni0", "flannel.1", nil).
		hook(hop.Postrouting, nsNode1, "cni0", "flannel.1", nil).
		dev(decode.KindTx, nsNode1, "flannel.1").
		encap("192.168.50.11:48748", "192.168.50.12:8472", 1).
		hook(hop.Output, nsNode1, "", "eth0", nil).
		hook(hop.Postrouting, nsNode1, "flannel.1", "eth0", nil).
		dev(decode.KindTx, nsNode1, "eth0").
		dev(decode.KindRx, nsNode2, "eth0").
		hook(hop.Prerouting, nsNode2, "eth0", "", nil).
		hook(hop.Input, nsNode2, "eth0", "", nil).
		decap().
		dev(decode.KindRx, nsNode2, "flannel.1").
		hook(hop.Prerouting, nsNode2, "flannel.1", "", nil).
		hook(hop.Forward, nsNode2, "flannel.1", "cni0", nil).
		hook(hop.Postrouting, nsNode2, "flannel.1", "cni0", nil).
		dev(decode.KindTx, nsNode2, "cni0").
		dev(decode.KindTx, nsNode2, "veth5e6f7a8b").
		dev(decode.KindRx, nsServer, "eth0")
	return s
}

func collect(t *testing.T, cfg Config, evs []decode.Event) ([]*Path, *Stitcher) {
	t.Helper()
	if cfg.Names == nil {
		cfg.Names = testNames{}
	}
	var paths []*Path
	s := New(cfg, func(p *Path) error { paths = append(paths, p); return nil })
	for i := range evs {
		s.Add(&evs[i])
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return paths, s
}

func kinds(p *Path) string {
	var b strings.Builder
	for i, h := range p.Hops {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(h.Kind.String())
		switch h.Kind {
		case hop.Netfilter, hop.NAT:
			b.WriteString(":" + h.Hook.String())
		default:
			b.WriteString(":" + h.Dev)
		}
	}
	return b.String()
}

func TestCrossNodePathIsOnePath(t *testing.T) {
	paths, _ := collect(t, Config{}, crossNode(0xa00, 1e9).events)
	if len(paths) != 1 {
		t.Fatalf("got %d paths, want 1", len(paths))
	}
	p := paths[0]
	want := "tx:eth0 rx:veth1a2b3c4d netfilter:PREROUTING nat:PREROUTING rx:cni0 netfilter:FORWARD " +
		"netfilter:POSTROUTING tx:flannel.1 encap:flannel.1 netfilter:OUTPUT netfilter:POSTROUTING tx:eth0 " +
		"rx:eth0 netfilter:PREROUTING netfilter:INPUT decap:flannel.1 rx:flannel.1 netfilter:PREROUTING " +
		"netfilter:FORWARD netfilter:POSTROUTING tx:cni0 tx:veth5e6f7a8b rx:eth0"
	if got := kinds(p); got != want {
		t.Errorf("hops\n got %s\nwant %s", got, want)
	}
	if p.Verdict != VerdictDelivered {
		t.Errorf("verdict = %s, want delivered", p.Verdict)
	}
	if p.Src != ap("10.244.1.5:40312") || p.Dst != ap("10.96.0.10:80") || p.Proto != decode.ProtoTCP {
		t.Errorf("path tuple %s → %s", p.Src, p.Dst)
	}
	nat := p.Hops[3].NAT
	if nat == nil || *nat != (NAT{Type: hop.DNAT, From: ap("10.96.0.10:80"), To: ap("10.244.2.7:8080")}) {
		t.Errorf("nat hop = %+v", nat)
	}
	enc := p.Hops[8]
	if enc.Outer == nil || enc.Outer.Src.String() != "192.168.50.11" || enc.Outer.Dst.String() != "192.168.50.12" ||
		enc.Outer.DPort != 8472 || enc.Outer.VNI != 1 || enc.Netns != "node1" {
		t.Errorf("encap hop = %+v outer %+v", enc, enc.Outer)
	}
	if enc.Src != ap("10.244.1.5:40312") || enc.Dst != ap("10.244.2.7:8080") {
		t.Errorf("encap hop carries %s → %s, want the inner tuple", enc.Src, enc.Dst)
	}
	if dec := p.Hops[15]; dec.Outer == nil || dec.Outer.VNI != 1 || dec.Dev != "flannel.1" || dec.Netns != "node2" {
		t.Errorf("decap hop = %+v", dec)
	}
	fw := p.Hops[5]
	if fw.In != "cni0" || fw.Out != "flannel.1" || fw.Dur != time.Microsecond {
		t.Errorf("FORWARD hop = %+v", fw)
	}
	var prev time.Duration
	for i, h := range p.Hops {
		if h.T < prev || h.Delta != h.T-prev {
			t.Errorf("hop %d: T=%v Delta=%v after %v", i, h.T, h.Delta, prev)
		}
		prev = h.T
	}
}

func TestDropInsideHook(t *testing.T) {
	s := newSeq(0xb00, 1e9, tcp("10.244.1.5:40312", "10.244.2.7:8080"))
	s.dev(decode.KindTx, nsClient, "eth0").
		dev(decode.KindRx, nsNode1, "veth1a2b3c4d").
		add(decode.Event{Kind: decode.KindNF, Hook: hop.Forward, Slot: decode.SlotFirst, Netns: nsNode1, Dev: "cni0", In: "cni0", Out: "flannel.1"}).
		add(decode.Event{Kind: decode.KindDrop, Netns: nsNode1, Dev: "cni0", DropReason: 12, Flags: decode.FlagReason})
	paths, _ := collect(t, Config{}, s.events)
	if len(paths) != 1 {
		t.Fatalf("got %d paths", len(paths))
	}
	p := paths[0]
	if got, want := kinds(p), "tx:eth0 rx:veth1a2b3c4d netfilter:FORWARD drop:cni0"; got != want {
		t.Errorf("hops %s, want %s", got, want)
	}
	nf, drop := p.Hops[2], p.Hops[3]
	if !nf.Partial {
		t.Error("FORWARD hop without its last slot is not marked partial")
	}
	if drop.Reason != "NETFILTER_DROP" || drop.Hook != hop.Forward || drop.ReasonCode != 12 {
		t.Errorf("drop hop = %+v", drop)
	}
	if p.Verdict != VerdictDropped {
		t.Errorf("verdict %s", p.Verdict)
	}
}

func TestReplySNAT(t *testing.T) {
	s := newSeq(0xc00, 1e9, tcp("10.244.2.7:8080", "10.244.1.5:40312"))
	s.dev(decode.KindRx, nsNode1, "flannel.1").
		hook(hop.Postrouting, nsNode1, "flannel.1", "cni0", func(t *decode.Tuple) { t.Src = ap("10.96.0.10:80") }).
		dev(decode.KindTx, nsNode1, "cni0")
	paths, _ := collect(t, Config{}, s.events)
	nat := paths[0].Hops[2].NAT
	if nat == nil || *nat != (NAT{Type: hop.SNAT, From: ap("10.244.2.7:8080"), To: ap("10.96.0.10:80")}) {
		t.Fatalf("reply nat = %+v (hops %s)", nat, kinds(paths[0]))
	}
	if paths[0].Verdict != VerdictForwarded {
		t.Errorf("verdict %s, want forwarded (last seen on a node device)", paths[0].Verdict)
	}
}

func TestNewPacketOnSameSKB(t *testing.T) {
	a := newSeq(0xd00, 1e9, tcp("10.244.1.5:1", "10.244.1.6:2")).dev(decode.KindTx, nsClient, "eth0").dev(decode.KindRx, nsNode1, "vethaaaaaaaa")
	b := newSeq(0xd00, 1e9+5000, tcp("10.244.1.5:1", "10.244.1.6:2")).dev(decode.KindTx, nsClient, "eth0")
	paths, _ := collect(t, Config{}, append(a.events, b.events...))
	if len(paths) != 2 || len(paths[0].Hops) != 2 || len(paths[1].Hops) != 1 {
		t.Fatalf("got %d paths: %v", len(paths), paths)
	}
	if paths[0].ID != 1 || paths[1].ID != 2 {
		t.Errorf("IDs %d %d", paths[0].ID, paths[1].ID)
	}
}

func TestIdleSplitsAndFlushWaitsForGrace(t *testing.T) {
	var got []uint64
	s := New(Config{Names: testNames{}, Idle: time.Millisecond, Grace: time.Millisecond},
		func(p *Path) error { got = append(got, p.ID); return nil })
	a := newSeq(0xe00, 0, tcp("10.244.1.5:1", "10.244.1.6:2")).dev(decode.KindTx, nsClient, "eth0")
	for i := range a.events {
		s.Add(&a.events[i])
	}
	// Last event at 1µs: idle at 1.001ms, emitted once now ≥ 2.001ms.
	if err := s.Flush(uint64(2 * time.Millisecond)); err != nil || len(got) != 0 {
		t.Fatalf("emitted %v before the grace passed (err %v)", got, err)
	}
	if err := s.Flush(uint64(3 * time.Millisecond)); err != nil || len(got) != 1 {
		t.Fatalf("emitted %v after idle+grace (err %v)", got, err)
	}
	// The same skb long after: a new path, without the new-packet flag.
	ev := a.events[0]
	ev.Flags &^= decode.FlagNew
	ev.TS = uint64(10 * time.Millisecond)
	s.Add(&ev)
	if err := s.Close(); err != nil || len(got) != 2 || got[1] != 2 {
		t.Fatalf("got %v, err %v", got, err)
	}
}

func TestCopiesThatAreOnlyFreedAreNotEmitted(t *testing.T) {
	s := newSeq(0xf00, 1e9, tcp("10.244.1.5:1", "10.244.1.6:2")).add(decode.Event{Kind: decode.KindConsume, Netns: nsClient, Dev: "eth0"})
	paths, st := collect(t, Config{}, s.events)
	if len(paths) != 0 || st.Stats().Freed != 1 {
		t.Fatalf("paths %v, stats %+v", paths, st.Stats())
	}
}

func TestBounds(t *testing.T) {
	var evs []decode.Event
	for i := range 10 {
		evs = append(evs, newSeq(uint64(0x1000+i), uint64(i)*1000, tcp("10.244.1.5:1", "10.244.1.6:2")).dev(decode.KindTx, nsClient, "eth0").events...)
	}
	long := newSeq(0x9000, 1e9, tcp("10.244.1.5:1", "10.244.1.6:2"))
	for range 10 {
		long.dev(decode.KindTx, nsNode1, "eth0")
	}
	evs = append(evs, long.events...)
	paths, s := collect(t, Config{MaxActive: 4, MaxHops: 3}, evs)
	if len(paths) != 11 {
		t.Fatalf("got %d paths, want 11", len(paths))
	}
	st := s.Stats()
	if st.Evicted != 7 || st.Clipped != 7 {
		t.Errorf("stats %+v, want 7 evicted and 7 clipped", st)
	}
	last := paths[len(paths)-1]
	if !last.Clipped || len(last.Hops) != 3 || last.Events != 10 {
		t.Errorf("clipped path: %d hops, %d events, clipped=%v", len(last.Hops), last.Events, last.Clipped)
	}
}

// The order of emitted paths must not depend on when Flush is called: live
// tracing flushes on a timer, replay as events arrive, and both must print
// the same.
func TestOrderIndependentOfFlushSchedule(t *testing.T) {
	var evs []decode.Event
	for i := range 200 {
		s := crossNode(uint64(0x10000+i%37), uint64(i)*uint64(300*time.Microsecond))
		evs = append(evs, s.events...)
	}
	slices.SortStableFunc(evs, func(a, b decode.Event) int { return int(int64(a.TS) - int64(b.TS)) })
	type key struct{ id, mono, skb uint64 }
	run := func(flushEvery int) []key {
		var ids []key
		s := New(Config{Names: testNames{}, Idle: 2 * time.Millisecond, Grace: time.Millisecond},
			func(p *Path) error { ids = append(ids, key{p.ID, p.Mono, p.SKB}); return nil })
		for i := range evs {
			s.Add(&evs[i])
			if flushEvery > 0 && rand.IntN(flushEvery) == 0 {
				if err := s.Flush(evs[i].TS); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	want := run(0)
	if len(want) < 200 {
		t.Fatalf("only %d paths", len(want))
	}
	for _, every := range []int{1, 3, 50, 1000} {
		if got := run(every); !slices.Equal(got, want) {
			t.Errorf("flushing about every %d events changed the order", every)
		}
	}
}

func BenchmarkStitch(b *testing.B) {
	var evs []decode.Event
	for i := range 1000 {
		evs = append(evs, crossNode(uint64(0x10000+i%64), uint64(i)*uint64(50*time.Microsecond)).events...)
	}
	span := evs[len(evs)-1].TS + uint64(time.Second)
	s := New(Config{Names: testNames{}}, func(*Path) error { return nil })
	b.ReportAllocs()
	n := 0
	var base uint64
	for b.Loop() {
		ev := evs[n]
		ev.TS += base
		s.Add(&ev)
		if n++; n == len(evs) {
			n = 0
			base += span
			if err := s.Flush(base); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// IPIP (Calico's tunl0, routed veths) and Geneve keep one path across the
// nodes as VXLAN does, with encap and decap hops carrying their outer
// header: no port or VNI for IPIP. Inferred from the headers, or shown by
// the tunnel's functions (ipip_tunnel_xmit and ipip_rcv, geneve_xmit and
// geneve_udp_encap_recv, from kprobes here): the same hops, with the
// functions' backend.
func TestTunnelsAcrossNodes(t *testing.T) {
	for _, tt := range []struct {
		name, dev string
		encap     func(*seq) *seq
		want      Outer
		fn        decode.TunnelFunc // what the transmit function's program read
	}{
		{"ipip", "tunl0", func(s *seq) *seq { return s.encapIPIP("192.168.50.11", "192.168.50.12") },
			Outer{Tunnel: hop.TunnelIPIP, Src: ap("192.168.50.11:0").Addr(), Dst: ap("192.168.50.12:0").Addr()},
			decode.TunnelFunc{Tunnel: hop.TunnelIPIP}},
		{"geneve", "genev_sys_6081", func(s *seq) *seq { return s.encapGeneve("192.168.50.11:51000", "192.168.50.12:6081", 7) },
			Outer{Tunnel: hop.TunnelGeneve, Src: ap("192.168.50.11:0").Addr(), Dst: ap("192.168.50.12:0").Addr(), DPort: 6081, VNI: 7},
			decode.TunnelFunc{Tunnel: hop.TunnelGeneve, Known: true, VNI: 7, DPort: 6081}},
	} {
		for _, funcs := range []bool{false, true} {
			name, backend := tt.name, hop.Inferred
			if funcs {
				name, backend = tt.name+"/functions", hop.Kprobe
			}
			t.Run(name, func(t *testing.T) {
				// fn adds the tunnel function's event of kind k, if funcs.
				fn := func(s *seq, k decode.Kind, netns uint32, dev string) *seq {
					if !funcs {
						return s
					}
					ev := decode.Event{Kind: k, Flags: decode.FlagKprobe, Netns: netns, Dev: dev, TunnelFunc: tt.fn}
					if k == decode.KindDecap {
						ev.TunnelFunc = decode.TunnelFunc{Tunnel: tt.fn.Tunnel}
					}
					return s.add(ev)
				}
				s := newSeq(0xb00, 1e9, tcp("10.244.1.5:40312", "10.244.2.7:8080"))
				s.dev(decode.KindTx, nsClient, "eth0").
					dev(decode.KindRx, nsNode1, "cali1a2b3c4d").
					hook(hop.Forward, nsNode1, "cali1a2b3c4d", tt.dev, nil).
					dev(decode.KindTx, nsNode1, tt.dev)
				fn(s, decode.KindEncap, nsNode1, tt.dev)
				tt.encap(s).
					dev(decode.KindTx, nsNode1, "eth0").
					dev(decode.KindRx, nsNode2, "eth0")
				fn(s, decode.KindDecap, nsNode2, "eth0").
					decap().
					dev(decode.KindRx, nsNode2, tt.dev).
					dev(decode.KindTx, nsNode2, "cali5e6f7a8b").
					dev(decode.KindRx, nsServer, "eth0")
				paths, _ := collect(t, Config{}, s.events)
				if len(paths) != 1 {
					t.Fatalf("got %d paths, want 1", len(paths))
				}
				p := paths[0]
				want := "tx:eth0 rx:cali1a2b3c4d netfilter:FORWARD tx:" + tt.dev + " encap:" + tt.dev + " tx:eth0 rx:eth0 decap:" + tt.dev +
					" rx:" + tt.dev + " tx:cali5e6f7a8b rx:eth0"
				if got := kinds(p); got != want {
					t.Fatalf("hops\n got %s\nwant %s", got, want)
				}
				for _, i := range []int{4, 5, 6, 7} {
					h := p.Hops[i]
					if h.Outer == nil || *h.Outer != tt.want {
						t.Errorf("hop %d %s outer %+v, want %+v", i, h.Kind, h.Outer, tt.want)
					}
					if h.Src != ap("10.244.1.5:40312") || h.Dst != ap("10.244.2.7:8080") {
						t.Errorf("hop %d carries %s → %s, want the inner tuple", i, h.Src, h.Dst)
					}
				}
				for _, i := range []int{4, 7} {
					if h := p.Hops[i]; h.Backend != backend || h.NetnsInode != p.Hops[i-1].NetnsInode {
						t.Errorf("hop %d %s: backend %q netns %d, want %q in the previous hop's", i, h.Kind, h.Backend, h.NetnsInode, backend)
					}
				}
				if p.Verdict != VerdictDelivered {
					t.Errorf("verdict %s", p.Verdict)
				}
			})
		}
	}
}
