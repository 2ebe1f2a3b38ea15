package diagnose

import (
	"context"
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// The reports are made by doctor.Collect from canned sources, so a change of
// the report's values that the advisor parses breaks these tests.

type fakeNet struct {
	links []doctor.Link
	ipvs  *doctor.IPVS // nil: no IPVS on the node
	// kube-proxy's filter rules (in iptables-nft's ip filter table) and
	// nftables mode's maps by name (in its ip kube-proxy table).
	rules []doctor.Rule
	maps  map[string][]doctor.MapElement
}

func (f *fakeNet) Links() ([]doctor.Link, error) { return f.links, nil }
func (f *fakeNet) NFTables() ([]doctor.NFTable, error) {
	var ts []doctor.NFTable
	if f.rules != nil {
		ts = append(ts, doctor.NFTable{Family: "ip", Name: "filter", Chains: []string{"FORWARD", "KUBE-EXTERNAL-SERVICES", "KUBE-SERVICES"}})
	}
	if f.maps != nil {
		ts = append(ts, doctor.NFTable{Family: "ip", Name: "kube-proxy"})
	}
	return ts, nil
}
func (f *fakeNet) IPVS() (doctor.IPVS, error) {
	if f.ipvs == nil {
		return doctor.IPVS{}, doctor.ErrIPVSUnavailable
	}
	return *f.ipvs, nil
}
func (f *fakeNet) LegacyChains(string, string) ([]string, error) { return nil, nil }
func (f *fakeNet) NFTRules(string, string, []string) ([]doctor.Rule, error) {
	return f.rules, nil
}
func (f *fakeNet) NFTMap(_, _, name string) ([]doctor.MapElement, error) { return f.maps[name], nil }
func (f *fakeNet) LegacyRules(string, string) ([]doctor.Rule, error)     { return nil, nil }

func file(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s + "\n")} }

// sysctls of a healthy flannel node; tests change some.
func nodeFS() fstest.MapFS {
	return fstest.MapFS{
		"proc/sys/kernel/osrelease":                    file("6.18.0"),
		"proc/sys/net/bridge/bridge-nf-call-iptables":  file("1"),
		"proc/sys/net/bridge/bridge-nf-call-ip6tables": file("1"),
		"proc/sys/net/ipv4/ip_forward":                 file("1"),
		"proc/sys/net/netfilter/nf_conntrack_max":      file("1000"),
		"proc/sys/net/netfilter/nf_conntrack_count":    file("10"),
		"proc/sys/net/ipv4/conf/all/rp_filter":         file("0"),
		"proc/sys/net/ipv4/conf/default/rp_filter":     file("0"),
		"proc/sys/net/ipv4/conf/eth0/rp_filter":        file("0"),
		"proc/sys/net/ipv4/conf/cni0/rp_filter":        file("0"),
		"proc/sys/net/ipv4/conf/flannel.1/rp_filter":   file("0"),
		"proc/net/ip_tables_names":                     file(""),
	}
}

func flannelLinks() []doctor.Link {
	return []doctor.Link{
		{Index: 1, Name: "lo", Kind: "device", MTU: 65536},
		{Index: 2, Name: "eth0", Kind: "veth", MTU: 1500, Addrs: []netip.Prefix{netip.MustParsePrefix("192.168.50.11/24")}},
		{Index: 3, Name: "cni0", Kind: "bridge", MTU: 1450},
		{Index: 4, Name: "flannel.1", Kind: "vxlan", MTU: 1450, VNI: 1, Port: 8472, UnderlayIndex: 2,
			Local: netip.MustParseAddr("192.168.50.11")},
		{Index: 5, Name: "vethaaaa", Kind: "veth", MTU: 1450, MasterIndex: 3},
		{Index: 6, Name: "vethbbbb", Kind: "veth", MTU: 1450, MasterIndex: 3},
	}
}

// report collects a report of a node reached as netns, with the sysctls
// changed by set (path under proc/sys/ → value).
func report(t *testing.T, netns string, set map[string]string, links ...doctor.Link) *doctor.Report {
	t.Helper()
	fsys := nodeFS()
	for k, v := range set {
		if v == "" {
			delete(fsys, "proc/sys/"+k)
			continue
		}
		fsys["proc/sys/"+k] = file(v)
	}
	if links == nil {
		links = flannelLinks()
	}
	r, err := doctor.Collect(context.Background(), doctor.Options{Netns: netns, FS: fsys, Net: &fakeNet{links: links}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

const (
	inoPod   = 4026532481
	inoNode1 = 4026531840
	inoNode2 = 4026531999
	inoPeer  = 4026532500
)

var (
	ap     = netip.MustParseAddrPort
	client = ap("10.244.1.5:40000")
	server = ap("10.244.2.7:8080")
	vxlan  = &stitch.Outer{Tunnel: hop.TunnelVXLAN, Src: netip.MustParseAddr("192.168.50.11"), Dst: netip.MustParseAddr("192.168.50.12"), DPort: 8472, VNI: 1}
)

func mkHop(kind hop.Kind, ns string, ino uint32, dev string, l uint32) stitch.Hop {
	return stitch.Hop{Kind: kind, Netns: ns, NetnsInode: ino, Dev: dev, Len: l, Proto: 6, Src: client, Dst: server}
}

func nf(h stitch.Hop, hook hop.Hook, in, out string) stitch.Hop {
	h.Kind, h.Hook, h.In, h.Out = hop.Netfilter, hook, in, out
	return h
}

func dropped(h stitch.Hop, reason string) stitch.Hop {
	h.Kind, h.Reason = hop.Drop, reason
	return h
}

func path(hops ...stitch.Hop) *stitch.Path {
	v := stitch.VerdictDelivered
	if hops[len(hops)-1].Kind == hop.Drop {
		v = stitch.VerdictDropped
	}
	return &stitch.Path{ID: 1, Proto: 6, Src: client, Dst: server, Len: hops[0].Len, Verdict: v, Hops: hops}
}

// routed is a SYN from the client pod into node1, up to its routing.
func routed(tail ...stitch.Hop) *stitch.Path {
	hops := []stitch.Hop{
		mkHop(hop.Tx, "client", inoPod, "eth0", 74),
		mkHop(hop.Rx, "node1", inoNode1, "vethaaaa", 60),
		nf(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), hop.Prerouting, "cni0", ""),
		mkHop(hop.Rx, "node1", inoNode1, "cni0", 60),
	}
	return path(append(hops, tail...)...)
}

func advice(a *Advisor, p *stitch.Path) string {
	a.Annotate(p)
	return p.Hops[len(p.Hops)-1].Advice
}

func contains(t *testing.T, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, got)
		}
	}
}

func lacks(t *testing.T, what, got string, unwanted ...string) {
	t.Helper()
	for _, w := range unwanted {
		if strings.Contains(got, w) {
			t.Errorf("%s has %q:\n%s", what, w, got)
		}
	}
}

