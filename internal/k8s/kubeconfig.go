package k8s

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// KubeletKubeconfigs are where a node's kubelet keeps its kubeconfig
// (kubeadm's, then the one many other installers use): the last source of
// an API server.
var KubeletKubeconfigs = []string{"/etc/kubernetes/kubelet.conf", "/var/lib/kubelet/kubeconfig"}

// Kubeconfig is what pathtrace needs of a kubeconfig file: the current
// context's cluster and user.
type Kubeconfig struct {
	Path   string // the file it was read from
	Server *url.URL
	TLS    *tls.Config
	Token  string // bearer token ("" when the user authenticates with a certificate)
}

// kubeconfigFile is the part of a kubeconfig file that is read (the
// field names of client-go's clientcmd/api/v1).
type kubeconfigFile struct {
	CurrentContext string `json:"current-context"`
	Clusters       []struct {
		Name    string `json:"name"`
		Cluster struct {
			Server                   string `json:"server"`
			CertificateAuthority     string `json:"certificate-authority"`
			CertificateAuthorityData string `json:"certificate-authority-data"`
			InsecureSkipTLSVerify    bool   `json:"insecure-skip-tls-verify"`
			TLSServerName            string `json:"tls-server-name"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		Name string `json:"name"`
		User struct {
			ClientCertificate     string `json:"client-certificate"`
			ClientCertificateData string `json:"client-certificate-data"`
			ClientKey             string `json:"client-key"`
			ClientKeyData         string `json:"client-key-data"`
			Token                 string `json:"token"`
			TokenFile             string `json:"tokenFile"`
			Exec                  any    `json:"exec"`
			AuthProvider          any    `json:"auth-provider"`
		} `json:"user"`
	} `json:"users"`
	Contexts []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster string `json:"cluster"`
			User    string `json:"user"`
		} `json:"context"`
	} `json:"contexts"`
}

// KubeconfigPath is the kubeconfig to use: flag when given, else the first
// file of $KUBECONFIG (getenv), else the first of KubeletKubeconfigs that
// exists; "" when there is none.
func KubeconfigPath(flag string, getenv func(string) string) string {
	if flag != "" {
		return flag
	}
	for _, p := range filepath.SplitList(getenv("KUBECONFIG")) {
		if p != "" {
			return p
		}
	}
	for _, p := range KubeletKubeconfigs {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// LoadKubeconfig reads the kubeconfig at path: the current context's
// server, CA, client certificate and token, files named relative to the
// kubeconfig's directory. Users that authenticate with an exec or
// auth-provider plugin are refused: pathtrace runs no plugins.
func LoadKubeconfig(path string) (*Kubeconfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read kubeconfig: %w", err)
	}
	kc, err := parseKubeconfig(b, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	kc.Path = path
	return kc, nil
}

func parseKubeconfig(b []byte, dir string) (*Kubeconfig, error) {
	var f kubeconfigFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	ctxName := f.CurrentContext
	if ctxName == "" && len(f.Contexts) == 1 {
		ctxName = f.Contexts[0].Name
	}
	var clusterName, userName string
	found := false
	for _, c := range f.Contexts {
		if c.Name == ctxName {
			clusterName, userName, found = c.Context.Cluster, c.Context.User, true
		}
	}
	if !found {
		return nil, fmt.Errorf("no context %q", ctxName)
	}
	kc := &Kubeconfig{TLS: &tls.Config{MinVersion: tls.VersionTLS12}}
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	found = false
	for _, c := range f.Clusters {
		if c.Name != clusterName {
			continue
		}
		found = true
		u, err := url.Parse(c.Cluster.Server)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return nil, fmt.Errorf("cluster %q: server %q is not an http or https URL", clusterName, c.Cluster.Server)
		}
		kc.Server = u
		ca, err := material(c.Cluster.CertificateAuthorityData, rel(c.Cluster.CertificateAuthority))
		if err != nil {
			return nil, fmt.Errorf("cluster %q: certificate authority: %w", clusterName, err)
		}
		if ca != nil {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(ca) {
				return nil, fmt.Errorf("cluster %q: certificate authority holds no PEM certificate", clusterName)
			}
			kc.TLS.RootCAs = pool
		}
		kc.TLS.InsecureSkipVerify = c.Cluster.InsecureSkipTLSVerify
		kc.TLS.ServerName = c.Cluster.TLSServerName
	}
	if !found {
		return nil, fmt.Errorf("no cluster %q", clusterName)
	}
	for _, u := range f.Users {
		if u.Name != userName {
			continue
		}
		if u.User.Exec != nil || u.User.AuthProvider != nil {
			return nil, fmt.Errorf("user %q authenticates with a plugin, which pathtrace does not run", userName)
		}
		cert, err := material(u.User.ClientCertificateData, rel(u.User.ClientCertificate))
		if err != nil {
			return nil, fmt.Errorf("user %q: client certificate: %w", userName, err)
		}
		key, err := material(u.User.ClientKeyData, rel(u.User.ClientKey))
		if err != nil {
			return nil, fmt.Errorf("user %q: client key: %w", userName, err)
		}
		if (cert == nil) != (key == nil) {
			return nil, fmt.Errorf("user %q: a client certificate needs its key", userName)
		}
		if cert != nil {
			pair, err := tls.X509KeyPair(cert, key)
			if err != nil {
				return nil, fmt.Errorf("user %q: client certificate: %w", userName, err)
			}
			kc.TLS.Certificates = []tls.Certificate{pair}
		}
		kc.Token = u.User.Token
		if kc.Token == "" && u.User.TokenFile != "" {
			t, err := os.ReadFile(rel(u.User.TokenFile))
			if err != nil {
				return nil, fmt.Errorf("user %q: %w", userName, err)
			}
			kc.Token = strings.TrimSpace(string(t))
		}
	}
	return kc, nil
}

// material is base64 data when given, else the file's contents, else nil.
func material(data, file string) ([]byte, error) {
	switch {
	case data != "":
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return nil, errors.New("data is not base64")
		}
		return b, nil
	case file != "":
		return os.ReadFile(file)
	}
	return nil, nil
}
