package doctor

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

// TestServices counts the Services kube-proxy's rules name, in the layouts
// kube-proxy 1.37 writes (the lab tests check them on real rules): iptables
// mode's nat KUBE-SERVICES comments, the chains nftables mode's service maps
// go to, and the Services without endpoints, each Service once whatever its
// ports.
func TestServices(t *testing.T) {
	iptables := &fakeNet{ipvsErr: ErrIPVSUnavailable,
		tables: []NFTable{kubeFilter, {Family: "ip", Name: "nat", Chains: []string{"KUBE-SERVICES", "KUBE-NODEPORTS"}}},
		nftRules: map[string][]Rule{
			"ip nat": {
				{Chain: "KUBE-SERVICES", Comment: "default/kubernetes:https cluster IP", Dst: vip("10.97.0.1/32"), Proto: 6, DPort: 443, Verdict: "jump KUBE-SVC-A"},
				{Chain: "KUBE-SERVICES", Comment: "default/web:http cluster IP", Dst: vip("10.97.0.80/32"), Proto: 6, DPort: 80, Verdict: "jump KUBE-SVC-B"},
				{Chain: "KUBE-SERVICES", Comment: "default/web:metrics cluster IP", Dst: vip("10.97.0.80/32"), Proto: 6, DPort: 9090, Verdict: "jump KUBE-SVC-C"},
				{Chain: "KUBE-SERVICES", Comment: `"kubernetes service nodeports; NOTE: this must be the last rule in this chain"`, DstLocal: true, Verdict: "jump KUBE-NODEPORTS"},
			},
			"ip filter": {
				{Chain: "KUBE-SERVICES", Comment: "default/idle:http has no endpoints", Dst: vip("10.97.0.81/32"), Proto: 6, DPort: 80, Verdict: VerdictReject},
			},
		}}
	r := collectFake(t, fstest.MapFS{}, iptables)
	wantStatus(t, r, "kube_proxy.services", StatusInfo, "3 Services")
	if r.KubeProxy.Services != 3 {
		t.Errorf("iptables: %d Services, want 3", r.KubeProxy.Services)
	}

	nft := &fakeNet{ipvsErr: ErrIPVSUnavailable,
		tables: []NFTable{{Family: "ip", Name: "kube-proxy"}},
		maps: map[string][]MapElement{
			"ip kube-proxy service-ips": {
				{Addr: netip.MustParseAddr("10.97.0.1"), Proto: 6, Port: 443, Verdict: "goto service-2QRHZV4L-default/kubernetes/tcp/https"},
				{Addr: netip.MustParseAddr("10.97.0.80"), Proto: 6, Port: 80, Verdict: "goto service-SUSTUHLJ-default/web/tcp/http"},
				{Addr: netip.MustParseAddr("10.97.0.82"), Proto: 6, Port: 80, Verdict: "goto somewhere-else"},
			},
			"ip kube-proxy service-nodeports": {
				{Proto: 6, Port: 30080, Verdict: "goto external-SUSTUHLJ-default/web/tcp/http"},
			},
			"ip kube-proxy no-endpoint-services": {
				{Addr: netip.MustParseAddr("10.97.0.81"), Proto: 6, Port: 80, Comment: "default/idle:http", Verdict: "goto reject-chain"},
			},
		}}
	r = collectFake(t, fstest.MapFS{}, nft)
	wantStatus(t, r, "kube_proxy.services", StatusInfo, "3 Services")

	r = collectFake(t, fstest.MapFS{}, &fakeNet{ipvsErr: ErrIPVSUnavailable})
	wantStatus(t, r, "kube_proxy.services", StatusInfo, "none")
}

