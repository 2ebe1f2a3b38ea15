package trace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/features"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/internal/topology"
)

// missingTunnel ends the test when Build found the kernel without the
// CNI's tunnel (testutil says where that is expected: IPIP and Geneve run
// in the QEMU guests, not on the host).
func missingTunnel(t *testing.T, err error) {
	t.Helper()
	switch {
	case errors.Is(err, topology.ErrNoIPIP):
		testutil.Missing(t, testutil.IPIP, err)
	case errors.Is(err, topology.ErrNoGeneve):
		testutil.Missing(t, testutil.Geneve, err)
	}
}

// tunnelOuter is the outer header a cluster's tunnel puts on a packet from
// the node with underlay address src to the one with dst.
func tunnelOuter(cni topology.CNI, src, dst *topology.Node) *stitch.Outer {
	o := &stitch.Outer{Src: src.UnderlayIP, Dst: dst.UnderlayIP}
	switch cni {
	case topology.CNICalicoIPIP:
		o.Tunnel = hop.TunnelIPIP
	case topology.CNICalicoVXLAN:
		o.Tunnel, o.DPort, o.VNI = hop.TunnelVXLAN, topology.CalicoVXLANPort, topology.CalicoVXLANID
	case topology.CNIGeneve:
		o.Tunnel, o.DPort, o.VNI = hop.TunnelGeneve, topology.GenevePort, topology.GeneveID
	default:
		o.Tunnel, o.DPort, o.VNI = hop.TunnelVXLAN, topology.VXLANPort, topology.VXLANID
	}
	return o
}

// Pod to pod across nodes over Calico VXLAN (vxlan.calico, 4789) and IPIP
// (tunl0) with routed veths, and over Geneve (6081): each packet is one
// path, matched on its inner header, with encap and decap hops carrying
// the tunnel's outer header and the inner tuple, shown by the tunnel's
// functions where the kernel allows kprobes or fentry; the reply likewise.
func TestLiveTunnels(t *testing.T) {
	for _, cni := range []topology.CNI{topology.CNICalicoVXLAN, topology.CNICalicoIPIP, topology.CNIGeneve} {
		t.Run(cni.String(), func(t *testing.T) {
			c := cluster(t, topology.Options{CNI: cni})
			recording := filepath.Join(t.TempDir(), "trace.pcapng")
			stop := tracingOpts(t, c, Options{Loader: loader.Options{PodIPs: []netip.Addr{topology.ClientIP}}, Record: recording})
			client, server := c.Pod(topology.PodClient), c.Pod(topology.PodServer)
			node1, node2 := c.Node(topology.Node1), c.Node(topology.Node2)
			n1, n2, dev := node1.NetnsName, node2.NetnsName, node1.TunnelDev

			exchange(t, client, topology.ServerAddr)
			paths, sum := stop()
			if sum.Lost != 0 {
				t.Errorf("%d events lost", sum.Lost)
			}
			tunnelFuncEvents(t, recording, cni, dev)
			forward := hopMatch{kind: hop.Netfilter, hook: hop.Forward, out: dev, netns: n1, description: "FORWARD → " + dev}
			if cni.Routed() {
				forward.in = client.HostVeth
				forward.description = "FORWARD " + client.HostVeth + " → " + dev + " (routed veth, no bridge)"
			}
			req := findPath(t, paths, topology.ClientIP, topology.ServerIP, tcpSYN)
			requireHops(t, req, []hopMatch{
				{kind: hop.Tx, dev: "eth0", netns: client.NetnsName, description: "tx on the client pod's eth0"},
				{kind: hop.Rx, dev: client.HostVeth, netns: n1, description: "rx on the client's host veth"},
				forward,
				{kind: hop.Tx, dev: dev, netns: n1, description: "tx on node1 " + dev},
				{kind: hop.Encap, dev: dev, netns: n1, outer: tunnelOuter(cni, node1, node2), description: "encap on node1 " + dev},
				{kind: hop.Tx, dev: "eth0", netns: n1, outer: tunnelOuter(cni, node1, node2), description: "tx on node1 eth0, encapsulated"},
				{kind: hop.Rx, dev: "eth0", netns: n2, outer: tunnelOuter(cni, node1, node2), description: "rx on node2 eth0, encapsulated"},
				{kind: hop.Decap, dev: dev, netns: n2, outer: tunnelOuter(cni, node1, node2), description: "decap on node2 " + dev},
				{kind: hop.Tx, dev: server.HostVeth, netns: n2, description: "tx on the server's host veth"},
				{kind: hop.Rx, dev: "eth0", netns: server.NetnsName, description: "rx on the server pod's eth0"},
			})
			for i := range req.Hops {
				if h := &req.Hops[i]; h.Src.Addr() != topology.ClientIP || h.Dst != topology.ServerAddr {
					t.Errorf("hop %d (%s on %s) carries %s → %s, want the inner tuple\n%s", i, h.Kind, h.Dev, h.Src, h.Dst, dump(req))
					break
				}
			}
			if req.Verdict != stitch.VerdictDelivered {
				t.Errorf("request verdict %s, want delivered", req.Verdict)
			}
			// The tunnel's transmit and receive functions (vxlan_xmit
			// and vxlan_rcv, geneve_xmit and geneve_udp_encap_recv,
			// ipip_tunnel_xmit and ipip_rcv) show encap and decap
			// where the kernel has kprobes or fentry for them: the
			// hops have that backend, not inferred.
			checkBackends(t, req, "")
			oneTunnelHopEach(t, req)

			reply := findPath(t, paths, topology.ServerIP, topology.ClientIP, tcpSYN|tcpACK)
			requireHops(t, reply, []hopMatch{
				{kind: hop.Tx, dev: "eth0", netns: server.NetnsName, description: "tx on the server pod's eth0"},
				{kind: hop.Encap, dev: dev, netns: n2, outer: tunnelOuter(cni, node2, node1), description: "encap on node2"},
				{kind: hop.Decap, dev: dev, netns: n1, outer: tunnelOuter(cni, node2, node1), description: "decap on node1"},
				{kind: hop.Tx, dev: client.HostVeth, netns: n1, description: "tx on the client's host veth"},
				{kind: hop.Rx, dev: "eth0", netns: client.NetnsName, description: "rx on the client pod's eth0"},
			})
			checkBackends(t, reply, "")
			oneTunnelHopEach(t, reply)
		})
	}
}

