package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/pathtrace/pathtrace/internal/record"
	"github.com/pathtrace/pathtrace/internal/testutil"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "rewrite docs/report.png, the README's screenshot of the demo's report")

const pcapDir = "../../testdata/pcaps"

// demoRecording writes a recording like the demo's trace: its two
// exchanges (ClusterIP across nodes, then a pod on the same node), joined
// from their recordings.
func demoRecording(t testing.TB, dir string) string {
	t.Helper()
	file := filepath.Join(dir, "demo.pcapng")
	if err := record.Concat(file, filepath.Join(pcapDir, "clusterip.pcapng"), filepath.Join(pcapDir, "same-node.pcapng")); err != nil {
		t.Fatal(err)
	}
	return file
}

// jsonHop is what the test compares of a hop.
type jsonHop struct {
	Kind  string `json:"kind"`
	Dev   string `json:"dev"`
	Netns string `json:"netns"`
}

type jsonPacket struct {
	ID   uint64    `json:"id"`
	Hops []jsonHop `json:"hops"`
}

// replayFile runs pathtrace replay FILE with args and returns its output.
func replayFile(t *testing.T, file string, args ...string) []byte {
	t.Helper()
	r := run(t, nil, append([]string{"replay", file}, args...)...)
	if r.code != 0 {
		t.Fatalf("replay %s %v: exit %d: %s", file, args, r.code, r.stderr)
	}
	return []byte(r.stdout)
}

// TestHTMLInBrowser opens the HTML reports of the committed recordings and
// of a demo-like one in headless Chromium, offline: the page must not be
// blank, and after its script ran the DOM must hold, for a known packet (the
// one with the most hops), every hop in order.
func TestHTMLInBrowser(t *testing.T) {
	testutil.Require(t, testutil.Chromium)
	dir := t.TempDir()
	files, err := filepath.Glob(filepath.Join(pcapDir, "*.pcapng"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recordings in %s: %v", pcapDir, err)
	}
	files = append(files, demoRecording(t, dir))
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".pcapng")
		t.Run(name, func(t *testing.T) {
			var known jsonPacket
			sc := bufio.NewScanner(bytes.NewReader(replayFile(t, file, "-o", "json")))
			sc.Buffer(nil, 1<<20)
			packets := 0
			for sc.Scan() {
				var p jsonPacket
				if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
					t.Fatal(err)
				}
				packets++
				if len(p.Hops) > len(known.Hops) {
					known = p
				}
			}
			report := filepath.Join(dir, name+".html")
			if err := os.WriteFile(report, replayFile(t, file, "-o", "html"), 0o644); err != nil {
				t.Fatal(err)
			}
			url := "file://" + report + "#packet=" + strconv.FormatUint(known.ID, 10)

			dom, err := html.Parse(bytes.NewReader(testutil.DumpDOM(t, url)))
			if err != nil {
				t.Fatal(err)
			}
			if got := len(findAll(dom, "tr", "data-id")); got != min(packets, 200) {
				t.Errorf("the packet table has %d rows, want %d", got, min(packets, 200))
			}
			var swim *html.Node
			for _, n := range findAll(dom, "table", "data-packet") {
				if attr(n, "data-packet") == strconv.FormatUint(known.ID, 10) {
					swim = n
				}
			}
			if swim == nil {
				t.Fatalf("no timeline of packet #%d in the DOM after the script ran", known.ID)
			}
			rows := findAll(swim, "tr", "data-hop")
			if len(rows) != len(known.Hops) {
				t.Fatalf("the timeline of #%d has %d hops, want %d", known.ID, len(rows), len(known.Hops))
			}
			for i, row := range rows {
				want := known.Hops[i]
				if want.Netns == "" && i > 0 {
					// A hop without a namespace (a free) stays in the lane
					// of the hop before.
					want.Netns = attr(rows[i-1], "data-netns")
				}
				got := jsonHop{attr(row, "data-kind"), attr(row, "data-dev"), attr(row, "data-netns")}
				if attr(row, "data-hop") != strconv.Itoa(i) || got != want {
					t.Errorf("hop %d of #%d in the DOM: %+v (data-hop %s), want %+v", i, known.ID, got, attr(row, "data-hop"), want)
				}
				if text := textOf(row); !strings.Contains(text, want.Kind) || want.Dev != "" && !strings.Contains(text, want.Dev) {
					t.Errorf("hop %d of #%d shows %q, want its kind %s and device %s", i, known.ID, text, want.Kind, want.Dev)
				}
			}

			shot := filepath.Join(dir, name+".png")
			testutil.Screenshot(t, url, shot, 1400, 1000)
			checkNotBlank(t, shot)
			if name == "demo" && *updateScreenshot {
				if err := os.WriteFile("../../docs/report.png", compressPNG(t, shot), 0o644); err != nil {
					t.Fatal(err)
				}
			}

			svg := filepath.Join(dir, name+".svg")
			if err := os.WriteFile(svg, replayFile(t, file, "-o", "svg", "--packet", strconv.FormatUint(known.ID, 10)), 0o644); err != nil {
				t.Fatal(err)
			}
			svgShot := filepath.Join(dir, name+"-svg.png")
			testutil.Screenshot(t, "file://"+svg, svgShot, 1200, 600)
			checkNotBlank(t, svgShot)
		})
	}
}