// TestServicePorts lists the addresses and ports kube-proxy's rules send to
// each Service port, named, in each layout: iptables-nft (ip nat and ip6
// nat, KUBE-SERVICES and KUBE-NODEPORTS), iptables-legacy, and nftables
// mode's maps in the ip and ip6 kube-proxy tables. Rules that only look
// like a Service port's (the jump to KUBE-NODEPORTS, masquerade rules, a
// verdict to another chain) are none.
func TestServicePorts(t *testing.T) {
	addr := netip.MustParseAddr
	iptables := []Rule{
		{Chain: "KUBE-SERVICES", Comment: "default/web:http cluster IP", Dst: vip("10.96.0.10/32"), Proto: 6, DPort: 80, Verdict: "jump KUBE-SVC-B"},
		{Chain: "KUBE-SERVICES", Comment: "default/web:http external IP", Dst: vip("192.0.2.7/32"), Proto: 6, DPort: 80, Verdict: "jump KUBE-EXT-B"},
		{Chain: "KUBE-SERVICES", Comment: "default/web:http loadbalancer IP", Dst: vip("198.51.100.9/32"), Proto: 6, DPort: 80, Verdict: "jump KUBE-EXT-B"},
		{Chain: "KUBE-SERVICES", Comment: "kube-system/dns:dns cluster IP", Dst: vip("10.96.0.53/32"), Proto: 17, DPort: 53, Verdict: "jump KUBE-SVC-D"},
		// An unnamed port: kube-proxy names the Service alone.
		{Chain: "KUBE-SERVICES", Comment: "default/plain cluster IP", Dst: vip("10.96.0.20/32"), Proto: 6, DPort: 8080, Verdict: "jump KUBE-SVC-P"},
		{Chain: "KUBE-SERVICES", Comment: `"kubernetes service nodeports; NOTE: this must be the last rule in this chain"`, DstLocal: true, Verdict: "jump KUBE-NODEPORTS"},
		{Chain: "KUBE-SERVICES", Comment: "default/web:http cluster IP", Dst: vip("10.96.0.0/16"), Proto: 6, DPort: 80, Verdict: "jump KUBE-MARK-MASQ"},
		{Chain: "KUBE-NODEPORTS", Comment: "default/web:http", Proto: 6, DPort: 30080, Verdict: "jump KUBE-EXT-B"},
		{Chain: "KUBE-NODEPORTS", Comment: "default/plain", Proto: 6, DPort: 30081, Verdict: "jump KUBE-EXT-P"},
		{Chain: "KUBE-SVC-B", Comment: "default/web:http cluster IP", Dst: vip("10.96.0.10/32"), Proto: 6, DPort: 80, Verdict: "jump KUBE-MARK-MASQ"},
	}
	want4 := []ServicePort{
		{Service: "default/plain:8080", Kind: KindClusterIP, Addr: addr("10.96.0.20"), Proto: 6, Port: 8080},
		{Service: "default/plain:8080", Kind: KindNodePort, Proto: 6, Port: 30081},
		{Service: "default/web:http", Kind: KindClusterIP, Addr: addr("10.96.0.10"), Proto: 6, Port: 80},
		{Service: "default/web:http", Kind: KindExternalIP, Addr: addr("192.0.2.7"), Proto: 6, Port: 80},
		{Service: "default/web:http", Kind: KindLoadBalancerIP, Addr: addr("198.51.100.9"), Proto: 6, Port: 80},
		{Service: "default/web:http", Kind: KindNodePort, Proto: 6, Port: 30080},
		{Service: "kube-system/dns:dns", Kind: KindClusterIP, Addr: addr("10.96.0.53"), Proto: 17, Port: 53},
	}
	ip6 := []Rule{
		{Chain: "KUBE-SERVICES", Comment: "default/web:http cluster IP", Dst: vip("fd96::10/128"), Proto: 6, DPort: 80, Verdict: "jump KUBE-SVC-6"},
		{Chain: "KUBE-NODEPORTS", Comment: "default/web:http", Proto: 6, DPort: 30080, Verdict: "jump KUBE-EXT-6"},
	}
	nat := NFTable{Family: "ip", Name: "nat", Chains: []string{"KUBE-NODEPORTS", "KUBE-SERVICES"}}
	nat6 := NFTable{Family: "ip6", Name: "nat", Chains: []string{"KUBE-NODEPORTS", "KUBE-SERVICES"}}

	t.Run("iptables-nft", func(t *testing.T) {
		n := &fakeNet{ipvsErr: ErrIPVSUnavailable, tables: []NFTable{nat, nat6},
			nftRules: map[string][]Rule{"ip nat": iptables, "ip6 nat": ip6}}
		r := collectFake(t, fstest.MapFS{}, n)
		want := append(slices.Clone(want4[:2]),
			ServicePort{Service: "default/web:http", Kind: KindClusterIP, Addr: addr("10.96.0.10"), Proto: 6, Port: 80},
			ServicePort{Service: "default/web:http", Kind: KindClusterIP, Addr: addr("fd96::10"), Proto: 6, Port: 80})
		want = append(want, want4[3:]...)
		wantServicePorts(t, r, want)
		wantStatus(t, r, "kube_proxy.services", StatusInfo, "3 Services")
		if it := r.Item("kube_proxy.services"); !strings.Contains(it.Source, "table ip6 nat") || !strings.Contains(it.Check, "ip6tables -t nat") {
			t.Errorf("services item does not name ip6 nat: %q, %q", it.Source, it.Check)
		}
	})
	t.Run("legacy", func(t *testing.T) {
		n := &fakeNet{ipvsErr: ErrIPVSUnavailable, legacyRules: map[string][]Rule{"nat": iptables}}
		r := collectFake(t, fstest.MapFS{"proc/net/ip_tables_names": file("filter\nnat\n")}, n)
		wantServicePorts(t, r, want4)
		// Not read when the kernel has no legacy nat table.
		r = collectFake(t, fstest.MapFS{"proc/net/ip_tables_names": file("filter\n")}, n)
		wantServicePorts(t, r, nil)
	})
	t.Run("legacy, both families", func(t *testing.T) {
		n := &fakeNet{ipvsErr: ErrIPVSUnavailable, legacyRules: map[string][]Rule{"nat": iptables, "ip6 nat": ip6}}
		r := collectFake(t, fstest.MapFS{"proc/net/ip_tables_names": file("nat\n"), "proc/net/ip6_tables_names": file("filter\nnat\n")}, n)
		want := append(slices.Clone(want4[:2]),
			ServicePort{Service: "default/web:http", Kind: KindClusterIP, Addr: addr("10.96.0.10"), Proto: 6, Port: 80},
			ServicePort{Service: "default/web:http", Kind: KindClusterIP, Addr: addr("fd96::10"), Proto: 6, Port: 80})
		want = append(want, want4[3:]...)
		wantServicePorts(t, r, want)
		if it := r.Item("kube_proxy.services"); !strings.Contains(it.Source, "IP6T_SO_GET_ENTRIES on the legacy ip6 nat table") || !strings.Contains(it.Check, "ip6tables-legacy -t nat") {
			t.Errorf("services item does not name ip6tables-legacy: %q, %q", it.Source, it.Check)
		}
	})
	t.Run("nftables", func(t *testing.T) {
		n := &fakeNet{ipvsErr: ErrIPVSUnavailable,
			tables: []NFTable{{Family: "ip", Name: "kube-proxy"}, {Family: "ip6", Name: "kube-proxy"}},
			maps: map[string][]MapElement{
				"ip kube-proxy service-ips": {
					{Addr: addr("10.96.0.10"), Proto: 6, Port: 80, Verdict: "goto service-SUSTUHLJ-default/web/tcp/http"},
					{Addr: addr("192.0.2.7"), Proto: 6, Port: 80, Verdict: "goto external-SUSTUHLJ-default/web/tcp/http"},
					{Addr: addr("10.96.0.20"), Proto: 6, Port: 8080, Verdict: "goto service-AAAAAAAA-default/plain/tcp/"},
					{Addr: addr("10.96.0.53"), Proto: 17, Port: 53, Comment: "kube-system/dns:dns", Verdict: "goto service-X-somewhere"},
					{Addr: addr("10.96.0.82"), Proto: 6, Port: 80, Verdict: "goto somewhere-else"},
				},
				"ip kube-proxy service-nodeports": {
					{Proto: 6, Port: 30080, Verdict: "goto external-SUSTUHLJ-default/web/tcp/http"},
					{Proto: 6, Port: 30081, Verdict: "goto external-AAAAAAAA-default/plain/tcp/"},
				},
				"ip6 kube-proxy service-ips": {
					{Addr: addr("fd96::10"), Proto: 6, Port: 80, Verdict: "goto service-6AAAAAAA-default/web/tcp/http"},
				},
			}}
		r := collectFake(t, fstest.MapFS{}, n)
		wantServicePorts(t, r, []ServicePort{
			{Service: "default/plain:8080", Kind: KindClusterIP, Addr: addr("10.96.0.20"), Proto: 6, Port: 8080},
			{Service: "default/plain:8080", Kind: KindNodePort, Proto: 6, Port: 30081},
			{Service: "default/web:http", Kind: KindClusterIP, Addr: addr("10.96.0.10"), Proto: 6, Port: 80},
			{Service: "default/web:http", Kind: KindClusterIP, Addr: addr("fd96::10"), Proto: 6, Port: 80},
			{Service: "default/web:http", Kind: KindExternalIP, Addr: addr("192.0.2.7"), Proto: 6, Port: 80},
			{Service: "default/web:http", Kind: KindNodePort, Proto: 6, Port: 30080},
			{Service: "kube-system/dns:dns", Kind: KindClusterIP, Addr: addr("10.96.0.53"), Proto: 17, Port: 53},
		})
	})
	t.Run("json", func(t *testing.T) {
		js, err := json.Marshal([]ServicePort{want4[0], want4[1]})
		if err != nil {
			t.Fatal(err)
		}
		const want = `[{"service":"default/plain:8080","kind":"cluster IP","addr":"10.96.0.20","proto":6,"port":8080},` +
			`{"service":"default/plain:8080","kind":"node port","proto":6,"port":30081}]`
		if string(js) != want {
			t.Errorf("JSON %s, want %s", js, want)
		}
	})
}

