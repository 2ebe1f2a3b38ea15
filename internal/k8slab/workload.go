package k8slab

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// startWorkload runs the client and server pods, makes the Services (web
// with an EndpointSlice for the server, as the endpointslice controller the
// lab does not run would; idle without endpoints) and waits until the
// client reaches web's ClusterIP through kube-proxy's rules.
func (l *Lab) startWorkload(ctx context.Context) error {
	pods := []struct {
		name, node string
		command    []string
	}{
		{PodClient, Node1, []string{"/bin/busybox", "sleep", "1000000"}},
		{PodServer, Node2, []string{"/bin/busybox", "httpd", "-f", "-p", fmt.Sprint(ServerPort), "-h", "/www"}},
	}
	for _, p := range pods {
		pod := map[string]any{
			"metadata": map[string]any{"name": p.name, "namespace": Namespace, "labels": map[string]string{"app": p.name}},
			"spec": map[string]any{
				"nodeName": p.node, "automountServiceAccountToken": false, "terminationGracePeriodSeconds": 1,
				"containers": []any{map[string]any{"name": p.name, "image": imageBusybox, "imagePullPolicy": "Never", "command": p.command}},
			},
		}
		if err := l.api.do(ctx, http.MethodPost, "/api/v1/namespaces/"+Namespace+"/pods", pod, nil); err != nil {
			return err
		}
	}
	for _, p := range pods {
		var o object
		if err := poll(ctx, 200*time.Millisecond, "pod "+p.name+" running", func() (bool, error) {
			err := l.api.do(ctx, http.MethodGet, "/api/v1/namespaces/"+Namespace+"/pods/"+p.name, nil, &o)
			return err == nil && o.Status.Phase == "Running" && o.condition("Ready") && o.Status.PodIP != "", err
		}); err != nil {
			return err
		}
		ip, err := netip.ParseAddr(o.Status.PodIP)
		if err != nil {
			return fmt.Errorf("pod %s: IP %q: %w", p.name, o.Status.PodIP, err)
		}
		pod := &Pod{Namespace: Namespace, Name: p.name, Node: p.node, UID: o.Metadata.UID, IP: ip}
		if pod.NetnsPath, err = podNetns(ctx, l.Bins.IP, ip); err != nil {
			return err
		}
		l.pods[Namespace+"/"+p.name] = pod
	}

	server := l.Pod(PodServer)
	for _, s := range l.Services() {
		spec := map[string]any{"clusterIP": s.ClusterIP.String(), "selector": map[string]string{"app": s.Name},
			"ports": []any{map[string]any{"name": "http", "port": s.Port, "targetPort": s.TargetPort, "protocol": "TCP"}}}
		if s.NodePort != 0 {
			spec["type"] = "NodePort"
			spec["ports"].([]any)[0].(map[string]any)["nodePort"] = s.NodePort
		}
		if s.Name == ServiceWeb {
			spec["selector"] = map[string]string{"app": PodServer}
		}
		svc := map[string]any{"metadata": map[string]any{"name": s.Name, "namespace": s.Namespace}, "spec": spec}
		if err := l.api.do(ctx, http.MethodPost, "/api/v1/namespaces/"+s.Namespace+"/services", svc, nil); err != nil {
			return err
		}
	}
	slice := map[string]any{
		"metadata": map[string]any{"name": ServiceWeb + "-lab", "namespace": Namespace, "labels": map[string]string{
			"kubernetes.io/service-name": ServiceWeb, "endpointslice.kubernetes.io/managed-by": "pathtrace-lab"}},
		"addressType": "IPv4",
		"endpoints": []any{map[string]any{
			"addresses":  []string{server.IP.String()},
			"conditions": map[string]bool{"ready": true, "serving": true, "terminating": false},
			"nodeName":   server.Node,
			"targetRef":  map[string]string{"kind": "Pod", "namespace": Namespace, "name": server.Name, "uid": server.UID},
		}},
		"ports": []any{map[string]any{"name": "http", "port": ServerPort, "protocol": "TCP"}},
	}
	if err := l.api.do(ctx, http.MethodPost, "/apis/discovery.k8s.io/v1/namespaces/"+Namespace+"/endpointslices", slice, nil); err != nil {
		return err
	}
	url := fmt.Sprintf("http://%s/", netip.AddrPortFrom(WebClusterIP, WebPort))
	return poll(ctx, 250*time.Millisecond, "client → "+url, func() (bool, error) {
		_, err := l.Fetch(ctx, PodClient, url)
		return err == nil, err
	})
}

// Fetch fetches url with busybox wget from the network namespace of pod
// (a name in Namespace or namespace/name), within 5 seconds, and returns
// the body.
func (l *Lab) Fetch(ctx context.Context, pod, url string) (string, error) {
	p := l.Pod(pod)
	if p == nil {
		return "", fmt.Errorf("fetch %s: no pod %s", url, pod)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := run(ctx, l.Bins.Nsenter, "--net="+p.NetnsPath, "--", l.Bins.Busybox, "wget", "-q", "-O", "-", url) // no -T: Debian 12's busybox 1.35 wget segfaults with it
	return string(out), err
}

// podNetns finds the network namespace under /run/netns whose interfaces
// have ip.
func podNetns(ctx context.Context, ipBin string, ip netip.Addr) (string, error) {
	for _, name := range netnsNames() {
		if !strings.HasPrefix(name, "cni-") {
			continue
		}
		out, err := run(ctx, ipBin, "-n", name, "-o", "addr", "show")
		if err == nil && strings.Contains(string(out), " "+ip.String()+"/") {
			return netnsPath(name), nil
		}
	}
	return "", fmt.Errorf("find the network namespace of %s: none under /run/netns has it", ip)
}
