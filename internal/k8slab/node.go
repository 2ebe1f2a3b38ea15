package k8slab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/pathtrace/pathtrace/internal/ociimage"
)

// startNodes makes both nodes' namespaces and starts, on each, containerd
// (with the lab's images), flanneld, kubelet and kube-proxy, then waits
// for both Nodes to be Ready.
func (l *Lab) startNodes(ctx context.Context) error {
	for i, name := range []string{Node1, Node2} {
		n := &Node{Name: name, NetnsName: name, NetnsPath: netnsPath(name), IP: nodeIPs[name],
			PodCIDR: nodePodCIDR[name], dir: filepath.Join(l.Dir, name)}
		n.socket = filepath.Join(n.dir, "containerd", "containerd.sock")
		l.Nodes = append(l.Nodes, n)
		if err := l.makeNode(ctx, n, i); err != nil {
			return fmt.Errorf("node %s: %w", name, err)
		}
	}
	images, err := l.writeImages()
	if err != nil {
		return err
	}
	for _, n := range l.Nodes {
		if err := l.startContainerd(ctx, n, images); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		if err := l.startFlannel(n); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		if err := l.startKubelet(n); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	for _, n := range l.Nodes {
		if err := poll(ctx, 250*time.Millisecond, "Node "+n.Name+" Ready", func() (bool, error) {
			var o object
			err := l.api.do(ctx, http.MethodGet, "/api/v1/nodes/"+n.Name, nil, &o)
			return err == nil && o.condition("Ready"), err
		}); err != nil {
			return err
		}
		if err := l.startKubeProxy(n); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return nil
}

// makeNode creates the node's namespace, its eth0 on the underlay bridge,
// the sysctls a node has, its cgroup root, the Node object (with its pod
// CIDR: there is no controller-manager to allocate one) and its
// configuration files.
func (l *Lab) makeNode(ctx context.Context, n *Node, i int) error {
	ip := l.Bins.IP
	if _, err := run(ctx, ip, "netns", "add", n.NetnsName); err != nil {
		return err
	}
	l.state.Netns = append(l.state.Netns, n.NetnsName)
	if err := l.save(); err != nil {
		return err
	}
	host := fmt.Sprintf("ptlab-veth%d", i+1)
	l.state.Veths = append(l.state.Veths, host)
	cmds := [][]string{
		{ip, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", n.NetnsName},
		{ip, "link", "set", host, "master", underlayBridge, "up"},
		{ip, "-n", n.NetnsName, "link", "set", "lo", "up"},
		{ip, "-n", n.NetnsName, "addr", "add", fmt.Sprintf("%s/%d", n.IP, UnderlayNet.Bits()), "dev", "eth0"},
		{ip, "-n", n.NetnsName, "link", "set", "eth0", "up"},
		// Service addresses leave as a node's default route would take
		// them: forwarded, so that kube-proxy's filter rules see them.
		{ip, "-n", n.NetnsName, "route", "add", ServiceCIDR.String(), "via", APIServerIP.String(), "dev", "eth0"},
		{ip, "netns", "exec", n.NetnsName, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{ip, "netns", "exec", n.NetnsName, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"},
	}
	for _, c := range cmds {
		if _, err := run(ctx, c...); err != nil {
			return err
		}
	}
	if err := l.makeCgroup("/" + n.Name); err != nil {
		return err
	}
	node := map[string]any{
		"metadata": map[string]any{"name": n.Name, "labels": map[string]string{
			"kubernetes.io/hostname": n.Name, "kubernetes.io/os": "linux"},
			// flanneld writes its annotations into the map it reads: a Node
			// without annotations (before kubelet adds its own) panics it.
			"annotations": map[string]string{"pathtrace.lab/node": n.Name}},
		"spec": map[string]any{"podCIDR": n.PodCIDR.String(), "podCIDRs": []string{n.PodCIDR.String()}},
	}
	if err := l.api.do(ctx, http.MethodPost, "/api/v1/nodes", node, nil); err != nil {
		return err
	}
	return l.writeNodeConfig(n)
}

// writeNodeConfig writes the node's containerd, CNI, flannel, kubelet and
// kube-proxy configuration, every path in it under the node's directory.
func (l *Lab) writeNodeConfig(n *Node) error {
	d := n.dir
	cni, _ := json.Marshal(map[string]any{
		"cniVersion": "0.4.0", "name": "ptlab",
		"plugins": []any{
			map[string]any{"type": "bridge", "bridge": bridgeDev, "isGateway": true, "isDefaultGateway": true,
				"hairpinMode": true, "ipMasq": false, "mtu": 1450,
				"ipam": map[string]any{"type": "host-local", "dataDir": filepath.Join(d, "cni", "ipam"),
					"ranges": [][]map[string]string{{{"subnet": n.PodCIDR.String()}}}}},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	})
	files := map[string]string{
		"cni/net.d/10-ptlab.conflist": string(cni),
		"containerd/config.toml": fmt.Sprintf(`version = 2
root = "%[1]s/containerd/root"
state = "%[1]s/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "%[2]s"
[plugins."io.containerd.internal.v1.opt"]
  path = "%[1]s/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "%[3]s"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "%[4]s"
        Root = "%[1]s/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "%[5]s"
    conf_dir = "%[1]s/cni/net.d"
`, d, n.socket, imagePause, l.Bins.Runc, l.Bins.CNIDir),
		"flannel/net-conf.json": fmt.Sprintf(`{"Network": %q, "EnableIPv4": true, "Backend": {"Type": "vxlan"}}`, ClusterCIDR),
		"kubelet/config.yaml": fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /%[2]s
failSwapOn: false
containerRuntimeEndpoint: unix://%[3]s
podLogsDir: %[1]s/pod-logs
volumePluginDir: %[1]s/kubelet/volume-plugins
address: %[4]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
resolvConf: ""
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
`, d, n.Name, n.socket, n.IP),
		"kube-proxy/config.yaml": fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %[1]s
hostnameOverride: %[2]s
mode: %[3]s
clusterCIDR: %[4]s
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
`, l.Kubeconfig, n.Name, l.Mode, ClusterCIDR),
	}
	for name, content := range files {
		p := filepath.Join(d, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Dir(p), err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// writeImages writes the OCI archives of the sandbox and the pods' images.
func (l *Lab) writeImages() ([]string, error) {
	bb, bbEntry := busyboxImage(l.Bins.Busybox)
	images := []struct {
		name, file string
		files      []ociimage.File
		entry      []string
	}{
		{imagePause, "pause.tar", []ociimage.File{{Name: "pause", From: l.Bins.Pause, Mode: 0o755}}, []string{"/pause"}},
		{imageBusybox, "busybox.tar", bb, bbEntry},
	}
	var paths []string
	for _, im := range images {
		b, err := ociimage.Archive(im.name, runtime.GOARCH, im.files, im.entry)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", im.name, err)
		}
		p := filepath.Join(l.Dir, "images", im.file)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, fmt.Errorf("image %s: %w", im.name, err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return nil, fmt.Errorf("image %s: %w", im.name, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// startContainerd starts the node's containerd in its namespace and
// imports the images into its CRI namespace (k8s.io).
func (l *Lab) startContainerd(ctx context.Context, n *Node, images []string) error {
	l.state.Sockets = append(l.state.Sockets, n.socket)
	if _, err := l.startProc("containerd-"+n.Name, n.NetnsName, nil, l.Bins.Containerd,
		"--config", filepath.Join(n.dir, "containerd", "config.toml")); err != nil {
		return err
	}
	if err := poll(ctx, 100*time.Millisecond, "containerd socket", func() (bool, error) {
		_, err := run(ctx, l.Bins.Ctr, "--address", n.socket, "version")
		return err == nil, err
	}); err != nil {
		return err
	}
	for _, im := range images {
		if _, err := run(ctx, l.Bins.Ctr, "--address", n.socket, "-n", "k8s.io", "images", "import", im); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) startFlannel(n *Node) error {
	_, err := l.startProc("flanneld-"+n.Name, n.NetnsName, []string{"NODE_NAME=" + n.Name}, l.Bins.Flanneld,
		"--kube-subnet-mgr", "--kubeconfig-file", l.Kubeconfig,
		"--net-config-path", filepath.Join(n.dir, "flannel", "net-conf.json"),
		"--subnet-file", filepath.Join(n.dir, "flannel", "subnet.env"), "--iface", "eth0")
	return err
}

func (l *Lab) startKubelet(n *Node) error {
	_, err := l.startProc("kubelet-"+n.Name, n.NetnsName, nil, l.Bins.Kubelet,
		"--config", filepath.Join(n.dir, "kubelet", "config.yaml"), "--kubeconfig", l.Kubeconfig,
		"--root-dir", filepath.Join(n.dir, "kubelet", "root"), "--cert-dir", filepath.Join(n.dir, "kubelet", "pki"),
		"--hostname-override", n.Name, "--node-ip", n.IP.String(), "--v", "1")
	return err
}

func (l *Lab) startKubeProxy(n *Node) error {
	_, err := l.startProc("kube-proxy-"+n.Name, n.NetnsName, nil, l.Bins.KubeProxy,
		"--config", filepath.Join(n.dir, "kube-proxy", "config.yaml"), "--v", "1")
	return err
}

// makeCgroup creates the cgroup root in every mounted hierarchy; kubelet
// on cgroup v1 wants it in each, and cpuset's needs its CPUs and memory
// nodes copied from the parent.
func (l *Lab) makeCgroup(root string) error {
	l.state.Cgroups = append(l.state.Cgroups, root)
	if err := l.save(); err != nil {
		return err
	}
	for _, m := range cgroupMounts() {
		dir := filepath.Join(m, root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(m, f)); err == nil && filepath.Base(m) == "cpuset" {
				if err := os.WriteFile(filepath.Join(dir, f), b, 0); err != nil {
					return fmt.Errorf("set %s of %s: %w", f, dir, err)
				}
			}
		}
	}
	return nil
}

// cgroupMounts lists the mount points of cgroup and cgroup2 filesystems.
func cgroupMounts() []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var ms []string
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		fs, pf := strings.Fields(post), strings.Fields(pre)
		if len(fs) > 0 && (fs[0] == "cgroup" || fs[0] == "cgroup2") && len(pf) > 4 {
			ms = append(ms, pf[4])
		}
	}
	return ms
}

// ImportImage imports an OCI image archive into every node's containerd,
// where the kubelet finds it (the CRI namespace k8s.io).
func (l *Lab) ImportImage(ctx context.Context, archive string) error {
	for _, n := range l.Nodes {
		if _, err := run(ctx, l.Bins.Ctr, "--address", n.socket, "-n", "k8s.io", "images", "import", archive); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return nil
}
