package k8slab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ProxyMode is kube-proxy's --proxy-mode.
type ProxyMode string

const (
	IPTables ProxyMode = "iptables"
	NFTables ProxyMode = "nftables"
)

// DefaultDir is where the lab keeps its state, configuration, logs and the
// containerds' roots; one lab at a time.
const DefaultDir = "/var/lib/pathtrace-lab"

// Options configures Start.
type Options struct {
	Mode ProxyMode // kube-proxy's mode; empty: IPTables
	Dir  string    // empty: DefaultDir
	// Log receives progress lines; nil: slog.Default().
	Log *slog.Logger
	// KeepLogs, if set, is a directory the logs are copied to when Start
	// fails (the lab's own directory goes with the lab).
	KeepLogs string
}

// Lab is a running lab. Close removes it.
type Lab struct {
	Dir        string
	Mode       ProxyMode
	Kubeconfig string   // admin kubeconfig (token auth) for kubectl
	Bins       Binaries // the programs it runs
	Nodes      []*Node

	pki   pki
	api   *api
	log   *slog.Logger
	state state
	pods  map[string]*Pod
}

// Node is a lab node: a network namespace with eth0 on UnderlayNet.
type Node struct {
	Name      string
	NetnsName string // under /run/netns
	NetnsPath string
	IP        netip.Addr   // eth0, the Node's InternalIP
	PodCIDR   netip.Prefix // flannel's subnet for the node
	dir       string       // the node's files
	socket    string       // containerd's socket
}

// Pod is a pod the lab runs.
type Pod struct {
	Namespace, Name, Node string
	UID                   string
	IP                    netip.Addr
	NetnsPath             string // the sandbox's network namespace, /run/netns/cni-<uuid>
}

// Service is a Service the lab created.
type Service struct {
	Namespace, Name string
	ClusterIP       netip.Addr
	Port, NodePort  uint16 // NodePort 0: ClusterIP only
	TargetPort      uint16
}

// state is what Down needs to remove a lab, kept in Dir/lab.json while the
// lab runs (make lab-down runs in another process than make lab-up).
type state struct {
	Mode    ProxyMode         `json:"mode"`
	Procs   []Proc            `json:"procs"`
	Netns   []string          `json:"netns"`   // node namespaces created
	Bridge  string            `json:"bridge"`  // root namespace bridge created
	Veths   []string          `json:"veths"`   // root namespace ends of the nodes' eth0
	Cgroups []string          `json:"cgroups"` // cgroup roots created, e.g. "/ptlab-node1"
	Sockets []string          `json:"sockets"` // containerd sockets, to find their shims
	Sysctls map[string]string `json:"sysctls"` // global sysctls kubelet changes: values before
	// NetnsBefore lists /run/netns before the lab (its pods' cni-* namespaces
	// are the new ones).
	NetnsBefore []string `json:"netns_before"`
	// Paths outside Dir that kubelet, containerd or the CNI plugins create:
	// nil entries for a path that did not exist, else its entries before.
	Paths map[string][]string `json:"paths"`
}

