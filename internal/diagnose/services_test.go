package diagnose

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// serviceReports are the reports of two nodes in nftables mode whose
// kube-proxy names the ClusterIP 10.96.0.10:80 and the NodePort 30080 of
// default/web:http; node1 is 192.168.50.11, node2 192.168.50.12. They go
// through JSON as in a recording.
func serviceReports(t testing.TB) map[uint32]*doctor.Report {
	t.Helper()
	maps := map[string][]doctor.MapElement{
		"service-ips": {
			{Addr: netip.MustParseAddr("10.96.0.10"), Proto: 6, Port: 80, Verdict: "goto service-SUSTUHLJ-default/web/tcp/http"},
			{Addr: netip.MustParseAddr("10.96.0.53"), Proto: 17, Port: 53, Verdict: "goto service-KLMNOPQR-kube-system/dns/udp/dns"},
		},
		"service-nodeports": {{Proto: 6, Port: 30080, Verdict: "goto external-SUSTUHLJ-default/web/tcp/http"}},
	}
	node2Links := flannelLinks()
	node2Links[1].Addrs = []netip.Prefix{netip.MustParsePrefix("192.168.50.12/24")}
	reports := map[uint32]*doctor.Report{}
	for ino, links := range map[uint32][]doctor.Link{inoNode1: flannelLinks(), inoNode2: node2Links} {
		r, err := doctor.Collect(context.Background(), doctor.Options{Netns: "node", FS: nodeFS(), Net: &fakeNet{links: links, maps: maps}})
		if err != nil {
			t.Fatal(err)
		}
		reports[ino] = r
	}
	js, err := json.Marshal(reports)
	if err != nil {
		t.Fatal(err)
	}
	back, problems, err := doctor.DecodeReports(js)
	if err != nil || len(problems) > 0 {
		t.Fatalf("decode reports: %v %v", err, problems)
	}
	return back
}

var clusterIP = ap("10.96.0.10:80")

func natHop(ino uint32, typ hop.NATType, from, to netip.AddrPort, reverse bool) stitch.Hop {
	h := mkHop(hop.NAT, "node", ino, "cni0", 60)
	h.NAT = &stitch.NAT{Type: typ, From: from, To: to, Reverse: reverse}
	return h
}

