package k8s

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// apiServer is a fake API server over TLS: it answers the lists the
// client asks for from fixed JSON, in pages of one item, and checks the
// bearer token when one is set.
type apiServer struct {
	*httptest.Server
	token       string
	noSlices    bool // endpointslices are forbidden (a kubelet's identity)
	noNodes     bool // nodes are forbidden
	clientCerts int  // requests that came with a client certificate
}

var (
	apiPods = []string{
		`{"metadata":{"name":"client","namespace":"default"},"spec":{"nodeName":"node1"},"status":{"phase":"Running","podIP":"10.245.1.5","podIPs":[{"ip":"10.245.1.5"},{"ip":"fd00:1::5"}]}}`,
		`{"metadata":{"name":"server","namespace":"default"},"spec":{"nodeName":"node2"},"status":{"phase":"Running","podIP":"10.245.2.7","podIPs":[{"ip":"10.245.2.7"}]}}`,
		`{"metadata":{"name":"proxy","namespace":"kube-system"},"spec":{"nodeName":"node1","hostNetwork":true},"status":{"phase":"Running","podIP":"192.168.60.11"}}`,
		`{"metadata":{"name":"done","namespace":"default"},"spec":{},"status":{"phase":"Succeeded","podIP":"10.245.1.9"}}`,
	}
	apiServices = []string{
		`{"metadata":{"name":"web","namespace":"default"},"spec":{"type":"NodePort","clusterIP":"10.97.0.80","clusterIPs":["10.97.0.80"],"externalIPs":["203.0.113.8"],"ports":[{"name":"http","protocol":"TCP","port":80,"nodePort":30080}]},"status":{"loadBalancer":{"ingress":[{"ip":"198.51.100.1"}]}}}`,
		`{"metadata":{"name":"headless","namespace":"default"},"spec":{"clusterIP":"None","ports":[{"port":80}]}}`,
	}
	apiNodes = []string{
		`{"metadata":{"name":"node2"},"status":{"addresses":[{"type":"InternalIP","address":"192.168.60.12"},{"type":"Hostname","address":"node2"}]}}`,
		`{"metadata":{"name":"node1"},"status":{"addresses":[{"type":"InternalIP","address":"192.168.60.11"},{"type":"ExternalIP","address":"203.0.113.11"},{"type":"InternalDNS","address":"node1.lab"}]}}`,
	}
	apiSlices = []string{
		`{"metadata":{"name":"web-abc","namespace":"default","labels":{"kubernetes.io/service-name":"web"}},"endpoints":[{"addresses":["10.245.2.7"]}]}`,
	}
	apiEndpointsV1 = []string{
		`{"metadata":{"name":"web","namespace":"default"},"subsets":[{"addresses":[{"ip":"10.245.2.7"}],"notReadyAddresses":[{"ip":"10.245.2.8"}]}]}`,
	}
)

func newAPIServer(t *testing.T, token string) *apiServer {
	t.Helper()
	s := &apiServer{token: token}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *apiServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		s.clientCerts++
	}
	if s.token != "" && r.Header.Get("Authorization") != "Bearer "+s.token {
		http.Error(w, `{"kind":"Status","message":"Unauthorized"}`, http.StatusUnauthorized)
		return
	}
	var items []string
	switch r.URL.Path {
	case "/api/v1/pods":
		items = apiPods
	case "/api/v1/services":
		items = apiServices
	case "/apis/discovery.k8s.io/v1/endpointslices":
		if s.noSlices {
			http.Error(w, `{"kind":"Status","message":"forbidden"}`, http.StatusForbidden)
			return
		}
		items = apiSlices
	case "/api/v1/endpoints":
		items = apiEndpointsV1
	case "/api/v1/nodes":
		if s.noNodes {
			http.Error(w, `{"kind":"Status","message":"forbidden"}`, http.StatusForbidden)
			return
		}
		items = apiNodes
	default:
		http.NotFound(w, r)
		return
	}
	// One item a page: the client must follow "continue".
	i := 0
	fmt.Sscan(r.URL.Query().Get("continue"), &i)
	cont := ""
	if i+1 < len(items) {
		cont = fmt.Sprint(i + 1)
	}
	page := "[]"
	if i < len(items) {
		page = "[" + items[i] + "]"
	}
	fmt.Fprintf(w, `{"kind":"List","metadata":{"continue":%q},"items":%s}`, cont, page)
}

