package k8s

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
)

// Names is what pathtrace knows of a cluster's pods and Services: read
// when a trace starts and stored in its recording (as JSON), so replay
// names the same offline.
type Names struct {
	// Source says where the names came from: "apiserver https://...".
	Source   string    `json:"source,omitempty"`
	Pods     []Pod     `json:"pods,omitempty"`
	Services []Service `json:"services,omitempty"`
	// Netns names the pod whose network namespace has the inode, for the
	// namespaces of the machine that hold a pod's address.
	Netns map[uint32]string `json:"netns,omitempty"`
	// Nodes are the cluster's Nodes and their addresses (from the API
	// server).
	Nodes []Node `json:"nodes,omitempty"`
	// NodeNetns names the Node whose network namespace has the inode, for
	// the traced node namespaces of the machine that hold a Node's
	// address (NameNodeNetns).
	NodeNetns map[uint32]string `json:"node_netns,omitempty"`

	apiErr error // why the API server gave nothing, when it did not
}

// Pod is a pod and its addresses.
type Pod struct {
	Namespace   string       `json:"namespace"`
	Name        string       `json:"name"`
	Node        string       `json:"node,omitempty"`
	IPs         []netip.Addr `json:"ips,omitempty"`
	HostNetwork bool         `json:"host_network,omitempty"` // its addresses are its node's
}

// Key is "namespace/name".
func (p *Pod) Key() string { return p.Namespace + "/" + p.Name }

// Service is a Service, its addresses, ports and endpoints.
type Service struct {
	Namespace   string        `json:"namespace"`
	Name        string        `json:"name"`
	ClusterIPs  []netip.Addr  `json:"cluster_ips,omitempty"`
	ExternalIPs []netip.Addr  `json:"external_ips,omitempty"` // external IPs and load-balancer ingress IPs
	Ports       []ServicePort `json:"ports,omitempty"`
	Endpoints   []netip.Addr  `json:"endpoints,omitempty"`
}

// Key is "namespace/name".
func (s *Service) Key() string { return s.Namespace + "/" + s.Name }

// Node is a Node and its internal and external addresses.
type Node struct {
	Name string       `json:"name"`
	IPs  []netip.Addr `json:"ips,omitempty"`
}

// NameNodeNetns names, in NodeNetns, each network namespace (by inode)
// whose own addresses include a Node's: the traced node namespaces, on a
// node its own. A namespace no Node's address is in stays unnamed.
func (n *Names) NameNodeNetns(addrs map[uint32][]netip.Addr) {
	for inode, as := range addrs {
		for _, node := range n.Nodes {
			if slices.ContainsFunc(as, func(a netip.Addr) bool { return slices.Contains(node.IPs, a.Unmap()) }) {
				if n.NodeNetns == nil {
					n.NodeNetns = map[uint32]string{}
				}
				n.NodeNetns[inode] = node.Name
				break
			}
		}
	}
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name     string `json:"name,omitempty"`
	Protocol string `json:"protocol,omitempty"` // "TCP", "UDP", "SCTP"
	Port     uint16 `json:"port"`
	NodePort uint16 `json:"node_port,omitempty"`
}

// Config says where to look the names up.
type Config struct {
	// RuntimeEndpoint is --runtime-endpoint, the container runtime's CRI
	// socket (unix://PATH or PATH); "" tries RuntimeEndpoints.
	RuntimeEndpoint string
	// Kubeconfig is --kubeconfig; "" uses $KUBECONFIG, else the kubelet's
	// kubeconfig on the node (KubeconfigPath).
	Kubeconfig string
	Getenv     func(string) string // nil: os.Getenv
	// Timeout bounds the lookup; 0: 10 s.
	Timeout time.Duration
	// Log gets a debug line for each source that did not answer; nil:
	// slog.Default().
	Log *slog.Logger
}

// ErrNoSource says no source of names was found: no container runtime
// socket and no kubeconfig.
var ErrNoSource = errors.New("no container runtime socket and no kubeconfig: give --runtime-endpoint or --kubeconfig, or set $KUBECONFIG")

