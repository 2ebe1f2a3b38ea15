package k8slab

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/testutil"
)

func findBinaries() error { _, err := FindBinaries(); return err }

// start brings a lab up for the test, removed when it ends; the logs'
// tails go to the test log when the test failed.
func start(t *testing.T, mode ProxyMode) *Lab {
	t.Helper()
	testutil.RequireLab(t, findBinaries)
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	l, err := Start(context.Background(), Options{Mode: mode, Log: log})
	if err != nil {
		t.Fatalf("start lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for name, tail := range l.LogTails(20) {
				t.Logf("%s:\n%s", name, tail)
			}
		}
		if err := l.Close(); err != nil {
			t.Errorf("remove lab: %v", err)
		}
	})
	return l
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// machine is what a lab may leave behind: it must be the same before and
// after one.
type machine struct {
	Procs, Netns, Mounts, Cgroups, Links, Paths []string
	Sysctls                                     map[string]string
}

// labExes are the programs whose processes only a lab starts.
var labExes = []string{"kube-apiserver", "kubelet", "kube-proxy", "flanneld", "etcd", "containerd",
	"containerd-shim-runc-v2", "pause", "runc"}

func snapshot(t *testing.T) machine {
	t.Helper()
	var m machine
	for _, pid := range pidsMatching(func(args []string) bool { return slices.Contains(labExes, filepath.Base(args[0])) }) {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		m.Procs = append(m.Procs, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(string(cmd), "\x00", " ")))
	}
	m.Netns = netnsNames()
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 {
			m.Mounts = append(m.Mounts, f[4])
		}
	}
	slices.Sort(m.Mounts)
	for _, cg := range cgroupMounts() {
		ents, _ := os.ReadDir(cg)
		for _, e := range ents {
			if e.IsDir() {
				m.Cgroups = append(m.Cgroups, filepath.Join(cg, e.Name()))
			}
		}
	}
	ifs, _ := os.ReadDir("/sys/class/net")
	for _, e := range ifs {
		m.Links = append(m.Links, e.Name())
	}
	for _, p := range append(slices.Clone(globalPaths), DefaultDir) {
		ents, err := os.ReadDir(p)
		if err != nil {
			continue
		}
		m.Paths = append(m.Paths, p+"/")
		for _, e := range ents {
			m.Paths = append(m.Paths, filepath.Join(p, e.Name()))
		}
	}
	m.Sysctls = map[string]string{}
	for _, s := range globalSysctls {
		b, _ := os.ReadFile("/proc/sys/" + s)
		m.Sysctls[s] = strings.TrimSpace(string(b))
	}
	return m
}

// requireSame fails the test for everything in after that before lacks or
// that differs.
func requireSame(t *testing.T, before, after machine) {
	t.Helper()
	diff := func(what string, b, a []string) {
		for _, x := range a {
			if !slices.Contains(b, x) {
				t.Errorf("left after the lab: %s %s", what, x)
			}
		}
		for _, x := range b {
			if !slices.Contains(a, x) {
				t.Errorf("gone after the lab: %s %s", what, x)
			}
		}
	}
	diff("process", before.Procs, after.Procs)
	diff("netns", before.Netns, after.Netns)
	diff("mount", before.Mounts, after.Mounts)
	diff("cgroup", before.Cgroups, after.Cgroups)
	diff("link", before.Links, after.Links)
	diff("path", before.Paths, after.Paths)
	for k, v := range before.Sysctls {
		if after.Sysctls[k] != v {
			t.Errorf("sysctl %s is %s after the lab, %s before", k, after.Sysctls[k], v)
		}
	}
}

// TestLab brings the lab up in each kube-proxy mode, checks that the client
// reaches the server through the Service's ClusterIP and NodePort on both
// nodes (the server is on node2: across nodes through node1's NodePort),
// and that nothing of it is left after.
func TestLab(t *testing.T) {
	testutil.RequireLab(t, findBinaries)
	for _, mode := range []ProxyMode{IPTables, NFTables} {
		t.Run(string(mode), func(t *testing.T) {
			before := snapshot(t)
			t.Run("up", func(t *testing.T) {
				l := start(t, mode)
				t.Run("reach", func(t *testing.T) { checkLab(t, l) })
				t.Run("trace", func(t *testing.T) { checkTrace(t, l) })
				t.Run("doctor", func(t *testing.T) { checkDoctor(t, l) })
				t.Run("names", func(t *testing.T) { checkNames(t, l) })
				t.Run("runtime", func(t *testing.T) { checkRuntime(t, l) })
				t.Run("refresh", func(t *testing.T) { checkRefresh(t, l) })
				t.Run("plugin", func(t *testing.T) { checkPlugin(t, l) })
			})
			requireSame(t, before, snapshot(t))
		})
	}
}

func checkLab(t *testing.T, l *Lab) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, server := l.Pod(PodClient), l.Pod(PodServer)
	if client == nil || server == nil || client.Node != Node1 || server.Node != Node2 {
		t.Fatalf("pods %+v %+v, want client on %s and server on %s", client, server, Node1, Node2)
	}
	if !l.Node(Node1).PodCIDR.Contains(client.IP) || !l.Node(Node2).PodCIDR.Contains(server.IP) {
		t.Errorf("pod IPs %s, %s outside their nodes' pod CIDRs", client.IP, server.IP)
	}
	urls := []string{
		fmt.Sprintf("http://%s/", netip.AddrPortFrom(server.IP, ServerPort)),
		fmt.Sprintf("http://%s/", netip.AddrPortFrom(WebClusterIP, WebPort)),
		fmt.Sprintf("http://%s/", netip.AddrPortFrom(l.Node(Node1).IP, WebNodePort)),
		fmt.Sprintf("http://%s/", netip.AddrPortFrom(l.Node(Node2).IP, WebNodePort)),
	}
	for _, u := range urls {
		body, err := l.Fetch(ctx, PodClient, u)
		if err != nil || body != "pathtrace lab\n" {
			t.Errorf("client → %s: %q, %v", u, body, err)
		}
	}
	// kube-proxy rejects connections to a Service without endpoints.
	idle := fmt.Sprintf("http://%s/", netip.AddrPortFrom(IdleClusterIP, WebPort))
	if out, err := l.Fetch(ctx, PodClient, idle); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("client → %s (no endpoints): %q, %v; want connection refused", idle, out, err)
	}
	for _, n := range l.Nodes {
		out, err := run(ctx, l.Bins.IP, "-n", n.NetnsName, "-d", "link", "show", vxlanDev)
		if err != nil || !strings.Contains(string(out), "vxlan id 1") || !strings.Contains(string(out), "dstport 8472") {
			t.Errorf("node %s: %s: %s %v", n.Name, vxlanDev, out, err)
		}
	}
}