// caPEM is the fake server's certificate as PEM.
func (s *apiServer) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
}

// kubeconfig writes a kubeconfig for the fake server into dir: the CA as a
// file next to it (a relative path) or inline, with the token.
func (s *apiServer) kubeconfig(t *testing.T, dir string, inlineCA bool) string {
	t.Helper()
	ca := "certificate-authority: ca.crt"
	if inlineCA {
		ca = "certificate-authority-data: " + base64.StdEncoding.EncodeToString(s.caPEM())
	} else if err := os.WriteFile(filepath.Join(dir, "ca.crt"), s.caPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: other
  cluster:
    server: https://192.0.2.1:6443
- name: lab
  cluster:
    server: %s
    %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: other
  context: {cluster: other, user: admin}
- name: lab
  context:
    cluster: lab
    user: admin
current-context: lab
`, s.URL, ca, s.token)
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKubeconfig(t *testing.T) {
	s := newAPIServer(t, "sekret")
	for _, inline := range []bool{false, true} {
		path := s.kubeconfig(t, t.TempDir(), inline)
		kc, err := LoadKubeconfig(path)
		if err != nil {
			t.Fatalf("inline CA %v: %v", inline, err)
		}
		if kc.Server.String() != s.URL || kc.Token != "sekret" || kc.TLS.RootCAs == nil || kc.Path != path {
			t.Errorf("inline CA %v: %+v", inline, kc)
		}
	}
}

func TestKubeconfigClientCert(t *testing.T) {
	s := newAPIServer(t, "")
	cert, key := clientCert(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "client.crt"), cert, 0o600)
	kc := fmt.Sprintf(`clusters:
- name: c
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: u
  user: {client-certificate: client.crt, client-key-data: %s}
contexts:
- name: x
  context: {cluster: c, user: u}
`, s.URL, base64.StdEncoding.EncodeToString(key))
	path := filepath.Join(dir, "kubelet.conf")
	os.WriteFile(path, []byte(kc), 0o600)
	got, err := LoadKubeconfig(path) // the only context, without current-context
	if err != nil {
		t.Fatal(err)
	}
	if len(got.TLS.Certificates) != 1 || !got.TLS.InsecureSkipVerify || got.Token != "" {
		t.Errorf("client certificate kubeconfig: %+v", got)
	}
	if _, err := NewClient(got).Pods(context.Background()); err != nil || s.clientCerts == 0 {
		t.Errorf("list pods with a client certificate: %v (%d requests with one)", err, s.clientCerts)
	}
}

func TestKubeconfigErrors(t *testing.T) {
	for name, kc := range map[string]string{
		"no context":   "clusters: []\ncurrent-context: gone\n",
		"bad server":   "clusters: [{name: c, cluster: {server: 'ftp://x'}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n",
		"bad CA":       "clusters: [{name: c, cluster: {server: 'https://x', certificate-authority-data: '!!'}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n",
		"exec plugin":  "clusters: [{name: c, cluster: {server: 'https://x'}}]\nusers: [{name: u, user: {exec: {command: aws}}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n",
		"cert, no key": "clusters: [{name: c, cluster: {server: 'https://x'}}]\nusers: [{name: u, user: {client-certificate-data: 'eA=='}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n",
		"not yaml":     "{{{",
	} {
		path := filepath.Join(t.TempDir(), "kc")
		os.WriteFile(path, []byte(kc), 0o600)
		if _, err := LoadKubeconfig(path); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestKubeconfigPath(t *testing.T) {
	env := func(v string) func(string) string { return func(string) string { return v } }
	if got := KubeconfigPath("/a", env("/b")); got != "/a" {
		t.Errorf("flag: %q", got)
	}
	if got := KubeconfigPath("", env(":/b:/c")); got != "/b" {
		t.Errorf("$KUBECONFIG: %q", got)
	}
	old := KubeletKubeconfigs
	defer func() { KubeletKubeconfigs = old }()
	dir := t.TempDir()
	KubeletKubeconfigs = []string{filepath.Join(dir, "none"), filepath.Join(dir, "kubelet.conf")}
	if got := KubeconfigPath("", env("")); got != "" {
		t.Errorf("nothing there: %q", got)
	}
	os.WriteFile(KubeletKubeconfigs[1], nil, 0o600)
	if got := KubeconfigPath("", env("")); got != KubeletKubeconfigs[1] {
		t.Errorf("kubelet's: %q", got)
	}
}

func lookup(t *testing.T, s *apiServer) *Names {
	t.Helper()
	n, err := Lookup(context.Background(), Config{Kubeconfig: s.kubeconfig(t, t.TempDir(), false)})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func addrList(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestLookup(t *testing.T) {
	s := newAPIServer(t, "sekret")
	n := lookup(t, s)
	var pods []string
	for _, p := range n.Pods {
		pods = append(pods, fmt.Sprintf("%s %v %v", p.Key(), p.IPs, p.HostNetwork))
	}
	want := []string{"default/client [10.245.1.5 fd00:1::5] false", "default/server [10.245.2.7] false", "kube-system/proxy [192.168.60.11] true"}
	if !slices.Equal(pods, want) {
		t.Errorf("pods %q, want %q (the finished pod left out)", pods, want)
	}
	if len(n.Services) != 2 {
		t.Fatalf("services: %+v", n.Services)
	}
	web := n.Services[1]
	if web.Key() != "default/web" || !slices.Equal(web.ClusterIPs, addrList("10.97.0.80")) ||
		!slices.Equal(web.ExternalIPs, addrList("203.0.113.8", "198.51.100.1")) ||
		!slices.Equal(web.Endpoints, addrList("10.245.2.7")) ||
		len(web.Ports) != 1 || web.Ports[0] != (ServicePort{Name: "http", Protocol: "TCP", Port: 80, NodePort: 30080}) {
		t.Errorf("web: %+v", web)
	}
	if h := n.Services[0]; h.Key() != "default/headless" || len(h.ClusterIPs) != 0 {
		t.Errorf("headless: %+v", h)
	}
	if !strings.HasPrefix(n.Source, "apiserver https://127.0.0.1:") {
		t.Errorf("source %q", n.Source)
	}
	var nodes []string
	for _, node := range n.Nodes {
		nodes = append(nodes, fmt.Sprintf("%s %v", node.Name, node.IPs))
	}
	if want := []string{"node1 [192.168.60.11 203.0.113.11]", "node2 [192.168.60.12]"}; !slices.Equal(nodes, want) {
		t.Errorf("nodes %q, want %q (sorted, internal and external addresses)", nodes, want)
	}

	// An identity that may not list Nodes still names pods and Services.
	s.noNodes = true
	if n = lookup(t, s); len(n.Nodes) != 0 || len(n.Pods) != 3 {
		t.Errorf("nodes forbidden: %d nodes, %d pods", len(n.Nodes), len(n.Pods))
	}
	s.noNodes = false

	// Where EndpointSlices are forbidden, the Endpoints.
	s.noSlices = true
	n = lookup(t, s)
	if got := n.Services[1].Endpoints; !slices.Equal(got, addrList("10.245.2.7", "10.245.2.8")) {
		t.Errorf("endpoints from v1 Endpoints: %v", got)
	}
}

func TestLookupErrors(t *testing.T) {
	s := newAPIServer(t, "sekret")
	dir := t.TempDir()
	path := s.kubeconfig(t, dir, false)
	// A wrong token.
	b, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(b), "token: sekret", "token: wrong", 1)), 0o600)
	if _, err := Lookup(context.Background(), Config{Kubeconfig: path}); !errors.Is(err, errForbidden) {
		t.Errorf("wrong token: %v", err)
	}
	// No kubeconfig anywhere.
	old := KubeletKubeconfigs
	defer func() { KubeletKubeconfigs = old }()
	KubeletKubeconfigs = nil
	if _, err := Lookup(context.Background(), Config{Getenv: func(string) string { return "" }}); !errors.Is(err, ErrNoSource) {
		t.Errorf("no kubeconfig: %v", err)
	}
	// An untrusted server certificate: another CA.
	other, _ := clientCert(t)
	os.WriteFile(filepath.Join(dir, "ca.crt"), other, 0o600)
	os.WriteFile(path, b, 0o600)
	if _, err := Lookup(context.Background(), Config{Kubeconfig: path}); err == nil {
		t.Error("a server the CA did not sign was trusted")
	}
}

func TestSelect(t *testing.T) {
	s := newAPIServer(t, "sekret")
	cfg := Config{Kubeconfig: s.kubeconfig(t, t.TempDir(), false)}
	_, ips, err := Select(context.Background(), cfg, Selection{Pods: []string{"default/client"}}, nil)
	if err != nil || !slices.Equal(ips, addrList("10.245.1.5", "fd00:1::5")) {
		t.Errorf("--pod default/client: %v, %v", ips, err)
	}
	_, ips, err = Select(context.Background(), cfg, Selection{Pods: []string{"default/server"}, Services: []string{"default/web"}}, nil)
	if err != nil || !slices.Equal(ips, addrList("10.245.2.7", "10.97.0.80", "203.0.113.8", "198.51.100.1")) {
		t.Errorf("--pod default/server --service default/web: %v, %v", ips, err)
	}
	for sel, want := range map[*Selection]string{
		{Pods: []string{"default/gone"}}:         "--pod default/gone: no such pod",
		{Pods: []string{"client"}}:               `--pod "client" is not NAMESPACE/NAME`,
		{Services: []string{"default/gone"}}:     "--service default/gone: no such Service",
		{Services: []string{"default/headless"}}: "--service default/headless: the Service has no address",
	} {
		if _, _, err := Select(context.Background(), cfg, *sel, nil); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%+v: %v, want %q", *sel, err, want)
		}
	}
	// Without a source: an error with a selection, none without.
	none := Config{Kubeconfig: filepath.Join(t.TempDir(), "missing")}
	if _, _, err := Select(context.Background(), none, Selection{Services: []string{"default/web"}}, nil); err == nil || !strings.HasPrefix(err.Error(), "--service needs the Kubernetes API server") {
		t.Errorf("no source, --service: %v", err)
	}
	if n, ips, err := Select(context.Background(), none, Selection{}, nil); n != nil || ips != nil || err != nil {
		t.Errorf("no source, no selection: %v %v %v", n, ips, err)
	}
}

// TestPods names the pods of a ClusterIP request and its reply, and keeps
// them through the JSON a recording stores.
func TestPods(t *testing.T) {
	s := newAPIServer(t, "sekret")
	n := lookup(t, s)
	n.Netns = map[uint32]string{11: "default/client", 22: "default/server"}
	js, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := DecodeNames(js)
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort
	req := func() *stitch.Path {
		return &stitch.Path{Src: ap("10.245.1.5:40000"), Dst: ap("10.97.0.80:80"), Hops: []stitch.Hop{
			{Kind: hop.Tx, NetnsInode: 11},
			{Kind: hop.NAT, NetnsInode: 1, NAT: &stitch.NAT{Type: hop.DNAT, From: ap("10.97.0.80:80"), To: ap("10.245.2.7:8080")}},
			{Kind: hop.Rx, NetnsInode: 22},
		}}
	}
	reply := func() *stitch.Path {
		return &stitch.Path{Src: ap("10.245.2.7:8080"), Dst: ap("10.245.1.5:40000"), Hops: []stitch.Hop{
			{Kind: hop.Tx, NetnsInode: 22},
			{Kind: hop.NAT, NetnsInode: 1, NAT: &stitch.NAT{Type: hop.SNAT, Reverse: true, From: ap("10.245.2.7:8080"), To: ap("10.97.0.80:80")}},
			{Kind: hop.Rx, NetnsInode: 11},
		}}
	}
	host := &stitch.Path{Src: ap("192.168.60.11:5000"), Dst: ap("10.245.2.7:8080")}
	// Across the nodes: a hop in node1's namespace (inode 1, named by
	// its address), the encapsulation, and a hop in the server's pod.
	n.NameNodeNetns(map[uint32][]netip.Addr{1: addrList("127.0.0.1", "192.168.60.11"), 2: addrList("10.0.0.1")})
	if want := map[uint32]string{1: "node1"}; !maps.Equal(n.NodeNetns, want) {
		t.Errorf("node namespaces %v, want %v", n.NodeNetns, want)
	}
	js, err = json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	if stored, err = DecodeNames(js); err != nil {
		t.Fatal(err)
	}
	vxlan := &stitch.Outer{Tunnel: hop.TunnelVXLAN, Src: netip.MustParseAddr("192.168.60.11"), Dst: netip.MustParseAddr("192.168.60.12"), DPort: 8472, VNI: 1}
	cross := func() *stitch.Path {
		return &stitch.Path{Src: ap("10.245.1.5:40000"), Dst: ap("10.245.2.7:8080"), Hops: []stitch.Hop{
			{Kind: hop.Rx, NetnsInode: 1},
			{Kind: hop.Encap, NetnsInode: 1, Outer: vxlan},
			{Kind: hop.Decap, NetnsInode: 3, Outer: vxlan},
			{Kind: hop.Rx, NetnsInode: 22},
			{Kind: hop.Rx, NetnsInode: 4, Node: "node9"}, // named by a --scope node trace
		}}
	}
	nodePort := func() *stitch.Path {
		return &stitch.Path{Src: ap("198.51.100.7:5000"), Dst: ap("192.168.60.12:30080")}
	}
	for name, names := range map[string]*Names{"live": n, "stored": stored} {
		a := NewPods(names)
		p := req()
		a.Annotate(p)
		if p.SrcPod != "default/client" || p.DstPod != "default/server" || p.Hops[0].Pod != "default/client" || p.Hops[1].Pod != "" || p.Hops[2].Pod != "default/server" {
			t.Errorf("%s: request: %q → %q, hops %q %q %q", name, p.SrcPod, p.DstPod, p.Hops[0].Pod, p.Hops[1].Pod, p.Hops[2].Pod)
		}
		p = reply()
		a.Annotate(p)
		if p.SrcPod != "default/server" || p.DstPod != "default/client" {
			t.Errorf("%s: reply: %q → %q", name, p.SrcPod, p.DstPod)
		}
		a.Annotate(host)
		if host.SrcPod != "" || host.DstPod != "default/server" {
			t.Errorf("%s: from the node (a host-network pod's address): %q → %q", name, host.SrcPod, host.DstPod)
		}
		if host.SrcNode != "node1" || host.DstNode != "" {
			t.Errorf("%s: from the node: nodes %q → %q, want node1 → none (a pod)", name, host.SrcNode, host.DstNode)
		}
		p = cross()
		a.Annotate(p)
		var hopNodes []string
		for _, h := range p.Hops {
			hopNodes = append(hopNodes, h.Node)
		}
		if want := []string{"node1", "node1", "", "node2", "node9"}; !slices.Equal(hopNodes, want) {
			t.Errorf("%s: hop nodes %q, want %q (node1's namespace, the server pod's node, a node's own)", name, hopNodes, want)
		}
		if o := p.Hops[1].Outer; o.SrcNode != "node1" || o.DstNode != "node2" || vxlan.SrcNode != "" {
			t.Errorf("%s: outer header %+v, want node1 → node2 (and the shared one unchanged: %+v)", name, *o, *vxlan)
		}
		p = nodePort()
		a.Annotate(p)
		if p.SrcNode != "" || p.DstNode != "node2" {
			t.Errorf("%s: a NodePort from outside: nodes %q → %q", name, p.SrcNode, p.DstNode)
		}
	}
	// No names: nothing named.
	p := req()
	NewPods(nil).Annotate(p)
	if p.SrcPod != "" || p.DstPod != "" || p.Hops[0].Pod != "" {
		t.Errorf("without names: %+v", p)
	}
}

// clientCert makes a self-signed certificate and its key, as PEM.
func clientCert(t *testing.T) (cert, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pathtrace-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// TestTimeline names a path from the names in effect when it started.
func TestTimeline(t *testing.T) {
	ap := netip.MustParseAddrPort
	v1 := &Names{Pods: []Pod{{Namespace: "default", Name: "client", IPs: addrList("10.245.1.5")}}}
	v2 := &Names{Pods: []Pod{{Namespace: "default", Name: "client-2", IPs: addrList("10.245.1.5")}}}
	tl := NewTimeline(nil)
	tl.Add(100, v1)
	tl.Add(200, v2)
	for mono, want := range map[uint64]string{0: "", 99: "", 100: "default/client", 150: "default/client", 200: "default/client-2", 1 << 40: "default/client-2"} {
		p := &stitch.Path{Mono: mono, Src: ap("10.245.1.5:1000"), Dst: ap("10.245.2.7:80")}
		tl.Annotate(p)
		if p.SrcPod != want {
			t.Errorf("path from %d: source pod %q, want %q", mono, p.SrcPod, want)
		}
	}
	tl.Add(200, v1) // the same time again: replaced
	p := &stitch.Path{Mono: 300, Src: ap("10.245.1.5:1000")}
	tl.Annotate(p)
	if p.SrcPod != "default/client" {
		t.Errorf("after replacing the version from 200: %q", p.SrcPod)
	}
}

// TestServicesFromAPI names the Service ports kube-proxy's rules did not:
// an IPVS virtual service, a DNAT from a node port on a Node's address, an
// un-DNAT from an external IP, by protocol; a name already there stays.
func TestServicesFromAPI(t *testing.T) {
	s := newAPIServer(t, "sekret")
	a := NewPods(lookup(t, s))
	ap := netip.MustParseAddrPort
	dnat := func(proto uint8, from string) *stitch.Path {
		return &stitch.Path{Proto: proto, Src: ap("10.245.1.5:40000"), Dst: ap(from), Hops: []stitch.Hop{
			{Kind: hop.NAT, NAT: &stitch.NAT{Type: hop.DNAT, From: ap(from), To: ap("10.245.2.7:8080")}},
		}}
	}
	for _, c := range []struct {
		what string
		p    *stitch.Path
		want string
	}{
		{"DNAT from the ClusterIP", dnat(6, "10.97.0.80:80"), "default/web:http"},
		{"DNAT from a node port on node1", dnat(6, "192.168.60.11:30080"), "default/web:http"},
		{"DNAT from the node port on an address no Node has", dnat(6, "10.0.0.1:30080"), ""},
		{"UDP to the ClusterIP's TCP port", dnat(17, "10.97.0.80:80"), ""},
		{"un-DNAT of a reply from the external IP", &stitch.Path{Proto: 6, Src: ap("10.245.2.7:8080"), Dst: ap("10.245.1.5:40000"), Hops: []stitch.Hop{
			{Kind: hop.NAT, NAT: &stitch.NAT{Type: hop.SNAT, Reverse: true, From: ap("10.245.2.7:8080"), To: ap("203.0.113.8:80")}},
		}}, "default/web:http"},
		{"IPVS to the load-balancer IP", &stitch.Path{Proto: 6, Src: ap("10.245.1.5:40000"), Dst: ap("198.51.100.1:80"), Hops: []stitch.Hop{
			{Kind: hop.IPVS, IPVS: &stitch.IPVS{Service: ap("198.51.100.1:80"), RealServer: ap("10.245.2.7:8080")}},
		}}, "default/web:http"},
	} {
		a.Annotate(c.p)
		h := c.p.Hops[0]
		got := ""
		if h.NAT != nil {
			got = h.NAT.Service
		} else {
			got = h.IPVS.ServiceName
		}
		if got != c.want || c.p.Service != c.want {
			t.Errorf("%s: hop names %q, path %q; want %q", c.what, got, c.p.Service, c.want)
		}
	}
	// Named by kube-proxy's rules already: kept.
	p := dnat(6, "10.97.0.80:80")
	p.Hops[0].NAT.Service, p.Service = "default/web:80", "default/web:80"
	if a.Annotate(p); p.Hops[0].NAT.Service != "default/web:80" || p.Service != "default/web:80" {
		t.Errorf("a name from kube-proxy's rules replaced: %q, %q", p.Hops[0].NAT.Service, p.Service)
	}
}
