package doctor

import (
	"net/netip"
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
