package render

import (
	"time"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// connFixtures are paths of whole connections: a reply with its reverse
// translation, a first packet seen only after its translation.
func connFixtures() []*stitch.Path { return []*stitch.Path{clusterIPReply(), nodePortFirst()} }

// clusterIPReply is the SYN-ACK of crossNode's connection, back from the
// backend on node2: node1 restores the Service as its source (un-DNAT) in
// POSTROUTING.
func clusterIPReply() *stitch.Path {
	client, svc, web := ap("10.244.1.5:40312"), ap("10.96.0.10:80"), ap("10.244.2.7:8080")
	undnat := nsNode1.hop(hop.NAT, "cni0", 5, us(17))
	undnat.Hook, undnat.Out = hop.Postrouting, "cni0"
	undnat.NAT = &stitch.NAT{Type: hop.SNAT, From: web, To: svc, Reverse: true}
	undnat.Src, undnat.Dst = svc, client
	vxlan21 := &stitch.Outer{Tunnel: hop.TunnelVXLAN, Src: ip("192.168.50.12"), Dst: ip("192.168.50.11"), DPort: 8472, VNI: 1}
	return finish(&stitch.Path{
		ID: 9, SKB: 0xffff888107e4c800, Mono: 81234568190123,
		Start: time.Date(2026, 11, 28, 3, 40, 1, 123756789, time.UTC),
		Proto: protoTCP, Src: web, Dst: client, TCPFlags: 0x12, IPID: 0, Len: 60,
		Verdict: stitch.VerdictDelivered, Events: 30,
		Hops: []stitch.Hop{
			nsWeb.hop(hop.Tx, "eth0", 3, 0),
			nsNode2.hop(hop.Rx, "veth9d0e4a1f", 9, us(29)),
			withOuter(nsNode2.hop(hop.Encap, "flannel.1", 4, us(151)), vxlan21, 110),
			withOuter(nsNode2.hop(hop.Tx, "eth0", 2, us(33)), vxlan21, 110),
			withOuter(nsNode1.hop(hop.Rx, "eth0", 2, us(1702)), vxlan21, 110),
			withOuter(nsNode1.hop(hop.Decap, "flannel.1", 4, us(71)), vxlan21, 60),
			nf(nsNode1.hop(hop.Netfilter, "flannel.1", 4, us(24)), hop.Prerouting, "flannel.1", "", us(31)),
			nf(nsNode1.hop(hop.Netfilter, "flannel.1", 4, us(52)), hop.Forward, "flannel.1", "cni0", us(12)),
			nf(nsNode1.hop(hop.Netfilter, "cni0", 5, us(19)), hop.Postrouting, "", "cni0", us(17)),
			undnat,
			nsNode1.hop(hop.Tx, "veth3a1f2b9c", 7, us(21)),
			nsClient.hop(hop.Rx, "eth0", 3, us(45)),
		},
	}, 2)
}

// nodePortFirst is the SYN of a connection from a host outside the cluster
// to a NodePort of node1, traced by the backend's address: it matches only
// once PREROUTING translated it, so its path starts there (DNAT unseen),
// and is masqueraded to node1's flannel.1 address before the overlay.
func nodePortFirst() *stitch.Path {
	ext, web := ap("192.168.50.100:40000"), ap("10.244.2.7:8080")
	masq := nsNode1.hop(hop.NAT, "flannel.1", 4, us(22))
	masq.Hook, masq.Out = hop.Postrouting, "flannel.1"
	masq.NAT = &stitch.NAT{Type: hop.SNAT, From: ext, To: ap("10.244.1.0:40000")}
	masq.Src, masq.Dst = ap("10.244.1.0:40000"), web
	return finish(&stitch.Path{
		ID: 10, SKB: 0xffff888109a1d000, Mono: 81236012345678,
		Start: time.Date(2026, 11, 28, 3, 40, 4, 0, time.UTC),
		Proto: protoTCP, Src: ext, Dst: web, TCPFlags: tcpSYN, IPID: 3001, Len: 60,
		Verdict: stitch.VerdictForwarded, Events: 11, FirstSeen: stitch.FirstSeenAfterNAT,
		Hops: []stitch.Hop{
			nf(nsNode1.hop(hop.Netfilter, "eth0", 2, 0), hop.Prerouting, "eth0", "", 0),
			nf(nsNode1.hop(hop.Netfilter, "eth0", 2, us(38)), hop.Forward, "eth0", "flannel.1", us(14)),
			nf(nsNode1.hop(hop.Netfilter, "flannel.1", 4, us(41)), hop.Postrouting, "", "flannel.1", us(22)),
			masq,
			nsNode1.hop(hop.Tx, "flannel.1", 4, us(18)),
			withOuter(nsNode1.hop(hop.Encap, "flannel.1", 4, us(19)), vxlan12, 110),
			withOuter(nsNode1.hop(hop.Tx, "eth0", 2, us(40)), vxlan12, 110),
		},
	}, 0)
}
