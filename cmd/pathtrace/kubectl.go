package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pathtrace/pathtrace/internal/k8s"
	"github.com/pathtrace/pathtrace/internal/kubectl"
	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/outfile"
	"github.com/pathtrace/pathtrace/internal/trace"
)

// pluginName is the name kubectl finds a plugin by: pathtrace answers to
// it (a link named so), as `kubectl pathtrace`.
const pluginName = "kubectl-pathtrace"

func newKubectlCmd(asPlugin bool) *cobra.Command {
	var (
		f            outputFlags
		pod          string
		to, services []string
		kubeconfig   string
		namespace    string
		image        string
		write        string
		duration     time.Duration
		count        int
		readyFile    string
		startTimeout time.Duration
		hops         string
		ringSize     int
		maxPerConn   int
	)
	use := "kubectl --pod NAMESPACE/NAME [--to NAMESPACE/NAME | --service NAMESPACE/NAME]... [flags] [filter expression]"
	if asPlugin {
		use = pluginName + " --pod NAMESPACE/NAME [--to NAMESPACE/NAME | --service NAMESPACE/NAME]... [flags] [filter expression]"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: "Trace a pod's packets across the nodes of a cluster (kubectl pathtrace)",
		Long: `kubectl pathtrace follows a pod's packets across the cluster's nodes: it finds
the nodes of the pod and of the pods and Services it talks to (--to, --service),
runs pathtrace on each in a privileged hostNetwork pod (--scope node, the
recording streamed back through the pod's log), and, when the trace ends
(--duration, or Ctrl-C), deletes its pods and prints one path per packet, the
nodes' halves joined across the tunnel on one clock (docs/cluster.md).

With --to or --service, only the pod's packets to and from them (their IPv4
and IPv6 addresses) are followed. The tracer pods run the image --image in --namespace;
they need privileges a namespace's Pod Security admission may refuse.`,
		Example: `  kubectl pathtrace --pod default/client --service default/web --duration 10s
  kubectl pathtrace --pod default/client --to default/server -w trace.pcapng 'tcp port 80'
  pathtrace replay trace.*.pcapng   # the nodes' recordings kept by -w, merged again`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case pod == "":
				return usageError{fmt.Errorf("--pod NAMESPACE/NAME names the pod to trace")}
			case duration < 0:
				return usageError{fmt.Errorf("--duration %s is negative", duration)}
			case count < 0:
				return usageError{fmt.Errorf("--count %d is negative", count)}
			}
			if hops != "" {
				if _, err := loader.ParseHops(hops); err != nil {
					return usageError{fmt.Errorf("--hops: %w", err)}
				}
			}
			if err := checkRingSize(ringSize); err != nil {
				return err
			}
			if !cmd.Flags().Changed("ring-size") {
				ringSize = 0 // the tracers' own default
			}
			if err := checkMaxPerConn(maxPerConn); err != nil {
				return err
			}
			if err := f.check(); err != nil {
				return err
			}
			ctx := cmd.Context()
			log := f.logger()
			path := kubeconfig
			if path == "" {
				path = pluginKubeconfig(os.Getenv)
			}
			if path == "" {
				return usageError{fmt.Errorf("no kubeconfig: give --kubeconfig, or set $KUBECONFIG")}
			}
			kc, err := k8s.LoadKubeconfig(path)
			if err != nil {
				return usageError{err}
			}
			client := k8s.NewClient(kc)
			target, err := kubectl.Resolve(ctx, client, pod, to, services, strings.TrimSpace(strings.Join(args, " ")))
			if err != nil {
				return usageError{err}
			}
			names, err := client.Names(ctx)
			if err != nil {
				log.Warn("no pod and Service names from the API server: paths show addresses", "err", err)
			}
			dir, keep, err := recordingsDir(write)
			if err != nil {
				return usageError{err}
			}
			defer os.RemoveAll(dir) // kept recordings are moved out first
			fmt.Fprintf(stderr, "pathtrace: tracing %s on %s\n", pod, strings.Join(target.Nodes, ", "))
			recs, err := kubectl.Run(ctx, kubectl.Options{
				Client: client, Namespace: namespace, Image: image,
				Duration: duration, Dir: dir, StartTimeout: startTimeout, Messages: stderr, Log: log,
				Hops: hops, RingSize: ringSize,
				OnReady: func(nodes []string) {
					msg := "until Ctrl-C"
					if duration > 0 {
						msg = "for " + duration.String()
					}
					fmt.Fprintf(stderr, "pathtrace: attached on %s: tracing %s\n", strings.Join(nodes, ", "), msg)
					if readyFile != "" {
						if err := outfile.WriteFile(readyFile, nil, 0o644); err != nil {
							log.Warn("cannot write the ready file", "err", err)
						}
					}
				},
			}, target)
			var files []string
			for _, r := range recs {
				if r.Bytes > 0 {
					files = append(files, r.File)
				}
			}
			if err != nil && len(files) == 0 {
				if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
					fmt.Fprintln(stderr, "pathtrace: stopped before the nodes' pathtrace started; its pods are removed")
					return nil
				}
				return err
			}
			if keep {
				files, err = keepRecordings(write, recs, files, err)
			}
			if len(files) == 0 {
				return fmt.Errorf("no node sent a recording")
			}
			// Ctrl-C stopped the trace: what was traced is still shown.
			rctx := context.WithoutCancel(ctx)
			stdout := newStdout(rctx)
			sum, rerr := trace.ReplayFiles(rctx, files, trace.ReplayOptions{Count: count, MaxPerConn: maxPerConn, Log: log, Kubernetes: names}, f.renderer(stdout))
			dropped := stdout.close()
			if rerr == nil {
				printSummary("", sum, dropped)
			}
			if err != nil {
				return fmt.Errorf("%w (the paths above are from what the nodes sent)", err)
			}
			return rerr
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&pod, "pod", "", "NAMESPACE/NAME of the pod whose packets to trace (required)")
	fl.StringArrayVar(&to, "to", nil, "NAMESPACE/NAME of a pod it talks to: its node is traced too (repeatable)")
	fl.StringArrayVar(&services, "service", nil, "NAMESPACE/NAME of a Service it talks to: the nodes of its endpoints are traced too (repeatable)")
	fl.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default: $KUBECONFIG, else ~/.kube/config)")
	fl.StringVarP(&namespace, "namespace", "n", "kube-system", "namespace of the tracer pods")
	fl.StringVar(&image, "image", kubectl.DefaultImage, "image of the tracer pods (make image builds it)")
	fl.StringVarP(&write, "write", "w", "", "keep the nodes' recordings: FILE with the node's name before its extension (trace.pcapng: trace.node1.pcapng, ...), for pathtrace replay")
	fl.DurationVar(&duration, "duration", 0, "stop after this long (0: at Ctrl-C)")
	fl.IntVarP(&count, "count", "c", 0, "print only the first COUNT packets (0: all)")
	fl.StringVar(&readyFile, "ready-file", "", "write this file once every node's pathtrace is attached, so scripts can start traffic")
	fl.DurationVar(&startTimeout, "start-timeout", 2*time.Minute, "how long the tracer pods may take to start and attach")
	fl.StringVar(&hops, "hops", "", "the nodes' pathtrace: "+hopsHelp)
	fl.IntVar(&ringSize, "ring-size", loader.DefaultRing>>20, "the nodes' pathtrace: "+ringSizeHelp)
	fl.IntVar(&maxPerConn, "max-per-conn", 0, maxPerConnHelp+" (the nodes record every packet; -w keeps them all)")
	return cmd
}

