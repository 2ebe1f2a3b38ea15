package k8s

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Client reads pods, Services and their endpoints from an API server's
// REST API (JSON, read-only).
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client
}

// errForbidden is a 401 or 403 from the API server.
var errForbidden = errors.New("forbidden")

// NewClient returns a client of the API server kc names.
func NewClient(kc *Kubeconfig) *Client {
	return &Client{base: kc.Server, token: kc.Token, hc: &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: kc.TLS.Clone(), Proxy: http.ProxyFromEnvironment},
	}}
}

// listPage is the envelope of a list answer.
type listPage[T any] struct {
	Metadata struct {
		Continue string `json:"continue"`
	} `json:"metadata"`
	Items []T `json:"items"`
}

// listAll gets every item of the list at path, page by page.
func listAll[T any](ctx context.Context, c *Client, path string) ([]T, error) {
	var all []T
	cont := ""
	for {
		q := url.Values{"limit": {"500"}}
		if cont != "" {
			q.Set("continue", cont)
		}
		var page listPage[T]
		if err := c.get(ctx, path+"?"+q.Encode(), &page); err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		if cont = page.Metadata.Continue; cont == "" {
			return all, nil
		}
	}
}

// get decodes the JSON answer to GET path into out.
func (c *Client) get(ctx context.Context, path string, out any) error {
	return c.Do(ctx, http.MethodGet, path, nil, out)
}

// ErrNotFound is the API server's 404.
var ErrNotFound = errors.New("not found")

// Do sends a request to the API server: body, if not nil, as JSON, and the
// JSON answer decoded into out (nil: dropped). A 404 is ErrNotFound, a
// 401 or 403 errForbidden, another error status an error with the
// server's message.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.send(ctx, c.hc, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", strings.ToLower(method), path, err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", strings.ToLower(method), path, err)
	}
	return nil
}

// Stream sends GET path and returns the answer's body as it comes (a
// pod's log with follow=true), with no time limit but ctx's.
func (c *Client) Stream(ctx context.Context, path string) (io.ReadCloser, error) {
	hc := *c.hc
	hc.Timeout = 0
	resp, err := c.send(ctx, &hc, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// send sends a request and returns a response of status 2xx; the body of
// any other is read for its message and closed.
func (c *Client) send(ctx context.Context, hc *http.Client, method, path string, body any) (*http.Response, error) {
	verb := strings.ToLower(method)
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode: %w", verb, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(path), rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", verb, path, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", verb, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	msg := bytes.TrimSpace(firstLine(b))
	var status struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &status) == nil && status.Message != "" {
		msg = []byte(status.Message)
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, fmt.Errorf("%s %s: %s: %s: %w", verb, path, resp.Status, msg, errForbidden)
	case http.StatusNotFound:
		return nil, fmt.Errorf("%s %s: %s: %w", verb, path, msg, ErrNotFound)
	}
	return nil, fmt.Errorf("%s %s: %s: %s", verb, path, resp.Status, msg)
}

// url is the server's URL of an API path with its query: the path goes
// after the server's own path, if it has one.
func (c *Client) url(p string) string {
	path, query, _ := strings.Cut(p, "?")
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawPath, u.RawQuery = "", query
	return u.String()
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return b
}

// apiPod is the part of a v1 Pod that is read.
type apiPod struct {
	Metadata apiMeta `json:"metadata"`
	Spec     struct {
		NodeName    string `json:"nodeName"`
		HostNetwork bool   `json:"hostNetwork"`
	} `json:"spec"`
	Status struct {
		Phase  string `json:"phase"`
		PodIP  string `json:"podIP"`
		PodIPs []struct {
			IP string `json:"ip"`
		} `json:"podIPs"`
	} `json:"status"`
}

type apiMeta struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels"`
}

// apiService is the part of a v1 Service that is read.
type apiService struct {
	Metadata apiMeta `json:"metadata"`
	Spec     struct {
		Type        string   `json:"type"`
		ClusterIP   string   `json:"clusterIP"`
		ClusterIPs  []string `json:"clusterIPs"`
		ExternalIPs []string `json:"externalIPs"`
		Ports       []struct {
			Name     string `json:"name"`
			Protocol string `json:"protocol"`
			Port     uint16 `json:"port"`
			NodePort uint16 `json:"nodePort"`
		} `json:"ports"`
	} `json:"spec"`
	Status struct {
		LoadBalancer struct {
			Ingress []struct {
				IP string `json:"ip"`
			} `json:"ingress"`
		} `json:"loadBalancer"`
	} `json:"status"`
}

// apiNode is the part of a v1 Node that is read.
type apiNode struct {
	Metadata apiMeta `json:"metadata"`
	Status   struct {
		Addresses []struct {
			Type    string `json:"type"`
			Address string `json:"address"`
		} `json:"addresses"`
	} `json:"status"`
}

