package k8slab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/pathtrace/pathtrace/internal/kubectl"
	"github.com/pathtrace/pathtrace/internal/ociimage"
)

// pluginImage is the image name the test builds pathtrace's image under.
const pluginImage = "pathtrace.test/pathtrace:lab"

// buildPluginImage builds pathtrace statically, as make image does, and
// imports its image into the lab's nodes; it returns the binary, linked as
// kubectl-pathtrace.
func buildPluginImage(t *testing.T, l *Lab) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "pathtrace")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/pathtrace/pathtrace/cmd/pathtrace")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build pathtrace: %v\n%s", err, out)
	}
	b, err := ociimage.Archive(pluginImage, runtime.GOARCH, ociimage.PathtraceFiles(bin), []string{"/pathtrace"})
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "image.tar")
	if err := os.WriteFile(archive, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.ImportImage(context.Background(), archive); err != nil {
		t.Fatalf("import the image: %v", err)
	}
	plugin := filepath.Join(dir, "kubectl-pathtrace")
	if err := os.Symlink("pathtrace", plugin); err != nil {
		t.Fatal(err)
	}
	return plugin
}

// jsonPath is the part of a path in -o json that is checked.
type jsonPath struct {
	ID      int    `json:"id"`
	Src     string `json:"src"`
	Dst     string `json:"dst"`
	Flags   string `json:"tcp_flags"`
	Verdict string `json:"verdict"`
	Clocks  []struct{ Node string }
	Hops    []struct{ Kind, Dev, Node string }
	raw     string
}

// key sums p up: its packet, and its hops' kinds and nodes.
func (p *jsonPath) key() string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s → %s [%s] %s:", p.ID, p.Src, p.Dst, p.Flags, p.Verdict)
	for _, h := range p.Hops {
		fmt.Fprintf(&b, " %s@%s", h.Kind, h.Node)
	}
	return b.String()
}

// nodes are the nodes of p's hops, in order, each once per stretch.
func (p *jsonPath) nodes() []string {
	var ns []string
	for _, h := range p.Hops {
		if len(ns) == 0 || ns[len(ns)-1] != h.Node {
			ns = append(ns, h.Node)
		}
	}
	return ns
}

// checkPlugin runs kubectl pathtrace on the lab as an operator would: the
// client pod on node1 fetches from the web Service, whose backend is on
// node2. The plugin runs a tracer pod on each node, brings their
// recordings back and prints one merged path per packet: the request
// crosses node1 then node2, the reply node2 then node1. Its pods are gone
// afterwards, and the recordings it kept merge again in pathtrace replay.
func checkPlugin(t *testing.T, l *Lab) {
	plugin := buildPluginImage(t, l)
	// --duration ends the trace on the nodes; an interrupt (Ctrl-C)
	// deletes the tracer pods, whose pathtrace then finishes its
	// recording: both print what was traced.
	t.Run("duration", func(t *testing.T) { checkPluginRun(t, l, plugin, true) })
	t.Run("interrupt", func(t *testing.T) { checkPluginRun(t, l, plugin, false) })
	t.Run("daemonset", func(t *testing.T) { checkDaemonSet(t, l, plugin) })
}

