package render

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// node1Report is a small node report of node1 (kube-proxy in iptables
// mode, flannel): one setting warns.
func node1Report() *doctor.Report {
	item := func(id, name, value string, st doctor.Status) doctor.Item {
		return doctor.Item{ID: id, Name: name, Value: value, Status: st, Explain: "what " + name + " means"}
	}
	return &doctor.Report{
		SchemaVersion: doctor.SchemaVersion,
		Netns:         "/run/netns/node1",
		Sections: []doctor.Section{
			{ID: doctor.SectionModules, Title: "Kernel modules", Items: []doctor.Item{
				item("module.bridge", "bridge", "built-in", doctor.StatusOK),
				item("module.br_netfilter", "br_netfilter", "loaded", doctor.StatusOK),
				item("module.nf_conntrack", "nf_conntrack", "loaded", doctor.StatusOK),
				item("module.nf_nat", "nf_nat", "loaded", doctor.StatusOK),
				item("module.nf_tables", "nf_tables", "loaded", doctor.StatusOK),
				item("module.vxlan", "vxlan", "loaded", doctor.StatusOK),
				item("module.veth", "veth", "loaded", doctor.StatusOK),
			}},
			{ID: doctor.SectionSysctls, Title: "Sysctls", Items: []doctor.Item{
				item("sysctl.net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-iptables", "1", doctor.StatusOK),
				item("sysctl.net.ipv4.ip_forward", "net.ipv4.ip_forward", "1", doctor.StatusOK),
				item("sysctl.net.ipv4.conf.all.rp_filter", "net.ipv4.conf.all.rp_filter", "0 (off)", doctor.StatusOK),
				item("sysctl.net.ipv4.conf.eth0.rp_filter", "net.ipv4.conf.eth0.rp_filter", "1 (strict)", doctor.StatusWarn),
				item("sysctl.net.netfilter.nf_conntrack_usage", "net.netfilter.nf_conntrack_count / nf_conntrack_max", "12 / 262144 (0.0% full)", doctor.StatusOK),
			}},
			{ID: doctor.SectionKubeProxy, Title: "kube-proxy", Items: []doctor.Item{
				item("kube_proxy.mode", "kube-proxy mode", "iptables", doctor.StatusInfo),
				item("kube_proxy.kube_services_nft", "iptables-nft nat KUBE-SERVICES", "present", doctor.StatusInfo),
				item("kube_proxy.kube_services_legacy", "iptables-legacy nat KUBE-SERVICES", "absent", doctor.StatusInfo),
			}},
			{ID: doctor.SectionNetwork, Title: "Overlay and bridge devices", Items: []doctor.Item{
				item("network.overlay.flannel.1.mtu", "flannel.1 MTU", "1450 (eth0 1500 − 50 = 1450)", doctor.StatusOK),
				item("network.bridge.cni0", "cni0 (bridge)", "MTU 1450, 2 ports", doctor.StatusOK),
			}},
		},
		KubeProxy: doctor.KubeProxy{Mode: doctor.ModeIPTables, KubeServicesNFT: doctor.Present, KubeServicesLegacy: doctor.Absent},
		Network: doctor.Network{
			CNI:      "flannel",
			Overlays: []doctor.Overlay{{Name: "flannel.1", Kind: "vxlan", MTU: 1450, VNI: 1, Port: 8472, Underlay: "eth0"}},
			Bridges:  []doctor.Bridge{{Name: "cni0", MTU: 1450, Ports: []string{"veth3a1f2b9c", "vethb71c0d2e"}, VethPorts: 2}},
		},
	}
}

// fixtureInfo is the trace around the fixtures: node2 has no report.
func fixtureInfo() TraceInfo {
	return TraceInfo{
		Backend: "tracepoint+netfilter-link", Kernel: "6.1.0-28-amd64", Hostname: "node1",
		Start:  time.Date(2026, 11, 28, 3, 40, 1, 0, time.UTC),
		PodIPs: []netip.Addr{ip("10.244.1.5")},
		Events: 112, Lost: 3, LostPerCPU: []uint64{0, 3},
		Nodes: []NodeInfo{
			{Inode: nsNode1.inode, Netns: nsNode1.name, Report: node1Report()},
			{Inode: 4026532999, Netns: nsNode2.name},
		},
	}
}

