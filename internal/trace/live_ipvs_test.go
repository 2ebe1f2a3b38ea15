package trace

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/internal/topology"
)

// ipvsCluster builds the demo cluster in kube-proxy IPVS mode with echo
// servers on both real servers, or skips where the kernel has no IPVS.
func ipvsCluster(t *testing.T) *topology.Cluster {
	t.Helper()
	testutil.RequireRoot(t)
	c, err := topology.Build(context.Background(), topology.Options{IPVS: true})
	if errors.Is(err, topology.ErrNoIPVS) {
		testutil.Missing(t, testutil.IPVS, err)
	}
	if err != nil {
		t.Fatalf("build cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	for _, name := range []string{topology.PodServer, topology.PodServerLocal} {
		srv, err := topology.StartEchoServer(context.Background(), c.Pod(name), topology.ServerPort)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
	}
	return c
}

// TestLiveIPVS traces two requests to a ClusterIP served by IPVS (rr over
// a real server on each node): each request's path shows the IPVS hop with
// the virtual service and the real server the kernel chose, as its
// connection table says, then the path to that pod.
func TestLiveIPVS(t *testing.T) {
	c := ipvsCluster(t)
	if !expectHop(hop.IPVS) {
		testutil.Missing(t, testutil.FuncHops, errors.New("no IPVS hop (pathtrace features says why)"))
	}
	stop := tracing(t, c, topology.ClientIP)
	client := c.Pod(topology.PodClient)
	n1, n2 := c.Node(topology.Node1), c.Node(topology.Node2)
	exchange(t, client, topology.ClusterIP)
	exchange(t, client, topology.ClusterIP)
	paths, sum := stop()
	if sum.Lost != 0 {
		t.Errorf("%d events lost", sum.Lost)
	}
	conns, err := n1.IPVSConns()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("IPVS connections of node1: %+v", conns)

	// The scheduler's name is read from BTF, or, on kernels without BTF
	// for the ip_vs module (5.10), from the node report's virtual
	// services.
	wantSched := topology.IPVSScheduler
	var chosen []string
	for _, p := range paths {
		if p.Src.Addr() != topology.ClientIP || p.Dst != topology.ClusterIP || p.TCPFlags != tcpSYN {
			continue
		}
		var ipvs *stitch.Hop
		for i := range p.Hops {
			if p.Hops[i].Kind == hop.IPVS {
				ipvs = &p.Hops[i]
				break
			}
		}
		if ipvs == nil || ipvs.IPVS == nil {
			t.Errorf("request path has no IPVS hop\n%s", dump(p))
			continue
		}
		v := ipvs.IPVS
		if v.Service != topology.ClusterIP || v.Method != hop.MethodMasq || v.Scheduler != wantSched || ipvs.Netns != n1.NetnsName {
			t.Errorf("IPVS hop %+v in %s, want service %s, method masq, scheduler %q in %s", *v, ipvs.Netns, topology.ClusterIP, wantSched, n1.NetnsName)
		}
		i := slices.IndexFunc(conns, func(c topology.IPVSConn) bool { return c.Client == p.Src })
		if i < 0 {
			t.Errorf("no IPVS connection from %s in node1's table", p.Src)
			continue
		}
		if conns[i].Real != v.RealServer || conns[i].Virtual != topology.ClusterIP {
			t.Errorf("IPVS hop chose %s for %s, the kernel's connection %s → %s", v.RealServer, p.Src, conns[i].Virtual, conns[i].Real)
		}
		chosen = append(chosen, v.RealServer.String())

		// Then the path to that pod.
		switch v.RealServer {
		case topology.ServerAddr:
			server := c.Pod(topology.PodServer)
			requireHops(t, p, []hopMatch{
				{kind: hop.IPVS, netns: n1.NetnsName, description: "the IPVS hop"},
				{kind: hop.Encap, dev: topology.VXLANDev, netns: n1.NetnsName,
					outer:       &stitch.Outer{Tunnel: hop.TunnelVXLAN, Src: topology.Node1UnderlayIP, Dst: topology.Node2UnderlayIP, DPort: topology.VXLANPort, VNI: topology.VXLANID},
					description: "VXLAN encap on node1's flannel.1"},
				{kind: hop.Rx, dev: "eth0", netns: n2.NetnsName, description: "rx on node2 eth0"},
				{kind: hop.Decap, dev: topology.VXLANDev, netns: n2.NetnsName, description: "decap on node2"},
				{kind: hop.Tx, dev: server.HostVeth, netns: n2.NetnsName, description: "tx on the server's host veth"},
				{kind: hop.Rx, dev: "eth0", netns: server.NetnsName, description: "rx on the server pod's eth0"},
			})
		case topology.ServerLocalAddr:
			local := c.Pod(topology.PodServerLocal)
			want := []hopMatch{{kind: hop.IPVS, netns: n1.NetnsName, description: "the IPVS hop"}}
			if expectHop(hop.Bridge) {
				want = append(want, hopMatch{kind: hop.Bridge, dev: topology.BridgeDev, netns: n1.NetnsName, description: "cni0 forwarding to the local server's veth"})
			}
			want = append(want,
				hopMatch{kind: hop.Tx, dev: local.HostVeth, netns: n1.NetnsName, description: "tx on the local server's host veth"},
				hopMatch{kind: hop.Rx, dev: "eth0", netns: local.NetnsName, description: "rx on the local server pod's eth0"})
			requireHops(t, p, want)
		default:
			t.Errorf("IPVS chose %s, not a real server of the service (%v)", v.RealServer, topology.IPVSRealServers)
		}
		if p.Verdict != stitch.VerdictDelivered {
			t.Errorf("request verdict %s, want delivered\n%s", p.Verdict, dump(p))
		}
		checkBackends(t, p, "")
	}
	slices.Sort(chosen)
	if want := []string{topology.ServerLocalAddr.String(), topology.ServerAddr.String()}; !slices.Equal(chosen, want) {
		t.Errorf("real servers chosen for the two requests %v, want %v (rr over both)", chosen, want)
	}
}

// TestLiveIPVSNoRealServer traces a connection to a virtual service
// without real servers (a Service without ready endpoints): IPVS's hook
// drops the SYN in INPUT, answering with ICMP port unreachable; the path
// shows IPVS's verdict, then the drop, with advice naming the service.
func TestLiveIPVSNoRealServer(t *testing.T) {
	c := ipvsCluster(t)
	if !expectHop(hop.IPVSDrop) {
		testutil.Missing(t, testutil.FuncHops, errors.New("no IPVS verdict (pathtrace features says why)"))
	}
	n1 := c.Node(topology.Node1)
	empty := netip.MustParseAddrPort("10.96.0.20:80")
	if err := n1.AddIPVSService(empty, topology.IPVSMasq); err != nil {
		t.Fatal(err)
	}
	stop := tracing(t, c, topology.ClientIP)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := topology.TCPExchange(ctx, c.Pod(topology.PodClient), empty, "ping")
	cancel()
	if err == nil {
		t.Fatalf("a connection to %s, a virtual service without real servers, went through", empty)
	}
	paths, _ := stop()
	req := findPath(t, paths, topology.ClientIP, empty.Addr(), tcpSYN)
	requireHops(t, req, []hopMatch{
		{kind: hop.Netfilter, hook: hop.Input, netns: n1.NetnsName, description: "INPUT on node1"},
		{kind: hop.IPVS, hook: hop.Input, netns: n1.NetnsName, description: "IPVS's verdict in INPUT"},
		{kind: hop.Drop, netns: n1.NetnsName, description: "the drop"},
	})
	var verdict *stitch.Hop
	for i := range req.Hops {
		if req.Hops[i].Kind == hop.IPVS {
			verdict = &req.Hops[i]
		}
	}
	if verdict == nil || verdict.IPVS == nil || verdict.IPVS.Verdict != hop.VerdictDrop {
		t.Errorf("IPVS hop is not a drop verdict\n%s", dump(req))
	}
	if req.Verdict != stitch.VerdictDropped {
		t.Errorf("verdict %s, want dropped\n%s", req.Verdict, dump(req))
	}
	last := req.Hops[len(req.Hops)-1]
	if last.Kind != hop.Drop || !strings.Contains(last.Advice, "IPVS dropped it in INPUT") ||
		!strings.Contains(last.Advice, "it had 0 real servers (scheduler rr)") ||
		!strings.Contains(last.Advice, "ipvsadm -Ln -t "+empty.String()) {
		t.Errorf("drop advice %q, want IPVS's, naming %s\n%s", last.Advice, empty, dump(req))
	}
	checkBackends(t, req, "")
}

// TestLiveIPVSMethods sends a SYN to a virtual service forwarding by direct
// routing (to the local server pod) and one forwarding by IPIP tunnel (to
// the server on node2): each shows an IPVS hop from that method's transmit
// function, with the real server and the method. Neither real server has
// the service address, so no connection is made; the hop is what counts.
func TestLiveIPVSMethods(t *testing.T) {
	c := ipvsCluster(t)
	if !expectHop(hop.IPVS) {
		testutil.Missing(t, testutil.FuncHops, errors.New("no IPVS hop (pathtrace features says why)"))
	}
	n1 := c.Node(topology.Node1)
	services := []struct {
		svc    netip.AddrPort
		method string
		real   netip.AddrPort
	}{
		{netip.MustParseAddrPort("10.96.0.31:80"), "route", topology.ServerLocalAddr},
		{netip.MustParseAddrPort("10.96.0.32:80"), "tunnel", topology.ServerAddr},
	}
	for _, s := range services {
		m := topology.IPVSRoute
		if s.method == "tunnel" {
			m = topology.IPVSTunnel
		}
		if err := n1.AddIPVSService(s.svc, m, s.real); err != nil {
			t.Fatal(err)
		}
	}
	stop := tracing(t, c, topology.ClientIP)
	for _, s := range services {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, _ = topology.TCPExchange(ctx, c.Pod(topology.PodClient), s.svc, "ping") // no answer: see above
		cancel()
	}
	paths, _ := stop()
	for _, s := range services {
		req := findPath(t, paths, topology.ClientIP, s.svc.Addr(), tcpSYN)
		var xmit *stitch.Hop
		for i := range req.Hops {
			if h := &req.Hops[i]; h.Kind == hop.IPVS && h.IPVS != nil && h.IPVS.Verdict == hop.NoVerdict {
				xmit = h
				break
			}
		}
		if xmit == nil {
			t.Errorf("no IPVS transmit hop for %s\n%s", s.svc, dump(req))
			continue
		}
		if v := xmit.IPVS; v.Service != s.svc || v.RealServer != s.real || v.Method.String() != s.method || xmit.Netns != n1.NetnsName {
			t.Errorf("IPVS hop %+v in %s, want %s → %s by %s in %s", *v, xmit.Netns, s.svc, s.real, s.method, n1.NetnsName)
		}
		checkBackends(t, req, "")
	}
}
