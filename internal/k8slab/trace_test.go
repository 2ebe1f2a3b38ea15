package k8slab

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/render"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/trace"
)

// collector is a renderer that keeps the paths.
type collector struct {
	mu    sync.Mutex
	paths []*stitch.Path
}

func (c *collector) Render(p *stitch.Path) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paths = append(c.paths, p.Clone())
	return nil
}
func (c *collector) Close() error { return nil }

// traceFetch traces the client pod's packets on both nodes while the client
// fetches url, and returns the paths.
func traceFetch(t *testing.T, l *Lab, url string) []*stitch.Path {
	t.Helper()
	return traceFetchWith(t, l, url, trace.Options{Loader: loader.Options{PodIPs: []netip.Addr{l.Pod(PodClient).IP}}})
}

// traceFetchWith is traceFetch with the trace's options (the lab's nodes
// are added to them).
func traceFetchWith(t *testing.T, l *Lab, url string, opts trace.Options) []*stitch.Path {
	t.Helper()
	out := &collector{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	opts.Loader.Netns = []string{l.Node(Node1).NetnsPath, l.Node(Node2).NetnsPath}
	opts.OnReady = func() { close(ready) }
	done := make(chan error, 1)
	go func() {
		_, err := trace.Run(ctx, opts, out)
		done <- err
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("trace ended before it was ready: %v", err)
	}
	if opts.KubeRefresh > 0 {
		time.Sleep(5 * opts.KubeRefresh) // the first refresh is in effect
	}
	body, err := l.Fetch(ctx, PodClient, url)
	if err != nil || body != "pathtrace lab\n" {
		t.Errorf("client → %s: %q, %v", url, body, err)
	}
	time.Sleep(200 * time.Millisecond) // the last events of the exchange
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("trace: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("trace did not stop within 10s of its context ending")
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	return out.paths
}

// synPath returns the path of the client's SYN to dst.
func synPath(t *testing.T, paths []*stitch.Path, src netip.Addr, dst netip.AddrPort) *stitch.Path {
	t.Helper()
	for _, p := range paths {
		if p.Src.Addr() == src && p.Dst == dst && p.Proto == decode.ProtoTCP && p.TCPFlags == 0x02 {
			return p
		}
	}
	var b strings.Builder
	for _, p := range paths {
		b.WriteString(dumpPath(p))
	}
	t.Fatalf("no SYN %s → %s among %d paths:\n%s", src, dst, len(paths), b.String())
	return nil
}

// dumpPath renders p as pathtrace's text output does.
func dumpPath(p *stitch.Path) string {
	var b strings.Builder
	if err := render.NewText(&b, render.TextOptions{}).Render(p); err != nil {
		return fmt.Sprintf("#%d: render: %v", p.ID, err)
	}
	return b.String()
}

// step is a hop to find; empty fields match anything.
type step struct {
	kind       hop.Kind
	dev, netns string
	nat        *stitch.NAT
	outer      *stitch.Outer
	what       string
}

// requireSteps checks that p has the steps in order, other hops between.
func requireSteps(t *testing.T, p *stitch.Path, steps []step) {
	t.Helper()
	i := 0
	for _, h := range p.Hops {
		if i == len(steps) {
			break
		}
		s := steps[i]
		if h.Kind != s.kind || (s.dev != "" && h.Dev != s.dev) || (s.netns != "" && h.Netns != s.netns) {
			continue
		}
		if s.nat != nil && (h.NAT == nil || h.NAT.Type != s.nat.Type || h.NAT.From != s.nat.From || h.NAT.To != s.nat.To) {
			continue
		}
		if s.outer != nil && (h.Outer == nil || *h.Outer != *s.outer) {
			continue
		}
		i++
	}
	if i < len(steps) {
		t.Errorf("path lacks, after the first %d expected hops, %s:\n%s", i, steps[i].what, dumpPath(p))
	}
}

// webPortName is the web Service's port as kube-proxy names it (the lab
// names every Service port "http").
const webPortName = Namespace + "/" + ServiceWeb + ":http"

// checkTrace traces the client's requests to the ClusterIP and to node1's
// NodePort: kube-proxy's DNAT on node1 to the server pod, then flannel's
// VXLAN from node1 to node2, and delivery in the server's namespace.
func checkTrace(t *testing.T, l *Lab) {
	client, server := l.Pod(PodClient), l.Pod(PodServer)
	n1, n2 := l.Node(Node1), l.Node(Node2)
	serverAddr := netip.AddrPortFrom(server.IP, ServerPort)
	podNetns := filepath.Base(server.NetnsPath)
	vxlan := &stitch.Outer{Tunnel: hop.TunnelVXLAN, Src: n1.IP, Dst: n2.IP, DPort: 8472, VNI: 1}
	for _, c := range []struct {
		name string
		to   netip.AddrPort
	}{
		{"clusterip", netip.AddrPortFrom(WebClusterIP, WebPort)},
		{"nodeport", netip.AddrPortFrom(n1.IP, WebNodePort)},
	} {
		t.Run(c.name, func(t *testing.T) {
			paths := traceFetch(t, l, fmt.Sprintf("http://%s/", c.to))
			syn := synPath(t, paths, client.IP, c.to)
			requireSteps(t, syn, []step{
				{kind: hop.NAT, netns: n1.NetnsName, nat: &stitch.NAT{Type: hop.DNAT, From: c.to, To: serverAddr},
					what: fmt.Sprintf("kube-proxy's DNAT %s → %s on %s", c.to, serverAddr, n1.Name)},
				{kind: hop.Encap, dev: vxlanDev, netns: n1.NetnsName, outer: vxlan, what: "VXLAN encap on node1's flannel.1"},
				{kind: hop.Rx, dev: "eth0", netns: n2.NetnsName, what: "rx on node2's eth0"},
				{kind: hop.Decap, dev: vxlanDev, netns: n2.NetnsName, what: "VXLAN decap on node2's flannel.1"},
				{kind: hop.Rx, dev: "eth0", netns: podNetns, what: "rx on the server pod's eth0"},
			})
			if syn.Verdict != stitch.VerdictDelivered {
				t.Errorf("SYN verdict %s, want delivered:\n%s", syn.Verdict, dumpPath(syn))
			}
			// kube-proxy's rules name the Service port: the report of
			// node1 taken at the start names the DNAT and the path.
			for _, h := range syn.Hops {
				if h.NAT != nil && h.NAT.Type == hop.DNAT && h.NAT.From == c.to && h.NAT.Service != webPortName {
					t.Errorf("DNAT of %s names %q, want %q:\n%s", c.to, h.NAT.Service, webPortName, dumpPath(syn))
				}
			}
			if syn.Service != webPortName {
				t.Errorf("SYN to %s names %q, want %q:\n%s", c.to, syn.Service, webPortName, dumpPath(syn))
			}
		})
	}
}

// checkDoctor runs doctor in each node's namespace: it names kube-proxy's
// mode, counts the Services and names the one without endpoints.
func checkDoctor(t *testing.T, l *Lab) {
	for _, n := range l.Nodes {
		r, err := doctor.Collect(context.Background(), doctor.Options{Netns: n.NetnsPath})
		if err != nil {
			t.Fatalf("doctor in %s: %v", n.Name, err)
		}
		kp := r.KubeProxy
		if kp.Mode != string(l.Mode) {
			t.Errorf("doctor in %s: kube-proxy mode %q, want %q (%+v)", n.Name, kp.Mode, l.Mode, kp)
		}
		// default/kubernetes (the apiserver's own), web and idle.
		if kp.Services != 3 {
			t.Errorf("doctor in %s: %d Services in kube-proxy's rules, want 3", n.Name, kp.Services)
		}
		var clusterIP, nodePort bool
		for _, sp := range kp.ServicePorts {
			clusterIP = clusterIP || sp == doctor.ServicePort{Service: webPortName, Kind: doctor.KindClusterIP, Addr: WebClusterIP, Proto: 6, Port: WebPort}
			nodePort = nodePort || sp == doctor.ServicePort{Service: webPortName, Kind: doctor.KindNodePort, Proto: 6, Port: WebNodePort}
		}
		if !clusterIP || !nodePort {
			t.Errorf("doctor in %s: Service ports %+v, want %s's ClusterIP %s:%d and NodePort %d", n.Name, kp.ServicePorts, webPortName, WebClusterIP, WebPort, WebNodePort)
		}
		var idle bool
		for _, ne := range kp.NoEndpoints {
			idle = idle || strings.HasPrefix(ne.Service, Namespace+"/"+ServiceIdle)
		}
		if !idle {
			t.Errorf("doctor in %s: Services without endpoints %+v, want %s/%s", n.Name, kp.NoEndpoints, Namespace, ServiceIdle)
		}
	}
}