// TestServicePortsBounded keeps the first MaxServicePorts.
func TestServicePortsBounded(t *testing.T) {
	var els []MapElement
	for i := range MaxServicePorts + 10 {
		els = append(els, MapElement{Addr: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}), Proto: 6, Port: 80,
			Verdict: fmt.Sprintf("goto service-HASH-ns/s%05d/tcp/http", i)})
	}
	n := &fakeNet{ipvsErr: ErrIPVSUnavailable, tables: []NFTable{{Family: "ip", Name: "kube-proxy"}},
		maps: map[string][]MapElement{"ip kube-proxy service-ips": els}}
	r := collectFake(t, fstest.MapFS{}, n)
	sp := r.KubeProxy.ServicePorts
	if len(sp) != MaxServicePorts || sp[0].Service != "ns/s00000:http" || sp[len(sp)-1].Service != fmt.Sprintf("ns/s%05d:http", MaxServicePorts-1) {
		t.Errorf("%d ports kept (%v … %v), want the first %d", len(sp), sp[0], sp[len(sp)-1], MaxServicePorts)
	}
}

// TestAddresses lists the node's own addresses, without kube-ipvs0's
// Service IPs.
func TestAddresses(t *testing.T) {
	p := netip.MustParsePrefix
	n := &fakeNet{ipvsErr: ErrIPVSUnavailable, links: []Link{
		{Index: 1, Name: "lo", Kind: "device", Addrs: []netip.Prefix{p("127.0.0.1/8"), p("::1/128")}},
		{Index: 2, Name: "eth0", Kind: "device", Addrs: []netip.Prefix{p("192.168.50.11/24"), p("fd50::11/64")}},
		{Index: 3, Name: "kube-ipvs0", Kind: "dummy", Addrs: []netip.Prefix{p("10.96.0.10/32")}},
		{Index: 4, Name: "cni0", Kind: "bridge", Addrs: []netip.Prefix{p("10.244.1.1/24"), p("192.168.50.11/32")}},
	}}
	r := collectFake(t, fstest.MapFS{}, n)
	want := []netip.Addr{netip.MustParseAddr("10.244.1.1"), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.168.50.11"),
		netip.MustParseAddr("::1"), netip.MustParseAddr("fd50::11")}
	if !slices.Equal(r.Network.Addresses, want) {
		t.Errorf("addresses %v, want %v", r.Network.Addresses, want)
	}
	r = collectFake(t, fstest.MapFS{}, &fakeNet{ipvsErr: ErrIPVSUnavailable, linkErr: errors.New("EPERM")})
	if r.Network.Addresses != nil {
		t.Errorf("addresses %v without links", r.Network.Addresses)
	}
}

func wantServicePorts(t *testing.T, r *Report, want []ServicePort) {
	t.Helper()
	if got := r.KubeProxy.ServicePorts; !slices.Equal(got, want) {
		t.Errorf("service ports:\n got %v\nwant %v", got, want)
	}
}