func TestNewReadsReport(t *testing.T) {
	r := report(t, "node1", map[string]string{
		"net/ipv4/ip_forward":                   "0",
		"net/bridge/bridge-nf-call-iptables":    "0",
		"net/netfilter/nf_conntrack_count":      "850",
		"net/ipv4/conf/all/rp_filter":           "0",
		"net/ipv4/conf/flannel.1/rp_filter":     "1",
		"net/ipv4/conf/cni0/rp_filter":          "2",
		"net/bridge/bridge-nf-call-ip6tables":   "",
		"net/netfilter/nf_conntrack_tcp_max_xx": "",
	})
	n := newNode(r)
	count, limit, _, ok := n.conntrack()
	if !n.facts.IPForward.Is(0) || !n.facts.BridgeNFCallIPTables.Is(0) || !ok || count != 850 || limit != 1000 {
		t.Errorf("ip_forward %s, bridge-nf %s, conntrack %v %d/%d", n.facts.IPForward, n.facts.BridgeNFCallIPTables, ok, count, limit)
	}
	rp := n.facts.RPFilter
	if eff, known := rp.Effective("flannel.1"); eff != 1 || !known || !rp.Devices["flannel.1"].Is(1) {
		t.Errorf("rp_filter flannel.1: %d %v, want 1 (strict) from the device", eff, known)
	}
	if eff, known := rp.Effective("cni0"); eff != 2 || !known {
		t.Errorf("rp_filter cni0: %d %v, want 2 (loose)", eff, known)
	}
	if eff, known := rp.Effective("vethaaaa"); eff != 0 || !known || rp.Devices["vethaaaa"].State != "" {
		t.Errorf("rp_filter of an unreported device: %d %v, want all's 0", eff, known)
	}
	// The kernel applies max(all, device).
	if eff, _ := newNode(report(t, "node1", map[string]string{"net/ipv4/conf/all/rp_filter": "2", "net/ipv4/conf/flannel.1/rp_filter": "1"})).facts.RPFilter.Effective("flannel.1"); eff != 2 {
		t.Errorf("rp_filter all=2 flannel.1=1: effective %d, want 2", eff)
	}
	if o := n.overlay("flannel.1"); o == nil || o.MTU != 1450 || o.Underlay != "eth0" || o.UnderlayMTU != 1500 || o.Overhead != 50 {
		t.Errorf("overlay %+v", o)
	}
	if b := n.bridgeOf("vethbbbb"); b == nil || b.Name != "cni0" {
		t.Errorf("bridge of vethbbbb: %+v", b)
	}
}

func TestInNetns(t *testing.T) {
	for _, tt := range []struct {
		report *node
		hop    string
		want   string
	}{
		{&node{netns: ""}, "host", ""},
		{&node{netns: "node1"}, "node1", "ip netns exec node1 "},
		{&node{netns: "/run/netns/cni-1234"}, "cni-1234", "ip netns exec cni-1234 "},
		{&node{netns: "/proc/42/ns/net"}, "netns:4026532000", "nsenter --net=/proc/42/ns/net "},
		{nil, "host", ""},
		{nil, "netns:4026532000", ""},
		{nil, "default-web", "ip netns exec default-web "},
	} {
		if got := inNetns(tt.report, tt.hop); got != tt.want {
			t.Errorf("inNetns(%+v, %q) = %q, want %q", tt.report, tt.hop, got, tt.want)
		}
	}
}

func TestAdviceForwardRule(t *testing.T) {
	p := routed(
		func() stitch.Hop {
			h := nf(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), hop.Forward, "cni0", "flannel.1")
			h.Partial = true
			return h
		}(),
		func() stitch.Hop {
			h := dropped(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), "NETFILTER_DROP")
			h.Hook = hop.Forward
			return h
		}(),
	)
	got := advice(New(map[uint32]*doctor.Report{inoNode1: report(t, "node1", nil)}), p)
	contains(t, "advice", got,
		"A netfilter rule in FORWARD on node1 (in=cni0 out=flannel.1)",
		"\n$ ip netns exec node1 iptables -L FORWARD -v -n --line-numbers",
		"\n$ ip netns exec node1 nft list ruleset")

	// The tracer's own namespace: commands without a prefix.
	p = routed(
		func() stitch.Hop {
			h := dropped(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), "NETFILTER_DROP")
			h.Hook = hop.Forward
			return h
		}(),
	)
	got = advice(New(map[uint32]*doctor.Report{inoNode1: report(t, "", nil)}), p)
	contains(t, "advice", got, "\n$ iptables -L FORWARD -v -n --line-numbers")
}

func TestAdviceNetfilterHooks(t *testing.T) {
	a := New(map[uint32]*doctor.Report{inoNode1: report(t, "node1", nil)})
	for hook, want := range map[hop.Hook]string{
		hop.Input:       "iptables -L INPUT -v -n",
		hop.Output:      "iptables -L OUTPUT -v -n",
		hop.Prerouting:  "iptables -t raw -L PREROUTING -v -n",
		hop.Postrouting: "iptables -t nat -L POSTROUTING -v -n",
		hop.NoHook:      "A netfilter hook on node1 dropped it",
	} {
		d := dropped(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), "NETFILTER_DROP")
		d.Hook = hook
		contains(t, "advice for "+hook.String(), advice(a, routed(d)), want)
	}
}

func TestAdviceConntrackFull(t *testing.T) {
	full := report(t, "node1", map[string]string{"net/netfilter/nf_conntrack_count": "1000"})
	half := report(t, "node1", map[string]string{"net/netfilter/nf_conntrack_count": "500"})
	p := func() *stitch.Path {
		pre := nf(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), hop.Prerouting, "cni0", "")
		pre.Partial = true
		d := dropped(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), "NETFILTER_DROP")
		d.Hook = hop.Prerouting
		return path(mkHop(hop.Tx, "client", inoPod, "eth0", 74), mkHop(hop.Rx, "node1", inoNode1, "vethaaaa", 60), pre, d)
	}

	fp := p()
	got := advice(New(map[uint32]*doctor.Report{inoNode1: full}), fp)
	contains(t, "advice", got, "The conntrack table of node1 was 1000/1000 (100% full)", "nf_conntrack_max",
		"\n$ ip netns exec node1 conntrack -C")
	if len(fp.Warnings) != 1 || !strings.Contains(fp.Warnings[0], "The conntrack table of node1 was 100% full (1000/1000)") {
		t.Errorf("warnings %q, want one on the full table", fp.Warnings)
	}

	hp := p()
	got = advice(New(map[uint32]*doctor.Report{inoNode1: half}), hp)
	contains(t, "advice at 50%", got, "A netfilter rule in PREROUTING on node1", "50% full (500/1000)")
	lacks(t, "advice at 50%", got, "nf_conntrack: table full")
	if len(hp.Warnings) != 0 {
		t.Errorf("warnings %q at 50%%", hp.Warnings)
	}

	wp := p()
	New(map[uint32]*doctor.Report{inoNode1: report(t, "node1", map[string]string{"net/netfilter/nf_conntrack_count": "850"})}).Annotate(wp)
	if len(wp.Warnings) != 1 || !strings.Contains(wp.Warnings[0], "85% full") {
		t.Errorf("warnings %q at 85%%", wp.Warnings)
	}
}