// Lookup reads the pods and Services of the cluster from its sources, in
// order: the container runtime over CRI (the node's pods, with their
// network namespaces), then the API server a kubeconfig names (every pod,
// and the Services with their endpoints), which names the pods both know.
// A source that does not answer is a debug line; only when none does is
// it an error, naming each.
func Lookup(ctx context.Context, cfg Config) (*Names, error) {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(cfg.Timeout, 10*time.Second))
	defer cancel()
	n := &Names{}
	var sources []string
	var errs []error
	none := 0
	if ep := runtimeEndpoint(cfg.RuntimeEndpoint); ep == "" {
		none++
	} else if pods, netns, err := criPods(ctx, ep); err != nil {
		log.Debug("no pod names from the container runtime", "endpoint", ep, "err", err)
		errs = append(errs, err)
	} else {
		n.Pods, sources = pods, append(sources, "cri "+ep)
		if len(netns) > 0 {
			n.Netns = netns
		}
	}
	if api, err := lookupAPI(ctx, cfg); errors.Is(err, ErrNoSource) {
		none++
		n.apiErr = err
	} else if err != nil {
		log.Debug("no pod and Service names from the API server", "err", err)
		errs = append(errs, err)
		n.apiErr = err
	} else {
		n.Pods = mergePods(n.Pods, api.Pods)
		n.Services, n.Nodes, sources = api.Services, api.Nodes, append(sources, api.Source)
	}
	if len(sources) == 0 {
		if none == 2 {
			return nil, ErrNoSource
		}
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(n.Pods, func(a, b Pod) int { return strings.Compare(a.Key(), b.Key()) })
	n.Source = strings.Join(sources, ", ")
	return n, nil
}

// lookupAPI reads the pods and Services from the API server;
// ErrNoSource when there is no kubeconfig.
func lookupAPI(ctx context.Context, cfg Config) (*Names, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	path := KubeconfigPath(cfg.Kubeconfig, getenv)
	if path == "" {
		return nil, ErrNoSource
	}
	kc, err := LoadKubeconfig(path)
	if err != nil {
		return nil, err
	}
	return NewClient(kc).Names(ctx)
}

