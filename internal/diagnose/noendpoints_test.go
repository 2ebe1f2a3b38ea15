package diagnose

import (
	"context"
	"net/netip"
	"testing"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

var (
	noSvc      = ap("10.96.0.11:80")
	localSvc   = ap("10.96.0.12:53")
	node1Addr  = netip.MustParseAddr("192.168.50.11")
	nodePortSv = netip.AddrPortFrom(node1Addr, 30081)
)

// kubeProxyRules are kube-proxy iptables mode's rules for two Services
// without endpoints, as iptables-nft holds them: default/nosvc:http has
// none at all (ClusterIP and NodePort rejected), kube-system/dns:dns none
// on this node with a Local traffic policy (dropped).
func kubeProxyRules() []doctor.Rule {
	return []doctor.Rule{
		{Chain: "KUBE-SERVICES", Comment: "default/nosvc:http has no endpoints", Dst: netip.PrefixFrom(noSvc.Addr(), 32), Proto: 6, DPort: 80, Verdict: doctor.VerdictReject},
		{Chain: "KUBE-SERVICES", Comment: "kube-system/dns:dns has no local endpoints", Dst: netip.PrefixFrom(localSvc.Addr(), 32), Proto: 17, DPort: 53, Verdict: doctor.VerdictDrop},
		{Chain: "KUBE-EXTERNAL-SERVICES", Comment: "default/nosvc:http has no endpoints", DstLocal: true, Proto: 6, DPort: 30081, Verdict: doctor.VerdictReject},
	}
}

// kubeProxyReport is node1's report with net as its netlink answers.
func kubeProxyReport(t *testing.T, net *fakeNet) *doctor.Report {
	t.Helper()
	net.links = flannelLinks()
	r, err := doctor.Collect(context.Background(), doctor.Options{Netns: "node1", FS: nodeFS(), Net: net})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// synTo is the client's SYN to dst, dropped by netfilter in hook on node1
// (reason NETFILTER_DROP; none, freed by nf_hook_slow, before Linux 5.17).
func synTo(dst netip.AddrPort, proto uint8, hook hop.Hook, reason string) *stitch.Path {
	d := dropped(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), reason)
	d.Hook = hook
	if reason == "" {
		d.Func = "nf_hook_slow+0x9e"
	}
	p := routed(nf(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), hook, "cni0", "eth0"), d)
	p.Proto, p.Dst = proto, dst
	for i := range p.Hops {
		p.Hops[i].Proto, p.Hops[i].Dst = proto, dst
	}
	p.Hops[len(p.Hops)-2].Partial = true
	return p
}

