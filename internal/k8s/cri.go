package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RuntimeEndpoints are the container runtimes' CRI sockets a node may
// have, tried in order when no --runtime-endpoint is given (the kubelet's
// own default list, as crictl has it).
var RuntimeEndpoints = []string{
	"unix:///run/containerd/containerd.sock",
	"unix:///run/crio/crio.sock",
	"unix:///var/run/cri-dockerd.sock",
}

// runtimeEndpoint is the CRI endpoint to use: flag when given, else the
// first of RuntimeEndpoints whose socket exists; "" when none does.
func runtimeEndpoint(flag string) string {
	if flag != "" {
		if !strings.Contains(flag, "://") {
			flag = "unix://" + flag
		}
		return flag
	}
	for _, e := range RuntimeEndpoints {
		if _, err := os.Stat(strings.TrimPrefix(e, "unix://")); err == nil {
			return e
		}
	}
	return ""
}

// criPods asks the container runtime at endpoint (unix://PATH) for the
// pod sandboxes that are ready: each pod's name, namespace and addresses,
// and its network namespace's inode, from the sandbox's runtime spec
// (verbose status; a sandbox without one has none).
func criPods(ctx context.Context, endpoint string) ([]Pod, map[uint32]string, error) {
	path, ok := strings.CutPrefix(endpoint, "unix://")
	if !ok {
		return nil, nil, fmt.Errorf("runtime endpoint %q is not unix://PATH", endpoint)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, nil, fmt.Errorf("runtime endpoint: %w", err)
	}
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", endpoint, err)
	}
	defer conn.Close()
	rs := runtime.NewRuntimeServiceClient(conn)
	list, err := rs.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{
		State: &runtime.PodSandboxStateValue{State: runtime.PodSandboxState_SANDBOX_READY},
	}})
	if err != nil {
		return nil, nil, fmt.Errorf("list pod sandboxes at %s: %w", endpoint, err)
	}
	var pods []Pod
	netns := map[uint32]string{}
	for _, sb := range list.Items {
		st, err := rs.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: sb.Id, Verbose: true})
		if err != nil || st.Status == nil || st.Status.Metadata == nil {
			continue // gone since the list
		}
		s := st.Status
		p := Pod{Namespace: s.Metadata.Namespace, Name: s.Metadata.Name}
		if l := s.Linux; l != nil && l.Namespaces != nil && l.Namespaces.Options != nil {
			p.HostNetwork = l.Namespaces.Options.Network == runtime.NamespaceMode_NODE
		}
		if n := s.Network; n != nil {
			ips := []string{n.Ip}
			for _, a := range n.AdditionalIps {
				ips = append(ips, a.GetIp())
			}
			p.IPs = addrs(nil, ips...)
		}
		pods = append(pods, p)
		if ino, ok := sandboxNetns(st.Info); ok && !p.HostNetwork {
			netns[ino] = p.Key()
		}
	}
	return pods, netns, nil
}

// sandboxNetns is the inode of the network namespace in a sandbox's
// verbose info: the runtime spec's network namespace path (containerd and
// CRI-O put the spec under "info").
func sandboxNetns(info map[string]string) (uint32, bool) {
	var v struct {
		RuntimeSpec struct {
			Linux struct {
				Namespaces []struct {
					Type string `json:"type"`
					Path string `json:"path"`
				} `json:"namespaces"`
			} `json:"linux"`
		} `json:"runtimeSpec"`
	}
	if json.Unmarshal([]byte(info["info"]), &v) != nil {
		return 0, false
	}
	for _, ns := range v.RuntimeSpec.Linux.Namespaces {
		if ns.Type != "network" || ns.Path == "" {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(ns.Path, &st) != nil {
			return 0, false
		}
		return uint32(st.Ino), true
	}
	return 0, false
}