// Names reads the pods, Services and Nodes from the API server.
func (c *Client) Names(ctx context.Context) (*Names, error) {
	pods, err := c.Pods(ctx)
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	svcs, err := c.Services(ctx)
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	slices.SortFunc(svcs, func(a, b Service) int { return strings.Compare(a.Key(), b.Key()) })
	// Node names are a nicety: an identity that may not list Nodes still
	// names pods and Services.
	nodes, err := c.Nodes(ctx)
	if err != nil && !errors.Is(err, errForbidden) {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	slices.SortFunc(nodes, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return &Names{Source: "apiserver " + c.base.String(), Pods: pods, Services: svcs, Nodes: nodes}, nil
}

// mergePods returns the runtime's pods with the API server's: the API
// server's version of a pod both know (it has the node), the others of
// each.
func mergePods(runtime, api []Pod) []Pod {
	out := slices.Clone(api)
	for _, p := range runtime {
		if !slices.ContainsFunc(api, func(a Pod) bool { return a.Key() == p.Key() }) {
			out = append(out, p)
		}
	}
	return out
}

// RefreshEvery is how often a live trace looks the names up again.
const RefreshEvery = 30 * time.Second

// Selection is what --pod and --service name.
type Selection struct {
	Pods     []string // "namespace/name"
	Services []string
}

// Check checks every name is NAMESPACE/NAME: one sentence when one is not.
func (s Selection) Check() error {
	for _, key := range s.Pods {
		if err := checkKey("--pod", key); err != nil {
			return err
		}
	}
	for _, key := range s.Services {
		if err := checkKey("--service", key); err != nil {
			return err
		}
	}
	return nil
}

// Empty reports whether nothing is selected.
func (s Selection) Empty() bool { return len(s.Pods) == 0 && len(s.Services) == 0 }

// Addrs returns the addresses of the selected pods (all of each pod's, both
// families) and Services (cluster IPs, external and load-balancer IPs, and
// the endpoints' addresses), each once, in order. A name that is not
// NAMESPACE/NAME, or not in n, is an error of one sentence.
func (n *Names) Addrs(sel Selection) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, key := range sel.Pods {
		if err := checkKey("--pod", key); err != nil {
			return nil, err
		}
		i := slices.IndexFunc(n.Pods, func(p Pod) bool { return p.Key() == key })
		if i < 0 {
			return nil, fmt.Errorf("--pod %s: no such pod (%s)", key, n.Source)
		}
		p := &n.Pods[i]
		if len(p.IPs) == 0 {
			return nil, fmt.Errorf("--pod %s: the pod has no address yet", key)
		}
		out = appendNew(out, p.IPs...)
	}
	for _, key := range sel.Services {
		if err := checkKey("--service", key); err != nil {
			return nil, err
		}
		i := slices.IndexFunc(n.Services, func(s Service) bool { return s.Key() == key })
		if i < 0 {
			return nil, fmt.Errorf("--service %s: no such Service (%s)", key, cmp.Or(n.Source, "no source"))
		}
		s := &n.Services[i]
		before := len(out)
		out = appendNew(out, s.ClusterIPs...)
		out = appendNew(out, s.ExternalIPs...)
		out = appendNew(out, s.Endpoints...)
		if len(out) == before && len(s.ClusterIPs)+len(s.ExternalIPs)+len(s.Endpoints) == 0 {
			return nil, fmt.Errorf("--service %s: the Service has no address and no endpoints", key)
		}
	}
	return out, nil
}

// checkKey checks a --pod or --service value is NAMESPACE/NAME.
func checkKey(flag, key string) error {
	ns, name, ok := strings.Cut(key, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("%s %q is not NAMESPACE/NAME", flag, key)
	}
	return nil
}

func appendNew(to []netip.Addr, as ...netip.Addr) []netip.Addr {
	for _, a := range as {
		if !slices.Contains(to, a) {
			to = append(to, a)
		}
	}
	return to
}

// Select looks the names up and returns them with the addresses sel
// names: what --pod and --service do. With nothing selected, a lookup that
// fails is no error: it is logged at debug level and the names are nil.
// Otherwise the error is one sentence for the user.
func Select(ctx context.Context, cfg Config, sel Selection, log *slog.Logger) (*Names, []netip.Addr, error) {
	if err := sel.Check(); err != nil {
		return nil, nil, err // before asking anyone
	}
	if cfg.Log == nil {
		cfg.Log = log
	}
	names, err := Lookup(ctx, cfg)
	if err != nil {
		if sel.Empty() {
			if log != nil {
				log.Debug("no Kubernetes names: pods and Services show as addresses", "err", err)
			}
			return nil, nil, nil
		}
		if len(sel.Services) > 0 {
			return nil, nil, fmt.Errorf("--service needs the Kubernetes API server, which could not be asked: %w", err)
		}
		return nil, nil, fmt.Errorf("--pod needs the container runtime or the Kubernetes API server, and neither could be asked: %w", err)
	}
	if log != nil {
		log.Debug("Kubernetes names", "source", names.Source, "pods", len(names.Pods), "services", len(names.Services))
	}
	if len(sel.Services) > 0 && names.apiErr != nil {
		return nil, nil, fmt.Errorf("--service needs the Kubernetes API server, which could not be asked: %w", names.apiErr)
	}
	ips, err := names.Addrs(sel)
	if err != nil {
		return nil, nil, err
	}
	return names, ips, nil
}

// DecodeNames decodes names stored in a recording (Names as JSON).
func DecodeNames(raw []byte) (*Names, error) {
	var n Names
	if err := json.Unmarshal(raw, &n); err != nil {
		return nil, fmt.Errorf("decode Kubernetes names: %w", err)
	}
	return &n, nil
}
