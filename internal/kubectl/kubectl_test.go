package kubectl

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/k8s"
	"github.com/pathtrace/pathtrace/internal/testutil"
)

// fakeAPI serves the lists Resolve reads.
func fakeAPI(t *testing.T, pods, services, slices_ []map[string]any) *k8s.Client {
	t.Helper()
	lists := map[string][]map[string]any{
		"/api/v1/pods":     pods,
		"/api/v1/services": services,
		"/apis/discovery.k8s.io/v1/endpointslices": slices_,
	}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		items, ok := lists[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"items": items})
	}))
	t.Cleanup(s.Close)
	u, _ := url.Parse(s.URL)
	return k8s.NewClient(&k8s.Kubeconfig{Server: u})
}

func pod(ns, name, node string, hostNet bool, ips ...string) map[string]any {
	var podIPs []any
	for _, ip := range ips {
		podIPs = append(podIPs, map[string]any{"ip": ip})
	}
	return map[string]any{
		"metadata": map[string]any{"namespace": ns, "name": name},
		"spec":     map[string]any{"nodeName": node, "hostNetwork": hostNet},
		"status":   map[string]any{"phase": "Running", "podIP": ips[0], "podIPs": podIPs},
	}
}

func TestResolve(t *testing.T) {
	pods := []map[string]any{
		pod("default", "client", "node1", false, "10.244.1.5"),
		pod("default", "server", "node2", false, "10.244.2.7"),
		pod("default", "server2", "node3", false, "10.244.3.9"),
		pod("default", "dual", "node1", false, "10.244.1.6", "fd00:10:244:1::6"),
		pod("kube-system", "proxy", "node1", true, "192.168.50.11"),
	}
	services := []map[string]any{
		{"metadata": map[string]any{"namespace": "default", "name": "web"}, "spec": map[string]any{"clusterIP": "10.96.0.10"}},
		{"metadata": map[string]any{"namespace": "default", "name": "idle"}, "spec": map[string]any{"clusterIP": "10.96.0.11"}},
	}
	eps := []map[string]any{{
		"metadata":  map[string]any{"namespace": "default", "name": "web-abc", "labels": map[string]string{"kubernetes.io/service-name": "web"}},
		"endpoints": []any{map[string]any{"addresses": []string{"10.244.2.7"}}, map[string]any{"addresses": []string{"10.244.3.9"}}},
	}}
	c := fakeAPI(t, pods, services, eps)
	ctx := t.Context()

	tg, err := Resolve(ctx, c, "default/client", nil, []string{"default/web"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tg.Nodes, []string{"node1", "node2", "node3"}) {
		t.Errorf("nodes %v, want the client's and both endpoints'", tg.Nodes)
	}
	if !slices.Equal(tg.PodIPs, []netip.Addr{netip.MustParseAddr("10.244.1.5")}) {
		t.Errorf("pod IPs %v", tg.PodIPs)
	}
	if tg.Filter != "host 10.96.0.10 or host 10.244.2.7 or host 10.244.3.9" || tg.FilterCode == "" {
		t.Errorf("filter %q (code %q), want the Service's address and its endpoints'", tg.Filter, tg.FilterCode)
	}
	args := strings.Join(Args(tg, Options{}), " ")
	if !strings.Contains(args, "--scope node") || !strings.Contains(args, "--pod-ip 10.244.1.5") ||
		!strings.HasSuffix(args, " --filter-code "+tg.FilterCode+" -- "+tg.Filter) || strings.Contains(args, "--duration") ||
		strings.Contains(args, "--hops") || strings.Contains(args, "--ring-size") {
		t.Errorf("args %q", args)
	}
	// --hops and --ring-size go to the tracers, before the filter's "--".
	args = strings.Join(Args(tg, Options{Hops: "drop,nat", RingSize: 32}), " ")
	if !strings.Contains(args, " --hops drop,nat ") || !strings.Contains(args, " --ring-size 32 ") ||
		!strings.HasSuffix(args, " -- "+tg.Filter) {
		t.Errorf("args with hops and a ring size: %q", args)
	}
	// The plugin stops the tracers --duration after the last attached; their
	// own --duration is later by the start timeout, a backstop.
	if args := strings.Join(Args(tg, Options{Duration: 5 * time.Second}), " "); !strings.Contains(args, "--duration 2m5s") {
		t.Errorf("args with --duration 5s: %q, want the tracers' --duration 2m5s", args)
	}
	if b := backstop(Options{Duration: time.Second, StartTimeout: 30 * time.Second}); b != 31*time.Second {
		t.Errorf("backstop %v, want 31s", b)
	}

	// Dual-stack pods: narrowed to the peers' addresses of both families.
	tg, err = Resolve(ctx, c, "default/dual", []string{"default/server"}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if tg.Filter != "host 10.244.2.7" || tg.FilterCode == "" || !slices.Equal(tg.Nodes, []string{"node1", "node2"}) {
		t.Errorf("a dual-stack pod to an IPv4 one: filter %q (code %q), nodes %v", tg.Filter, tg.FilterCode, tg.Nodes)
	}
	tg, err = Resolve(ctx, c, "default/client", []string{"default/dual"}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if tg.Filter != "host 10.244.1.6 or host fd00:10:244:1::6" || tg.FilterCode == "" {
		t.Errorf("a pod to a dual-stack one: filter %q (code %q)", tg.Filter, tg.FilterCode)
	}

	for _, c2 := range []struct {
		pod, to, svc, want string
	}{
		{"default/nobody", "", "", "no such pod"},
		{"client", "", "", "NAMESPACE/NAME"},
		{"kube-system/proxy", "", "", "hostNetwork"},
		{"default/client", "default/ghost", "", "--to default/ghost: no such pod"},
		{"default/client", "", "default/idle", "has no endpoints"},
		{"default/client", "", "default/nope", "no such Service"},
	} {
		var to, svc []string
		if c2.to != "" {
			to = []string{c2.to}
		}
		if c2.svc != "" {
			svc = []string{c2.svc}
		}
		if _, err := Resolve(ctx, c, c2.pod, to, svc, ""); err == nil || !strings.Contains(err.Error(), c2.want) {
			t.Errorf("Resolve(%s, --to %s, --service %s) = %v, want an error saying %q", c2.pod, c2.to, c2.svc, err, c2.want)
		}
	}
}

func TestPodName(t *testing.T) {
	for node, want := range map[string]string{
		"node1":                                  "pathtrace-abc123-node1",
		"ip-10-0-1-5.eu-west-1.compute.internal": "pathtrace-abc123-ip-10-0-1-5-eu-west-1-compute-internal",
	} {
		if got := podName("abc123", node); got != want || len(got) > 63 {
			t.Errorf("podName(%q) = %q, want %q", node, got, want)
		}
	}
}

// TestResolveExpression: the user's expression is and'ed with the peers,
// compiled here.
func TestResolveExpression(t *testing.T) {
	testutil.Require(t, testutil.Tool("tcpdump"))
	c := fakeAPI(t, []map[string]any{
		pod("default", "client", "node1", false, "10.244.1.5"),
		pod("default", "server", "node2", false, "10.244.2.7"),
	}, nil, nil)
	tg, err := Resolve(t.Context(), c, "default/client", []string{"default/server"}, nil, "tcp port 80")
	if err != nil {
		t.Fatal(err)
	}
	if tg.Filter != "(host 10.244.2.7) and (tcp port 80)" || tg.FilterCode == "" {
		t.Errorf("filter %q (code %q)", tg.Filter, tg.FilterCode)
	}
	if _, err := Resolve(t.Context(), c, "default/client", nil, nil, "tcp port"); err == nil {
		t.Error("a bad expression is taken")
	}
}