func renderHTML(t testing.TB, paths []*stitch.Path, info *TraceInfo) string {
	t.Helper()
	var buf bytes.Buffer
	r := NewHTML(&buf, HTMLOptions{})
	for _, p := range paths {
		if err := r.Render(p); err != nil {
			t.Fatal(err)
		}
	}
	if info != nil {
		r.(TraceDescriber).DescribeTrace(*info)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func renderSVG(t testing.TB, paths []*stitch.Path, id uint64, info *TraceInfo) (string, error) {
	t.Helper()
	var buf bytes.Buffer
	r := NewSVG(&buf, SVGOptions{Packet: id})
	for _, p := range paths {
		if err := r.Render(p); err != nil {
			t.Fatal(err)
		}
	}
	if info != nil {
		r.(TraceDescriber).DescribeTrace(*info)
	}
	err := r.Close()
	return buf.String(), err
}

// assetRE matches the contents of the embedded style sheet and script,
// which the golden files leave out: they pin the document's structure and
// data, not the code that shows it.
var assetRE = regexp.MustCompile(`(?s)(<style id="pt-css">|<script id="pt-js">).*?(</style>|</script>)`)

func elideAssets(s string) string {
	return assetRE.ReplaceAllString(s, "$1/* internal/render/assets */$2")
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	golden := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden file (regenerate with -update): %v", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (regenerate with -update)\n--- got ---\n%s", golden, got)
	}
}

func TestHTMLGolden(t *testing.T) {
	info := fixtureInfo()
	checkGolden(t, "html.golden", elideAssets(renderHTML(t, fixtures(), &info)))
}

func TestSVGGolden(t *testing.T) {
	info := fixtureInfo()
	for _, id := range []uint64{1, 5} {
		got, err := renderSVG(t, fixtures(), id, &info)
		if err != nil {
			t.Fatal(err)
		}
		checkGolden(t, "svg_"+string(rune('0'+id))+".golden", got)
	}
}

// dataOf extracts the JSON data block of a report.
func dataOf(t *testing.T, doc string) map[string]any {
	t.Helper()
	const open = `<script type="application/json" id="pt-data">`
	i := strings.Index(doc, open)
	j := strings.Index(doc[i+1:], "</script>")
	if i < 0 || j < 0 {
		t.Fatal("no data block")
	}
	var d map[string]any
	if err := json.Unmarshal([]byte(doc[i+len(open):i+1+j]), &d); err != nil {
		t.Fatalf("data block is not JSON: %v", err)
	}
	return d
}

// TestHTMLData checks the data the script shows: every packet, every hop
// in order with its kind, device and namespace, requests paired with
// replies.
func TestHTMLData(t *testing.T) {
	// fixtures() holds #9, the SYN-ACK answering #1.
	paths := fixtures()
	d := dataOf(t, renderHTML(t, paths, nil))
	strs := d["strings"].([]any)
	nss := d["ns"].([]any)
	pkts := d["packets"].([]any)
	if len(pkts) != len(paths) {
		t.Fatalf("%d packets in the data, want %d", len(pkts), len(paths))
	}
	for i, p := range paths {
		k := pkts[i].(map[string]any)
		if uint64(k["id"].(float64)) != p.ID {
			t.Fatalf("packet %d has id %v, want %d", i, k["id"], p.ID)
		}
		hops := k["hops"].([]any)
		if len(hops) != len(p.Hops) {
			t.Fatalf("packet %d: %d hops, want %d", p.ID, len(hops), len(p.Hops))
		}
		for j, h := range hops {
			a := h.([]any)
			kind, dev := strs[int(a[1].(float64))], strs[int(a[2].(float64))]
			ns := nss[int(a[3].(float64))].(map[string]any)["name"]
			want := &p.Hops[j]
			if kind != want.Kind.String() || dev != want.Dev || ns != want.Netns || int64(a[0].(float64)) != int64(want.T) {
				t.Errorf("packet %d hop %d: %v %v %v at %v, want %v %v %v at %v", p.ID, j, kind, dev, ns, a[0], want.Kind, want.Dev, want.Netns, int64(want.T))
			}
		}
	}
	if got := pkts[0].(map[string]any)["reply"]; got != float64(9) {
		t.Errorf("packet 1's reply is %v, want 9", got)
	}
	if got := pkts[8].(map[string]any)["request"]; got != float64(1) {
		t.Errorf("packet 9 answers %v, want 1", got)
	}
}

