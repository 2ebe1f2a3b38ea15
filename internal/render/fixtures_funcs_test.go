package render

import (
	"time"

	"github.com/pathtrace/pathtrace/internal/stitch"
)

var nsServerLocal = ns{"default/server-local-7d4b8", 4026532805}

// via sets the backend that showed a hop.
func via(h stitch.Hop, backend string) stitch.Hop {
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
	input := nf(nsNode1.hop(stitch.HopNetfilter, "cni0", 5, us(31)), "INPUT", "cni0", "", 0)
	input.Partial = true
	ipvs := nsNode1.hop(stitch.HopIPVS, "cni0", 5, us(18))
	ipvs.IPVS = &stitch.IPVS{Service: svc, RealServer: real, Scheduler: "rr", Method: "masq"}
	out := nf(nsNode1.hop(stitch.HopNetfilter, "cni0", 5, us(96)), "OUTPUT", "", "cni0", us(41))
	out.Src, out.Dst = client, real
	br := nsNode1.hop(stitch.HopBridge, "cni0", 5, us(24))
	br.Bridge = &stitch.Bridge{In: "cni0", Out: "veth5c2e81aa"}
	return finish(&stitch.Path{
		ID: 6, SKB: 0xffff888104d2b100, Mono: 81235012345678,
		Start: time.Date(2026, 11, 28, 3, 40, 3, 5000000, time.UTC),
		Proto: protoTCP, Src: client, Dst: svc, TCPFlags: tcpSYN, IPID: 30211, Len: 60,
		Verdict: stitch.VerdictDelivered, Events: 14,
		Hops: []stitch.Hop{
			via(nsClient.hop(stitch.HopTx, "eth0", 3, 0), "tracepoint"),
			via(nsNode1.hop(stitch.HopRx, "veth3a1f2b9c", 7, us(33)), "tracepoint"),
			via(nf(nsNode1.hop(stitch.HopNetfilter, "cni0", 5, us(12)), "PREROUTING", "cni0", "", us(58)), "fentry"),
			via(nsNode1.hop(stitch.HopRx, "cni0", 5, us(64)), "tracepoint"),
			via(input, "fentry"),
			via(ipvs, "fentry"),
			via(out, "fentry"),
			via(nf(nsNode1.hop(stitch.HopNetfilter, "cni0", 5, us(47)), "POSTROUTING", "", "cni0", us(22)), "fentry"),
			via(nsNode1.hop(stitch.HopTx, "cni0", 5, us(26)), "tracepoint"),
			via(br, "fentry"),
			via(nsNode1.hop(stitch.HopTx, "veth5c2e81aa", 12, us(15)), "tracepoint"),
			via(nsServerLocal.hop(stitch.HopRx, "eth0", 3, us(39)), "tracepoint"),
		},
	}, 1)
}

// tableDrop is a TCP SYN that a rule in FORWARD drops, as a kernel with
// kprobes only shows it: nf_hook_slow for the hooks, nft_do_chain for the
// tables (iptables-nft), each table's verdict inside its hook.
func tableDrop() *stitch.Path {
	client, web := ap("10.244.1.5:40620"), ap("10.244.2.7:8080")
	table := func(h stitch.Hop, hook, family, name, verdict string) stitch.Hop {
		h.Hook, h.In = hook, "cni0"
		h.Table = &stitch.Table{Engine: "nftables", Family: family, Name: name, Chain: hook, Verdict: verdict}
		return via(h, "kprobe")
	}
	fwd := nf(nsNode1.hop(stitch.HopNetfilter, "cni0", 5, us(21)), "FORWARD", "cni0", "flannel.1", 0)
	fwd.Partial = true
	drop := nsNode1.hop(stitch.HopDrop, "cni0", 5, us(30))
	drop.Reason, drop.ReasonCode = "NETFILTER_DROP", 8
	return finish(&stitch.Path{
		ID: 7, SKB: 0xffff888104d2c600, Mono: 81236012345678,
		Start: time.Date(2026, 11, 28, 3, 40, 4, 0, time.UTC),
		Proto: protoTCP, Src: client, Dst: web, TCPFlags: tcpSYN, IPID: 30377, Len: 60,
		Verdict: stitch.VerdictDropped, Events: 8,
		Hops: []stitch.Hop{
			via(nsClient.hop(stitch.HopTx, "eth0", 3, 0), "tracepoint"),
			via(nsNode1.hop(stitch.HopRx, "veth3a1f2b9c", 7, us(31)), "tracepoint"),
			via(nf(nsNode1.hop(stitch.HopNetfilter, "cni0", 5, us(12)), "PREROUTING", "cni0", "", us(40)), "kprobe"),
			table(nsNode1.hop(stitch.HopTable, "cni0", 5, us(25)), "PREROUTING", "ip", "nat", "accept"),
			via(nsNode1.hop(stitch.HopRx, "cni0", 5, us(36)), "tracepoint"),
			via(fwd, "kprobe"),
			table(nsNode1.hop(stitch.HopTable, "cni0", 5, us(27)), "FORWARD", "ip", "filter", "drop"),
			via(drop, "tracepoint"),
		},
	}, 2)
}

// ipvsNoEndpoint is a TCP SYN to a virtual service without real servers:
// IPVS's hook drops it in INPUT (after answering with an ICMP error).
func ipvsNoEndpoint() *stitch.Path {
	client, svc := ap("10.244.1.5:40700"), ap("10.96.0.20:80")
	input := nf(nsNode1.hop(stitch.HopNetfilter, "cni0", 5, us(30)), "INPUT", "cni0", "", 0)
	input.Partial = true
	ipvs := nsNode1.hop(stitch.HopIPVS, "cni0", 5, us(52))
	ipvs.Hook, ipvs.In = "INPUT", "cni0"
	ipvs.IPVS = &stitch.IPVS{Verdict: "drop"}
	drop := nsNode1.hop(stitch.HopDrop, "cni0", 5, us(9))
	drop.Reason, drop.ReasonCode = "NETFILTER_DROP", 8
	return finish(&stitch.Path{
		ID: 8, SKB: 0xffff888104d2d000, Mono: 81237012345678,
		Start: time.Date(2026, 11, 28, 3, 40, 5, 0, time.UTC),
		Proto: protoTCP, Src: client, Dst: svc, TCPFlags: tcpSYN, IPID: 30412, Len: 60,
		Verdict: stitch.VerdictDropped, Events: 8,
		Hops: []stitch.Hop{
			via(nsClient.hop(stitch.HopTx, "eth0", 3, 0), "tracepoint"),
			via(nsNode1.hop(stitch.HopRx, "veth3a1f2b9c", 7, us(33)), "tracepoint"),
			via(nf(nsNode1.hop(stitch.HopNetfilter, "cni0", 5, us(12)), "PREROUTING", "cni0", "", us(58)), "fentry"),
			via(nsNode1.hop(stitch.HopRx, "cni0", 5, us(64)), "tracepoint"),
			via(input, "fentry"),
			via(ipvs, "fentry"),
			via(drop, "tracepoint"),
		},
	}, 1)
}
