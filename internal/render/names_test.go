package render

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// namedFixtures are paths whose Service ports an annotator named
// (internal/diagnose.Services): the ClusterIP SYN's DNAT, its SYN-ACK's
// un-DNAT, an IPVS connection, and a DNS query's DNAT.
func namedFixtures() []*stitch.Path {
	req, reply, ipvs, dns := crossNode(), clusterIPReply(), ipvsLocal(), sameNode()
	for _, p := range []*stitch.Path{req, reply} {
		p.Service = "default/web:http"
		for i := range p.Hops {
			if n := p.Hops[i].NAT; n != nil {
				n.Service = p.Service
			}
		}
	}
	ipvs.Service = "default/web:http"
	for i := range ipvs.Hops {
		if v := ipvs.Hops[i].IPVS; v != nil {
			v.ServiceName = ipvs.Service
		}
	}
	dns.Service = "kube-system/kube-dns:dns"
	for i := range dns.Hops {
		if n := dns.Hops[i].NAT; n != nil {
			n.Service = dns.Service
		}
	}
	return []*stitch.Path{req, reply, ipvs, dns}
}

// TestGoldenNames renders the named paths as text and JSON: the name after
// each translation and on the header line; "service" on the packet and on
// its nat and ipvs hops.
func TestGoldenNames(t *testing.T) {
	for file, mk := range map[string]func(io.Writer) Renderer{
		"names_text.golden": func(w io.Writer) Renderer { return NewText(w, TextOptions{}) },
		"names_json.golden": NewJSON,
	} {
		t.Run(file, func(t *testing.T) {
			var buf bytes.Buffer
			renderAll(t, mk(&buf), namedFixtures())
			checkGolden(t, file, buf.String())
		})
	}
	// Without names, the paths render as the main goldens show them.
	var named, plain bytes.Buffer
	renderAll(t, NewText(&named, TextOptions{}), namedFixtures())
	renderAll(t, NewText(&plain, TextOptions{}), []*stitch.Path{crossNode(), clusterIPReply(), ipvsLocal(), sameNode()})
	if got := strings.ReplaceAll(strings.ReplaceAll(named.String(), " (default/web:http)", ""), " (kube-system/kube-dns:dns)", ""); got != plain.String() {
		t.Errorf("names changed more than the names:\n%s\n---\n%s", got, plain.String())
	}
}

// podFixtures are namedFixtures whose pods an annotator named
// (internal/k8s.Pods): the source and destination pods of each packet (the
// ClusterIP SYN's the server behind the Service) and the pod of each hop
// in a pod's namespace.
func podFixtures() []*stitch.Path {
	paths := namedFixtures()
	pods := map[string]string{nsClient.name: "default/client", nsWeb.name: "default/server"}
	byAddr := map[string]string{"10.244.1.5": "default/client", "10.244.2.7": "default/server", "10.244.1.8": "default/server-2"}
	for _, p := range paths {
		p.SrcPod = byAddr[p.Src.Addr().String()]
		dst := p.Dst.Addr().String()
		for _, h := range p.Hops {
			if h.NAT != nil && !h.NAT.Reverse && h.NAT.Type == hop.DNAT {
				dst = h.NAT.To.Addr().String()
			}
			if h.IPVS != nil && h.IPVS.RealServer.IsValid() {
				dst = h.IPVS.RealServer.Addr().String()
			}
		}
		p.DstPod = byAddr[dst]
		for i := range p.Hops {
			p.Hops[i].Pod = pods[p.Hops[i].Netns]
		}
	}
	return paths
}

// TestGoldenPods renders the paths with pod names as text and JSON: the
// pods after the addresses on the header line (the backend after the
// Service port), in the namespace column; "src_pod", "dst_pod" on the
// packet and "pod" on its hops.
func TestGoldenPods(t *testing.T) {
	var text, js bytes.Buffer
	renderAll(t, NewText(&text, TextOptions{}), podFixtures())
	renderAll(t, NewJSON(&js), podFixtures())
	checkGolden(t, "pods_text.golden", text.String())
	checkGolden(t, "pods_json.golden", js.String())
}

// nodeFixtures are podFixtures whose Nodes an annotator named
// (internal/k8s.Pods): each hop's Node by its namespace or its pod's, and
// the ends of the VXLAN outer header.
func nodeFixtures() []*stitch.Path {
	paths := podFixtures()
	nodes := map[string]string{nsNode1.name: "worker-1", nsNode2.name: "worker-2", nsClient.name: "worker-1", nsWeb.name: "worker-2"}
	byAddr := map[string]string{"192.168.50.11": "worker-1", "192.168.50.12": "worker-2"}
	for _, p := range paths {
		for i := range p.Hops {
			h := &p.Hops[i]
			h.Node = nodes[h.Netns]
			if h.Outer != nil {
				o := *h.Outer
				o.SrcNode, o.DstNode = byAddr[o.Src.String()], byAddr[o.Dst.String()]
				h.Outer = &o
			}
		}
	}
	return paths
}

// TestGoldenNodes renders the paths with Node names as text and JSON: an
// "on NODE" line where the path enters a node, the Nodes after the outer
// header's addresses; "node" on hops, "src_node" and "dst_node" in
// "outer".
func TestGoldenNodes(t *testing.T) {
	var text, js bytes.Buffer
	renderAll(t, NewText(&text, TextOptions{}), nodeFixtures())
	renderAll(t, NewJSON(&js), nodeFixtures())
	checkGolden(t, "nodes_text.golden", text.String())
	checkGolden(t, "nodes_json.golden", js.String())
	for _, want := range []string{"  on worker-1\n", "  on worker-2\n", "192.168.50.11 (worker-1) → 192.168.50.12:8472 (worker-2)"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text has no %q", want)
		}
	}
	for _, want := range []string{`"node":"worker-1"`, `"src_node":"worker-1","dst_node":"worker-2"}`} {
		if !strings.Contains(js.String(), want) {
			t.Errorf("JSON has no %q", want)
		}
	}
}
