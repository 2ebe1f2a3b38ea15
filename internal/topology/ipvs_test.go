package topology

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/pathtrace/pathtrace/internal/testutil"
)

func TestParseIPVSConns(t *testing.T) {
	in := []byte(`Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
TCP 0AF40105 9C4C 0A60000A 0050 0AF40207 1F90 SYN_RECV         59
TCP 0AF40105 9C4E 0A60000A 0050 0AF40108 1F90 TIME_WAIT       119
`)
	got, err := parseIPVSConns(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []IPVSConn{
		{Proto: "TCP", Client: netip.MustParseAddrPort("10.244.1.5:40012"), Virtual: ClusterIP, Real: ServerAddr, State: "SYN_RECV"},
		{Proto: "TCP", Client: netip.MustParseAddrPort("10.244.1.5:40014"), Virtual: ClusterIP, Real: ServerLocalAddr, State: "TIME_WAIT"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if _, err := parseIPVSConns([]byte("TCP 0AF4010 9C4C 0A60000A 0050 0AF40207 1F90 SYN_RECV 59\n")); err == nil {
		t.Error("a 7-digit address parsed")
	}
}

// TestIPVSMode builds the cluster in kube-proxy IPVS mode and checks that a
// request to the ClusterIP reaches each real server in turn, and that the
// connection table says so.
func TestIPVSMode(t *testing.T) {
	testutil.RequireRoot(t)
	c, err := Build(context.Background(), Options{IPVS: true})
	if errors.Is(err, ErrNoIPVS) {
		testutil.Missing(t, testutil.IPVS, err)
	}
	if err != nil {
		t.Fatalf("build cluster: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	for _, name := range []string{PodServer, PodServerLocal} {
		srv, err := StartEchoServer(context.Background(), c.Pod(name), ServerPort)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
	}
	var answered []string
	for range 2 {
		reply, err := TCPExchange(context.Background(), c.Pod(PodClient), ClusterIP, "ping")
		if err != nil {
			t.Fatalf("exchange with %s: %v", ClusterIP, err)
		}
		answered = append(answered, reply)
	}
	slices.Sort(answered)
	if want := []string{"server-local: ping", "server: ping"}; !slices.Equal(answered, want) {
		t.Errorf("answers %q, want one from each real server %q", answered, want)
	}
	conns, err := c.Node(Node1).IPVSConns()
	if err != nil {
		t.Fatal(err)
	}
	var reals []netip.AddrPort
	for _, cn := range conns {
		if cn.Virtual != ClusterIP || cn.Client.Addr() != ClientIP {
			t.Errorf("unexpected connection %+v", cn)
		}
		reals = append(reals, cn.Real)
	}
	slices.SortFunc(reals, netip.AddrPort.Compare)
	if want := []netip.AddrPort{ServerLocalAddr, ServerAddr}; !slices.Equal(reals, want) {
		t.Errorf("IPVS connections to %v, want %v", reals, want)
	}
}
