package render

import (
	"time"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

var nsServerLocal = ns{"default/server-local-7d4b8", 4026532805}

// via sets the backend that showed a hop.
func via(h stitch.Hop, backend hop.Backend) stitch.Hop {
	h.Backend = backend
	return h
}

// ipvsLocal is a TCP SYN to a ClusterIP in kube-proxy's IPVS mode, as a
// kernel without netfilter links shows it (netfilter hooks and function
// hops from fentry): IPVS takes the packet in INPUT (so INPUT has no last
// view), picks a real server on the same node and sends it out again
// through OUTPUT; the bridge forwards it to the pod's veth.
func ipvsLocal() *stitch.Path {
	client, svc, real := ap("10.244.1.5:40500"), ap("10.96.0.10:80"), ap("10.244.1.8:8080")
	input := nf(nsNode1.hop(hop.Netfilter, "cni0", 5, us(31)), hop.Input, "cni0", "", 0)
	input.Partial = true
	ipvs := nsNode1.hop(hop.IPVS, "cni0", 5, us(18))
	ipvs.IPVS = &stitch.IPVS{Service: svc, RealServer: real, Scheduler: "rr", Method: hop.MethodMasq}
	out := nf(nsNode1.hop(hop.Netfilter, "cni0", 5, us(96)), hop.Output, "", "cni0", us(41))
	out.Src, out.Dst = client, real
	br := nsNode1.hop(hop.Bridge, "cni0", 5, us(24))
	br.Bridge = &stitch.Bridge{In: "cni0", Out: "veth5c2e81aa"}
	return finish(&stitch.Path{
		ID: 6, SKB: 0xffff888104d2b100, Mono: 81235012345678,
		Start: time.Date(2026, 11, 28, 3, 40, 3, 5000000, time.UTC),
		Proto: protoTCP, Src: client, Dst: svc, TCPFlags: tcpSYN, IPID: 30211, Len: 60,
		Verdict: stitch.VerdictDelivered, Events: 14,
		Hops: []stitch.Hop{
			via(nsClient.hop(hop.Tx, "eth0", 3, 0), hop.Tracepoint),
			via(nsNode1.hop(hop.Rx, "veth3a1f2b9c", 7, us(33)), hop.Tracepoint),
			via(nf(nsNode1.hop(hop.Netfilter, "cni0", 5, us(12)), hop.Prerouting, "cni0", "", us(58)), hop.Fentry),
			via(nsNode1.hop(hop.Rx, "cni0", 5, us(64)), hop.Tracepoint),
			via(input, hop.Fentry),
			via(ipvs, hop.Fentry),
			via(out, hop.Fentry),
			via(nf(nsNode1.hop(hop.Netfilter, "cni0", 5, us(47)), hop.Postrouting, "", "cni0", us(22)), hop.Fentry),
			via(nsNode1.hop(hop.Tx, "cni0", 5, us(26)), hop.Tracepoint),
			via(br, hop.Fentry),
			via(nsNode1.hop(hop.Tx, "veth5c2e81aa", 12, us(15)), hop.Tracepoint),
			via(nsServerLocal.hop(hop.Rx, "eth0", 3, us(39)), hop.Tracepoint),
		},
	}, 1)
}

// tableDrop is a TCP SYN that a rule in FORWARD drops, as a kernel with
// kprobes only shows it: nf_hook_slow for the hooks, nft_do_chain for the
// tables (iptables-nft), each table's verdict inside its hook.
func tableDrop() *stitch.Path {
	client, web := ap("10.244.1.5:40620"), ap("10.244.2.7:8080")
	table := func(h stitch.Hop, hook hop.Hook, family hop.Family, name string, verdict hop.Verdict) stitch.Hop {
		h.Hook, h.In = hook, "cni0"
		h.Table = &stitch.Table{Engine: hop.EngineNFTables, Family: family, Name: name, Chain: hook.String(), Verdict: verdict}
		return via(h, hop.Kprobe)
	}
	fwd := nf(nsNode1.hop(hop.Netfilter, "cni0", 5, us(21)), hop.Forward, "cni0", "flannel.1", 0)
	fwd.Partial = true
	drop := nsNode1.hop(hop.Drop, "cni0", 5, us(30))
	drop.Reason, drop.ReasonCode = "NETFILTER_DROP", 8
	return finish(&stitch.Path{
		ID: 7, SKB: 0xffff888104d2c600, Mono: 81236012345678,
		Start: time.Date(2026, 11, 28, 3, 40, 4, 0, time.UTC),
		Proto: protoTCP, Src: client, Dst: web, TCPFlags: tcpSYN, IPID: 30377, Len: 60,
		Verdict: stitch.VerdictDropped, Events: 8,
		Hops: []stitch.Hop{
			via(nsClient.hop(hop.Tx, "eth0", 3, 0), hop.Tracepoint),
			via(nsNode1.hop(hop.Rx, "veth3a1f2b9c", 7, us(31)), hop.Tracepoint),
			via(nf(nsNode1.hop(hop.Netfilter, "cni0", 5, us(12)), hop.Prerouting, "cni0", "", us(40)), hop.Kprobe),
			table(nsNode1.hop(hop.Table, "cni0", 5, us(25)), hop.Prerouting, hop.FamilyIPv4, "nat", hop.VerdictAccept),
			via(nsNode1.hop(hop.Rx, "cni0", 5, us(36)), hop.Tracepoint),
			via(fwd, hop.Kprobe),
			table(nsNode1.hop(hop.Table, "cni0", 5, us(27)), hop.Forward, hop.FamilyIPv4, "filter", hop.VerdictDrop),
			via(drop, hop.Tracepoint),
		},
	}, 2)
}

// ipvsNoEndpoint is a TCP SYN to a virtual service without real servers:
// IPVS's hook drops it in INPUT (after answering with an ICMP error).
func ipvsNoEndpoint() *stitch.Path {
	client, svc := ap("10.244.1.5:40700"), ap("10.96.0.20:80")
	input := nf(nsNode1.hop(hop.Netfilter, "cni0", 5, us(30)), hop.Input, "cni0", "", 0)
	input.Partial = true
	ipvs := nsNode1.hop(hop.IPVS, "cni0", 5, us(52))
	ipvs.Hook, ipvs.In = hop.Input, "cni0"
	ipvs.IPVS = &stitch.IPVS{Verdict: hop.VerdictDrop}
	drop := nsNode1.hop(hop.Drop, "cni0", 5, us(9))
	drop.Reason, drop.ReasonCode = "NETFILTER_DROP", 8
	return finish(&stitch.Path{
		ID: 8, SKB: 0xffff888104d2d000, Mono: 81237012345678,
		Start: time.Date(2026, 11, 28, 3, 40, 5, 0, time.UTC),
		Proto: protoTCP, Src: client, Dst: svc, TCPFlags: tcpSYN, IPID: 30412, Len: 60,
		Verdict: stitch.VerdictDropped, Events: 8,
		Hops: []stitch.Hop{
			via(nsClient.hop(hop.Tx, "eth0", 3, 0), hop.Tracepoint),
			via(nsNode1.hop(hop.Rx, "veth3a1f2b9c", 7, us(33)), hop.Tracepoint),
			via(nf(nsNode1.hop(hop.Netfilter, "cni0", 5, us(12)), hop.Prerouting, "cni0", "", us(58)), hop.Fentry),
			via(nsNode1.hop(hop.Rx, "cni0", 5, us(64)), hop.Tracepoint),
			via(input, hop.Fentry),
			via(ipvs, hop.Fentry),
			via(drop, hop.Tracepoint),
		},
	}, 1)
}