func TestAdviceIPForward(t *testing.T) {
	off := report(t, "node1", map[string]string{"net/ipv4/ip_forward": "0"})
	on := report(t, "node1", nil)
	for _, reason := range []string{"IP_INADDRERRORS", "IP_INNOROUTES", "NOT_SPECIFIED"} {
		got := advice(New(map[uint32]*doctor.Report{inoNode1: off}), routed(dropped(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), reason)))
		contains(t, reason+" advice", got, "net.ipv4.ip_forward=0 on node1: the node drops what it should route (10.244.1.5 → 10.244.2.7 arrived on cni0)",
			"\n$ ip netns exec node1 sysctl net.ipv4.ip_forward")
	}

	got := advice(New(map[uint32]*doctor.Report{inoNode1: on}), routed(dropped(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), "IP_INADDRERRORS")))
	contains(t, "advice with ip_forward=1", got, "10.244.2.7 is not a destination node1 accepts from cni0",
		"ip route get 10.244.2.7 from 10.244.1.5 iif cni0")
	lacks(t, "advice with ip_forward=1", got, "ip_forward=0")

	// Past FORWARD the node did route it: ip_forward is not the cause.
	p := routed(nf(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), hop.Forward, "cni0", "flannel.1"),
		dropped(mkHop(hop.NoKind, "node1", inoNode1, "flannel.1", 60), "NOT_SPECIFIED"))
	lacks(t, "advice after FORWARD", advice(New(map[uint32]*doctor.Report{inoNode1: off}), p), "ip_forward=0")
}

// An IPv6 packet dropped for want of IPv6 forwarding: the IPv6 sysctl,
// whatever ip_forward says.
func TestAdviceIPv6Forwarding(t *testing.T) {
	off := report(t, "node1", map[string]string{"net/ipv6/conf/all/forwarding": "0"})
	src, dst := netip.MustParseAddrPort("[fd77:1::5]:40312"), netip.MustParseAddrPort("[fd77:2::7]:8080")
	p := routed(dropped(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 80), "NOT_SPECIFIED"))
	p.Src, p.Dst = src, dst
	for i := range p.Hops {
		p.Hops[i].Src, p.Hops[i].Dst = src, dst
	}
	got := advice(New(map[uint32]*doctor.Report{inoNode1: off}), p)
	contains(t, "IPv6 advice", got, "net.ipv6.conf.all.forwarding=0 on node1: the node drops what it should route (fd77:1::5 → fd77:2::7 arrived on cni0)",
		"\n$ ip netns exec node1 sysctl net.ipv6.conf.all.forwarding")
	lacks(t, "IPv6 advice", got, "ip_forward")
}

func TestAdviceRPFilter(t *testing.T) {
	p := func() *stitch.Path {
		return path(
			mkHop(hop.Rx, "node2", inoNode2, "eth0", 110),
			mkHop(hop.Decap, "node2", inoNode2, "flannel.1", 60),
			mkHop(hop.Rx, "node2", inoNode2, "flannel.1", 60),
			nf(mkHop(hop.NoKind, "node2", inoNode2, "flannel.1", 60), hop.Prerouting, "flannel.1", ""),
			dropped(mkHop(hop.NoKind, "node2", inoNode2, "flannel.1", 60), "IP_RPFILTER"),
		)
	}
	for _, tt := range []struct {
		set  map[string]string
		want []string
	}{
		{map[string]string{"net/ipv4/conf/all/rp_filter": "1"}, []string{"Strict reverse-path filtering (rp_filter=1, from all) on node2", "does not leave through flannel.1", "asymmetric routing"}},
		{map[string]string{"net/ipv4/conf/flannel.1/rp_filter": "1"}, []string{"(rp_filter=1, from flannel.1)"}},
		{map[string]string{"net/ipv4/conf/flannel.1/rp_filter": "2"}, []string{"Loose reverse-path filtering (rp_filter=2) on node2: there is no route at all back to 10.244.1.5"}},
		{map[string]string{"net/ipv4/conf/flannel.1/rp_filter": "", "net/ipv4/conf/all/rp_filter": ""}, []string{"the report does not show rp_filter"}},
	} {
		got := advice(New(map[uint32]*doctor.Report{inoNode2: report(t, "node2", tt.set)}), p())
		contains(t, "rp_filter advice", got, tt.want...)
		contains(t, "rp_filter advice", got, "\n$ ip netns exec node2 ip route get 10.244.1.5",
			"net.ipv4.conf.all.rp_filter net.ipv4.conf.flannel/1.rp_filter")
	}
}

func TestAdviceNoRoute(t *testing.T) {
	got := advice(New(map[uint32]*doctor.Report{inoNode1: report(t, "node1", nil)}), routed(dropped(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), "IP_INNOROUTES")))
	contains(t, "advice", got, "No route to 10.244.2.7 on node1: the kernel answers 10.244.1.5 with ICMP net unreachable",
		"If 10.244.2.7 is a pod of another node: the CNI routes each other node's pod CIDR through flannel.1", "\n$ ip netns exec node1 ip route get 10.244.2.7", "\n$ ip netns exec node1 ip route show dev flannel.1")
}

func TestAdviceTooBig(t *testing.T) {
	p := path(
		mkHop(hop.Tx, "client", inoPod, "eth0", 1482),
		mkHop(hop.Rx, "node1", inoNode1, "vethaaaa", 1468),
		nf(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 1468), hop.Prerouting, "cni0", ""),
		mkHop(hop.Rx, "node1", inoNode1, "cni0", 1468),
		dropped(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 1468), "PKT_TOO_BIG"),
	)
	a := New(map[uint32]*doctor.Report{inoNode1: report(t, "node1", nil)})
	got := advice(a, p)
	contains(t, "advice", got, "A 1468-byte packet with DF set does not fit the MTU 1450 of flannel.1 on node1",
		"ICMP fragmentation-needed (mtu 1450) back to 10.244.1.5", "(eth0 MTU 1500 − 50 bytes of VXLAN headers)",
		"\n$ ip netns exec client ip link show eth0")
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "A 1468-byte packet on its way through flannel.1 on node1, whose MTU is 1450") {
		t.Errorf("warnings %q", p.Warnings)
	}
}