// globalSysctls are the sysctls kubelet sets at start
// (setupKernelTunables, protectKernelDefaults false).
var globalSysctls = []string{"kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory", "vm/panic_on_oom",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

// globalPaths are the places outside Dir that the lab's programs write
// to whatever their configuration says (the lab points everything else
// into Dir).
var globalPaths = []string{"/var/lib/kubelet", "/var/lib/cni", "/run/containerd", "/run/containerd/s",
	"/var/log/pods", "/var/log/containers", "/etc/cni", "/opt/cni", "/usr/libexec/kubernetes", "/etc/kubernetes", "/run/flannel"}

// Start brings a lab up: it removes a lab left in opts.Dir first, and on
// error removes what it made. About a minute on 2 cores.
func Start(ctx context.Context, opts Options) (_ *Lab, err error) {
	bins, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	l := &Lab{Dir: opts.Dir, Mode: opts.Mode, Bins: bins, log: opts.Log, pods: map[string]*Pod{}}
	if l.Dir == "" {
		l.Dir = DefaultDir
	}
	if l.Mode == "" {
		l.Mode = IPTables
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	if _, err := os.Stat(filepath.Join(l.Dir, "lab.json")); err == nil {
		l.log.Info("removing the lab left in " + l.Dir)
		if err := Down(ctx, l.Dir); err != nil {
			return nil, fmt.Errorf("remove previous lab: %w", err)
		}
	}
	if err := os.RemoveAll(l.Dir); err != nil {
		return nil, fmt.Errorf("remove %s: %w", l.Dir, err)
	}
	if err := os.MkdirAll(filepath.Join(l.Dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("create lab dir: %w", err)
	}
	l.state = state{Mode: l.Mode, Sysctls: map[string]string{}, Paths: map[string][]string{}}
	for _, s := range globalSysctls {
		if b, err := os.ReadFile("/proc/sys/" + s); err == nil {
			l.state.Sysctls[s] = strings.TrimSpace(string(b))
		}
	}
	for _, p := range globalPaths {
		ents, err := os.ReadDir(p)
		if err != nil {
			l.state.Paths[p] = nil
			continue
		}
		names := []string{}
		for _, e := range ents {
			names = append(names, e.Name())
		}
		l.state.Paths[p] = names
	}
	l.state.NetnsBefore = netnsNames()
	if err := l.save(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			l.log.Error("lab start failed; logs follow", "err", err)
			l.logTails(l.log, 15)
			if opts.KeepLogs != "" {
				if _, cerr := run(context.Background(), "cp", "-r", filepath.Join(l.Dir, "logs"), opts.KeepLogs); cerr == nil {
					l.log.Info("logs kept in " + opts.KeepLogs)
				}
			}
			if cerr := l.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("remove lab: %w", cerr))
			}
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	begin := time.Now()
	steps := []struct {
		what string
		f    func(context.Context) error
	}{
		{"control plane", l.startControlPlane},
		{"nodes", l.startNodes},
		{"workload", l.startWorkload},
	}
	for _, s := range steps {
		t := time.Now()
		if err := s.f(ctx); err != nil {
			return nil, fmt.Errorf("start %s: %w", s.what, err)
		}
		l.log.Info("lab: "+s.what+" up", "took", time.Since(t).Round(100*time.Millisecond))
	}
	l.log.Info("lab up", "mode", l.Mode, "took", time.Since(begin).Round(100*time.Millisecond))
	return l, nil
}

func (l *Lab) save() error {
	b, err := json.MarshalIndent(l.state, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(l.Dir, "lab.json"), b, 0o644); err != nil {
		return fmt.Errorf("save lab state: %w", err)
	}
	return nil
}

// run runs a command and returns its combined output.
func run(ctx context.Context, argv ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("run %s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

func netnsNames() []string {
	ents, _ := os.ReadDir("/run/netns")
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// Node returns the node called name, or nil.
func (l *Lab) Node(name string) *Node {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Pod returns the pod namespace/name (or name in Namespace), or nil.
func (l *Lab) Pod(name string) *Pod {
	if !strings.Contains(name, "/") {
		name = Namespace + "/" + name
	}
	return l.pods[name]
}

// Pods returns the lab's pods.
func (l *Lab) Pods() []*Pod {
	var ps []*Pod
	for _, k := range slices.Sorted(mapsKeys(l.pods)) {
		ps = append(ps, l.pods[k])
	}
	return ps
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Services returns the lab's Services.
func (l *Lab) Services() []Service {
	return []Service{
		{Namespace: Namespace, Name: ServiceWeb, ClusterIP: WebClusterIP, Port: WebPort, NodePort: WebNodePort, TargetPort: ServerPort},
		{Namespace: Namespace, Name: ServiceIdle, ClusterIP: IdleClusterIP, Port: WebPort, TargetPort: ServerPort},
	}
}

// logTails writes the last n lines of every log.
func (l *Lab) logTails(log *slog.Logger, n int) {
	tails := l.LogTails(n)
	for _, name := range slices.Sorted(mapsKeys(tails)) {
		log.Info("log "+name, "tail", "\n"+tails[name])
	}
}

// LogTails returns the last n lines of each of the lab's logs, by log name.
func (l *Lab) LogTails(n int) map[string]string {
	out := map[string]string{}
	ents, _ := os.ReadDir(filepath.Join(l.Dir, "logs"))
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(l.Dir, "logs", e.Name()))
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		out[e.Name()] = strings.Join(lines[max(0, len(lines)-n):], "\n")
	}
	return out
}