// TestHTMLSelfContained checks the report asks for nothing outside itself
// and parses: the map as XML.
func TestHTMLSelfContained(t *testing.T) {
	info := fixtureInfo()
	doc := renderHTML(t, fixtures(), &info)
	for _, bad := range []string{`src=`, `href="http`, `href='http`, `@import`, `url(http`, `//cdn`, `<link`, `fetch(`, `XMLHttpRequest`} {
		if strings.Contains(doc, bad) {
			t.Errorf("report contains %q: it must need no network", bad)
		}
	}
	i, j := strings.Index(doc, "<svg"), strings.Index(doc, "</svg>")
	if i < 0 || j < 0 {
		t.Fatal("no map")
	}
	checkXML(t, doc[i:j+len("</svg>")])
	svg, err := renderSVG(t, fixtures(), 3, &info)
	if err != nil {
		t.Fatal(err)
	}
	checkXML(t, svg)
}

func checkXML(t *testing.T, s string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, s)
		}
	}
}

// TestHTMLKeepsNoPath checks a renderer keeps no path given to it: the live
// trace reuses a path's memory once Render returns.
func TestHTMLKeepsNoPath(t *testing.T) {
	info := fixtureInfo()
	want := renderHTML(t, fixtures(), &info)
	wantSVG, err := renderSVG(t, fixtures(), 1, &info)
	if err != nil {
		t.Fatal(err)
	}
	scribble := func(p *stitch.Path) {
		for i := range p.Hops {
			p.Hops[i] = stitch.Hop{Kind: hop.Drop, Dev: "scribbled", Netns: "scribbled"}
			p.Hops[i].NAT = &stitch.NAT{}
		}
		p.Warnings = append(p.Warnings[:0], "scribbled")
		p.Src, p.ID = ap("1.2.3.4:5"), 999
	}
	var buf, svgBuf bytes.Buffer
	r, s := NewHTML(&buf, HTMLOptions{}), NewSVG(&svgBuf, SVGOptions{Packet: 1})
	for _, p := range fixtures() {
		if err := r.Render(p); err != nil {
			t.Fatal(err)
		}
		if err := s.Render(p); err != nil {
			t.Fatal(err)
		}
		scribble(p)
	}
	for _, d := range []Renderer{r, s} {
		d.(TraceDescriber).DescribeTrace(info)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if buf.String() != want {
		t.Error("the HTML report changed when the paths were changed after Render")
	}
	if svgBuf.String() != wantSVG {
		t.Error("the SVG changed when the path was changed after Render")
	}
}

// TestHTMLOrderIndependent checks the report is the same whatever order
// the paths were rendered in (live, paths end in any order).
func TestHTMLOrderIndependent(t *testing.T) {
	info := fixtureInfo()
	want := renderHTML(t, fixtures(), &info)
	rev := fixtures()
	slices.Reverse(rev)
	if got := renderHTML(t, rev, &info); got != want {
		t.Error("rendering the paths in reverse order changed the report")
	}
}

func TestHTMLRendererContract(t *testing.T) {
	for name, r := range map[string]Renderer{"html": NewHTML(io.Discard, HTMLOptions{}), "svg": NewSVG(io.Discard, SVGOptions{Packet: 2})} {
		if err := r.Render(nil); err == nil {
			t.Errorf("%s: Render(nil) succeeded", name)
		}
		if err := r.Render(sameNode()); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Errorf("%s: Close: %v", name, err)
		}
		if err := r.Close(); err != nil {
			t.Errorf("%s: second Close: %v", name, err)
		}
		if err := r.Render(sameNode()); err == nil {
			t.Errorf("%s: Render after Close succeeded", name)
		}
	}
	if _, err := renderSVG(t, fixtures(), 42, nil); err == nil || !strings.Contains(err.Error(), "no packet #42") {
		t.Errorf("SVG of a packet not in the trace: %v, want an error naming it", err)
	}
	if err := NewHTML(failWriter{}, HTMLOptions{}).Close(); err == nil {
		t.Error("HTML Close to a failing writer succeeded")
	}
}