func TestWarningMTU(t *testing.T) {
	a := New(map[uint32]*doctor.Report{inoNode1: report(t, "node1", nil)})
	// through is a packet of l bytes of IP sent whole on flannel.1 and eth0.
	through := func(l uint32) *stitch.Path {
		enc := mkHop(hop.Encap, "node1", inoNode1, "flannel.1", l+50)
		enc.Outer = vxlan
		out := nf(mkHop(hop.NoKind, "node1", inoNode1, "eth0", l+50), hop.Postrouting, "flannel.1", "eth0")
		out.Outer = vxlan
		tx := mkHop(hop.Tx, "node1", inoNode1, "eth0", l+50+14)
		tx.Outer = vxlan
		return path(
			mkHop(hop.Rx, "node1", inoNode1, "vethaaaa", l),
			nf(mkHop(hop.NoKind, "node1", inoNode1, "cni0", l), hop.Forward, "cni0", "flannel.1"),
			mkHop(hop.Tx, "node1", inoNode1, "flannel.1", l+14), // Ethernet header included
			enc, out, tx,
		)
	}
	// 1450 bytes of IP fit exactly: the tx hop's 1464 include 14 of Ethernet.
	fits := through(1450)
	if a.Annotate(fits); len(fits.Warnings) != 0 {
		t.Errorf("warnings %q for a packet that fits", fits.Warnings)
	}
	// A GSO packet: sent whole, the kernel segments it to fit.
	gso := through(7042)
	if a.Annotate(gso); len(gso.Warnings) != 0 {
		t.Errorf("warnings %q for a GSO packet the node sent whole on flannel.1 and eth0", gso.Warnings)
	}
	// A 1451-byte packet without DF, fragmented before flannel.1: the
	// original is freed after POSTROUTING.
	p := path(
		mkHop(hop.Rx, "node1", inoNode1, "vethaaaa", 1451),
		nf(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 1451), hop.Forward, "cni0", "flannel.1"),
		nf(mkHop(hop.NoKind, "node1", inoNode1, "flannel.1", 1451), hop.Postrouting, "cni0", "flannel.1"),
		mkHop(hop.Consume, "node1", inoNode1, "flannel.1", 1451),
	)
	a.Annotate(p)
	if len(p.Warnings) != 1 {
		t.Fatalf("warnings %q, want the overlay's", p.Warnings)
	}
	contains(t, "warning", p.Warnings[0], "A 1451-byte packet on its way through flannel.1 on node1, whose MTU is 1450")
	// The same, a datagram conntrack reassembled at PREROUTING from
	// fragments that fit: its size is no pod's MTU.
	reasm := path(
		nf(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 4028), hop.Prerouting, "cni0", ""),
		nf(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 4028), hop.Forward, "cni0", "flannel.1"),
		nf(mkHop(hop.NoKind, "node1", inoNode1, "flannel.1", 4028), hop.Postrouting, "cni0", "flannel.1"),
		mkHop(hop.Consume, "node1", inoNode1, "flannel.1", 4028),
	)
	reasm.FirstSeen = stitch.FirstSeenReassembled
	if a.Annotate(reasm); len(reasm.Warnings) != 0 {
		t.Errorf("warnings %q for a datagram reassembled on the node", reasm.Warnings)
	}
	// Inside, a GSO packet flannel.1 took whole; encapsulated, 1501 bytes
	// the node fragments before eth0 (the original freed after POSTROUTING).
	enc := mkHop(hop.Encap, "node1", inoNode1, "flannel.1", 1501)
	enc.Outer = vxlan
	out := nf(mkHop(hop.NoKind, "node1", inoNode1, "eth0", 1501), hop.Postrouting, "flannel.1", "eth0")
	out.Outer = vxlan
	freed := mkHop(hop.Consume, "node1", inoNode1, "eth0", 1501)
	freed.Outer = vxlan
	p = path(
		mkHop(hop.Rx, "node1", inoNode1, "vethaaaa", 1451),
		nf(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 1451), hop.Forward, "cni0", "flannel.1"),
		mkHop(hop.Tx, "node1", inoNode1, "flannel.1", 1451+14),
		enc, out, freed,
	)
	a.Annotate(p)
	if len(p.Warnings) != 1 {
		t.Fatalf("warnings %q, want the underlay's", p.Warnings)
	}
	contains(t, "warning", p.Warnings[0], "The encapsulated packet (1501 bytes) is larger than the MTU 1500 of eth0, the underlay of flannel.1 on node1",
		"flannel.1's MTU 1450 should be ≤ 1450")

	// Not through the overlay (same-node traffic): no warning.
	same := path(mkHop(hop.Rx, "node1", inoNode1, "vethaaaa", 1480), mkHop(hop.Tx, "node1", inoNode1, "vethbbbb", 1494))
	if a.Annotate(same); slicesContain(same.Warnings, "whose MTU") {
		t.Errorf("MTU warning on same-node traffic: %q", same.Warnings)
	}
}

func slicesContain(ss []string, part string) bool {
	for _, s := range ss {
		if strings.Contains(s, part) {
			return true
		}
	}
	return false
}

func TestWarningBridged(t *testing.T) {
	bridged := func() *stitch.Path {
		return path(
			mkHop(hop.Tx, "client", inoPod, "eth0", 74),
			mkHop(hop.Rx, "node1", inoNode1, "vethaaaa", 60),
			mkHop(hop.Tx, "node1", inoNode1, "vethbbbb", 74),
			mkHop(hop.Rx, "peer", inoPeer, "eth0", 60),
		)
	}
	for _, tt := range []struct {
		value string
		want  string
	}{
		{"0", "net.bridge.bridge-nf-call-iptables=0, so netfilter rules, kube-proxy and NetworkPolicy do not see it"},
		{"", "br_netfilter is not loaded (net.bridge.bridge-nf-call-iptables is absent)"},
		{"1", ""},
	} {
		p := bridged()
		New(map[uint32]*doctor.Report{inoNode1: report(t, "node1", map[string]string{"net/bridge/bridge-nf-call-iptables": tt.value})}).Annotate(p)
		if tt.want == "" {
			if len(p.Warnings) != 0 {
				t.Errorf("bridge-nf-call-iptables=1: warnings %q", p.Warnings)
			}
			continue
		}
		if len(p.Warnings) != 1 {
			t.Fatalf("bridge-nf-call-iptables %q: warnings %q, want one", tt.value, p.Warnings)
		}
		contains(t, "warning", p.Warnings[0], "Bridged pod-to-pod traffic on node1 (vethaaaa → vethbbbb through cni0) passed no netfilter hook", tt.want,
			"Check: ip netns exec node1 sysctl net.bridge.bridge-nf-call-iptables")
	}

	// Routed through cni0 (rx on the bridge device), or seen by netfilter:
	// not the bypass.
	off := New(map[uint32]*doctor.Report{inoNode1: report(t, "node1", map[string]string{"net/bridge/bridge-nf-call-iptables": "0"})})
	for _, p := range []*stitch.Path{
		path(mkHop(hop.Rx, "node1", inoNode1, "vethaaaa", 60), mkHop(hop.Rx, "node1", inoNode1, "cni0", 60), mkHop(hop.Tx, "node1", inoNode1, "vethbbbb", 74)),
		path(mkHop(hop.Rx, "node1", inoNode1, "vethaaaa", 60), nf(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), hop.Forward, "cni0", "cni0"), mkHop(hop.Tx, "node1", inoNode1, "vethbbbb", 74)),
		path(mkHop(hop.Rx, "node1", inoNode1, "eth0", 110), mkHop(hop.Tx, "node1", inoNode1, "vethbbbb", 74)),
	} {
		if off.Annotate(p); len(p.Warnings) != 0 {
			t.Errorf("warnings %q on a path that is not bridged past netfilter", p.Warnings)
		}
	}
}