// findAll lists the elements named tag with the attribute key, in
// document order.
func findAll(n *html.Node, tag, key string) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == tag {
			for _, a := range n.Attr {
				if a.Key == key {
					out = append(out, n)
					break
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func textOf(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
			b.WriteByte(' ')
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// checkNotBlank fails unless the screenshot shows something: a good part of
// it differs from its most common color, in many colors.
func checkNotBlank(t *testing.T, file string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s: %v", file, err)
	}
	counts := map[uint32]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			counts[r>>8<<16|g>>8<<8|bl>>8]++
		}
	}
	most := 0
	for _, n := range counts {
		most = max(most, n)
	}
	total := b.Dx() * b.Dy()
	if other := float64(total-most) / float64(total); other < 0.03 || len(counts) < 16 {
		t.Errorf("screenshot %s looks blank: %.1f%% of it differs from its main color, in %d colors", file, other*100, len(counts))
	}
}

// compressPNG re-encodes a screenshot small enough to commit: in its 256
// most common colors (a page of flat colors and text loses little), as
// compactly as image/png can.
func compressPNG(t *testing.T, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	counts := map[color.RGBA]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			counts[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)]++
		}
	}
	colors := slices.SortedFunc(maps.Keys(counts), func(a, b color.RGBA) int {
		if c := counts[b] - counts[a]; c != 0 {
			return c
		}
		return int(a.R)<<16 | int(a.G)<<8 | int(a.B) - (int(b.R)<<16 | int(b.G)<<8 | int(b.B))
	})
	var pal color.Palette
	for _, c := range colors[:min(len(colors), 256)] {
		pal = append(pal, c)
	}
	out := image.NewPaletted(b, pal)
	draw.Draw(out, b, img, b.Min, draw.Src)
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, out); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var (
	readyRE   = regexp.MustCompile(`data-ready="(\d+)"`)
	paintedRE = regexp.MustCompile(`data-painted="(\d+)"`)
)

// BenchmarkHTMLLoad is how long headless Chromium takes to show the HTML
// report of a 10k-packet recording (the committed ClusterIP exchange,
// repeated): ms-wall is a whole browser run that loads the report and takes
// a screenshot, start-up included (ms-wall-blank: the same for an empty
// page); ms-to-ready and ms-to-paint are the page's own clock, from
// navigation to its script done and to the next paint. Target: the report
// shown within 2 s.
func BenchmarkHTMLLoad(b *testing.B) {
	testutil.Require(b, testutil.Chromium)
	dir := b.TempDir()
	rec := filepath.Join(dir, "10k.pcapng")
	// The seed's 305 events are 10 packets.
	if err := record.Repeat(filepath.Join(pcapDir, "clusterip.pcapng"), rec, 305_000); err != nil {
		b.Fatal(err)
	}
	report, blank := filepath.Join(dir, "10k.html"), filepath.Join(dir, "blank.html")
	start := time.Now()
	out, err := exec.Command(binary, "replay", rec, "-o", "html").Output()
	if err != nil {
		b.Fatal(err)
	}
	toHTML := time.Since(start)
	if !bytes.Contains(out, []byte("<b>10000</b> packets")) {
		b.Fatal("the report does not hold 10000 packets")
	}
	if err := os.WriteFile(report, out, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(blank, []byte("<!DOCTYPE html><title>blank</title>"), 0o644); err != nil {
		b.Fatal(err)
	}
	var wall, wallBlank, ready, painted time.Duration
	shot := filepath.Join(dir, "shot.png")
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		testutil.Screenshot(b, "file://"+report, shot, 1400, 1000)
		wall += time.Since(t0)
		t0 = time.Now()
		testutil.Screenshot(b, "file://"+blank, shot, 1400, 1000)
		wallBlank += time.Since(t0)
		dom := testutil.DumpDOM(b, "file://"+report)
		for re, sum := range map[*regexp.Regexp]*time.Duration{readyRE: &ready, paintedRE: &painted} {
			m := re.FindSubmatch(dom)
			if m == nil {
				b.Fatalf("the report's script did not finish (%s)", re)
			}
			ms, _ := strconv.Atoi(string(m[1]))
			*sum += time.Duration(ms) * time.Millisecond
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Milliseconds()) / float64(b.N) }
	b.ReportMetric(ms(wall), "ms-wall")
	b.ReportMetric(ms(wallBlank), "ms-wall-blank")
	b.ReportMetric(ms(ready), "ms-to-ready")
	b.ReportMetric(ms(painted), "ms-to-paint")
	b.ReportMetric(float64(len(out))/1e6, "MB")
	b.ReportMetric(float64(toHTML.Milliseconds()), "ms-replay")
}
