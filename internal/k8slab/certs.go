package k8slab

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is what the control plane authenticates with: a CA, the apiserver's
// serving certificate, the service account signing key and an admin token.
type pki struct {
	CA, Cert, Key, SAKey, Tokens string // file paths
	Token                        string
}

// writePKI makes a self-signed CA, a serving certificate for the apiserver
// (its underlay address, the Service CIDR's first address and the usual
// names), a service account key and a token file, all under dir.
func writePKI(dir string) (pki, error) {
	p := pki{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, "apiserver.crt"),
		Key: filepath.Join(dir, "apiserver.key"), SAKey: filepath.Join(dir, "sa.key"), Tokens: filepath.Join(dir, "tokens.csv")}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return p, fmt.Errorf("create pki dir: %w", err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, fmt.Errorf("generate ca key: %w", err)
	}
	now := time.Now().Add(-time.Hour)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pathtrace-lab-ca"},
		NotBefore: now, NotAfter: now.Add(10 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return p, fmt.Errorf("create ca certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, fmt.Errorf("generate apiserver key: %w", err)
	}
	first := ServiceCIDR.Addr().Next()
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now, NotAfter: now.Add(10 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"},
		IPAddresses: []net.IP{APIServerIP.AsSlice(), first.AsSlice(), net.IPv4(127, 0, 0, 1)}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &key.PublicKey, caKey)
	if err != nil {
		return p, fmt.Errorf("create apiserver certificate: %w", err)
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, fmt.Errorf("generate service account key: %w", err)
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return p, fmt.Errorf("generate token: %w", err)
	}
	p.Token = hex.EncodeToString(tok)
	files := map[string][]byte{
		p.CA:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		p.Cert:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		p.Tokens: []byte(p.Token + ",pathtrace-lab-admin,pathtrace-lab-admin,system:masters\n"),
	}
	for path, k := range map[string]*ecdsa.PrivateKey{p.Key: key, p.SAKey: saKey} {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return p, fmt.Errorf("marshal key: %w", err)
		}
		files[path] = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	for path, b := range files {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return p, fmt.Errorf("write %s: %w", filepath.Base(path), err)
		}
	}
	return p, nil
}

// kubeconfig is a kubeconfig for the admin token against the apiserver.
func (p pki) kubeconfig() string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: https://%s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: lab
  context: {cluster: lab, user: admin}
current-context: lab
`, net.JoinHostPort(APIServerIP.String(), fmt.Sprint(apiPort)), p.CA, p.Token)
}