func TestAdviceOthers(t *testing.T) {
	a := New(map[uint32]*doctor.Report{inoNode1: report(t, "node1", nil)})

	ns := dropped(mkHop(hop.NoKind, "server", 4026532600, "eth0", 60), "NO_SOCKET")
	contains(t, "NO_SOCKET advice", advice(a, path(mkHop(hop.Rx, "server", 4026532600, "eth0", 60), ns)),
		"Nothing listens on 10.244.2.7 port 8080 in server", "TCP answers with a reset", "\n$ ip netns exec server ss -lntu")

	// A SYN freed by tcp_v4_rcv: NOT_SPECIFIED (5.17+) is a TIME_WAIT
	// socket's answer; no reason (older) is that or no listener.
	for _, reason := range []string{"NOT_SPECIFIED", ""} {
		syn := dropped(mkHop(hop.NoKind, "server", 4026532600, "eth0", 60), reason)
		syn.Func, syn.TCPFlags = "tcp_v4_rcv+0x90", 0x02
		got := advice(a, path(mkHop(hop.Rx, "server", 4026532600, "eth0", 60), syn))
		contains(t, "SYN at TIME_WAIT advice", got, "TIME_WAIT socket of an earlier connection", "after about 1 s",
			"\n$ ip netns exec server ss -tan state time-wait '( sport = :8080 )'")
		if reason == "" {
			contains(t, "SYN before 5.17", got, "no drop reason before Linux 5.17", "nothing listens on 10.244.2.7 port 8080")
		}
		syn.TCPFlags = 0x10 // an ACK so freed is not explained so
		if got := advice(a, path(mkHop(hop.Rx, "server", 4026532600, "eth0", 60), syn)); strings.Contains(got, "TIME_WAIT") {
			t.Errorf("advice for an ACK speaks of a SYN:\n%s", got)
		}
	}

	neigh := dropped(mkHop(hop.NoKind, "node1", inoNode1, "eth0", 110), "NEIGH_FAILED")
	contains(t, "NEIGH_FAILED advice", advice(a, path(mkHop(hop.Rx, "node1", inoNode1, "cni0", 60), neigh)),
		"The kernel dropped it at eth0 on node1 with reason NEIGH_FAILED.", "ARP for the next hop got no answer",
		"\n$ ip netns exec node1 ip neigh show dev eth0", "\n$ ip netns exec node1 ip -s -s link show eth0", "nstat -az", "dropwatch")

	odd := dropped(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), "")
	odd.ReasonCode = 999
	contains(t, "advice for an unnamed reason", advice(a, path(mkHop(hop.Rx, "node1", inoNode1, "cni0", 60), odd)), "with reason #999")

	// A pod whose MTU exceeds its host veth's: veth frees it right after tx.
	tx := mkHop(hop.Tx, "client", inoPod, "eth0", 1482)
	contains(t, "veth advice", advice(a, path(tx, dropped(mkHop(hop.NoKind, "client", inoPod, "eth0", 1482), "NOT_SPECIFIED"))),
		"Freed right after it was queued on eth0 in client", "1468 bytes of IP", "The pod bridge cni0 has MTU 1450 on node1")
}

func TestWarningICMPError(t *testing.T) {
	v4, v6 := "This is an ICMP error from 10.244.1.1, ", "This is an ICMPv6 error from fd00:10:244:1::1, "
	for _, tt := range []struct {
		proto     uint8
		typ, code uint16
		want      string
	}{
		{1, 3, 0, v4 + "destination unreachable (net unreachable)"},
		{1, 3, 3, v4 + "destination unreachable (port unreachable)"},
		{1, 3, 4, v4 + "fragmentation needed"},
		{1, 3, 13, v4 + "destination unreachable (administratively prohibited)"},
		{1, 11, 0, v4 + "time exceeded: an earlier packet of 10.244.1.5 ran out of TTL"},
		{1, 11, 1, v4 + "time exceeded (fragment reassembly)"},
		{58, 1, 0, v6 + "destination unreachable (no route): it had no route for an earlier packet of fd00:10:244:1::5"},
		{58, 1, 3, v6 + "destination unreachable (address unreachable)"},
		{58, 1, 4, v6 + "destination unreachable (port unreachable): no socket took an earlier packet of fd00:10:244:1::5"},
		{58, 1, 1, v6 + "destination unreachable (administratively prohibited)"},
		{58, 1, 6, v6 + "destination unreachable (administratively prohibited)"},
		{58, 1, 2, v6 + "destination unreachable (code 2) for an earlier packet"},
		{58, 2, 0, v6 + "packet too big: an earlier packet of fd00:10:244:1::5 was larger than the MTU of its route"},
		{58, 3, 0, v6 + "time exceeded: an earlier packet of fd00:10:244:1::5 ran out of hop limit"},
		{58, 3, 1, v6 + "time exceeded (fragment reassembly)"},
	} {
		src, dst := "10.244.1.1", "10.244.1.5"
		if tt.proto == decode.ProtoICMPv6 {
			src, dst = "fd00:10:244:1::1", "fd00:10:244:1::5"
		}
		p := &stitch.Path{Proto: tt.proto, Src: netip.AddrPortFrom(netip.MustParseAddr(src), tt.typ),
			Dst: netip.AddrPortFrom(netip.MustParseAddr(dst), tt.code), Hops: []stitch.Hop{mkHop(hop.Tx, "node1", inoNode1, "cni0", 102)}}
		New(nil).Annotate(p)
		if len(p.Warnings) != 1 {
			t.Fatalf("ICMP (%d) %d/%d: warnings %q", tt.proto, tt.typ, tt.code, p.Warnings)
		}
		contains(t, "ICMP warning", p.Warnings[0], tt.want)
	}
	echo := &stitch.Path{Proto: 1, Src: ap("10.244.1.5:4660"), Dst: ap("1.1.1.1:0"), Hops: []stitch.Hop{mkHop(hop.Tx, "client", inoPod, "eth0", 98)}}
	if New(nil).Annotate(echo); len(echo.Warnings) != 0 {
		t.Errorf("warnings %q on an echo request", echo.Warnings)
	}
	// Not errors: echo request and reply, neighbour discovery.
	for _, typ := range []uint16{128, 129, 135, 136} {
		p := &stitch.Path{Proto: decode.ProtoICMPv6, Src: netip.AddrPortFrom(netip.MustParseAddr("fd00:10:244:1::5"), typ),
			Dst: netip.AddrPortFrom(netip.MustParseAddr("fd00:10:244:1::6"), 0), Hops: []stitch.Hop{mkHop(hop.Tx, "client", inoPod, "eth0", 104)}}
		if New(nil).Annotate(p); len(p.Warnings) != 0 {
			t.Errorf("ICMPv6 type %d: warnings %q", typ, p.Warnings)
		}
	}
	// The quote names the packet answered.
	p := &stitch.Path{Proto: decode.ProtoICMPv6, Src: ap("[fd00:10:244:2::7]:1"), Dst: ap("[fd00:10:244:1::5]:4"),
		Answers: &decode.Tuple{Proto: decode.ProtoUDP, Src: ap("[fd00:10:244:1::5]:40312"), Dst: ap("[fd00:10:244:2::7]:9999"), HasPorts: true},
		Hops:    []stitch.Hop{mkHop(hop.Tx, "node1", inoNode1, "cni0", 102)}}
	New(nil).Annotate(p)
	if len(p.Warnings) != 1 {
		t.Fatalf("port unreachable with its quote: warnings %q", p.Warnings)
	}
	contains(t, "ICMPv6 port unreachable", p.Warnings[0], "answering UDP [fd00:10:244:2::7]:9999 from [fd00:10:244:1::5]:40312: nothing listened on UDP port 9999 at fd00:10:244:2::7")
}

func TestNoReports(t *testing.T) {
	p := routed(func() stitch.Hop {
		h := dropped(mkHop(hop.NoKind, "host", inoNode1, "cni0", 60), "NETFILTER_DROP")
		h.Hook = hop.Forward
		return h
	}())
	got := advice(New(nil), p)
	contains(t, "advice without reports", got, "A netfilter rule in FORWARD", "\n$ iptables -L FORWARD -v -n --line-numbers")
	if len(p.Warnings) != 0 {
		t.Errorf("warnings %q without reports", p.Warnings)
	}
}

