package main

import (
	"context"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/pathtrace/pathtrace/internal/k8s"
	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/trace"
)

// kubeFlags choose traffic by Kubernetes names: --pod, --service, and
// where a live trace reads the names (--runtime-endpoint, --kubeconfig).
type kubeFlags struct {
	pods, services  []string
	kubeconfig      string
	runtimeEndpoint string
}

func (k *kubeFlags) register(cmd *cobra.Command, live bool) {
	fl := cmd.Flags()
	if live {
		fl.StringArrayVar(&k.pods, "pod", nil, "NAMESPACE/NAME of a pod to follow, by all its addresses (repeatable); as --pod-ip for each, looked up in the container runtime (--runtime-endpoint) or the API server (--kubeconfig)")
		fl.StringArrayVar(&k.services, "service", nil, "NAMESPACE/NAME of a Service to follow: its cluster, external and load-balancer IPs and its endpoints' addresses (repeatable), looked up in the API server (--kubeconfig)")
		fl.StringVar(&k.runtimeEndpoint, "runtime-endpoint", "", "CRI socket of the container runtime that names the node's pods and their network namespaces (default: containerd's, else CRI-O's, else cri-dockerd's, where there is one)")
		fl.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig of the API server that names pods and Services (default: $KUBECONFIG, else the kubelet's, /etc/kubernetes/kubelet.conf); without it and a runtime, paths show addresses")
		return
	}
	fl.StringArrayVar(&k.pods, "pod", nil, "render only packets of this pod, NAMESPACE/NAME, by its addresses as the recording names them (repeatable)")
	fl.StringArrayVar(&k.services, "service", nil, "render only packets of this Service, NAMESPACE/NAME, by its addresses and endpoints as the recording names them (repeatable)")
}

func (k *kubeFlags) selection() k8s.Selection {
	return k8s.Selection{Pods: k.pods, Services: k.services}
}

// resolve looks the cluster's names up for a live trace and adds the
// addresses of --pod and --service to the pod IPs of opts. Without them, a
// lookup that fails is a debug line; with them, a usage error.
func (k *kubeFlags) resolve(ctx context.Context, opts *trace.Options) error {
	cfg := k8s.Config{RuntimeEndpoint: k.runtimeEndpoint, Kubeconfig: k.kubeconfig, Log: opts.Log}
	names, ips, err := k8s.Select(ctx, cfg, k.selection(), opts.Log)
	if err != nil {
		return usageError{err}
	}
	opts.Kubernetes = names
	opts.KubeLookup = func(ctx context.Context) (*k8s.Names, error) { return k8s.Lookup(ctx, cfg) }
	opts.KubeRefresh = k8s.RefreshEvery
	for _, a := range ips {
		if !slices.Contains(opts.Loader.PodIPs, a) {
			opts.Loader.PodIPs = append(opts.Loader.PodIPs, a)
		}
	}
	if len(opts.Loader.PodIPs) > loader.MaxPodIPs {
		return usageError{fmt.Errorf("--pod, --service and --pod-ip give %d addresses, at most %d can be followed", len(opts.Loader.PodIPs), loader.MaxPodIPs)}
	}
	return nil
}
