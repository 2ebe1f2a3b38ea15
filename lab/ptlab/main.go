// Command ptlab brings the Kubernetes lab (internal/k8slab) up or down:
// `make lab-up` and `make lab-down`. The lab keeps running after `ptlab
// up` returns; its state is in /var/lib/pathtrace-lab.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/pathtrace/pathtrace/internal/k8slab"
)

func main() {
	mode := flag.String("mode", string(k8slab.IPTables), "kube-proxy mode: iptables or nftables")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: ptlab [-mode iptables|nftables] up | down")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 || (*mode != string(k8slab.IPTables) && *mode != string(k8slab.NFTables)) {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch flag.Arg(0) {
	case "up":
		l, err := k8slab.Start(ctx, k8slab.Options{Mode: k8slab.ProxyMode(*mode), KeepLogs: "/tmp/pathtrace-lab-logs"})
		if err != nil {
			slog.Error("lab up", "err", err)
			os.Exit(1)
		}
		fmt.Printf("lab up (kube-proxy %s); kubectl: %s --kubeconfig %s get pods -o wide\n", l.Mode, l.Bins.Kubectl, l.Kubeconfig)
		for _, n := range l.Nodes {
			fmt.Printf("node %s: netns %s, %s, pods %s\n", n.Name, n.NetnsPath, n.IP, n.PodCIDR)
		}
		for _, p := range l.Pods() {
			fmt.Printf("pod %s/%s on %s: %s, netns %s\n", p.Namespace, p.Name, p.Node, p.IP, p.NetnsPath)
		}
		for _, s := range l.Services() {
			fmt.Printf("service %s/%s: %s:%d", s.Namespace, s.Name, s.ClusterIP, s.Port)
			if s.NodePort != 0 {
				fmt.Printf(", NodePort %d", s.NodePort)
			}
			fmt.Println()
		}
	case "down":
		if err := k8slab.Down(ctx, k8slab.DefaultDir); err != nil {
			slog.Error("lab down", "err", err)
			os.Exit(1)
		}
	default:
		flag.Usage()
		os.Exit(2)
	}
}
