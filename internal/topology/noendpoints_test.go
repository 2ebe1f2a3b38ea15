package topology

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/pathtrace/pathtrace/internal/testutil"
)

// TestNoEndpoints builds the cluster with the Service without endpoints in
// each kube-proxy mode: a connection to its ClusterIP is refused (kube-proxy's
// reject answers ICMP port unreachable; without the rule the SYN would be
// routed out of eth0 and get no answer), and the Service with an endpoint
// still works.
func TestNoEndpoints(t *testing.T) {
	testutil.RequireRoot(t)
	for _, mode := range []KubeProxyMode{KubeProxyIPTables, KubeProxyNFTables} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			c := newCluster(t, Options{NoEndpoints: mode})
			startEcho(t, c.Pod(PodServer))
			if _, err := TCPExchange(context.Background(), c.Pod(PodClient), ClusterIP, "x"); err != nil {
				t.Error(err)
			}
			_, err := TCPExchange(context.Background(), c.Pod(PodClient), NoEndpointsAddr, "x")
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("exchange with %s, a Service without endpoints: %v, want connection refused", NoEndpointsAddr, err)
			}
			out, err := c.Node(Node1).Run(context.Background(), "iptables-save", "-t", "filter")
			if err != nil {
				t.Fatal(err)
			}
			has := bytes.Contains(out, []byte(NoEndpointsService+" has no endpoints"))
			if has != (mode == KubeProxyIPTables) {
				t.Errorf("filter table with %v has the REJECT rules: %v\n%s", mode, has, out)
			}
		})
	}
	if _, err := Build(context.Background(), Options{IPVS: true, NoEndpoints: KubeProxyIPTables}); err == nil ||
		!strings.Contains(err.Error(), "AddIPVSService") {
		t.Errorf("Build with IPVS and a Service without endpoints: %v, want an error pointing to AddIPVSService", err)
	}
}