// TestPure checks the advice depends only on the path and the reports: the
// same after the reports went through JSON (as a recording stores them),
// and once per warning however often Annotate runs.
func TestPure(t *testing.T) {
	reports := map[uint32]*doctor.Report{
		inoNode1: report(t, "node1", map[string]string{"net/ipv4/ip_forward": "0", "net/netfilter/nf_conntrack_count": "990", "net/bridge/bridge-nf-call-iptables": "0"}),
		inoNode2: report(t, "/run/netns/node2", map[string]string{"net/ipv4/conf/all/rp_filter": "1"}),
	}
	b, err := json.Marshal(reports)
	if err != nil {
		t.Fatal(err)
	}
	var back map[uint32]*doctor.Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	mk := func() []*stitch.Path {
		return []*stitch.Path{
			routed(dropped(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), "IP_INADDRERRORS")),
			path(mkHop(hop.Rx, "node2", inoNode2, "flannel.1", 60), dropped(mkHop(hop.NoKind, "node2", inoNode2, "flannel.1", 60), "IP_RPFILTER")),
			path(mkHop(hop.Rx, "node1", inoNode1, "vethaaaa", 60), mkHop(hop.Tx, "node1", inoNode1, "vethbbbb", 74)),
		}
	}
	live, replay := mk(), mk()
	a, r := New(reports), New(back)
	for i := range live {
		a.Annotate(live[i])
		a.Annotate(live[i])
		r.Annotate(replay[i])
	}
	if !reflect.DeepEqual(live, replay) {
		t.Errorf("annotations differ after the reports' JSON round trip")
	}
	for _, p := range live {
		if len(p.Warnings) == 0 && p.Verdict != stitch.VerdictDropped {
			t.Errorf("path %s has no warnings", p.Hops[0].Dev)
		}
		seen := map[string]bool{}
		for _, w := range p.Warnings {
			if seen[w] {
				t.Errorf("warning twice: %q", w)
			}
			seen[w] = true
		}
	}
	contains(t, "advice for a /run/netns path", live[1].Hops[1].Advice, "ip netns exec node2 ip route get")
}

// A drop whose table verdict the trace saw (function hops) names that
// table's chain and the command that lists it.
func TestAdviceTableVerdict(t *testing.T) {
	a := New(map[uint32]*doctor.Report{inoNode1: report(t, "node1", nil)})
	table := func(tb stitch.Table) stitch.Hop {
		h := mkHop(hop.Table, "node1", inoNode1, "cni0", 60)
		h.Hook, h.Table = hop.Forward, &tb
		return h
	}
	fwd := nf(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), hop.Forward, "cni0", "flannel.1")
	fwd.Partial = true
	drop := dropped(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), "NETFILTER_DROP")
	drop.Hook = hop.Forward // the hook's last slot never ran
	for _, c := range []struct {
		tb   stitch.Table
		want []string
	}{
		{stitch.Table{Engine: hop.EngineNFTables, Family: hop.FamilyIPv4, Name: "filter", Chain: "FORWARD", Verdict: hop.VerdictDrop},
			[]string{"The nftables chain FORWARD of table ip filter on node1 (in=cni0 out=flannel.1) returned drop",
				"\n$ ip netns exec node1 nft -a list chain ip filter FORWARD",
				"\n$ ip netns exec node1 iptables-nft -t filter -L FORWARD -v -n --line-numbers"}},
		{stitch.Table{Engine: hop.EngineNFTables, Chain: "FORWARD", Verdict: hop.VerdictDrop}, // no BTF: the chain only
			[]string{"chain FORWARD of table ? (name not readable)", "\n$ ip netns exec node1 nft -a list ruleset"}},
		{stitch.Table{Engine: hop.EngineXTables, Name: "filter", Chain: "FORWARD", Verdict: hop.VerdictDrop},
			[]string{"The iptables-legacy table filter, chain FORWARD", "\n$ ip netns exec node1 iptables-legacy -t filter -L FORWARD -v -n --line-numbers"}},
	} {
		accept := table(stitch.Table{Engine: c.tb.Engine, Family: c.tb.Family, Name: "mangle", Chain: "FORWARD", Verdict: hop.VerdictAccept})
		got := advice(a, routed(fwd, accept, table(c.tb), drop))
		contains(t, "advice", got, c.want...)
		lacks(t, "advice", got, "mangle")
	}
	// A table that accepted before a drop elsewhere in the hook is not
	// blamed.
	got := advice(a, routed(fwd, table(stitch.Table{Engine: hop.EngineNFTables, Family: hop.FamilyIPv4, Name: "filter", Chain: "FORWARD", Verdict: hop.VerdictAccept}), drop))
	contains(t, "advice", got, "A netfilter rule in FORWARD on node1")
}

// ipvsReport is node1's report on an IPVS-mode node with a service without
// real servers.
func ipvsReport(t *testing.T) *doctor.Report {
	t.Helper()
	st := &doctor.IPVS{Available: true, Services: 2, RealServers: 2, Schedulers: []string{"rr"},
		VirtualServices: []doctor.VirtualService{
			{Protocol: "TCP", Address: "10.96.0.10:80", Scheduler: "rr", RealServers: 2},
			{Protocol: "TCP", Address: "10.96.0.20:80", Scheduler: "wrr", RealServers: 0},
		}}
	r, err := doctor.Collect(context.Background(), doctor.Options{Netns: "node1", FS: nodeFS(), Net: &fakeNet{links: flannelLinks(), ipvs: st}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The scheduler an IPVS hop could not read comes from the node's report;
// one the hop has stays.
func TestIPVSSchedulerFromReport(t *testing.T) {
	a := New(map[uint32]*doctor.Report{inoNode1: ipvsReport(t)})
	ipvs := func(svc string, sched string) stitch.Hop {
		h := mkHop(hop.IPVS, "node1", inoNode1, "cni0", 60)
		h.IPVS = &stitch.IPVS{Service: netip.MustParseAddrPort(svc), RealServer: server, Scheduler: sched, Method: hop.MethodMasq}
		return h
	}
	p := routed(ipvs("10.96.0.10:80", ""), ipvs("10.96.0.10:80", "sh"), ipvs("10.96.0.99:80", ""))
	a.Annotate(p)
	for i, want := range []string{"rr", "sh", ""} {
		if got := p.Hops[4+i].IPVS.Scheduler; got != want {
			t.Errorf("hop %d: scheduler %q, want %q", 4+i, got, want)
		}
	}
}

// A drop by IPVS's hook is a virtual service without real servers.
func TestAdviceIPVSDrop(t *testing.T) {
	a := New(map[uint32]*doctor.Report{inoNode1: ipvsReport(t)})
	vip := netip.MustParseAddrPort("10.96.0.20:80")
	in := nf(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), hop.Input, "cni0", "")
	in.Partial = true
	ipvs := mkHop(hop.IPVS, "node1", inoNode1, "cni0", 60)
	ipvs.Hook, ipvs.IPVS, ipvs.Dst = hop.Input, &stitch.IPVS{Verdict: hop.VerdictDrop}, vip
	drop := dropped(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), "NETFILTER_DROP")
	drop.Dst, drop.Hook = vip, hop.Input
	got := advice(a, routed(in, ipvs, drop))
	contains(t, "advice", got, "IPVS dropped it in INPUT on node1: the virtual service 10.96.0.20:80 had no real server",
		"When the trace started it had 0 real servers (scheduler wrr).",
		"\n$ ip netns exec node1 ipvsadm -Ln -t 10.96.0.20:80")
}

// Before 5.17 a drop has no reason: the function that freed it tells a
// netfilter drop, and the generic advice says where it died.
func TestAdviceWithoutReason(t *testing.T) {
	a := New(map[uint32]*doctor.Report{inoNode1: report(t, "node1", nil)})
	fwd := nf(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), hop.Forward, "cni0", "flannel.1")
	fwd.Partial = true
	drop := dropped(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), "")
	drop.Func, drop.Hook = "nf_hook_slow+0xa0", hop.Forward
	contains(t, "advice", advice(a, routed(fwd, drop)), "A netfilter rule in FORWARD on node1")

	drop.Func, drop.Hook = "tcp_v4_rcv+0x2c", hop.NoHook
	got := advice(a, routed(drop))
	contains(t, "advice", got, "The kernel dropped it at cni0 on node1, in tcp_v4_rcv (it gives no drop reason before Linux 5.17).")
	lacks(t, "advice", got, "#0")

	// A drop alone on its path, without a device or a namespace: a UDP
	// datagram freed from a socket's queue at close, its path emitted
	// before (seen live: "dropped it an unknown namespace").
	alone := dropped(mkHop(hop.NoKind, "", 0, "", 60), "NOT_SPECIFIED")
	alone.Func = "udp_destruct_common+0x12a"
	contains(t, "advice", advice(a, routed(alone)), "The kernel dropped it in an unknown namespace with reason NOT_SPECIFIED, in udp_destruct_common.")
}

