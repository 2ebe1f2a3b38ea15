package k8slab

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// CacheEnv overrides where lab/k8s/build.sh keeps the binaries it builds.
const CacheEnv = "PATHTRACE_K8S_CACHE"

const defaultCache = "/var/cache/pathtrace/k8s"

// Binaries are the paths of the programs the lab runs.
type Binaries struct {
	APIServer, Kubelet, KubeProxy, Kubectl, Crictl, Flanneld, Pause string
	Etcd, Containerd, Ctr, Runc, Busybox, Nsenter, IP               string
	CNIDir                                                          string // bridge, host-local, portmap
}

// repoDir is the repository root, found from this file's path (the lab's
// build files are in lab/k8s).
func repoDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("locate repository: no caller information")
	}
	dir := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(dir, "lab", "k8s", "versions.env")); err != nil {
		return "", fmt.Errorf("locate repository: %w", err)
	}
	return dir, nil
}

// Versions reads lab/k8s/versions.env.
func Versions() (map[string]string, error) {
	root, err := repoDir()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(root, "lab", "k8s", "versions.env"))
	if err != nil {
		return nil, fmt.Errorf("read versions: %w", err)
	}
	defer f.Close()
	v := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, val, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			v[k] = val
		}
	}
	return v, sc.Err()
}

// FindBinaries locates the lab's programs: the Kubernetes ones in the
// cache lab/k8s/build.sh fills, the rest on PATH (scripts/lab-deps.sh
// installs them). The error names everything missing.
func FindBinaries() (Binaries, error) {
	var b Binaries
	root, err := repoDir()
	if err != nil {
		return b, err
	}
	v, err := Versions()
	if err != nil {
		return b, err
	}
	cache := os.Getenv(CacheEnv)
	if cache == "" {
		cache = defaultCache
	}
	src, err := os.ReadFile(filepath.Join(root, "lab", "k8s", "pause", "main.go"))
	if err != nil {
		return b, fmt.Errorf("read pause source: %w", err)
	}
	sum := sha256.Sum256(src)
	var missing []string
	built := func(dir, name string) string {
		p := filepath.Join(cache, dir, name)
		if _, err := os.Stat(filepath.Join(cache, dir, ".done")); err != nil {
			missing = append(missing, p)
		}
		return p
	}
	k8s := "kubernetes-" + v["K8S_VERSION"]
	b.APIServer = built(k8s, "kube-apiserver")
	b.Kubelet = built(k8s, "kubelet")
	b.KubeProxy = built(k8s, "kube-proxy")
	b.Kubectl = built(k8s, "kubectl")
	b.Crictl = built("crictl-"+v["CRICTL_VERSION"], "crictl")
	b.Flanneld = built("flannel-"+v["FLANNEL_VERSION"], "flanneld")
	b.Pause = built("pause-"+hex.EncodeToString(sum[:])[:12], "pause")
	look := func(name string) string {
		p, err := exec.LookPath(name)
		if err != nil {
			missing = append(missing, name)
		}
		return p
	}
	b.Etcd, b.Containerd, b.Ctr, b.Runc = look("etcd"), look("containerd"), look("ctr"), look("runc")
	b.Busybox, b.Nsenter, b.IP = look("busybox"), look("nsenter"), look("ip")
	look("containerd-shim-runc-v2")
	look("iptables")
	look("nft")
	look("conntrack")
	b.CNIDir = "/usr/lib/cni"
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		if _, err := os.Stat(filepath.Join(b.CNIDir, p)); err != nil {
			missing = append(missing, filepath.Join(b.CNIDir, p))
		}
	}
	if len(missing) > 0 {
		return b, fmt.Errorf("missing %s (scripts/lab-deps.sh installs and builds them)", strings.Join(missing, ", "))
	}
	return b, nil
}
