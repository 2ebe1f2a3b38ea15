package k8s

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestMain(m *testing.M) {
	// Tests name their container runtime: none of the machine's.
	RuntimeEndpoints = nil
	os.Exit(m.Run())
}

// fakeRuntime is a container runtime's CRI service with a ready sandbox
// of the client pod (its network namespace the test's own), a host
// network pod and a static pod the API server does not know.
type fakeRuntime struct {
	runtime.UnimplementedRuntimeServiceServer
}

var fakeSandboxes = map[string]*runtime.PodSandboxStatus{
	"a": {Id: "a", Metadata: &runtime.PodSandboxMetadata{Name: "client", Namespace: "default"},
		Network: &runtime.PodSandboxNetworkStatus{Ip: "10.245.1.5", AdditionalIps: []*runtime.PodIP{{Ip: "fd00:1::5"}}}},
	"b": {Id: "b", Metadata: &runtime.PodSandboxMetadata{Name: "proxy", Namespace: "kube-system"},
		Network: &runtime.PodSandboxNetworkStatus{Ip: "192.168.60.11"},
		Linux:   &runtime.LinuxPodSandboxStatus{Namespaces: &runtime.Namespace{Options: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}}}},
	"c": {Id: "c", Metadata: &runtime.PodSandboxMetadata{Name: "static-node1", Namespace: "kube-system"},
		Network: &runtime.PodSandboxNetworkStatus{Ip: "10.245.1.9"}},
}

func (fakeRuntime) ListPodSandbox(_ context.Context, r *runtime.ListPodSandboxRequest) (*runtime.ListPodSandboxResponse, error) {
	var out runtime.ListPodSandboxResponse
	if r.GetFilter().GetState().GetState() != runtime.PodSandboxState_SANDBOX_READY {
		return &out, nil // only ready sandboxes are asked for
	}
	for _, id := range []string{"a", "b", "c"} {
		out.Items = append(out.Items, &runtime.PodSandbox{Id: id, Metadata: fakeSandboxes[id].Metadata})
	}
	return &out, nil
}

func (fakeRuntime) PodSandboxStatus(_ context.Context, r *runtime.PodSandboxStatusRequest) (*runtime.PodSandboxStatusResponse, error) {
	resp := &runtime.PodSandboxStatusResponse{Status: fakeSandboxes[r.PodSandboxId]}
	if r.PodSandboxId == "a" && r.Verbose {
		resp.Info = map[string]string{"info": `{"pid":1,"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/proc/self/ns/net"}]}}}`}
	}
	return resp, nil
}

// startRuntime serves fakeRuntime on a unix socket and returns its path.
func startRuntime(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "cri.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	runtime.RegisterRuntimeServiceServer(s, fakeRuntime{})
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return sock
}

func TestLookupRuntime(t *testing.T) {
	sock := startRuntime(t)
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "no-kubeconfig")

	// The runtime alone: the node's pods and the client's namespace.
	n, err := Lookup(context.Background(), Config{RuntimeEndpoint: sock, Kubeconfig: missing})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, p := range n.Pods {
		keys = append(keys, p.Key())
	}
	if !slices.Equal(keys, []string{"default/client", "kube-system/proxy", "kube-system/static-node1"}) || !n.Pods[1].HostNetwork ||
		!slices.Equal(n.Pods[0].IPs, addrList("10.245.1.5", "fd00:1::5")) || n.Source != "cri unix://"+sock {
		t.Errorf("from the runtime: %+v (%s)", n.Pods, n.Source)
	}
	if got := n.Netns[uint32(st.Ino)]; got != "default/client" || len(n.Netns) != 1 {
		t.Errorf("namespaces from the runtime: %v, want %d: default/client", n.Netns, st.Ino)
	}
	_, ips, err := Select(context.Background(), Config{RuntimeEndpoint: "unix://" + sock, Kubeconfig: missing}, Selection{Pods: []string{"default/client"}}, nil)
	if err != nil || !slices.Equal(ips, addrList("10.245.1.5", "fd00:1::5")) {
		t.Errorf("--pod from the runtime alone: %v, %v", ips, err)
	}
	_, _, err = Select(context.Background(), Config{RuntimeEndpoint: sock, Kubeconfig: missing}, Selection{Services: []string{"default/web"}}, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "--service needs the Kubernetes API server") {
		t.Errorf("--service from the runtime alone: %v", err)
	}

	// With the API server: its pods (with their nodes), the runtime's
	// static pod it does not know, its Services.
	s := newAPIServer(t, "sekret")
	n, err = Lookup(context.Background(), Config{RuntimeEndpoint: sock, Kubeconfig: s.kubeconfig(t, t.TempDir(), false)})
	if err != nil {
		t.Fatal(err)
	}
	keys = keys[:0]
	for _, p := range n.Pods {
		keys = append(keys, p.Key()+"@"+p.Node)
	}
	if want := []string{"default/client@node1", "default/server@node2", "kube-system/proxy@node1", "kube-system/static-node1@"}; !slices.Equal(keys, want) {
		t.Errorf("pods %v, want %v", keys, want)
	}
	if len(n.Services) != 2 || n.Netns[uint32(st.Ino)] != "default/client" || !strings.HasPrefix(n.Source, "cri unix://"+sock+", apiserver https://") {
		t.Errorf("names %+v", n)
	}

	// A runtime socket that does not answer, and no kubeconfig.
	if _, err := Lookup(context.Background(), Config{RuntimeEndpoint: filepath.Join(t.TempDir(), "none.sock"), Kubeconfig: missing}); err == nil {
		t.Error("no source answered, and no error")
	}
}