// TestAdviceInferredReason: where the kernel gives no drop reason (before
// 5.17), the freeing function and the node report stand in for it when
// they point at one cause, and the advice says it was inferred; where they
// do not, the advice stays the generic one.
func TestAdviceInferredReason(t *testing.T) {
	const inferred = "This kernel gives no drop reason (before Linux 5.17); "
	generic := "(it gives no drop reason before Linux 5.17)"
	node1 := New(map[uint32]*doctor.Report{inoNode1: report(t, "node1", nil)})

	// ip_rcv_finish_core with reverse-path filtering on for the device.
	rp := func(fn string) *stitch.Path {
		drop := dropped(mkHop(hop.NoKind, "node2", inoNode2, "flannel.1", 60), "")
		drop.Func = fn
		return path(
			mkHop(hop.Decap, "node2", inoNode2, "flannel.1", 60),
			nf(mkHop(hop.NoKind, "node2", inoNode2, "flannel.1", 60), hop.Prerouting, "flannel.1", ""),
			drop)
	}
	strict := New(map[uint32]*doctor.Report{inoNode2: report(t, "node2", map[string]string{"net/ipv4/conf/all/rp_filter": "1"})})
	got := advice(strict, rp("ip_rcv_finish_core.constprop.0+0x20e"))
	contains(t, "rp_filter advice", got, inferred+"ip_rcv_finish_core.constprop.0 frees a packet whose input route lookup failed, and reverse-path filtering is on for flannel.1",
		"Strict reverse-path filtering (rp_filter=1, from all) on node2", "\n$ ip netns exec node2 ip route get 10.244.1.5")
	off := New(map[uint32]*doctor.Report{inoNode2: report(t, "node2", map[string]string{"net/ipv4/conf/all/rp_filter": "0", "net/ipv4/conf/flannel.1/rp_filter": "0"})})
	got = advice(off, rp("ip_rcv_finish_core.constprop.0+0x20e"))
	contains(t, "advice without rp_filter", got, "in ip_rcv_finish_core.constprop.0 "+generic)
	lacks(t, "advice without rp_filter", got, "reverse-path", inferred)
	got = advice(New(nil), rp("ip_rcv_finish_core.constprop.0+0x20e"))
	lacks(t, "advice without a report", got, "reverse-path", inferred)

	// ip_error, forwarding on: no usable route.
	noRoute := dropped(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), "")
	noRoute.Func = "ip_error+0x7d"
	got = advice(node1, routed(noRoute))
	contains(t, "no-route advice", got, inferred+"ip_error frees a packet whose route lookup found no usable route",
		"No route to 10.244.2.7 on node1, most likely: the kernel answers 10.244.1.5 with ICMP net unreachable.",
		"\n$ ip netns exec node1 ip route show dev flannel.1")

	// ip_forward, with a packet larger than flannel.1's MTU; a small one
	// gets the generic advice.
	big := dropped(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 1468), "")
	big.Func = "ip_forward+0x1b9"
	tooBig := path(
		mkHop(hop.Tx, "client", inoPod, "eth0", 1482),
		mkHop(hop.Rx, "node1", inoNode1, "vethaaaa", 1468),
		mkHop(hop.Rx, "node1", inoNode1, "cni0", 1468),
		big)
	got = advice(node1, tooBig)
	contains(t, "too-big advice", got, inferred+"ip_forward frees a packet it will not forward",
		"A 1468-byte packet with DF set does not fit the MTU 1450 of flannel.1 on node1")
	if len(tooBig.Warnings) != 1 || !strings.Contains(tooBig.Warnings[0], "A 1468-byte packet on its way through flannel.1 on node1, whose MTU is 1450") {
		t.Errorf("warnings %q", tooBig.Warnings)
	}
	small := big
	small.Len = 60
	got = advice(node1, routed(small))
	contains(t, "advice on a small packet", got, "in ip_forward "+generic)
	lacks(t, "advice on a small packet", got, inferred)

	// IPv6: the IPv4 functions say nothing of it.
	v6 := dropped(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 80), "")
	v6.Func = "ip_error+0x7d"
	v6.Src, v6.Dst = ap("[fd00:1::5]:40000"), ap("[fd00:2::7]:8080")
	got = advice(node1, routed(v6))
	lacks(t, "IPv6 advice", got, inferred)
}

