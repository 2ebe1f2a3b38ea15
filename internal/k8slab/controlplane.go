package k8slab

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// startControlPlane makes the underlay bridge in the root namespace, the
// PKI, and starts etcd and kube-apiserver on the bridge's address.
func (l *Lab) startControlPlane(ctx context.Context) error {
	if _, err := run(ctx, l.Bins.IP, "link", "add", underlayBridge, "type", "bridge"); err != nil {
		return err
	}
	l.state.Bridge = underlayBridge
	if err := l.save(); err != nil {
		return err
	}
	pfx := fmt.Sprintf("%s/%d", APIServerIP, UnderlayNet.Bits())
	if _, err := run(ctx, l.Bins.IP, "addr", "add", pfx, "dev", underlayBridge); err != nil {
		return err
	}
	if _, err := run(ctx, l.Bins.IP, "link", "set", underlayBridge, "up"); err != nil {
		return err
	}
	var err error
	if l.pki, err = writePKI(filepath.Join(l.Dir, "pki")); err != nil {
		return err
	}
	l.Kubeconfig = filepath.Join(l.Dir, "kubeconfig")
	if err := os.WriteFile(l.Kubeconfig, []byte(l.pki.kubeconfig()), 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeerPort)
	if _, err := l.startProc("etcd", "", nil, l.Bins.Etcd, "--name", "ptlab",
		"--data-dir", filepath.Join(l.Dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "ptlab="+peerURL, "--log-level", "warn"); err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	if err := poll(ctx, 100*time.Millisecond, "etcd health", func() (bool, error) {
		resp, err := hc.Get(etcdURL + "/health")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}); err != nil {
		return err
	}

	if _, err := l.startProc("kube-apiserver", "", nil, l.Bins.APIServer,
		"--etcd-servers", etcdURL,
		"--bind-address", APIServerIP.String(), "--advertise-address", APIServerIP.String(),
		"--secure-port", fmt.Sprint(apiPort),
		"--tls-cert-file", l.pki.Cert, "--tls-private-key-file", l.pki.Key, "--client-ca-file", l.pki.CA,
		"--token-auth-file", l.pki.Tokens, "--authorization-mode", "AlwaysAllow",
		"--service-account-key-file", l.pki.SAKey, "--service-account-signing-key-file", l.pki.SAKey,
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-cluster-ip-range", ServiceCIDR.String(),
		"--kubelet-preferred-address-types", "InternalIP",
		"--allow-privileged", "--profiling=false", "--enable-priority-and-fairness=false",
		"--cert-dir", filepath.Join(l.Dir, "pki", "apiserver"), "--v", "1"); err != nil {
		return err
	}
	if l.api, err = newAPI(l.pki); err != nil {
		return err
	}
	if err := poll(ctx, 200*time.Millisecond, "kube-apiserver /readyz", func() (bool, error) {
		return l.api.ready(ctx), nil
	}); err != nil {
		return err
	}
	// No controller-manager: the default ServiceAccount is the lab's to make.
	return poll(ctx, 200*time.Millisecond, "default ServiceAccount", func() (bool, error) {
		err := l.api.do(ctx, http.MethodPost, "/api/v1/namespaces/default/serviceaccounts",
			map[string]any{"metadata": map[string]any{"name": "default"}}, nil)
		return err == nil, err
	})
}