// apiEndpointSlice is the part of a discovery.k8s.io/v1 EndpointSlice that
// is read.
type apiEndpointSlice struct {
	Metadata  apiMeta `json:"metadata"`
	Endpoints []struct {
		Addresses []string `json:"addresses"`
	} `json:"endpoints"`
}

// apiEndpoints is the part of a v1 Endpoints that is read (the fallback
// where EndpointSlices may not be listed, as with a kubelet's identity).
type apiEndpoints struct {
	Metadata apiMeta `json:"metadata"`
	Subsets  []struct {
		Addresses, NotReadyAddresses []struct {
			IP string `json:"ip"`
		}
	} `json:"subsets"`
}

// Pods lists the pods of every namespace that are not finished, with their
// addresses.
func (c *Client) Pods(ctx context.Context) ([]Pod, error) {
	items, err := listAll[apiPod](ctx, c, "/api/v1/pods")
	if err != nil {
		return nil, err
	}
	pods := make([]Pod, 0, len(items))
	for _, it := range items {
		if it.Status.Phase == "Succeeded" || it.Status.Phase == "Failed" {
			continue // its addresses may be another pod's by now
		}
		p := Pod{Namespace: it.Metadata.Namespace, Name: it.Metadata.Name, Node: it.Spec.NodeName, HostNetwork: it.Spec.HostNetwork}
		ips := []string{it.Status.PodIP}
		for _, a := range it.Status.PodIPs {
			ips = append(ips, a.IP)
		}
		p.IPs = addrs(nil, ips...)
		pods = append(pods, p)
	}
	return pods, nil
}

// Nodes lists the Nodes with their internal and external addresses.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	items, err := listAll[apiNode](ctx, c, "/api/v1/nodes")
	if err != nil {
		return nil, err
	}
	nodes := make([]Node, 0, len(items))
	for _, it := range items {
		n := Node{Name: it.Metadata.Name}
		for _, a := range it.Status.Addresses {
			if a.Type == "InternalIP" || a.Type == "ExternalIP" {
				n.IPs = addrs(n.IPs, a.Address)
			}
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// Services lists the Services of every namespace with their addresses,
// ports and endpoint addresses (from EndpointSlices, else from Endpoints;
// none where neither may be listed).
func (c *Client) Services(ctx context.Context) ([]Service, error) {
	items, err := listAll[apiService](ctx, c, "/api/v1/services")
	if err != nil {
		return nil, err
	}
	eps, err := c.endpoints(ctx)
	if err != nil {
		return nil, err
	}
	svcs := make([]Service, 0, len(items))
	for _, it := range items {
		s := Service{Namespace: it.Metadata.Namespace, Name: it.Metadata.Name}
		s.ClusterIPs = addrs(nil, append([]string{it.Spec.ClusterIP}, it.Spec.ClusterIPs...)...)
		s.ExternalIPs = addrs(nil, it.Spec.ExternalIPs...)
		for _, in := range it.Status.LoadBalancer.Ingress {
			s.ExternalIPs = addrs(s.ExternalIPs, in.IP)
		}
		for _, p := range it.Spec.Ports {
			s.Ports = append(s.Ports, ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port, NodePort: p.NodePort})
		}
		s.Endpoints = eps[s.Key()]
		svcs = append(svcs, s)
	}
	return svcs, nil
}

// endpoints are the endpoint addresses of each Service, by
// "namespace/name".
func (c *Client) endpoints(ctx context.Context) (map[string][]netip.Addr, error) {
	eps := map[string][]netip.Addr{}
	sls, err := listAll[apiEndpointSlice](ctx, c, "/apis/discovery.k8s.io/v1/endpointslices")
	if err == nil {
		for _, sl := range sls {
			svc := sl.Metadata.Labels["kubernetes.io/service-name"]
			if svc == "" {
				continue
			}
			k := sl.Metadata.Namespace + "/" + svc
			for _, e := range sl.Endpoints {
				eps[k] = addrs(eps[k], e.Addresses...)
			}
		}
		return eps, nil
	}
	if !errors.Is(err, errForbidden) {
		return nil, err
	}
	old, err := listAll[apiEndpoints](ctx, c, "/api/v1/endpoints")
	if errors.Is(err, errForbidden) {
		return eps, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range old {
		k := e.Metadata.Namespace + "/" + e.Metadata.Name
		for _, s := range e.Subsets {
			for _, a := range append(s.Addresses, s.NotReadyAddresses...) {
				eps[k] = addrs(eps[k], a.IP)
			}
		}
	}
	return eps, nil
}

// addrs appends the addresses among ss not in to yet; "", "None" and what
// does not parse are skipped.
func addrs(to []netip.Addr, ss ...string) []netip.Addr {
	for _, s := range ss {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			continue
		}
		a = a.Unmap()
		if !slices.Contains(to, a) {
			to = append(to, a)
		}
	}
	return to
}
