// Command flanneld is the lab's flannel: flannel's own packages (the
// Kubernetes subnet manager and the VXLAN backend) under a small main, so
// the lab builds it from the Go module proxy without flannel's cloud
// backends (one of their dependencies is not served by the proxy). It
// takes the few flags the lab passes, with flanneld's names and meanings;
// masquerading and forward rules are left out (the lab's node namespaces
// forward by default).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/flannel-io/flannel/pkg/backend"
	_ "github.com/flannel-io/flannel/pkg/backend/vxlan"
	"github.com/flannel-io/flannel/pkg/ipmatch"
	"github.com/flannel-io/flannel/pkg/subnet"
	"github.com/flannel-io/flannel/pkg/subnet/kube"
	"k8s.io/klog/v2"
)

func main() {
	var (
		kubeSubnetMgr = flag.Bool("kube-subnet-mgr", true, "use the Kubernetes API for subnet assignment (the only manager here)")
		kubeconfig    = flag.String("kubeconfig-file", "", "kubeconfig file")
		netConfPath   = flag.String("net-config-path", "/etc/kube-flannel/net-conf.json", "network configuration file")
		subnetFile    = flag.String("subnet-file", "/run/flannel/subnet.env", "file to write the subnet environment to")
		iface         = flag.String("iface", "", "interface to use for inter-host communication")
		prefix        = flag.String("kube-annotation-prefix", "flannel.alpha.coreos.com", "Node annotation prefix")
		_             = flag.Bool("ip-masq", false, "accepted for compatibility; masquerading is not set up")
	)
	klog.InitFlags(nil)
	flag.Parse()
	if !*kubeSubnetMgr {
		fmt.Fprintln(os.Stderr, "flanneld: only --kube-subnet-mgr is built in")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *kubeconfig, *prefix, *netConfPath, *subnetFile, *iface); err != nil {
		klog.Errorf("flanneld: %v", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, kubeconfig, prefix, netConfPath, subnetFile, iface string) error {
	sm, err := kube.NewSubnetManager(ctx, "", kubeconfig, prefix, netConfPath, false)
	if err != nil {
		return fmt.Errorf("create subnet manager: %w", err)
	}
	var config *subnet.Config
	for config == nil {
		if config, err = sm.GetNetworkConfig(ctx); err != nil {
			klog.Warningf("read network config: %v", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	}
	stack, err := ipmatch.GetIPFamily(config.EnableIPv4, config.EnableIPv6)
	if err != nil {
		return fmt.Errorf("ip family: %w", err)
	}
	ext, err := ipmatch.LookupExtIface(iface, "", "", stack, ipmatch.PublicIPOpts{})
	if err != nil {
		return fmt.Errorf("find interface %q: %w", iface, err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	be, err := backend.NewManager(ctx, sm, ext).GetBackend(config.BackendType)
	if err != nil {
		return fmt.Errorf("backend %s: %w", config.BackendType, err)
	}
	bn, err := be.RegisterNetwork(ctx, &wg, config)
	if err != nil {
		return fmt.Errorf("register network: %w", err)
	}
	l := bn.Lease()
	if err := sm.HandleSubnetFile(subnetFile, config, false, l.Subnet, l.IPv6Subnet, bn.MTU()); err != nil {
		return fmt.Errorf("write subnet file: %w", err)
	}
	klog.Infof("flannel is ready: subnet %s, mtu %d", l.Subnet, bn.MTU())
	wg.Add(1)
	go func() {
		defer wg.Done()
		bn.Run(ctx)
	}()
	if err := sm.CompleteLease(ctx, l, &wg); err != nil {
		klog.Errorf("complete lease: %v", err)
	}
	<-ctx.Done()
	return nil
}
