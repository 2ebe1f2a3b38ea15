package k8slab

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/k8s"
	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/render"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/trace"
)

var updateRecording = flag.Bool("update-lab-recording", false,
	"checkNames: write the --pod trace's recording to testdata/pcaps/lab-names.pcapng (then run go test ./internal/trace -run TestReplayGolden -update)")

// labRecording is where the committed recording of a trace on the lab
// lives: replayed without the lab, and without privileges, by the tests
// of internal/trace and cmd/pathtrace.
const labRecording = "../../testdata/pcaps/lab-names.pcapng"

// checkNames traces the client's request to the web Service's ClusterIP
// with the trace selected as --pod default/client and as --service
// default/web select it (k8s.Select, what the command does with the API
// server of the lab's kubeconfig): the SYN's path names the client as its
// source pod, the server as its destination pod (behind the ClusterIP)
// and the Service port on kube-proxy's DNAT, in JSON too; its hops in the
// pods' namespaces name the pods. The replay of the recording, which
// looks nothing up, names the same.
func checkNames(t *testing.T, l *Lab) {
	client, server := l.Pod(PodClient), l.Pod(PodServer)
	clientKey, serverKey := Namespace+"/"+PodClient, Namespace+"/"+PodServer
	to := netip.AddrPortFrom(WebClusterIP, WebPort)
	for _, c := range []struct {
		name string
		sel  k8s.Selection
		want []netip.Addr // among the addresses selected
	}{
		{"pod", k8s.Selection{Pods: []string{clientKey}}, []netip.Addr{client.IP}},
		{"service", k8s.Selection{Services: []string{Namespace + "/" + ServiceWeb}}, []netip.Addr{WebClusterIP, server.IP}},
	} {
		t.Run(c.name, func(t *testing.T) {
			names, ips, err := k8s.Select(context.Background(), k8s.Config{Kubeconfig: l.Kubeconfig}, c.sel, nil)
			if err != nil {
				t.Fatalf("select %+v: %v", c.sel, err)
			}
			for _, a := range c.want {
				if !slices.Contains(ips, a) {
					t.Errorf("select %+v: addresses %v lack %s", c.sel, ips, a)
				}
			}
			rec := filepath.Join(t.TempDir(), "names.pcapng")
			paths := traceFetchWith(t, l, fmt.Sprintf("http://%s/", to), trace.Options{
				Loader: loader.Options{PodIPs: ips}, Kubernetes: names, Record: rec, HeadersOnly: true,
			})
			checkPods(t, "live", synPath(t, paths, client.IP, to), clientKey, serverKey)
			if *updateRecording && c.name == "pod" && l.Mode == IPTables && !t.Failed() {
				b, err := os.ReadFile(rec)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(labRecording, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}

			// Replay: the names come from the recording alone.
			out := &collector{}
			if _, err := trace.Replay(context.Background(), rec, trace.ReplayOptions{}, out); err != nil {
				t.Fatalf("replay: %v", err)
			}
			checkPods(t, "replay", synPath(t, out.paths, client.IP, to), clientKey, serverKey)
			// And so does the replay's --pod, from the recording.
			out = &collector{}
			if _, err := trace.Replay(context.Background(), rec, trace.ReplayOptions{Select: k8s.Selection{Pods: []string{serverKey}}}, out); err != nil {
				t.Fatalf("replay --pod %s: %v", serverKey, err)
			}
			checkPods(t, "replay --pod "+serverKey, synPath(t, out.paths, client.IP, to), clientKey, serverKey)
		})
	}
}

// checkRefresh traces with the names looked up again while tracing (every
// 100 ms, here by a lookup that renames the server pod): the request, sent
// after the refresh, names the renamed server, live and after replay.
func checkRefresh(t *testing.T, l *Lab) {
	client := l.Pod(PodClient)
	clientKey, renamed := Namespace+"/"+PodClient, Namespace+"/"+PodServer+"-renamed"
	to := netip.AddrPortFrom(WebClusterIP, WebPort)
	names, ips, err := k8s.Select(context.Background(), k8s.Config{Kubeconfig: l.Kubeconfig}, k8s.Selection{Pods: []string{clientKey}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var lookups atomic.Int32
	lookup := func(ctx context.Context) (*k8s.Names, error) {
		lookups.Add(1)
		n, err := k8s.Lookup(ctx, k8s.Config{Kubeconfig: l.Kubeconfig})
		if err != nil {
			return nil, err
		}
		for i := range n.Pods {
			if n.Pods[i].Name == PodServer {
				n.Pods[i].Name += "-renamed"
			}
		}
		return n, nil
	}
	rec := filepath.Join(t.TempDir(), "refresh.pcapng")
	paths := traceFetchWith(t, l, fmt.Sprintf("http://%s/", to), trace.Options{
		Loader: loader.Options{PodIPs: ips}, Kubernetes: names, Record: rec, HeadersOnly: true,
		KubeLookup: lookup, KubeRefresh: 100 * time.Millisecond,
	})
	if lookups.Load() == 0 {
		t.Fatal("no refresh while tracing")
	}
	checkPods(t, "live, refreshed", synPath(t, paths, client.IP, to), clientKey, renamed)
	out := &collector{}
	if _, err := trace.Replay(context.Background(), rec, trace.ReplayOptions{}, out); err != nil {
		t.Fatalf("replay: %v", err)
	}
	checkPods(t, "replay, refreshed", synPath(t, out.paths, client.IP, to), clientKey, renamed)
}

// checkRuntime looks the names up from node1's container runtime alone
// (containerd over CRI, no API server): the client pod, its addresses and
// its network namespace; --pod default/client resolves from it.
func checkRuntime(t *testing.T, l *Lab) {
	client := l.Pod(PodClient)
	cfg := k8s.Config{RuntimeEndpoint: l.Node(Node1).socket, Kubeconfig: filepath.Join(t.TempDir(), "none")}
	names, ips, err := k8s.Select(context.Background(), cfg, k8s.Selection{Pods: []string{Namespace + "/" + PodClient}}, nil)
	if err != nil {
		t.Fatalf("--pod from node1's runtime: %v", err)
	}
	if !slices.Equal(ips, []netip.Addr{client.IP}) {
		t.Errorf("--pod from node1's runtime: %v, want %v", ips, client.IP)
	}
	ino, err := netnsInode(client.NetnsPath)
	if err != nil {
		t.Fatal(err)
	}
	if got := names.Netns[ino]; got != Namespace+"/"+PodClient {
		t.Errorf("node1's runtime names the client's namespace %q (%v)", got, names.Netns)
	}
	if slices.ContainsFunc(names.Pods, func(p k8s.Pod) bool { return p.Name == PodServer }) {
		t.Errorf("node1's runtime names the server, which runs on node2: %+v", names.Pods)
	}
}

// netnsInode is the inode of the namespace file at path.
func netnsInode(path string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return uint32(st.Ino), nil
}

// checkPods checks the names on the client's SYN to the ClusterIP.
func checkPods(t *testing.T, what string, syn *stitch.Path, clientKey, serverKey string) {
	t.Helper()
	if syn.SrcPod != clientKey || syn.DstPod != serverKey {
		t.Errorf("%s: SYN from pod %q to pod %q, want %s → %s:\n%s", what, syn.SrcPod, syn.DstPod, clientKey, serverKey, dumpPath(syn))
	}
	nat := false
	for _, h := range syn.Hops {
		nat = nat || h.NAT != nil && h.NAT.Type == hop.DNAT && h.NAT.Service == webPortName
	}
	if !nat {
		t.Errorf("%s: no DNAT named %s:\n%s", what, webPortName, dumpPath(syn))
	}
	if first, last := syn.Hops[0], syn.Hops[len(syn.Hops)-1]; first.Pod != clientKey || last.Pod != serverKey {
		t.Errorf("%s: first hop in pod %q, last in %q, want %s and %s:\n%s", what, first.Pod, last.Pod, clientKey, serverKey, dumpPath(syn))
	}
	// The Nodes, from the API server: each hop's (the pods' nodes, the
	// node namespaces by their addresses) and the ends of the VXLAN
	// header.
	if first, last := syn.Hops[0], syn.Hops[len(syn.Hops)-1]; first.Node != Node1 || last.Node != Node2 {
		t.Errorf("%s: first hop on node %q, last on %q, want %s and %s:\n%s", what, first.Node, last.Node, Node1, Node2, dumpPath(syn))
	}
	encap := false
	for _, h := range syn.Hops {
		if h.Kind == hop.Encap && h.Outer != nil {
			encap = true
			if h.Node != Node1 || h.Outer.SrcNode != Node1 || h.Outer.DstNode != Node2 {
				t.Errorf("%s: encap on node %q, outer header from node %q to %q, want %s, %s → %s:\n%s", what, h.Node, h.Outer.SrcNode, h.Outer.DstNode, Node1, Node1, Node2, dumpPath(syn))
			}
		}
	}
	if !encap {
		t.Errorf("%s: no VXLAN encap on the SYN's path:\n%s", what, dumpPath(syn))
	}
	var js bytes.Buffer
	r := render.NewJSON(&js)
	if err := r.Render(syn); err != nil {
		t.Fatal(err)
	}
	r.Close()
	for _, want := range []string{`"src_pod":"` + clientKey + `"`, `"dst_pod":"` + serverKey + `"`, `"service":"` + webPortName + `"`,
		`"node":"` + Node1 + `"`, `"src_node":"` + Node1 + `","dst_node":"` + Node2 + `"`} {
		if !strings.Contains(js.String(), want) {
			t.Errorf("%s: JSON lacks %s: %s", what, want, js.String())
		}
	}
}