// tunnelFuncEvents checks, where the kernel shows the tunnel's functions,
// that the recording has their events as the kernel programs made them
// (the encap hop's VNI is the packet's once the outer header is seen, so
// only the events tell what the program read of the device): "encap
// geneve vni 10 on genev_sys_6081", "decap geneve on eth0"; the VNI where
// the module has BTF (not 5.10).
func tunnelFuncEvents(t *testing.T, recording string, cni topology.CNI, dev string) {
	t.Helper()
	if !expectFunctionHop(hop.Encap) {
		return
	}
	b, err := os.ReadFile(recording)
	if err != nil {
		t.Fatal(err)
	}
	o := tunnelOuter(cni, &topology.Node{}, &topology.Node{})
	xmit := map[hop.Tunnel]features.FuncRef{
		hop.TunnelVXLAN:  {Name: "vxlan_xmit", Module: "vxlan"},
		hop.TunnelGeneve: {Name: "geneve_xmit", Module: "geneve"},
		hop.TunnelIPIP:   {Name: "ipip_tunnel_xmit", Module: "ipip"},
	}[o.Tunnel]
	encap := "encap " + o.Tunnel.String()
	if _, err := features.FuncParams(xmit); err == nil && o.Tunnel.HasVNI() {
		encap += fmt.Sprintf(" vni %d", o.VNI)
	}
	for _, want := range []string{encap + " on " + dev, "decap " + o.Tunnel.String() + " on eth0"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("recording has no event %q", want)
		}
	}
}

// expectFunctionHop reports whether a function shows hops of this kind on
// this kernel, rather than none or their inference.
func expectFunctionHop(kind hop.Kind) bool {
	want, ok := testutil.ExpectedBackends()
	return ok && (want[kind] == hop.Fentry || want[kind] == hop.Kprobe)
}

// oneTunnelHopEach checks that a path that crossed a tunnel once has one
// encap hop and one decap hop: a function hop is not shown again as an
// inferred one.
func oneTunnelHopEach(t *testing.T, p *stitch.Path) {
	t.Helper()
	n := map[hop.Kind]int{}
	for i := range p.Hops {
		n[p.Hops[i].Kind]++
	}
	if n[hop.Encap] != 1 || n[hop.Decap] != 1 {
		t.Errorf("path #%d: %d encap and %d decap hops, want one each\n%s", p.ID, n[hop.Encap], n[hop.Decap], dump(p))
	}
}