// TestAdviceNoEndpoints explains drops of packets to Service ports without
// endpoints from the node report alone: no table hop says which rule
// dropped them.
func TestAdviceNoEndpoints(t *testing.T) {
	a := New(map[uint32]*doctor.Report{inoNode1: kubeProxyReport(t, &fakeNet{rules: kubeProxyRules()})})

	for _, reason := range []string{"NETFILTER_DROP", ""} {
		got := advice(a, synTo(noSvc, 6, hop.Forward, reason))
		contains(t, "advice for a Service without endpoints ("+reason+")", got,
			"The Service default/nosvc:http (10.96.0.11:80, TCP) has no ready endpoints",
			"kube-proxy's rule for it (iptables-nft filter KUBE-SERVICES) rejected the packet in FORWARD on node1",
			"sent ICMP port unreachable back to 10.244.1.5", `"connection refused"`,
			"\n$ kubectl get endpointslices -n default -l kubernetes.io/service-name=nosvc",
			"\n$ kubectl describe service -n default nosvc",
			"\n$ ip netns exec node1 iptables -t filter -S KUBE-SERVICES | grep -F 'default/nosvc:http has no'")
		lacks(t, "advice for a Service without endpoints", got, "NetworkPolicy")
	}

	got := advice(a, synTo(nodePortSv, 6, hop.Input, "NETFILTER_DROP"))
	contains(t, "advice for a NodePort without endpoints", got,
		"The Service default/nosvc:http, NodePort 30081 (TCP, here 192.168.50.11:30081) has no ready endpoints",
		"(iptables-nft filter KUBE-EXTERNAL-SERVICES) rejected the packet in INPUT on node1",
		"iptables -t filter -S KUBE-EXTERNAL-SERVICES")

	got = advice(a, synTo(localSvc, 17, hop.Output, "NETFILTER_DROP"))
	contains(t, "advice for a Service without local endpoints", got,
		"The Service kube-system/dns:dns (10.96.0.12:53, UDP) has no ready endpoints on node1: its traffic policy is Local",
		"dropped the packet in OUTPUT without an answer; the client sees a timeout",
		"\n$ kubectl describe endpointslices -n kube-system -l kubernetes.io/service-name=dns   # NodeName and Ready",
		"grep -F 'kube-system/dns:dns has no'")

	// Not the rules' packets: another port, another protocol, a NodePort
	// forwarded (not to the node), a drop in PREROUTING, a table other
	// than filter.
	for name, p := range map[string]*stitch.Path{
		"another port":       synTo(ap("10.96.0.11:81"), 6, hop.Forward, "NETFILTER_DROP"),
		"another protocol":   synTo(noSvc, 17, hop.Forward, "NETFILTER_DROP"),
		"NodePort forwarded": synTo(ap("10.244.2.7:30081"), 6, hop.Forward, "NETFILTER_DROP"),
		"in PREROUTING":      synTo(noSvc, 6, hop.Prerouting, "NETFILTER_DROP"),
		"not by netfilter":   synTo(noSvc, 6, hop.Forward, "IP_INNOROUTES"),
	} {
		lacks(t, "advice for "+name, advice(a, p), "no ready endpoints")
	}
	p := synTo(noSvc, 6, hop.Forward, "NETFILTER_DROP")
	natVerdict := mkHop(hop.Table, "node1", inoNode1, "cni0", 60)
	natVerdict.Hook, natVerdict.Dst = hop.Forward, noSvc
	natVerdict.Table = &stitch.Table{Engine: hop.EngineNFTables, Family: hop.FamilyIPv4, Name: "mangle", Chain: "FORWARD", Verdict: hop.VerdictDrop}
	p.Hops = append(p.Hops[:len(p.Hops)-1], natVerdict, p.Hops[len(p.Hops)-1])
	lacks(t, "advice for a drop by the mangle table", advice(a, p), "no ready endpoints")
	natVerdict.Table.Name = "filter"
	p.Hops[len(p.Hops)-2] = natVerdict
	contains(t, "advice for a drop by the filter table", advice(a, p), "has no ready endpoints")

	// Without the report's rules it is a rule in FORWARD, as before.
	contains(t, "advice without kube-proxy rules", advice(New(map[uint32]*doctor.Report{inoNode1: report(t, "node1", nil)}),
		synTo(noSvc, 6, hop.Forward, "NETFILTER_DROP")), "NetworkPolicy")
}

// TestAdviceNoEndpointsNFTables reads nftables mode's maps.
func TestAdviceNoEndpointsNFTables(t *testing.T) {
	r := kubeProxyReport(t, &fakeNet{maps: map[string][]doctor.MapElement{
		"no-endpoint-services": {{Addr: noSvc.Addr(), Proto: 6, Port: 80, Comment: "default/nosvc:http", Verdict: "goto reject-chain"}},
	}})
	got := advice(New(map[uint32]*doctor.Report{inoNode1: r}), synTo(noSvc, 6, hop.Forward, "NETFILTER_DROP"))
	contains(t, "advice in nftables mode", got,
		"The Service default/nosvc:http (10.96.0.11:80, TCP) has no ready endpoints",
		"(nftables ip kube-proxy no-endpoint-services)",
		"\n$ ip netns exec node1 nft list map ip kube-proxy no-endpoint-services | grep -F '\"default/nosvc:http\"'")
}

// portUnreachable is the ICMP port unreachable node1 (from cni0's
// address, or from dst's when the node rejected a packet to itself) sent
// the client, answering a packet to dst, when q is set.
func portUnreachable(from netip.Addr, q *decode.Tuple) *stitch.Path {
	return &stitch.Path{Proto: 1, Src: netip.AddrPortFrom(from, 3), Dst: netip.AddrPortFrom(client.Addr(), 3),
		Answers: q, Hops: []stitch.Hop{mkHop(hop.Tx, "node1", inoNode1, "cni0", 70)}}
}

func quoted(proto uint8, dst netip.AddrPort) *decode.Tuple {
	return &decode.Tuple{Proto: proto, Src: ap("10.244.1.5:40312"), Dst: dst, HasPorts: true}
}

