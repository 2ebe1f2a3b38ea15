package render

import (
	"bytes"
	"io"
	"strings"
	"testing"

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