// checkDaemonSet runs deploy/daemonset.yaml's pod on node1, as its
// controller would (the lab runs none): with the tracer pods' privileges,
// it records the node's packets to its hostPath (here a directory of the
// test's), and its recording, finished when the pod is deleted, shows the
// client's request on node1.
func checkDaemonSet(t *testing.T, l *Lab, plugin string) {
	root, err := repoDir()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ds struct {
		Kind string
		Spec struct {
			Template struct {
				Spec map[string]any
			}
		}
	}
	if err := yaml.Unmarshal(b, &ds); err != nil || ds.Kind != "DaemonSet" {
		t.Fatalf("deploy/daemonset.yaml: kind %q, %v", ds.Kind, err)
	}
	spec := ds.Spec.Template.Spec
	// The privileges are the tracer pods' (kubectl.PodSpec), which the
	// plugin's runs above show are enough.
	tracer := kubectl.PodSpec("", "", nil)
	for _, k := range []string{"hostNetwork", "hostPID", "automountServiceAccountToken"} {
		if spec[k] != tracer[k] {
			t.Errorf("the DaemonSet's %s is %v, the tracer pods' %v", k, spec[k], tracer[k])
		}
	}
	c := spec["containers"].([]any)[0].(map[string]any)
	if sc := fmt.Sprint(c["securityContext"]); sc != "map[privileged:true]" {
		t.Errorf("the DaemonSet's securityContext is %s", sc)
	}
	dir := t.TempDir()
	spec["nodeName"] = Node1
	spec["restartPolicy"] = "Never"
	c["image"] = pluginImage
	for _, v := range spec["volumes"].([]any) {
		if v := v.(map[string]any); v["name"] == "recordings" {
			v["hostPath"].(map[string]any)["path"] = dir
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	path := "/api/v1/namespaces/" + Namespace + "/pods"
	pod := map[string]any{"metadata": map[string]any{"name": "pathtrace-daemonset-test", "namespace": Namespace}, "spec": spec}
	if err := l.api.do(ctx, http.MethodPost, path, pod, nil); err != nil {
		t.Fatal(err)
	}
	deleted := false
	remove := func() {
		if deleted {
			return
		}
		deleted = true
		if err := l.api.do(ctx, http.MethodDelete, path+"/pathtrace-daemonset-test", nil, nil); err != nil {
			t.Errorf("delete the pod: %v", err)
		}
		if err := poll(ctx, 200*time.Millisecond, "the DaemonSet's pod gone", func() (bool, error) {
			err := l.api.do(ctx, http.MethodGet, path+"/pathtrace-daemonset-test", nil, &object{})
			return errors.Is(err, errNotFound), nil
		}); err != nil {
			t.Error(err)
		}
	}
	defer remove()
	file := filepath.Join(dir, "trace.pcapng0") // -C 100 -W 10: the first of ten
	select {
	case <-waitFile(ctx, file):
	case <-ctx.Done():
		t.Fatalf("the DaemonSet's pathtrace wrote no %s", file)
	}
	time.Sleep(500 * time.Millisecond) // the header is written once attached
	url := fmt.Sprintf("http://%s/", netip.AddrPortFrom(WebClusterIP, WebPort))
	if body, err := l.Fetch(ctx, PodClient, url); err != nil || body != "pathtrace lab\n" {
		t.Errorf("client → %s: %q, %v", url, body, err)
	}
	time.Sleep(time.Second)
	remove() // SIGTERM: the recording is finished
	out, err := exec.CommandContext(ctx, filepath.Join(filepath.Dir(plugin), "pathtrace"), "replay", "-o", "json", "--pod-ip", l.Pod(PodClient).IP.String(), file).Output()
	if err != nil {
		t.Fatalf("pathtrace replay %s: %v", file, err)
	}
	found := false
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		var p jsonPath
		if json.Unmarshal([]byte(line), &p) != nil {
			continue
		}
		src, err := netip.ParseAddrPort(p.Src)
		if err == nil && src.Addr() == l.Pod(PodClient).IP && p.Dst == netip.AddrPortFrom(WebClusterIP, WebPort).String() && p.Flags == "SYN" {
			found = slices.Equal(p.nodes(), []string{Node1})
			if !found {
				t.Errorf("the client's SYN is on %v, want %s only (--scope node): %s", p.nodes(), Node1, line)
			}
		}
	}
	if !found {
		t.Errorf("the DaemonSet's recording has no SYN from the client to %s:\n%s", url, out)
	}
}

func checkPluginRun(t *testing.T, l *Lab, plugin string, duration bool) {
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := []string{"--kubeconfig", l.Kubeconfig, "-n", Namespace,
		"--pod", Namespace + "/" + PodClient, "--service", Namespace + "/" + ServiceWeb,
		"--image", pluginImage, "--ready-file", ready,
		"-w", filepath.Join(dir, "trace.pcapng"), "-o", "json"}
	if duration {
		args = append(args, "--duration", "5s")
	}
	cmd := exec.CommandContext(ctx, plugin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	url := fmt.Sprintf("http://%s/", netip.AddrPortFrom(WebClusterIP, WebPort))
	select {
	case err := <-done:
		t.Fatalf("kubectl pathtrace ended before it was ready: %v\n%s", err, stderr.String())
	case <-waitFile(ctx, ready):
	}
	if body, err := l.Fetch(ctx, PodClient, url); err != nil || body != "pathtrace lab\n" {
		t.Errorf("client → %s: %q, %v", url, body, err)
	}
	if !duration {
		time.Sleep(time.Second) // the tracers read the exchange's last events
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("kubectl pathtrace: %v\n%s", err, stderr.String())
	}
	t.Logf("kubectl pathtrace's stderr:\n%s", stderr.String())

	client := l.Pod(PodClient)
	n1, n2 := l.Node(Node1).Name, l.Node(Node2).Name
	var paths []jsonPath
	for line := range strings.SplitSeq(strings.TrimSpace(stdout.String()), "\n") {
		var p jsonPath
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			t.Fatalf("output line %q: %v", line, err)
		}
		p.raw = line
		paths = append(paths, p)
	}
	var request, reply *jsonPath
	for i := range paths {
		p := &paths[i]
		src, err := netip.ParseAddrPort(p.Src)
		if err == nil && src.Addr() == client.IP && p.Dst == netip.AddrPortFrom(WebClusterIP, WebPort).String() && p.Flags == "SYN" {
			request = p
		}
	}
	for i := range paths {
		if p := &paths[i]; request != nil && p.Dst == request.Src && p.Flags == "SYN,ACK" {
			reply = p
		}
	}
	if request == nil || reply == nil {
		t.Fatalf("no SYN from the client to %s:%d and its SYN-ACK among %d paths:\n%s", WebClusterIP, WebPort, len(paths), stdout.String())
	}
	for _, c := range []struct {
		what  string
		p     *jsonPath
		nodes []string
	}{{"request", request, []string{n1, n2}}, {"reply", reply, []string{n2, n1}}} {
		if got := c.p.nodes(); !slices.Equal(got, c.nodes) {
			t.Errorf("the %s's hops are on %v, want %v: %s", c.what, got, c.nodes, c.p.raw)
		}
		if c.p.Verdict != "delivered" {
			t.Errorf("the %s is %s, want delivered: %s", c.what, c.p.Verdict, c.p.raw)
		}
		if len(c.p.Clocks) == 0 {
			t.Errorf("the %s shows no clock offset of %s: %s", c.what, n2, c.p.raw)
		}
	}
	if !strings.Contains(stderr.String(), "halves joined across nodes") {
		t.Errorf("the summary does not say halves were joined:\n%s", stderr.String())
	}

	// Its pods are gone.
	var list struct {
		Items []any `json:"items"`
	}
	if err := l.api.do(ctx, http.MethodGet, "/api/v1/pods?labelSelector="+kubectl.Label, nil, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("%d of kubectl pathtrace's pods are left", len(list.Items))
	}

	// The kept recordings merge again, to the same paths.
	kept, _ := filepath.Glob(filepath.Join(dir, "trace.*.pcapng"))
	if len(kept) != 2 {
		t.Fatalf("kept recordings %v, want one per node", kept)
	}
	out, err := exec.CommandContext(ctx, filepath.Join(filepath.Dir(plugin), "pathtrace"), append([]string{"replay", "-o", "json"}, kept...)...).Output()
	if err != nil {
		t.Fatalf("pathtrace replay %v: %v", kept, err)
	}
	// The plugin names pods from the API server, the replay has no
	// names: the same packets, hops and nodes are compared.
	var again []string
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		var p jsonPath
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			t.Fatalf("replay's output line %q: %v", line, err)
		}
		again = append(again, p.key())
	}
	var first []string
	for _, p := range paths {
		first = append(first, p.key())
	}
	if !slices.Equal(again, first) {
		t.Errorf("pathtrace replay of the kept recordings:\n%s\nkubectl pathtrace:\n%s", strings.Join(again, "\n"), strings.Join(first, "\n"))
	}
}

// waitFile is closed once path exists, or ctx ends.
func waitFile(ctx context.Context, path string) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		defer close(c)
		for ctx.Err() == nil {
			if _, err := os.Stat(path); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return c
}
