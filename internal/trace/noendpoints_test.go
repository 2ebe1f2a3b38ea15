package trace

import (
	"context"
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/topology"
)

// refused connects from the client to dst and expects kube-proxy's reject:
// ICMP port unreachable, which TCP reports as "connection refused".
func refused(t *testing.T, c *topology.Cluster, dst netip.AddrPort) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := topology.TCPExchange(ctx, c.Pod(topology.PodClient), dst, "ping")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("TCP exchange %s → %s: %v, want connection refused", topology.ClientIP, dst, err)
	}
}

// TestDiagnoseNoEndpoints connects to a Service without endpoints, by its
// ClusterIP and by its NodePort, with kube-proxy's rules as its iptables
// and its nftables mode write them. This kernel shows no table verdicts:
// the advice on the SYN's drop comes from the node report's rules alone,
// and names the Service; the ICMP port unreachable that answers it is
// explained by the packet it quotes (captured: Snaplen).
func TestDiagnoseNoEndpoints(t *testing.T) {
	for _, mode := range []topology.KubeProxyMode{topology.KubeProxyIPTables, topology.KubeProxyNFTables} {
		t.Run(mode.String(), func(t *testing.T) {
			c := cluster(t, topology.Options{NoEndpoints: mode})
			n1 := c.Node(topology.Node1)
			nodePort := netip.AddrPortFrom(n1.UnderlayIP, topology.NoEndpointsNodePort)
			stop := tracingWith(t, c, loader.Options{PodIPs: []netip.Addr{topology.ClientIP}, Snaplen: 128})
			refused(t, c, topology.NoEndpointsAddr)
			refused(t, c, nodePort)
			time.Sleep(100 * time.Millisecond) // let the ICMP errors finish their paths
			paths, sum := stop()
			requireReports(t, sum)

			rule := map[topology.KubeProxyMode][2]string{
				topology.KubeProxyIPTables: {"iptables-nft filter KUBE-SERVICES", "iptables-nft filter KUBE-EXTERNAL-SERVICES"},
				topology.KubeProxyNFTables: {"nftables ip kube-proxy no-endpoint-services", "nftables ip kube-proxy no-endpoint-nodeports"},
			}[mode]
			check := map[topology.KubeProxyMode]string{
				topology.KubeProxyIPTables: "$ ip netns exec " + n1.NetnsName + " iptables -t filter -S KUBE-SERVICES | grep -F '" + topology.NoEndpointsService + " has no'",
				topology.KubeProxyNFTables: "$ ip netns exec " + n1.NetnsName + " nft list map ip kube-proxy no-endpoint-services | grep -F '\"" + topology.NoEndpointsService + "\"'",
			}[mode]

			syn := findPath(t, paths, topology.ClientIP, topology.NoEndpointsAddr.Addr(), tcpSYN)
			requireHops(t, syn, []hopMatch{
				{kind: hop.Netfilter, hook: hop.Forward, netns: n1.NetnsName, description: "FORWARD on node1"},
				{kind: hop.Drop, hook: hop.Forward, netns: n1.NetnsName, reason: wantReason("NETFILTER_DROP"), description: "a NETFILTER_DROP in FORWARD"},
			})
			requireAdvice(t, lastDrop(t, syn),
				"The Service "+topology.NoEndpointsService+" ("+topology.NoEndpointsAddr.String()+", TCP) has no ready endpoints",
				"kube-proxy's rule for it ("+rule[0]+") rejected the packet in FORWARD on "+n1.NetnsName,
				"$ kubectl get endpointslices -n default -l kubernetes.io/service-name=nosvc", check)
			icmp := pathWhere(t, paths, "ICMP port unreachable to the client", func(p *stitch.Path) bool {
				return icmpError(topology.ClientIP, 3, 3)(p) && p.Answers != nil && p.Answers.Dst == topology.NoEndpointsAddr
			})
			requireWarning(t, icmp, "port unreachable) answering TCP "+topology.NoEndpointsAddr.String()+" from "+topology.ClientIP.String()+":",
				"the Service "+topology.NoEndpointsService+" has no ready endpoints", rule[0])

			syn = findPath(t, paths, topology.ClientIP, nodePort.Addr(), tcpSYN)
			requireHops(t, syn, []hopMatch{
				{kind: hop.Netfilter, hook: hop.Input, netns: n1.NetnsName, description: "INPUT on node1"},
				{kind: hop.Drop, hook: hop.Input, netns: n1.NetnsName, reason: wantReason("NETFILTER_DROP"), description: "a NETFILTER_DROP in INPUT"},
			})
			requireAdvice(t, lastDrop(t, syn),
				"The Service "+topology.NoEndpointsService+", NodePort 30081 (TCP, here "+nodePort.String()+") has no ready endpoints",
				"("+rule[1]+") rejected the packet in INPUT on "+n1.NetnsName)
			icmp = pathWhere(t, paths, "ICMP port unreachable for the NodePort", func(p *stitch.Path) bool {
				return icmpError(topology.ClientIP, 3, 3)(p) && p.Answers != nil && p.Answers.Dst == nodePort
			})
			requireWarning(t, icmp, "answering TCP "+nodePort.String(), "the Service "+topology.NoEndpointsService+" has no ready endpoints", rule[1])
		})
	}
}
