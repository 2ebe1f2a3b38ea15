package render

import (
	"net/netip"
	"time"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// Hand-built paths modelled on a two-node flannel (VXLAN) cluster:
// node1 192.168.50.11 with pods in 10.244.1.0/24, node2 192.168.50.12 with
// pods in 10.244.2.0/24, services in 10.96.0.0/12.

var (
	ap = netip.MustParseAddrPort
	ip = netip.MustParseAddr

	tcpSYN = uint8(0x02)

	nsClient  = ns{"default/client-5f7c9", 4026532481}
	nsNode1   = ns{"node1", 4026531840}
	nsNode2   = ns{"node2", 4026531840}
	nsWeb     = ns{"default/web-6c9f8", 4026532719}
	nsCoreDNS = ns{"kube-system/coredns-76f75", 4026532390}

	vxlan12 = &stitch.Outer{Tunnel: hop.TunnelVXLAN, Src: ip("192.168.50.11"), Dst: ip("192.168.50.12"), DPort: 8472, VNI: 1}
)

type ns struct {
	name  string
	inode uint32
}

func (n ns) hop(kind hop.Kind, dev string, ifindex uint32, delta time.Duration) stitch.Hop {
	return stitch.Hop{Kind: kind, Dev: dev, Ifindex: ifindex, Netns: n.name, NetnsInode: n.inode, Delta: delta}
}

func us(tenths int64) time.Duration { return time.Duration(tenths) * 100 * time.Nanosecond }

// finish fills in each hop's cumulative time and, where a hop leaves them
// zero, the tuple, protocol, flags, CPU and length of the hop before it.
func finish(p *stitch.Path, cpu uint16) *stitch.Path {
	var t time.Duration
	src, dst, l := p.Src, p.Dst, p.Len
	for i := range p.Hops {
		h := &p.Hops[i]
		if i == 0 {
			h.Delta = 0
		}
		t += h.Delta
		h.T = t
		if h.CPU == 0 {
			h.CPU = cpu
		} else {
			cpu = h.CPU
		}
		if h.Proto == 0 {
			h.Proto = p.Proto
		}
		if h.TCPFlags == 0 {
			h.TCPFlags = p.TCPFlags
		}
		if !h.Src.IsValid() {
			h.Src, h.Dst = src, dst
		}
		if !h.HasICMPID {
			h.HasICMPID, h.ICMPID = p.HasICMPID, p.ICMPID
		}
		src, dst = h.Src, h.Dst
		if h.Len == 0 {
			h.Len = l
		}
		l = h.Len
	}
	return p
}

func nf(h stitch.Hop, hook hop.Hook, in, out string, dur time.Duration) stitch.Hop {
	h.Hook, h.In, h.Out, h.Dur = hook, in, out, dur
	return h
}

func withOuter(h stitch.Hop, o *stitch.Outer, l uint32) stitch.Hop {
	h.Outer, h.Len = o, l
	return h
}

// crossNode is a TCP SYN from a pod on node1 to ClusterIP 10.96.0.10:80,
// DNATed to a backend on node2 and carried there over flannel's VXLAN.
func crossNode() *stitch.Path {
	client, svc, web := ap("10.244.1.5:40312"), ap("10.96.0.10:80"), ap("10.244.2.7:8080")
	nat := nsNode1.hop(hop.NAT, "cni0", 5, us(120))
	nat.Hook, nat.In = hop.Prerouting, "cni0"
	nat.NAT = &stitch.NAT{Type: hop.DNAT, From: svc, To: web}
	nat.Src, nat.Dst = client, web
	decap := withOuter(nsNode2.hop(hop.Decap, "flannel.1", 4, us(34)), vxlan12, 60)
	rx2 := withOuter(nsNode2.hop(hop.Rx, "eth0", 2, us(1876)), vxlan12, 110)
	rx2.CPU = 5
	consume := nsWeb.hop(hop.Consume, "eth0", 3, us(87))
	return finish(&stitch.Path{
		ID: 1, SKB: 0xffff8881047c2e00, Mono: 81234567890123,
		Start: time.Date(2026, 11, 28, 3, 40, 1, 123456789, time.UTC),
		Proto: protoTCP, Src: client, Dst: svc, TCPFlags: tcpSYN, IPID: 15386, Len: 60,
		Verdict: stitch.VerdictDelivered, Events: 38,
		Hops: []stitch.Hop{
			nsClient.hop(hop.Tx, "eth0", 3, 0),
			nsNode1.hop(hop.Rx, "veth3a1f2b9c", 7, us(31)),
			nsNode1.hop(hop.Rx, "cni0", 5, us(12)),
			nf(nsNode1.hop(hop.Netfilter, "cni0", 5, us(8)), hop.Prerouting, "cni0", "", us(120)),
			nat,
			nf(nsNode1.hop(hop.Netfilter, "cni0", 5, us(24)), hop.Forward, "cni0", "flannel.1", us(43)),
			nf(nsNode1.hop(hop.Netfilter, "flannel.1", 4, us(46)), hop.Postrouting, "", "flannel.1", us(22)),
			nsNode1.hop(hop.Tx, "flannel.1", 4, us(25)),
			withOuter(nsNode1.hop(hop.Encap, "flannel.1", 4, us(19)), vxlan12, 110),
			withOuter(nf(nsNode1.hop(hop.Netfilter, "eth0", 2, us(21)), hop.Output, "", "eth0", us(14)), vxlan12, 110),
			withOuter(nf(nsNode1.hop(hop.Netfilter, "eth0", 2, us(16)), hop.Postrouting, "", "eth0", us(11)), vxlan12, 110),
			withOuter(nsNode1.hop(hop.Tx, "eth0", 2, us(13)), vxlan12, 110),
			rx2,
			withOuter(nf(nsNode2.hop(hop.Netfilter, "eth0", 2, us(20)), hop.Prerouting, "eth0", "", us(51)), vxlan12, 110),
			withOuter(nf(nsNode2.hop(hop.Netfilter, "eth0", 2, us(57)), hop.Input, "eth0", "", us(9)), vxlan12, 110),
			decap,
			nf(nsNode2.hop(hop.Netfilter, "flannel.1", 4, us(26)), hop.Prerouting, "flannel.1", "", us(68)),
			nf(nsNode2.hop(hop.Netfilter, "flannel.1", 4, us(71)), hop.Forward, "flannel.1", "cni0", us(39)),
			nf(nsNode2.hop(hop.Netfilter, "cni0", 5, us(42)), hop.Postrouting, "", "cni0", us(17)),
			nsNode2.hop(hop.Tx, "veth9d0e4a1f", 9, us(23)),
			nsWeb.hop(hop.Rx, "eth0", 3, us(48)),
			consume,
		},
	}, 2)
}

// sameNode is a DNS query from a pod to the kube-dns ClusterIP, DNATed to a
// CoreDNS pod on the same node and bridged back out of cni0.
func sameNode() *stitch.Path {
	client, svc, dns := ap("10.244.1.5:53211"), ap("10.96.0.10:53"), ap("10.244.1.9:53")
	nat := nsNode1.hop(hop.NAT, "cni0", 5, us(97))
	nat.Hook, nat.In = hop.Prerouting, "cni0"
	nat.NAT = &stitch.NAT{Type: hop.DNAT, From: svc, To: dns}
	nat.Src, nat.Dst = client, dns
	return finish(&stitch.Path{
		ID: 2, SKB: 0xffff888103d1a900, Mono: 81234601234567,
		Start: time.Date(2026, 11, 28, 3, 40, 1, 157000000, time.UTC),
		Proto: protoUDP, Src: client, Dst: svc, IPID: 40211, Len: 71,
		Verdict: stitch.VerdictDelivered, Events: 17,
		Hops: []stitch.Hop{
			nsClient.hop(hop.Tx, "eth0", 3, 0),
			nsNode1.hop(hop.Rx, "veth3a1f2b9c", 7, us(29)),
			nsNode1.hop(hop.Rx, "cni0", 5, us(11)),
			nf(nsNode1.hop(hop.Netfilter, "cni0", 5, us(7)), hop.Prerouting, "cni0", "", us(97)),
			nat,
			nf(nsNode1.hop(hop.Netfilter, "cni0", 5, us(21)), hop.Forward, "cni0", "cni0", us(32)),
			nf(nsNode1.hop(hop.Netfilter, "cni0", 5, us(38)), hop.Postrouting, "", "cni0", us(14)),
			nsNode1.hop(hop.Tx, "vethb71c0d2e", 11, us(19)),
			nsCoreDNS.hop(hop.Rx, "eth0", 3, us(44)),
			nsCoreDNS.hop(hop.Consume, "eth0", 3, us(152)),
		},
	}, 1)
}

// forwardDrop is a TCP SYN to a database pod that a NetworkPolicy rule drops
// in FORWARD.
func forwardDrop() *stitch.Path {
	client, db := ap("10.244.1.5:51844"), ap("10.244.2.14:5432")
	fwd := nf(nsNode1.hop(hop.Netfilter, "cni0", 5, us(22)), hop.Forward, "cni0", "flannel.1", 0)
	fwd.Partial = true
	drop := nsNode1.hop(hop.Drop, "cni0", 5, us(61))
	drop.Reason, drop.ReasonCode, drop.Location, drop.Mark = "NETFILTER_DROP", 8, 0xffffffff81c3a5e0, 0x8000
	drop.Func = "nf_hook_slow+0xa0"
	drop.Hook = hop.Forward // the hook's last view never ran: the stitcher names it
	return finish(&stitch.Path{
		ID: 3, SKB: 0xffff88810a2b7400, Mono: 81234689012345,
		Start: time.Date(2026, 11, 28, 3, 40, 1, 201030400, time.UTC),
		Proto: protoTCP, Src: client, Dst: db, TCPFlags: tcpSYN, IPID: 8807, Len: 60,
		Verdict: stitch.VerdictDropped, Events: 9,
		Hops: []stitch.Hop{
			nsClient.hop(hop.Tx, "eth0", 3, 0),
			nsNode1.hop(hop.Rx, "veth3a1f2b9c", 7, us(33)),
			nsNode1.hop(hop.Rx, "cni0", 5, us(12)),
			nf(nsNode1.hop(hop.Netfilter, "cni0", 5, us(9)), hop.Prerouting, "cni0", "", us(81)),
			fwd,
			drop,
		},
	}, 3)
}

// icmpOut is a ping from a pod to the internet, masqueraded to the node's
// address in POSTROUTING and last seen leaving eth0.
func icmpOut() *stitch.Path {
	client, dst := ap("10.244.1.5:8"), ap("1.1.1.1:0") // ICMP ports: type 8, code 0
	nat := nsNode1.hop(hop.NAT, "eth0", 2, us(52))
	nat.Hook, nat.Out = hop.Postrouting, "eth0"
	nat.NAT = &stitch.NAT{Type: hop.SNAT, From: ap("10.244.1.5:4660"), To: ap("192.168.50.11:4660")} // ports: echo ids
	nat.Src, nat.Dst = ap("192.168.50.11:8"), dst
	return finish(&stitch.Path{
		ID: 4, SKB: 0xffff888104f0c300, Mono: 81235012345678,
		Start: time.Date(2026, 11, 28, 3, 40, 2, 0, time.UTC),
		Proto: protoICMP, Src: client, Dst: dst, IPID: 51022, Len: 84, HasICMPID: true, ICMPID: 4660,
		Verdict: stitch.VerdictForwarded, Events: 12,
		Hops: []stitch.Hop{
			nsClient.hop(hop.Tx, "eth0", 3, 0),
			nsNode1.hop(hop.Rx, "veth3a1f2b9c", 7, us(30)),
			nsNode1.hop(hop.Rx, "cni0", 5, us(11)),
			nf(nsNode1.hop(hop.Netfilter, "cni0", 5, us(8)), hop.Prerouting, "cni0", "", us(64)),
			nf(nsNode1.hop(hop.Netfilter, "cni0", 5, us(19)), hop.Forward, "cni0", "eth0", us(27)),
			nf(nsNode1.hop(hop.Netfilter, "eth0", 2, us(33)), hop.Postrouting, "", "eth0", us(52)),
			nat,
			nsNode1.hop(hop.Tx, "eth0", 2, us(18)),
		},
	}, 0)
}

// tooBig is a 1468-byte UDP datagram with DF set from a pod whose MTU is
// larger than the overlay's, dropped by node1 when routing it, with the
// advice and warnings internal/diagnose gives it.
func tooBig() *stitch.Path {
	client, web := ap("10.244.1.5:50658"), ap("10.244.2.7:9999")
	drop := nsNode1.hop(hop.Drop, "cni0", 5, us(73))
	drop.Reason, drop.ReasonCode, drop.Location = "PKT_TOO_BIG", 93, 0xffffffff81ff8350
	drop.Advice = "A 1468-byte packet with DF set does not fit the MTU 1450 of flannel.1 on node1: the kernel sent ICMP fragmentation-needed (mtu 1450) back to 10.244.1.5 and dropped it.\n" +
		"$ ip route get 10.244.2.7\n" +
		"$ ip -d link show flannel.1"
	rx := nsNode1.hop(hop.Rx, "veth3a1f2b9c", 7, us(35))
	rx.Len = 1468
	return finish(&stitch.Path{
		ID: 5, SKB: 0xffff888106a3b000, Mono: 81235112345678,
		Start: time.Date(2026, 11, 28, 3, 40, 2, 100000000, time.UTC),
		Proto: protoUDP, Src: client, Dst: web, IPID: 0, Len: 1482,
		Verdict: stitch.VerdictDropped, Events: 6,
		Warnings: []string{
			"A 1468-byte packet on its way through flannel.1 on node1, whose MTU is 1450: with DF set it is dropped and ICMP fragmentation-needed is sent back, without DF it is fragmented. Pods should use an MTU ≤ 1450. Check: ip link show flannel.1",
		},
		Hops: []stitch.Hop{
			nsClient.hop(hop.Tx, "eth0", 3, 0),
			rx,
			nf(nsNode1.hop(hop.Netfilter, "cni0", 5, us(9)), hop.Prerouting, "cni0", "", us(77)),
			nsNode1.hop(hop.Rx, "cni0", 5, us(81)),
			drop,
		},
	}, 1)
}

func fixtures() []*stitch.Path {
	return append([]*stitch.Path{crossNode(), sameNode(), forwardDrop(), icmpOut(), tooBig(), ipvsLocal(), tableDrop(), ipvsNoEndpoint()},
		connFixtures()...)
}