// TestWarningICMPAnswers explains an ICMP error by the packet it quotes.
func TestWarningICMPAnswers(t *testing.T) {
	a := New(map[uint32]*doctor.Report{inoNode1: kubeProxyReport(t, &fakeNet{rules: kubeProxyRules()})})
	bridge := netip.MustParseAddr("10.244.1.1")
	warn := func(p *stitch.Path) string {
		t.Helper()
		a.Annotate(p)
		if len(p.Warnings) != 1 {
			t.Fatalf("warnings %q", p.Warnings)
		}
		return p.Warnings[0]
	}

	got := warn(portUnreachable(bridge, quoted(6, noSvc)))
	contains(t, "port unreachable for a Service without endpoints", got,
		"This is an ICMP error from 10.244.1.1, destination unreachable (port unreachable) answering TCP 10.96.0.11:80 from 10.244.1.5:40312: the Service default/nosvc:http has no ready endpoints",
		"kube-proxy's rule for it (iptables-nft filter KUBE-SERVICES) rejects its packets",
		"Check: kubectl get endpointslices -n default -l kubernetes.io/service-name=nosvc")
	lacks(t, "port unreachable for TCP", got, "UDP")

	got = warn(portUnreachable(node1Addr, quoted(6, nodePortSv)))
	contains(t, "port unreachable for a NodePort without endpoints", got, "answering TCP 192.168.50.11:30081 from 10.244.1.5:40312: the Service default/nosvc:http has no ready endpoints")
	// From another address than the one the packet was sent to, another
	// node's port 30081 is not the NodePort of this node's rules.
	got = warn(portUnreachable(bridge, quoted(6, ap("192.168.50.99:30081"))))
	lacks(t, "port unreachable for another node's port", got, "no ready endpoints")

	got = warn(portUnreachable(bridge, quoted(6, ap("10.244.2.7:81"))))
	contains(t, "port unreachable for TCP", got, "answering TCP 10.244.2.7:81 from 10.244.1.5:40312: a REJECT rule refused it", "(TCP itself answers a closed port with a reset, not with ICMP)")
	lacks(t, "port unreachable for TCP", got, "UDP", "no ready endpoints")

	ipvs := New(map[uint32]*doctor.Report{inoNode1: ipvsReport(t)})
	vsp := portUnreachable(netip.MustParseAddr("10.96.0.20"), quoted(6, ap("10.96.0.20:80")))
	ipvs.Annotate(vsp)
	contains(t, "port unreachable from IPVS", vsp.Warnings[0], "answering TCP 10.96.0.20:80 from 10.244.1.5:40312: IPVS had no real server for the virtual service 10.96.0.20:80 (0 real servers when the trace started)",
		"the Service has no ready endpoints. Check: ipvsadm -Ln -t 10.96.0.20:80")

	got = warn(portUnreachable(netip.MustParseAddr("10.244.2.7"), quoted(17, ap("10.244.2.7:9999"))))
	contains(t, "port unreachable for UDP", got, "answering UDP 10.244.2.7:9999 from 10.244.1.5:40312: nothing listened on UDP port 9999 at 10.244.2.7, or a REJECT rule refused the datagram")

	got = warn(portUnreachable(bridge, nil))
	contains(t, "port unreachable without its quote", got, "port unreachable", "an earlier packet of 10.244.1.5", "a REJECT rule refused it")
	lacks(t, "port unreachable without its quote", got, "nothing listened on the UDP port")

	// Other errors name the packet they answer too.
	netUnreach := portUnreachable(bridge, quoted(6, ap("10.250.0.1:80")))
	netUnreach.Src = netip.AddrPortFrom(bridge, 3)
	netUnreach.Dst = netip.AddrPortFrom(client.Addr(), 0)
	contains(t, "net unreachable", warn(netUnreach), "destination unreachable (net unreachable) answering TCP 10.250.0.1:80 from 10.244.1.5:40312: it had no route for it.")
	echo := portUnreachable(bridge, &decode.Tuple{Proto: 1, Src: ap("10.244.1.5:8"), Dst: ap("10.250.0.1:0"), HasPorts: true})
	echo.Src, echo.Dst = netip.AddrPortFrom(bridge, 11), netip.AddrPortFrom(client.Addr(), 0)
	contains(t, "time exceeded", warn(echo), "time exceeded answering ICMP type 8 10.250.0.1 from 10.244.1.5: it ran out of TTL")
}