// A hostNetwork pod (a socket in the node's namespace) to a pod on the
// other node over Calico's routed veths and VXLAN, traced by the pod's
// address: the path starts in the node's OUTPUT hook and crosses the
// tunnel to the pod.
func TestLiveHostNetworkPod(t *testing.T) {
	c := cluster(t, topology.Options{CNI: topology.CNICalicoVXLAN})
	stop := tracing(t, c, topology.ServerIP)
	node1, node2, server := c.Node(topology.Node1), c.Node(topology.Node2), c.Pod(topology.PodServer)
	host := node1.HostNetworkPod()

	exchange(t, host, topology.ServerAddr)
	paths, _ := stop()
	var req *stitch.Path
	for _, p := range paths {
		if p.Dst == topology.ServerAddr && p.TCPFlags == tcpSYN && p.Src.Addr() != topology.ClientIP {
			req = p
			break
		}
	}
	if req == nil {
		t.Fatalf("no SYN from node1's namespace to %s among %d paths", topology.ServerAddr, len(paths))
	}
	if req.Src.Addr() != node1.VXLANIP {
		t.Errorf("source %s, want %s's address %s (the route's)", req.Src, node1.TunnelDev, node1.VXLANIP)
	}
	requireHops(t, req, []hopMatch{
		{kind: hop.Netfilter, hook: hop.Output, netns: node1.NetnsName, description: "OUTPUT in node1 (a local socket)"},
		{kind: hop.Encap, dev: node1.TunnelDev, netns: node1.NetnsName, outer: tunnelOuter(c.CNI, node1, node2), description: "encap on node1"},
		{kind: hop.Decap, dev: node2.TunnelDev, netns: node2.NetnsName, outer: tunnelOuter(c.CNI, node1, node2), description: "decap on node2"},
		{kind: hop.Tx, dev: server.HostVeth, netns: node2.NetnsName, description: "tx on the server's host veth"},
		{kind: hop.Rx, dev: "eth0", netns: server.NetnsName, description: "rx on the server pod's eth0"},
	})
	if req.Verdict != stitch.VerdictDelivered {
		t.Errorf("verdict %s, want delivered", req.Verdict)
	}
}

// VXLAN over an IPv6 underlay (the nodes' eth0 reach each other by IPv6
// only): a ping between the nodes' VXLAN addresses is one path each way,
// matched on its inner IPv4 header, with encap and decap hops carrying
// the IPv6 outer header.
func TestLiveVXLANOverIPv6Underlay(t *testing.T) {
	c := cluster(t, topology.Options{})
	node1, node2 := c.Node(topology.Node1), c.Node(topology.Node2)
	under := [2]netip.Addr{netip.MustParseAddr("fd50::11"), netip.MustParseAddr("fd50::12")}
	inner := [2]netip.Addr{netip.MustParseAddr("10.250.0.1"), netip.MustParseAddr("10.250.0.2")}
	const dev, vni, port = "vx6", 6, 4789
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, n := range []*topology.Node{node1, node2} {
		for _, cmd := range [][]string{
			{"-6", "addr", "add", under[i].String() + "/64", "dev", "eth0", "nodad"},
			{"link", "add", dev, "type", "vxlan", "id", fmt.Sprint(vni), "local", under[i].String(), "remote", under[1-i].String(),
				"dstport", fmt.Sprint(port), "dev", "eth0"},
			{"addr", "add", inner[i].String() + "/24", "dev", dev},
			{"link", "set", dev, "up"},
		} {
			if out, err := n.Run(ctx, "ip", cmd...); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
		}
	}
	stop := tracing(t, c, inner[0])
	// A deadline of its own: starting the trace takes long in a QEMU guest.
	pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer pcancel()
	if err := topology.Ping(pctx, node1.HostNetworkPod(), inner[1], 0x6668, 1); err != nil {
		t.Fatal(err)
	}
	paths, sum := stop()
	if sum.Lost != 0 {
		t.Errorf("%d events lost", sum.Lost)
	}
	var echo, reply *stitch.Path
	for _, p := range paths {
		switch {
		case !p.HasICMPID || p.ICMPID != 0x6668:
		case p.Src.Addr() == inner[0] && p.Dst.Addr() == inner[1]:
			echo = p
		case p.Src.Addr() == inner[1] && p.Dst.Addr() == inner[0]:
			reply = p
		}
	}
	if echo == nil || reply == nil {
		var b []byte
		for _, p := range paths {
			b = append(b, dump(p)...)
		}
		t.Fatalf("echo request path %v, reply %v, among:\n%s", echo != nil, reply != nil, b)
	}
	outer := func(from, to int) *stitch.Outer {
		return &stitch.Outer{Tunnel: hop.TunnelVXLAN, Src: under[from], Dst: under[to], DPort: port, VNI: vni}
	}
	requireHops(t, echo, []hopMatch{
		{kind: hop.Encap, dev: dev, netns: node1.NetnsName, outer: outer(0, 1), description: "encap on node1 vx6, over IPv6"},
		{kind: hop.Tx, dev: "eth0", netns: node1.NetnsName, description: "tx on node1 eth0"},
		{kind: hop.Rx, dev: "eth0", netns: node2.NetnsName, description: "rx on node2 eth0"},
		{kind: hop.Decap, dev: dev, netns: node2.NetnsName, description: "decap on node2 vx6"},
	})
	requireHops(t, reply, []hopMatch{
		{kind: hop.Encap, dev: dev, netns: node2.NetnsName, outer: outer(1, 0), description: "encap on node2 vx6, over IPv6"},
		{kind: hop.Decap, dev: dev, netns: node1.NetnsName, description: "decap on node1 vx6"},
	})
	for _, p := range []*stitch.Path{echo, reply} {
		if p.Verdict != stitch.VerdictDelivered {
			t.Errorf("verdict %s, want delivered\n%s", p.Verdict, dump(p))
		}
	}
}
