package trace

import (
	"context"
	"net/netip"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/topology"
)

// TestLiveIdentity traces IPv4 TCP of the client while IPv6 pings between
// the client and its peer and ARP churn (neighbour tables flushed) reuse
// the same skbs: every hop of every IPv4 path continues its packet (the
// path's tuple, or its NAT form), none is another packet's.
func TestLiveIdentity(t *testing.T) {
	c := cluster(t, topology.Options{})
	client, peer := c.Pod(topology.PodClient), c.Pod(topology.PodPeer)
	n1 := c.Node(topology.Node1)
	v6 := map[*topology.Pod]netip.Addr{client: netip.MustParseAddr("fd00:10:244:1::5"), peer: netip.MustParseAddr("fd00:10:244:1::6")}
	for p, a := range v6 {
		if _, err := p.Run(context.Background(), "ip", "-6", "addr", "add", a.String()+"/64", "dev", "eth0", "nodad"); err != nil {
			t.Fatal(err)
		}
	}
	stop := tracing(t, c, topology.ClientIP)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var pings, pingErrs int
	var mu sync.Mutex
	wg.Add(2)
	go func() { // IPv6 pings both ways
		defer wg.Done()
		for seq := uint16(1); ctx.Err() == nil; seq++ {
			from, to := client, v6[peer]
			if seq%2 == 0 {
				from, to = peer, v6[client]
			}
			err := topology.Ping(ctx, from, to, 0x600, seq)
			mu.Lock()
			if err == nil {
				pings++
			} else if ctx.Err() == nil {
				pingErrs++
			}
			mu.Unlock()
		}
	}()
	go func() { // ARP churn
		defer wg.Done()
		for ctx.Err() == nil {
			for _, ns := range []string{client.NetnsName, peer.NetnsName, n1.NetnsName} {
				runCtx, done := context.WithTimeout(context.Background(), 2*time.Second)
				_ = exec.CommandContext(runCtx, "ip", "-n", ns, "neigh", "flush", "all").Run()
				done()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	// A flush can fail a connection whose first packet waits for its
	// neighbour (EHOSTUNREACH): count those, they are traced all the same.
	var exchanged, failed int
	for range 10 {
		for _, to := range []netip.AddrPort{topology.ClusterIP, topology.PeerAddr} {
			xctx, done := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := topology.TCPExchange(xctx, client, to, "ping"); err != nil {
				failed++
			} else {
				exchanged++
			}
			done()
		}
	}
	cancel()
	wg.Wait()
	paths, _ := stop()
	if pings == 0 || exchanged == 0 {
		t.Fatalf("%d IPv6 pings went through (%d failed), %d TCP exchanges (%d failed)", pings, pingErrs, exchanged, failed)
	}
	t.Logf("%d IPv6 pings, %d TCP exchanges (%d failed), %d IPv4 paths", pings, exchanged, failed, len(paths))

	for _, p := range paths {
		if p.Proto != decode.ProtoTCP || !p.Src.Addr().Is4() {
			t.Errorf("path #%d is not IPv4 TCP of the traced exchanges\n%s", p.ID, dump(p))
			continue
		}
		allowed := map[netip.AddrPort]bool{p.Src: true, p.Dst: true}
		for _, h := range p.Hops {
			if h.NAT != nil {
				allowed[h.NAT.From], allowed[h.NAT.To] = true, true
			}
		}
		for i, h := range p.Hops {
			if h.Proto != p.Proto || !allowed[h.Src] || !allowed[h.Dst] {
				t.Errorf("path #%d hop %d (%s on %s in %s) carries %d %s → %s, not the path's packet\n%s",
					p.ID, i, h.Kind, h.Dev, h.Netns, h.Proto, h.Src, h.Dst, dump(p))
				break
			}
		}
	}
}
