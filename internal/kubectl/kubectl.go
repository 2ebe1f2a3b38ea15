// Package kubectl is `kubectl pathtrace`: it finds the nodes a pod's
// traffic crosses, runs pathtrace on each in a privileged hostNetwork pod
// (--scope node, the recording streamed through the pod's log), brings the
// recordings back, and removes its pods on exit, interrupt or error. The
// caller merges the recordings (trace.ReplayFiles), as `pathtrace replay`
// does with files copied from the nodes.
package kubectl

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pathtrace/pathtrace/internal/filter"
	"github.com/pathtrace/pathtrace/internal/k8s"
	"github.com/pathtrace/pathtrace/internal/podstream"
)

// DefaultImage is the tracer pods' image (make image builds it).
const DefaultImage = "ghcr.io/pathtrace/pathtrace:latest"

// MaxNodes is the most nodes one run traces: a Service with endpoints on
// more nodes is narrowed with --to.
const MaxNodes = 16

// Label marks every pod kubectl pathtrace creates; its value is the run's
// session id.
const Label = "pathtrace.io/session"

// Options configures Run.
type Options struct {
	Client *k8s.Client
	// Namespace is where the tracer pods run; Image is theirs.
	Namespace string
	Image     string
	// Duration stops the tracers after this long (0: when ctx ends).
	Duration time.Duration
	// Hops and RingSize are the tracers' --hops (the hop kinds to attach,
	// as the user gave them, checked by the caller; "": every kind) and
	// --ring-size (MiB; 0: their default).
	Hops     string
	RingSize int
	// Dir receives each node's recording, NODE.pcapng.
	Dir string
	// StartTimeout bounds the wait for the tracer pods to run and attach;
	// 0: 2 minutes.
	StartTimeout time.Duration
	// OnReady is called once every node's tracer is attached.
	OnReady func(nodes []string)
	// Messages receives the tracers' own messages (warnings, their
	// summaries), each line prefixed with its node's name; nil drops them.
	Messages io.Writer
	Log      *slog.Logger
}

// Recording is one node's recording.
type Recording struct {
	Node, File string
	Bytes      int64
}

// Target is what Run traces: the pod's addresses, the nodes, and the
// filter expression (with its code, compiled here: the image has no
// tcpdump) that narrows the pod's packets to its peers.
type Target struct {
	PodIPs     []netip.Addr
	Nodes      []string
	Filter     string
	FilterCode string
}

// Resolve finds the pod, its peers and their nodes, and compiles the
// filter: the user's expression, and'ed with the peers' addresses when
// they are all IPv4. A user's expression needs tcpdump here.
func Resolve(ctx context.Context, c *k8s.Client, pod string, to, services []string, expr string) (Target, error) {
	var t Target
	pods, err := c.Pods(ctx)
	if err != nil {
		return t, fmt.Errorf("list pods: %w", err)
	}
	find := func(flag, key string) (*k8s.Pod, error) {
		if _, _, ok := strings.Cut(key, "/"); !ok {
			return nil, fmt.Errorf("%s %q: give NAMESPACE/NAME", flag, key)
		}
		for i := range pods {
			if pods[i].Key() == key {
				p := &pods[i]
				switch {
				case p.Node == "":
					return nil, fmt.Errorf("%s %s is not scheduled on a node yet", flag, key)
				case len(p.IPs) == 0:
					return nil, fmt.Errorf("%s %s has no address yet", flag, key)
				}
				return p, nil
			}
		}
		return nil, fmt.Errorf("%s %s: no such pod running", flag, key)
	}
	src, err := find("--pod", pod)
	if err != nil {
		return t, err
	}
	if src.HostNetwork {
		return t, fmt.Errorf("--pod %s uses its node's network (hostNetwork): pathtrace follows a pod by addresses of its own", pod)
	}
	t.PodIPs = src.IPs
	t.Nodes = []string{src.Node}
	var peers []netip.Addr
	addNode := func(n string) {
		if n != "" && !slices.Contains(t.Nodes, n) {
			t.Nodes = append(t.Nodes, n)
		}
	}
	for _, key := range to {
		p, err := find("--to", key)
		if err != nil {
			return t, err
		}
		addNode(p.Node)
		peers = append(peers, p.IPs...)
	}
	if len(services) > 0 {
		svcs, err := c.Services(ctx)
		if err != nil {
			return t, fmt.Errorf("list Services: %w", err)
		}
		for _, key := range services {
			i := slices.IndexFunc(svcs, func(s k8s.Service) bool { return s.Key() == key })
			if i < 0 {
				return t, fmt.Errorf("--service %s: no such Service", key)
			}
			s := svcs[i]
			if len(s.Endpoints) == 0 {
				return t, fmt.Errorf("--service %s has no endpoints: its packets go nowhere but the node of --pod (trace it with --pod alone)", key)
			}
			peers = append(peers, s.ClusterIPs...)
			peers = append(peers, s.ExternalIPs...)
			peers = append(peers, s.Endpoints...)
			for _, ep := range s.Endpoints {
				for _, p := range pods {
					if slices.Contains(p.IPs, ep) && !p.HostNetwork {
						addNode(p.Node)
					}
				}
			}
		}
	}
	if len(t.Nodes) > MaxNodes {
		return t, fmt.Errorf("the pods involved run on %d nodes, more than the %d one run traces: name the peers with --to", len(t.Nodes), MaxNodes)
	}
	return t, t.compile(ctx, peers, expr)
}