// TestAdviceSYNCopy: a SYN that tcp_v4_rcv frees without a reason while an
// earlier SYN of its connection reached the listener and the handshake is
// still open is the client's retransmitted copy, not a refused
// connection; after the client's ACK, a FIN or a reset, or long after, the
// same drop is explained as before (a TIME_WAIT socket's answer).
func TestAdviceSYNCopy(t *testing.T) {
	const ino = 4026532600
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	at := func(p *stitch.Path, d time.Duration, flags uint8) *stitch.Path {
		p.Start, p.TCPFlags = t0.Add(d), flags
		for i := range p.Hops {
			p.Hops[i].TCPFlags = flags
		}
		return p
	}
	delivered := func(d time.Duration, flags uint8) *stitch.Path {
		c := mkHop(hop.Consume, "server", ino, "", 0)
		c.Src, c.Dst = netip.AddrPort{}, netip.AddrPort{} // frees carry no addresses
		return at(path(mkHop(hop.Rx, "server", ino, "eth0", 60), c), d, flags)
	}
	copyOf := func(d time.Duration, reason string) *stitch.Path {
		drop := dropped(mkHop(hop.NoKind, "server", ino, "", 60), reason)
		drop.Func = "tcp_v4_rcv+0x90"
		return at(path(mkHop(hop.Rx, "server", ino, "eth0", 60), drop), d, 0x02)
	}
	const isCopy, timeWait = "This SYN is a copy", "TIME_WAIT socket of an earlier connection"

	for _, reason := range []string{"NOT_SPECIFIED", ""} {
		a := New(nil)
		a.Annotate(delivered(0, 0x02))
		got := advice(a, copyOf(time.Second, reason))
		contains(t, "copy advice ("+reason+")", got, isCopy, "reached the listener in server 1s before",
			"answered this one with its SYN-ACK again and freed it (tcp_v4_rcv)", "retransmission timeout",
			"\n$ ip netns exec server nstat -az TcpExtTCPSynRetrans")
		lacks(t, "copy advice", got, timeWait)
		// Each further copy while the handshake stays open.
		contains(t, "second copy", advice(a, copyOf(3*time.Second, reason)), "3s before")
	}

	for _, tt := range []struct {
		name  string
		after *stitch.Path
		copy  *stitch.Path
	}{
		{"after the client's ACK", delivered(time.Second, 0x10), copyOf(2*time.Second, "NOT_SPECIFIED")},
		{"after a FIN", delivered(time.Second, 0x11), copyOf(2*time.Second, "NOT_SPECIFIED")},
		{"after a reset", delivered(time.Second, 0x04), copyOf(2*time.Second, "NOT_SPECIFIED")},
		{"long after", nil, copyOf(3*time.Minute, "NOT_SPECIFIED")},
	} {
		a := New(nil)
		a.Annotate(delivered(0, 0x02))
		if tt.after != nil {
			a.Annotate(tt.after)
		}
		got := advice(a, tt.copy)
		contains(t, tt.name, got, timeWait)
		lacks(t, tt.name, got, isCopy)
	}

	// Another connection, another namespace, or a SYN that did not reach
	// a socket: no copy.
	other := func(p *stitch.Path) *stitch.Path {
		for i := range p.Hops {
			p.Hops[i].Src = netip.MustParseAddrPort("10.244.1.5:40001")
		}
		return p
	}
	elsewhere := func(p *stitch.Path) *stitch.Path {
		for i := range p.Hops {
			p.Hops[i].NetnsInode++
		}
		return p
	}
	for name, first := range map[string]*stitch.Path{
		"another client port": other(delivered(0, 0x02)),
		"another namespace":   elsewhere(delivered(0, 0x02)),
		"dropped first":       copyOf(0, "NO_SOCKET"),
	} {
		a := New(nil)
		a.Annotate(first)
		lacks(t, name, advice(a, copyOf(time.Second, "NOT_SPECIFIED")), isCopy)
	}
}

// A drop after a hook's last view, without its first, did not happen in
// the hook: the hook accepted the packet (the stitcher names the hook on a
// drop only when the hook's last slot never ran). The render says so too
// (stitch.Path.DropHook).
func TestAdviceDropAfterHook(t *testing.T) {
	a := New(map[uint32]*doctor.Report{inoNode1: report(t, "node1", nil)})
	pre := nf(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), hop.Prerouting, "cni0", "")
	pre.Partial = true
	drop := dropped(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), "NOT_SPECIFIED")
	drop.Func = "br_handle_frame_finish+0x1c2"
	p := routed(pre, drop)
	got := advice(a, p)
	contains(t, "advice", got, "The kernel dropped it at cni0 on node1 with reason NOT_SPECIFIED")
	lacks(t, "advice", got, "PREROUTING")
	if hook := p.DropHook(len(p.Hops) - 1); hook != hop.NoHook {
		t.Errorf("the render puts the drop in %s, the advice in none", hook)
	}
}

// A packet to a Service address at a protocol or port the Service does
// not have is routed as the address itself: no route is the Service's
// ports, not a missing pod route.
func TestAdviceNoRouteToServiceAddress(t *testing.T) {
	r := report(t, "node1", nil)
	r.KubeProxy.ServicePorts = []doctor.ServicePort{
		{Service: "default/web:http", Kind: doctor.KindClusterIP, Addr: netip.MustParseAddr("10.96.0.10"), Proto: 6, Port: 80},
		{Service: "default/web:https", Kind: doctor.KindClusterIP, Addr: netip.MustParseAddr("10.96.0.10"), Proto: 6, Port: 443},
		{Service: "default/web:http", Kind: doctor.KindNodePort, Proto: 6, Port: 30080},
	}
	a := New(map[uint32]*doctor.Report{inoNode1: r})
	to := func(proto uint8, dst string) *stitch.Path {
		p := routed(dropped(mkHop(hop.NoKind, "node1", inoNode1, "cni0", 60), "IP_INNOROUTES"))
		d := netip.MustParseAddrPort(dst)
		for i := range p.Hops {
			p.Hops[i].Proto, p.Hops[i].Dst = proto, d
		}
		p.Proto, p.Dst = proto, d
		return p
	}

	got := advice(a, to(17, "10.96.0.10:80"))
	contains(t, "advice", got, "No route to 10.96.0.10 on node1",
		"10.96.0.10 is the cluster IP of TCP 80 (default/web:http) and TCP 443 (default/web:https); this packet is UDP to port 80:",
		"for which node1 has no route. Is the client using the Service's port and protocol?",
		"\n$ ip netns exec node1 ip route get 10.96.0.10", "\n$ kubectl get services -A -o wide | grep -w 10.96.0.10")
	lacks(t, "advice", got, "flannel.1", "30080")

	got = advice(a, to(1, "10.96.0.10:8"))
	contains(t, "advice", got, "; this packet is ICMP:", "A ping of a Service address goes unanswered where kube-proxy does not run in IPVS mode")

	// The Service's own port: its translation did not happen, which is
	// another fault than the port.
	got = advice(a, to(6, "10.96.0.10:443"))
	lacks(t, "advice", got, "cluster IP")
	contains(t, "advice", got, "pod CIDR through flannel.1")

	// Another address: the pod route.
	got = advice(a, to(17, "10.96.0.11:80"))
	lacks(t, "advice", got, "cluster IP")

	// A fragment without its ports: not known to be at another port.
	got = advice(a, to(17, "10.96.0.10:0"))
	lacks(t, "advice", got, "cluster IP")

	// The net unreachable the node answers such a packet with says why
	// too; not for the Service's own port, nor for another address.
	unreachable := func(q decode.Tuple) string {
		p := &stitch.Path{Proto: 1, Src: ap("10.244.1.1:3"), Dst: ap("10.244.1.5:0"), Answers: &q,
			Hops: []stitch.Hop{mkHop(hop.Tx, "node1", inoNode1, "cni0", 96)}}
		a.Annotate(p)
		if len(p.Warnings) != 1 {
			t.Fatalf("net unreachable answering %v: warnings %q", q, p.Warnings)
		}
		return p.Warnings[0]
	}
	udp := decode.Tuple{Proto: 17, Src: ap("10.244.1.5:40000"), Dst: ap("10.96.0.10:80"), HasPorts: true}
	contains(t, "net unreachable", unreachable(udp),
		"answering UDP 10.96.0.10:80 from 10.244.1.5:40000: it had no route for it. 10.96.0.10 is the cluster IP of TCP 80 (default/web:http) and TCP 443 (default/web:https), and UDP to port 80 is none of its ports: kube-proxy translates only a Service's own protocols and ports.")
	own := decode.Tuple{Proto: 6, Src: ap("10.244.1.5:40000"), Dst: ap("10.96.0.10:443"), HasPorts: true}
	lacks(t, "net unreachable", unreachable(own), "cluster IP")
	other := decode.Tuple{Proto: 17, Src: ap("10.244.1.5:40000"), Dst: ap("10.96.0.11:80"), HasPorts: true}
	lacks(t, "net unreachable", unreachable(other), "cluster IP")
}
