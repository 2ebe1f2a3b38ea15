package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/pathtrace/pathtrace/internal/render"
	"github.com/pathtrace/pathtrace/internal/topology"
	"github.com/pathtrace/pathtrace/internal/trace"
)

// Options configure the demo.
type Options struct {
	Trace    trace.Options // PodIPs and Netns are set by the demo
	Topology topology.Options
	Log      io.Writer // progress lines; nil discards them
}

// Run builds the cluster, traces the client pod during two TCP exchanges,
// renders the paths to out and removes the cluster, also when ctx ends
// early.
func Run(ctx context.Context, opts Options, out render.Renderer) (sum trace.Summary, err error) {
	logf := func(format string, args ...any) {
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, "demo: "+format+"\n", args...)
		}
	}
	c, err := topology.Build(ctx, opts.Topology)
	if err != nil {
		return sum, fmt.Errorf("build demo cluster: %w", err)
	}
	defer func() { err = errors.Join(err, c.Close()) }()
	n1, n2 := c.Node(topology.Node1), c.Node(topology.Node2)
	client, peer, server := c.Pod(topology.PodClient), c.Pod(topology.PodPeer), c.Pod(topology.PodServer)
	logf("built %s (%s, pods %s %s) and %s (%s, pod %s %s), flannel VXLAN vni %d port %d, ClusterIP %s -> %s",
		n1.NetnsName, n1.UnderlayIP, client.Name, client.IP, n2.NetnsName, n2.UnderlayIP, server.Name, server.IP,
		topology.VXLANID, topology.VXLANPort, topology.ClusterIP, topology.ServerAddr)

	servers := []*topology.Pod{server, peer}
	if opts.Topology.IPVS {
		logf("kube-proxy IPVS mode: virtual service %s, %s over %s", topology.ClusterIP, topology.IPVSScheduler, topology.IPVSRealServers)
		servers = append(servers, c.Pod(topology.PodServerLocal))
	}
	for _, p := range servers {
		srv, err := topology.StartEchoServer(ctx, p, topology.ServerPort)
		if err != nil {
			return sum, fmt.Errorf("start echo server in %s: %w", p.Name, err)
		}
		defer srv.Close()
	}

	tctx, stop := context.WithCancel(ctx)
	defer stop()
	topts := opts.Trace
	topts.Loader.PodIPs = []netip.Addr{client.IP}
	topts.Loader.Netns = []string{n1.NetnsPath, n2.NetnsPath}
	ready := make(chan struct{})
	topts.OnReady = func() { close(ready) }
	type result struct {
		sum trace.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := trace.Run(tctx, topts, out)
		done <- result{s, err}
	}()
	select {
	case <-ready:
	case r := <-done:
		return r.sum, r.err
	}
	logf("tracing %s", client.IP)

	exchanges := []struct {
		what string
		to   netip.AddrPort
	}{
		{"ClusterIP service on the other node (DNAT, VXLAN)", topology.ClusterIP},
		{"pod on the same node (cni0 bridge)", topology.PeerAddr},
	}
	if opts.Topology.IPVS { // round robin: the second request goes to the other real server
		exchanges[0].what = "ClusterIP service (IPVS)"
		exchanges = slices.Insert(exchanges, 1, exchanges[0])
		exchanges[1].what = "ClusterIP service again (IPVS: the next real server)"
	}
	var xerr error
	for _, x := range exchanges {
		logf("TCP %s -> %s: %s", client.IP, x.to, x.what)
		xctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		reply, err := topology.TCPExchange(xctx, client, x.to, "hello from "+client.Name)
		cancel()
		if err != nil {
			xerr = errors.Join(xerr, fmt.Errorf("TCP exchange with %s: %w", x.to, err))
			continue
		}
		logf("reply: %q", reply)
	}
	// Let the connections' last segments cross the nodes, then stop: the
	// tracer drains the ring buffer and renders every path it holds.
	select {
	case <-time.After(200 * time.Millisecond):
	case <-ctx.Done():
	}
	stop()
	r := <-done
	if ctx.Err() != nil {
		logf("interrupted; removing the cluster")
		xerr = nil // the exchanges failed because the user stopped them
	}
	return r.sum, errors.Join(r.err, xerr)
}