// compile sets the filter: the peers' addresses, of either family, and'ed
// with the user's expression.
func (t *Target) compile(ctx context.Context, peers []netip.Addr, user string) error {
	var uniq []netip.Addr
	for _, a := range peers {
		if !slices.Contains(uniq, a) {
			uniq = append(uniq, a)
		}
	}
	var p *filter.Program
	var err error
	switch {
	case len(uniq) > 0 && user == "":
		p, err = filter.Hosts(uniq)
	case user != "":
		expr := user
		if len(uniq) > 0 {
			hosts, herr := filter.Hosts(uniq)
			if herr != nil {
				return herr
			}
			expr = "(" + hosts.Expr + ") and (" + user + ")"
		}
		p, err = filter.Compile(ctx, expr)
		if errors.Is(err, filter.ErrNoCompiler) {
			return fmt.Errorf("%w where kubectl pathtrace runs (the nodes need none)", err)
		}
	default:
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := filter.Translate(p.Insns); err != nil {
		return fmt.Errorf("filter expression %q: %w", p.Expr, err)
	}
	t.Filter, t.FilterCode = p.Expr, p.Code()
	return nil
}

// Run traces target's nodes until opts.Duration passes or ctx ends, and
// returns the recordings (the nodes' files in opts.Dir). Its pods are
// deleted before it returns, whatever happened.
func Run(ctx context.Context, opts Options, target Target) (recs []Recording, err error) {
	log := cmp.Or(opts.Log, slog.Default())
	session, err := sessionID()
	if err != nil {
		return nil, err
	}
	r := &run{opts: opts, log: log, session: session, ns: cmp.Or(opts.Namespace, "default")}
	// Deleting takes its own time: a Ctrl-C must not cut it short.
	defer func() {
		if derr := r.deleteAll(context.WithoutCancel(ctx)); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	for _, node := range target.Nodes {
		name, err := r.create(ctx, node, target)
		if err != nil {
			return nil, fmt.Errorf("node %s: start pathtrace: %w", node, err)
		}
		r.pods = append(r.pods, tracerPod{node: node, name: name})
	}
	startCtx, cancel := context.WithTimeout(ctx, cmp.Or(opts.StartTimeout, defaultStartTimeout))
	defer cancel()
	for _, p := range r.pods {
		if err := r.waitStarted(startCtx, p); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("node %s: %w", p.node, err)
		}
	}
	return r.stream(ctx, startCtx)
}

// tracerPod is a pod Run created.
type tracerPod struct{ node, name string }

type run struct {
	opts    Options
	log     *slog.Logger
	session string
	ns      string
	pods    []tracerPod
}

func sessionID() (string, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("session id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// podName is the tracer pod's name on node: a DNS label. A name cut to
// 63 characters ends in a hash of the node's name, so that nodes whose
// names differ only after the cut get pods of their own.
func podName(session, node string) string {
	n := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, strings.ToLower(node))
	name := "pathtrace-" + session + "-" + n
	if len(name) > 63 {
		sum := sha256.Sum256([]byte(node))
		name = strings.TrimRight(name[:63-7], "-") + "-" + hex.EncodeToString(sum[:3])
	}
	return name
}

// defaultStartTimeout is Options.StartTimeout's default.
const defaultStartTimeout = 2 * time.Minute

// backstop is the --duration of the tracers with opts.Duration: the plugin
// stops them opts.Duration after the last attached, at most the start
// timeout after the first; they stop on their own only later than that.
func backstop(opts Options) time.Duration {
	if opts.Duration <= 0 {
		return 0
	}
	return opts.Duration + cmp.Or(opts.StartTimeout, defaultStartTimeout)
}

// Args are the tracer's arguments on a node: its pods' packets, every
// namespace of the node, the recording on stdout as base64 lines, the hops
// and ring size of opts, and the backstop of its duration.
func Args(t Target, opts Options) []string {
	args := []string{"--scope", "node", "--node-name", "$(NODE_NAME)", "-w", "-", "--log-stream"}
	for _, a := range t.PodIPs {
		args = append(args, "--pod-ip", a.String())
	}
	if d := backstop(opts); d > 0 {
		args = append(args, "--duration", d.String())
	}
	if opts.Hops != "" {
		args = append(args, "--hops", opts.Hops)
	}
	if opts.RingSize > 0 {
		args = append(args, "--ring-size", strconv.Itoa(opts.RingSize))
	}
	if t.Filter != "" {
		args = append(args, "--filter-code", t.FilterCode, "--", t.Filter)
	}
	return args
}

// PodSpec is the spec of a tracer pod on node: privileged, in the node's
// network and PID namespaces (its pods' namespaces are found through
// /proc and /run/netns), never restarted. The DaemonSet in deploy/ has
// the same privileges, for the same reasons (docs/cluster.md).
func PodSpec(node, image string, args []string) map[string]any {
	return map[string]any{
		"nodeName":                      node,
		"hostNetwork":                   true,
		"hostPID":                       true,
		"restartPolicy":                 "Never",
		"automountServiceAccountToken":  false,
		"terminationGracePeriodSeconds": 30,
		"tolerations":                   []any{map[string]any{"operator": "Exists"}},
		"containers": []any{map[string]any{
			"name":            "pathtrace",
			"image":           image,
			"imagePullPolicy": "IfNotPresent",
			"command":         []string{"/pathtrace"},
			"args":            args,
			"env": []any{map[string]any{"name": "NODE_NAME",
				"valueFrom": map[string]any{"fieldRef": map[string]any{"fieldPath": "spec.nodeName"}}}},
			"securityContext": map[string]any{"privileged": true},
			"volumeMounts": []any{
				map[string]any{"name": "netns", "mountPath": "/run/netns", "mountPropagation": "HostToContainer", "readOnly": true},
			},
		}},
		"volumes": []any{
			map[string]any{"name": "netns", "hostPath": map[string]any{"path": "/run/netns", "type": "DirectoryOrCreate"}},
		},
	}
}

func (r *run) create(ctx context.Context, node string, t Target) (string, error) {
	name := podName(r.session, node)
	pod := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "namespace": r.ns, "labels": map[string]string{
			"app.kubernetes.io/name": "pathtrace", Label: r.session}},
		"spec": PodSpec(node, cmp.Or(r.opts.Image, DefaultImage), Args(t, r.opts)),
	}
	if err := r.opts.Client.Do(ctx, "POST", "/api/v1/namespaces/"+url.PathEscape(r.ns)+"/pods", pod, nil); err != nil {
		return "", err
	}
	r.log.Debug("tracer pod created", "node", node, "pod", r.ns+"/"+name)
	return name, nil
}