// TestHTMLHostileNames checks names from the traced system cannot break out
// of the document or the data.
func TestHTMLHostileNames(t *testing.T) {
	p := sameNode()
	for i := range p.Hops {
		p.Hops[i].Netns = "</script><script>alert(1)</script>\x1b[31m"
		p.Hops[i].Dev = `"><img onerror=x>&`
	}
	p.Warnings = []string{"</script>\u2028"}
	doc := renderHTML(t, []*stitch.Path{p}, nil)
	for _, bad := range []string{"<script>alert", "<img", "\x1b", "\u2028"} {
		if strings.Contains(doc, bad) {
			t.Errorf("report contains %q raw", bad)
		}
	}
	if n := strings.Count(doc, "</script>"); n != 2 {
		t.Errorf("%d </script> in the report, want the 2 of its own", n)
	}
	d := dataOf(t, doc)
	// Shown as the text timeline shows it: U+2028 escaped.
	if w := d["packets"].([]any)[0].(map[string]any)["warnings"].([]any)[0]; w != `</script>\u{2028}` {
		t.Errorf("warning %q did not survive the data block", w)
	}
	svg, err := renderSVG(t, []*stitch.Path{p}, p.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkXML(t, svg)
}

// TestHTMLMaxPackets checks the table keeps at most MaxPackets packets and
// the map counts them all.
func TestHTMLMaxPackets(t *testing.T) {
	var buf bytes.Buffer
	r := NewHTML(&buf, HTMLOptions{MaxPackets: 3})
	for _, p := range fixtures() {
		if err := r.Render(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	d := dataOf(t, buf.String())
	if n := len(d["packets"].([]any)); n != 3 {
		t.Errorf("%d packets kept, want 3", n)
	}
	if d["omitted"] != float64(len(fixtures())-3) {
		t.Errorf("omitted %v, want %d", d["omitted"], len(fixtures())-3)
	}
	if !strings.Contains(buf.String(), "8 packets") {
		t.Error("the report does not count every packet")
	}
}

// TestLatencyQuantile checks the histogram's quantiles against exact ones.
func TestLatencyQuantile(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var l latency
	var all []time.Duration
	for range 10000 {
		d := time.Duration(rng.ExpFloat64() * 5000)
		l.add(d)
		all = append(all, d)
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.9, 0.99} {
		exact := all[int(q*float64(len(all))+0.999999)-1]
		got := l.quantile(q)
		if diff := float64(got-exact) / float64(exact); diff > 0.01 || diff < -0.01 {
			t.Errorf("q%.2f = %v, exact %v", q, got, exact)
		}
	}
	var one latency
	one.add(3456 * time.Nanosecond)
	if got := one.quantile(0.99); got != 3456*time.Nanosecond {
		t.Errorf("one sample: %v", got)
	}
}

// TestHTMLNames checks the names of pods and Services the trace knows show
// beside the namespaces and addresses.
func TestHTMLNames(t *testing.T) {
	info := fixtureInfo()
	info.Names = map[string]string{nsClient.name: "default/client"}
	info.AddrNames = map[netip.Addr]string{ip("10.96.0.10"): "default/web (Service)"}
	doc := renderHTML(t, fixtures(), &info)
	if !strings.Contains(doc, "netns default/client (default/client-5f7c9)") {
		t.Error("the map does not name the client's namespace")
	}
	d := dataOf(t, doc)
	if got := d["packets"].([]any)[0].(map[string]any)["dst_name"]; got != "default/web (Service)" {
		t.Errorf("packet 1's destination is named %v", got)
	}
	found := false
	for _, n := range d["ns"].([]any) {
		if n.(map[string]any)["label"] == "default/client" {
			found = true
		}
	}
	if !found {
		t.Error("no namespace labelled default/client in the data")
	}
}

// TestHTMLEmpty checks a trace without packets still makes a report.
func TestHTMLEmpty(t *testing.T) {
	doc := renderHTML(t, nil, nil)
	if !strings.Contains(doc, "<b>0</b> packets") || len(dataOf(t, doc)["packets"].([]any)) != 0 {
		t.Errorf("empty report:\n%s", elideAssets(doc))
	}
	i, j := strings.Index(doc, "<svg"), strings.Index(doc, "</svg>")
	checkXML(t, doc[i:j+len("</svg>")])
}
