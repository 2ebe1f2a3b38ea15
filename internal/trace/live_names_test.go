package trace

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/render"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/internal/topology"
)

// TestLiveServiceNames traces, and records, a ClusterIP exchange from the
// client pod and a NodePort exchange from the host outside the cluster,
// through the topology's kube-proxy rules (iptables mode, comments
// "NS/NAME:PORT cluster IP" and "NS/NAME:PORT"): each request's DNAT, each
// reply's un-DNAT and each of their paths carry the Service port's name, as
// the node reports taken at the start read it from those rules. The replay
// of the recording names the same, from the reports in the recording.
func TestLiveServiceNames(t *testing.T) {
	c := externalCluster(t)
	file := filepath.Join(t.TempDir(), "names.pcapng")
	live := &collector{}
	var liveJSON bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		_, err := Run(ctx, Options{
			Loader: loader.Options{
				PodIPs: []netip.Addr{topology.ClientIP, topology.ExternalIP},
				Netns:  []string{c.Node(topology.Node1).NetnsPath, c.Node(topology.Node2).NetnsPath},
			},
			Record:  file,
			OnReady: func() { close(ready) },
		}, tee{live, render.NewJSON(&liveJSON)})
		done <- err
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("trace ended before it was ready: %v", err)
	}
	exchange(t, c.Pod(topology.PodClient), topology.ClusterIP)
	exchange(t, c.External, topology.NodePortAddr)
	waitTeardown(t, c.External, "dst", topology.NodePortAddr.String())
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("trace: %v", err)
	}
	checkServiceNames(t, "live", live.paths)

	replayed := &collector{}
	var replayJSON bytes.Buffer
	if _, err := Replay(context.Background(), file, ReplayOptions{}, tee{replayed, render.NewJSON(&replayJSON)}); err != nil {
		t.Fatalf("replay: %v", err)
	}
	checkServiceNames(t, "replay", replayed.paths)
	if !bytes.Equal(liveJSON.Bytes(), replayJSON.Bytes()) {
		t.Errorf("replayed JSON differs from the live run\nlive:\n%s\nreplay:\n%s", liveJSON.Bytes(), replayJSON.Bytes())
	}

	// Wireshark's view: the hop comments name the Service port after its
	// address, the ClusterIP's and the NodePort's.
	testutil.Require(t, testutil.TsharkInGuest)
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tshark, "-r", file, "-T", "fields", "-e", "frame.comment").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	for _, want := range []string{
		fmt.Sprintf("%s (%s)", topology.ClusterIP, topology.ServicePortName),
		fmt.Sprintf("%s (%s)", topology.NodePortAddr, topology.ServicePortName),
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no hop comment names %s:\n%s", want, out)
		}
	}
}

// checkServiceNames checks the names on the SYN and SYN-ACK of the
// ClusterIP and of the NodePort connection.
func checkServiceNames(t *testing.T, run string, paths []*stitch.Path) {
	t.Helper()
	name := topology.ServicePortName
	// The un-DNAT of a reply: conntrack's reverse source translation.
	unDNAT := func(p *stitch.Path) *stitch.NAT {
		for i := range p.Hops {
			if n := p.Hops[i].NAT; n != nil && n.Type == hop.SNAT && n.Reverse {
				return n
			}
		}
		t.Fatalf("%s: reply #%d has no un-DNAT\n%s", run, p.ID, dump(p))
		return nil
	}
	check := func(what string, p *stitch.Path, n *stitch.NAT) {
		t.Helper()
		if p.Service != name || n.Service != name {
			t.Errorf("%s: %s names %q, its translation %+v; want %q\n%s", run, what, p.Service, *n, name, dump(p))
		}
	}

	syn := findPath(t, paths, topology.ClientIP, topology.ClusterIP.Addr(), tcpSYN)
	dnat := natHop(t, syn, hop.DNAT)
	if dnat.From != topology.ClusterIP {
		t.Fatalf("%s: ClusterIP SYN's DNAT %+v", run, *dnat)
	}
	check("ClusterIP SYN", syn, dnat)
	wantLine := fmt.Sprintf("DNAT %s → %s (%s)", topology.ClusterIP, topology.ServerAddr, name)
	if text := renderText(t, syn); !strings.Contains(text, wantLine) {
		t.Errorf("%s: ClusterIP SYN's text lacks %q:\n%s", run, wantLine, text)
	}
	if js := renderJSON(t, syn); !strings.Contains(js, `"service":"`+name+`"`) {
		t.Errorf("%s: ClusterIP SYN's JSON lacks the service: %s", run, js)
	}
	synACK := findPath(t, paths, topology.ServerIP, topology.ClientIP, tcpSYN|tcpACK)
	check("ClusterIP SYN-ACK", synACK, unDNAT(synACK))

	npSYN := findPath(t, paths, topology.ExternalIP, topology.NodePortAddr.Addr(), tcpSYN)
	npDNAT := natHop(t, npSYN, hop.DNAT)
	if npDNAT.From != topology.NodePortAddr {
		t.Fatalf("%s: NodePort SYN's DNAT %+v", run, *npDNAT)
	}
	check("NodePort SYN", npSYN, npDNAT)
	var npReply *stitch.Path
	for _, p := range paths {
		if p.Src == topology.ServerAddr && p.TCPFlags == tcpSYN|tcpACK && p.Dst.Addr() != topology.ClientIP {
			npReply = p
		}
	}
	if npReply == nil {
		t.Fatalf("%s: no SYN-ACK of the NodePort connection among %d paths", run, len(paths))
	}
	n := unDNAT(npReply)
	if n.To != topology.NodePortAddr {
		t.Errorf("%s: NodePort reply's un-DNAT %+v, want to %s", run, *n, topology.NodePortAddr)
	}
	check("NodePort SYN-ACK", npReply, n)
}