func TestServicesNames(t *testing.T) {
	s := NewServices(serviceReports(t))
	const web = "default/web:http"
	node1Port, node2Port := ap("192.168.50.11:30080"), ap("192.168.50.12:30080")

	for _, tc := range []struct {
		name     string
		p        *stitch.Path
		hop, svc string // the name of the last hop, of the path
	}{
		{"ClusterIP DNAT", &stitch.Path{Proto: 6, Src: client, Dst: clusterIP, Hops: []stitch.Hop{
			mkHop(hop.Tx, "client", inoPod, "eth0", 60),
			natHop(inoNode1, hop.DNAT, clusterIP, server, false)}}, web, web},
		{"reply un-DNAT", &stitch.Path{Proto: 6, Src: server, Dst: client, Hops: []stitch.Hop{
			mkHop(hop.Tx, "server", inoPeer, "eth0", 60),
			natHop(inoNode1, hop.SNAT, server, clusterIP, true)}}, web, web},
		{"NodePort on the hop's node", &stitch.Path{Proto: 6, Src: ap("192.168.50.99:41000"), Dst: node1Port, Hops: []stitch.Hop{
			natHop(inoNode1, hop.DNAT, node1Port, server, false)}}, web, web},
		{"NodePort reply", &stitch.Path{Proto: 6, Src: server, Dst: ap("192.168.50.99:41000"), Hops: []stitch.Hop{
			natHop(inoNode1, hop.SNAT, server, node1Port, true)}}, web, web},
		// node1 has no address 192.168.50.12: not its node port.
		{"NodePort of another node", &stitch.Path{Proto: 6, Src: ap("192.168.50.99:41000"), Dst: ap("10.1.1.1:80"), Hops: []stitch.Hop{
			natHop(inoNode1, hop.DNAT, node2Port, server, false)}}, "", ""},
		{"no report for the hop's node", &stitch.Path{Proto: 6, Src: client, Dst: ap("10.1.1.1:80"), Hops: []stitch.Hop{
			natHop(inoPeer, hop.DNAT, clusterIP, server, false)}}, "", ""},
		{"unknown address", &stitch.Path{Proto: 6, Src: client, Dst: ap("10.96.0.99:80"), Hops: []stitch.Hop{
			natHop(inoNode1, hop.DNAT, ap("10.96.0.99:80"), server, false)}}, "", ""},
		{"another protocol", &stitch.Path{Proto: 17, Src: client, Dst: ap("10.1.1.1:80"), Hops: []stitch.Hop{
			func() stitch.Hop {
				h := natHop(inoNode1, hop.DNAT, clusterIP, server, false)
				h.Proto = 17
				return h
			}()}}, "", ""},
		{"masquerade is no Service", &stitch.Path{Proto: 6, Src: client, Dst: ap("10.1.1.1:80"), Hops: []stitch.Hop{
			natHop(inoNode1, hop.SNAT, client, clusterIP, false)}}, "", ""},
		{"IPVS", &stitch.Path{Proto: 6, Src: client, Dst: clusterIP, Hops: []stitch.Hop{
			func() stitch.Hop {
				h := mkHop(hop.IPVS, "node1", inoNode1, "cni0", 60)
				h.IPVS = &stitch.IPVS{Service: clusterIP, RealServer: server, Method: hop.MethodMasq}
				return h
			}()}}, web, web},
		// Only the client pod traced: the path's Service from its
		// destination, a reply's from its source.
		{"request to the ClusterIP", &stitch.Path{Proto: 6, Src: client, Dst: clusterIP, Hops: []stitch.Hop{
			mkHop(hop.Tx, "client", inoPod, "eth0", 60)}}, "", web},
		{"reply from the ClusterIP", &stitch.Path{Proto: 6, Src: clusterIP, Dst: client, Hops: []stitch.Hop{
			mkHop(hop.Rx, "client", inoPod, "eth0", 60)}}, "", web},
		{"request to node2's NodePort", &stitch.Path{Proto: 6, Src: client, Dst: node2Port, Hops: []stitch.Hop{
			mkHop(hop.Tx, "client", inoPod, "eth0", 60)}}, "", web},
		{"UDP", &stitch.Path{Proto: 17, Src: client, Dst: ap("10.96.0.53:53"), Hops: []stitch.Hop{
			mkHop(hop.Tx, "client", inoPod, "eth0", 60)}}, "", "kube-system/dns:dns"},
		{"pod to pod", &stitch.Path{Proto: 6, Src: client, Dst: server, Hops: []stitch.Hop{
			mkHop(hop.Tx, "client", inoPod, "eth0", 60)}}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.Annotate(tc.p)
			h := &tc.p.Hops[len(tc.p.Hops)-1]
			got := ""
			switch {
			case h.NAT != nil:
				got = h.NAT.Service
			case h.IPVS != nil:
				got = h.IPVS.ServiceName
			}
			if got != tc.hop || tc.p.Service != tc.svc {
				t.Errorf("hop %q, path %q; want %q, %q", got, tc.p.Service, tc.hop, tc.svc)
			}
		})
	}
}

// TestServicesNoReports: without reports, or with reports that name no
// Service port (IPVS mode, no kube-proxy), nothing is named.
func TestServicesNoReports(t *testing.T) {
	p := func() *stitch.Path {
		return &stitch.Path{Proto: 6, Src: client, Dst: clusterIP, Hops: []stitch.Hop{natHop(inoNode1, hop.DNAT, clusterIP, server, false)}}
	}
	for name, reports := range map[string]map[uint32]*doctor.Report{
		"none":        nil,
		"nil report":  {inoNode1: nil},
		"no services": {inoNode1: report(t, "node1", nil)},
	} {
		q := p()
		NewServices(reports).Annotate(q)
		if q.Service != "" || q.Hops[0].NAT.Service != "" {
			t.Errorf("%s: named %q, %q", name, q.Service, q.Hops[0].NAT.Service)
		}
	}
}