// pluginKubeconfig is kubectl's default kubeconfig: $KUBECONFIG's first
// file, else ~/.kube/config where it exists.
func pluginKubeconfig(getenv func(string) string) string {
	for _, p := range filepath.SplitList(getenv("KUBECONFIG")) {
		if p != "" {
			return p
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".kube", "config")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// recordingsDir is where the nodes' recordings are written while they come:
// next to -w's FILE (keep), else a temporary directory.
func recordingsDir(write string) (dir string, keep bool, err error) {
	if write == "" {
		dir, err = os.MkdirTemp("", "kubectl-pathtrace-")
		return dir, false, err
	}
	if fi, err := os.Stat(write); err == nil && fi.IsDir() {
		return "", false, fmt.Errorf("-w %s is a directory: give a file name, the nodes' names go into it", write)
	}
	dir, err = os.MkdirTemp(filepath.Dir(write), "."+filepath.Base(write)+".tmp-")
	if err != nil {
		return "", false, fmt.Errorf("-w %s: %w", write, err)
	}
	return dir, true, nil
}

// keepRecordings moves the nodes' recordings to their names after -w's
// FILE and removes the directory they came into.
func keepRecordings(write string, recs []kubectl.Recording, files []string, runErr error) ([]string, error) {
	ext := filepath.Ext(write)
	base := strings.TrimSuffix(write, ext)
	var kept []string
	for _, r := range recs {
		if r.Bytes == 0 {
			continue
		}
		name := base + "." + strings.ReplaceAll(r.Node, "/", "_") + ext
		if err := os.Rename(r.File, name); err != nil {
			return files, fmt.Errorf("keep the recording of %s: %w", r.Node, err)
		}
		kept = append(kept, name)
	}
	if len(recs) > 0 {
		os.RemoveAll(filepath.Dir(recs[0].File))
	}
	return kept, runErr
}
