package topology

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/internal/testutil"
)

// TestExternal builds the cluster with a host outside it: the host reaches
// the service on node1's NodePort, and a pod reaches the host through
// flanneld's masquerade, with TCP and with a ping.
func TestExternal(t *testing.T) {
	testutil.RequireRoot(t)
	c := newCluster(t, Options{External: true})
	for _, want := range []string{"-" + HostExternal, "-" + SwitchName} {
		if _, err := os.Stat(netnsDir + "/" + c.Prefix + want); err != nil {
			t.Errorf("netns %s%s: %v", c.Prefix, want, err)
		}
	}
	ext := c.External
	if ext == nil || ext.IP != ExternalIP || ext.Node != nil {
		t.Fatalf("external host %+v", ext)
	}
	startEcho(t, c.Pod(PodServer))
	startEcho(t, ext)
	ctx := context.Background()
	if got, err := TCPExchange(ctx, ext, NodePortAddr, "np"); err != nil || got != PodServer+": np" {
		t.Errorf("NodePort %s from the external host: %q, %v", NodePortAddr, got, err)
	}
	if got, err := TCPExchange(ctx, c.Pod(PodClient), netip.AddrPortFrom(ExternalIP, ServerPort), "out"); err != nil || got != HostExternal+": out" {
		t.Errorf("external host from the client pod: %q, %v", got, err)
	}
	if err := Ping(ctx, c.Pod(PodClient), ExternalIP, 0x4d2, 1); err != nil {
		t.Errorf("ping the external host: %v", err)
	}
	// The host sees the pod's connections from node1's address: flanneld's
	// masquerade.
	ln, err := ext.Listen("tcp4", netip.AddrPortFrom(ExternalIP, 9000).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := c.Pod(PodClient).Dial(ctx, "tcp4", netip.AddrPortFrom(ExternalIP, 9000).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	in, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if from := in.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(); from != Node1UnderlayIP {
		t.Errorf("the external host sees the client pod as %s, want node1's %s", from, Node1UnderlayIP)
	}
	out, err := c.Node(Node1).Run(ctx, "iptables", "-t", "nat", "-S", "KUBE-NODEPORTS")
	if err != nil || !strings.Contains(string(out), ExternalChain) {
		t.Errorf("KUBE-NODEPORTS: %s %v", out, err)
	}
	if _, err := Build(ctx, Options{External: true, IPVS: true}); err == nil {
		t.Error("External with IPVS built")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if left := ourNetns(t, c.Prefix); len(left) > 0 {
		t.Errorf("namespaces left after Close: %v", left)
	}
}
