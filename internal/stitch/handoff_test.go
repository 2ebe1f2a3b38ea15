package stitch

import (
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
)

// icmp6 is an ICMPv6 echo request's tuple, as the kernel shows it.
func icmp6(id uint16) decode.Tuple {
	return decode.Tuple{Proto: decode.ProtoICMPv6, Src: ap("[fd77:1::5]:128"), Dst: ap("[fd77:2::7]:0"), IPID: 0x1234, HasICMPID: true, ICMPID: id}
}

// forwardedCopy is an echo request forwarded by node1 into flannel.1 as
// ip6_finish_output2 does it for an skb short of headroom: the original
// is freed right after POSTROUTING and a copy, another skb, goes on after
// gap (the clone's first event) to the server. It returns both halves.
func forwardedCopy(tup decode.Tuple, gap uint64) (orig, copied *seq) {
	orig = newSeq(0xa00, 1e9, tup)
	orig.dev(decode.KindTx, nsClient, "eth0").
		dev(decode.KindRx, nsNode1, "veth1a2b3c4d").
		hook(hop.Prerouting, nsNode1, "cni0", "", nil).
		hook(hop.Forward, nsNode1, "cni0", "flannel.1", nil).
		hook(hop.Postrouting, nsNode1, "cni0", "flannel.1", nil).
		add(decode.Event{Kind: decode.KindConsume})
	copied = newSeq(0xb00, orig.ts+gap-1000, tup)
	copied.dev(decode.KindTx, nsNode1, "flannel.1").
		encap("192.168.50.11:48748", "192.168.50.12:8472", 1).
		dev(decode.KindTx, nsNode1, "eth0").
		dev(decode.KindRx, nsNode2, "eth0").
		decap().
		dev(decode.KindRx, nsNode2, "flannel.1").
		dev(decode.KindTx, nsNode2, "veth5e6f7a8b").
		dev(decode.KindRx, nsServer, "eth0").
		add(decode.Event{Kind: decode.KindConsume, Netns: nsServer, Dev: "eth0"})
	return orig, copied
}

// A packet copied for headroom and freed by the forwarding node goes on
// in one path, on the copy's skb, without the original's free.
func TestCopyForHeadroomContinuesThePath(t *testing.T) {
	orig, copied := forwardedCopy(icmp6(7), 20*1000)
	paths, st := collect(t, Config{}, append(orig.events, copied.events...))
	if len(paths) != 1 {
		t.Fatalf("%d paths, want 1: %v", len(paths), paths)
	}
	p := paths[0]
	want := "tx:eth0 rx:veth1a2b3c4d netfilter:PREROUTING netfilter:FORWARD netfilter:POSTROUTING tx:flannel.1 encap:flannel.1 tx:eth0 rx:eth0 decap:flannel.1 rx:flannel.1 tx:veth5e6f7a8b rx:eth0 consume:eth0"
	if got := kinds(p); got != want {
		t.Errorf("hops\n%s\nwant\n%s", got, want)
	}
	if p.SKB != 0xa00 || p.Verdict != VerdictDelivered || st.Active() != 0 {
		t.Errorf("skb %#x, verdict %s, %d active; want 0xa00, delivered, 0", p.SKB, p.Verdict, st.Active())
	}
}

// What is not the same packet, soon after, in the same node, is not
// joined: the free ends the path as before.
func TestCopyForHeadroomNotJoined(t *testing.T) {
	for _, c := range []struct {
		name string
		tup  decode.Tuple // of the second skb
		gap  uint64
	}{
		{"another echo", icmp6(8), 20 * 1000},
		{"too late", icmp6(7), uint64(handoffWindow) + 1000*1000},
	} {
		t.Run(c.name, func(t *testing.T) {
			orig, _ := forwardedCopy(icmp6(7), c.gap)
			_, other := forwardedCopy(c.tup, c.gap)
			paths, st := collect(t, Config{}, append(orig.events, other.events...))
			if len(paths) != 2 {
				t.Fatalf("%d paths, want 2", len(paths))
			}
			if last := paths[0].Hops[len(paths[0].Hops)-1]; last.Kind != hop.Consume || last.Dev != "flannel.1" {
				t.Errorf("first path ends with %s on %q, want its free on flannel.1", last.Kind, last.Dev)
			}
			if st.Active() != 0 {
				t.Errorf("%d paths still active", st.Active())
			}
		})
	}
}

// A path handed off that nothing takes ends at its free when the stream
// goes on, when Flush passes it, and at Close: the same path each time.
func TestCopyForHeadroomExpires(t *testing.T) {
	orig, _ := forwardedCopy(icmp6(7), 0)
	later := newSeq(0xc00, orig.ts+uint64(time.Second), tcp("10.244.1.5:1", "10.244.1.6:2")).dev(decode.KindTx, nsClient, "eth0")
	for _, c := range []struct {
		name string
		run  func(s *Stitcher)
	}{
		{"next event", func(s *Stitcher) { s.Add(&later.events[0]) }},
		{"flush", func(s *Stitcher) { _ = s.Flush(orig.ts + uint64(time.Second)) }},
		{"close", func(*Stitcher) {}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var paths []*Path
			s := New(Config{Names: testNames{}}, func(p *Path) error { paths = append(paths, p); return nil })
			for i := range orig.events {
				s.Add(&orig.events[i])
			}
			c.run(s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if len(paths) == 0 || kinds(paths[0]) != "tx:eth0 rx:veth1a2b3c4d netfilter:PREROUTING netfilter:FORWARD netfilter:POSTROUTING consume:flannel.1" {
				t.Fatalf("paths %d, first %s", len(paths), kinds(paths[0]))
			}
			if len(s.handoffs) != 0 || s.Active() != 0 {
				t.Errorf("%d handed off, %d active after close", len(s.handoffs), s.Active())
			}
		})
	}
}