// apiPod is the part of a pod's status read here.
type apiPod struct {
	Status struct {
		Phase             string `json:"phase"`
		Message           string `json:"message"`
		ContainerStatuses []struct {
			State struct {
				Waiting *struct {
					Reason, Message string
				} `json:"waiting"`
				Running    *struct{} `json:"running"`
				Terminated *struct {
					ExitCode int    `json:"exitCode"`
					Reason   string `json:"reason"`
					Message  string `json:"message"`
				} `json:"terminated"`
			} `json:"state"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

func (r *run) path(p tracerPod) string {
	return "/api/v1/namespaces/" + url.PathEscape(r.ns) + "/pods/" + url.PathEscape(p.name)
}

// waitStarted waits until the tracer's container runs (or ran): its log
// can be read. A container that cannot start is an error saying why.
func (r *run) waitStarted(ctx context.Context, p tracerPod) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last := "Pending"
	for {
		var st apiPod
		if err := r.opts.Client.Do(ctx, "GET", r.path(p), nil, &st); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("pathtrace's pod %s did not start (%s)", p.name, last)
			}
			return err
		}
		if len(st.Status.ContainerStatuses) > 0 {
			s := st.Status.ContainerStatuses[0].State
			switch {
			case s.Running != nil || s.Terminated != nil:
				return nil
			case s.Waiting != nil && s.Waiting.Reason != "":
				last = s.Waiting.Reason
				if s.Waiting.Message != "" {
					last += ": " + s.Waiting.Message
				}
				switch s.Waiting.Reason {
				case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError", "CreateContainerError", "RunContainerError":
					return fmt.Errorf("pathtrace's pod %s cannot start: %s", p.name, last)
				}
			}
		}
		if st.Status.Phase == "Failed" {
			return fmt.Errorf("pathtrace's pod %s failed: %s", p.name, cmp.Or(st.Status.Message, last))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pathtrace's pod %s did not start (%s)", p.name, last)
		case <-tick.C:
		}
	}
}

// stopGrace is how long the tracers have, once ctx ends, to finish their
// recordings and exit (their pods are deleted: the kubelet sends SIGTERM).
const stopGrace = 30 * time.Second

// stream reads every tracer's log into its recording until they all end.
// When ctx ends first, the pods are deleted, which stops the tracers: their
// recordings are finished and read to the end.
func (r *run) stream(ctx, startCtx context.Context) ([]Recording, error) {
	if err := os.MkdirAll(r.opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", r.opts.Dir, err)
	}
	// The streams outlive ctx by stopGrace: what the tracers write once
	// stopped is the end of their recordings.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stopOnce := sync.OnceFunc(func() {
		r.log.Debug("stopping the tracers")
		time.AfterFunc(stopGrace, cancel)
		r.deletePods(sctx) // an error comes back from the final deletion
	})
	stop := context.AfterFunc(ctx, stopOnce)
	defer stop()

	recs := make([]Recording, len(r.pods))
	errs := make([]error, len(r.pods))
	ready := make(chan int, len(r.pods))
	var wg sync.WaitGroup
	for i, p := range r.pods {
		recs[i] = Recording{Node: p.node, File: filepath.Join(r.opts.Dir, fileName(p.node))}
		wg.Go(func() {
			recs[i].Bytes, errs[i] = r.follow(sctx, p, recs[i].File, func() { ready <- i })
			if errs[i] != nil {
				stopOnce() // one node failing ends the run: the others' recordings are kept
			}
		})
	}
	go func() {
		seen := map[int]bool{}
		for len(seen) < len(r.pods) {
			select {
			case i := <-ready:
				seen[i] = true
			case <-startCtx.Done():
				if ctx.Err() == nil && len(seen) < len(r.pods) {
					r.log.Warn("some nodes' pathtrace did not attach in time: stopping", "attached", len(seen), "nodes", len(r.pods))
					stopOnce()
				}
				return
			case <-sctx.Done():
				return
			}
		}
		if r.opts.OnReady != nil {
			r.opts.OnReady(r.nodes())
		}
		if r.opts.Duration > 0 {
			// The window starts when every node is attached; the tracers'
			// own --duration (backstop) is only for a plugin gone away.
			t := time.AfterFunc(r.opts.Duration, stopOnce)
			context.AfterFunc(sctx, func() { t.Stop() })
		}
	}()
	wg.Wait()
	var all []error
	for i, err := range errs {
		if err != nil {
			all = append(all, fmt.Errorf("node %s: %w", r.pods[i].node, err))
		}
	}
	return recs, errors.Join(all...)
}

func (r *run) nodes() []string {
	var ns []string
	for _, p := range r.pods {
		ns = append(ns, p.node)
	}
	return ns
}

// fileName is a node's recording's name.
func fileName(node string) string {
	return strings.ReplaceAll(node, "/", "_") + ".pcapng"
}

// follow copies a tracer's recording from its log into file, calls ready
// at its first bytes (the tracer writes its header once attached), and
// returns when the log ends: the tracer exited. Its exit is checked.
func (r *run) follow(ctx context.Context, p tracerPod, file string, ready func()) (int64, error) {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, fmt.Errorf("create recording: %w", err)
	}
	defer f.Close()
	body, err := r.opts.Client.Stream(ctx, r.path(p)+"/log?container=pathtrace&follow=true")
	if err != nil {
		return 0, fmt.Errorf("read pathtrace's log: %w", err)
	}
	defer body.Close()
	var last string
	w := &firstWrite{w: f, first: ready}
	n, err := podstream.Decode(body, w, func(line string) {
		last = line
		if r.opts.Messages != nil {
			fmt.Fprintf(r.opts.Messages, "%s: %s\n", p.node, line)
		}
	})
	if err != nil {
		if ctx.Err() != nil {
			return n, fmt.Errorf("pathtrace did not stop within %s: its recording is cut short", stopGrace)
		}
		return n, fmt.Errorf("read pathtrace's log: %w", err)
	}
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("write recording: %w", err)
	}
	return n, r.exitStatus(ctx, p, n, last)
}

// exitStatus checks how a tracer whose log ended exited: an error, with its
// last message, unless it exited 0.
func (r *run) exitStatus(ctx context.Context, p tracerPod, n int64, last string) error {
	for range 40 {
		var st apiPod
		err := r.opts.Client.Do(ctx, "GET", r.path(p), nil, &st)
		if errors.Is(err, k8s.ErrNotFound) {
			return nil // deleted: stopped by us, its log read to the end
		}
		if err != nil {
			return err
		}
		if cs := st.Status.ContainerStatuses; len(cs) > 0 && cs[0].State.Terminated != nil {
			t := cs[0].State.Terminated
			if t.ExitCode == 0 || t.ExitCode == 143 && n > 0 { // 143: SIGTERM before Go's handler, after the header
				return nil
			}
			if last == "" {
				last = cmp.Or(t.Message, t.Reason)
			}
			return fmt.Errorf("pathtrace exited with status %d: %s", t.ExitCode, strings.TrimPrefix(last, "pathtrace: "))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil // its log ended; the status lags
}

// firstWrite calls first before its first write.
type firstWrite struct {
	w     io.Writer
	first func()
	done  bool
}

func (fw *firstWrite) Write(b []byte) (int, error) {
	if !fw.done && len(b) > 0 {
		fw.done = true
		fw.first()
	}
	return fw.w.Write(b)
}

// deleteAll deletes the tracer pods and waits until they are gone.
func (r *run) deleteAll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, stopGrace+15*time.Second)
	defer cancel()
	errs := []error{r.deletePods(ctx)}
	for _, p := range r.pods {
		for {
			err := r.opts.Client.Do(ctx, "GET", r.path(p), nil, &apiPod{})
			if errors.Is(err, k8s.ErrNotFound) {
				break
			}
			if ctx.Err() != nil {
				errs = append(errs, fmt.Errorf("pod %s/%s is still being deleted: see kubectl get pod -n %s %s", r.ns, p.name, r.ns, p.name))
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

// deletePods asks for the tracer pods' deletion: the kubelet stops their
// pathtrace with SIGTERM, which ends its recording, within stopGrace.
func (r *run) deletePods(ctx context.Context) error {
	var errs []error
	for _, p := range r.pods {
		err := r.opts.Client.Do(ctx, "DELETE", r.path(p)+fmt.Sprintf("?gracePeriodSeconds=%d", int(stopGrace/time.Second)), nil, nil)
		if err != nil && !errors.Is(err, k8s.ErrNotFound) {
			errs = append(errs, fmt.Errorf("delete pod %s/%s: %w", r.ns, p.name, err))
		}
	}
	return errors.Join(errs...)
}
