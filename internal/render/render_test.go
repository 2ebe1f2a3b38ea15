package render

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fatih/color"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func renderAll(t testing.TB, r Renderer, paths []*stitch.Path) {
	t.Helper()
	for _, p := range paths {
		if err := r.Render(p); err != nil {
			t.Fatalf("render path %d: %v", p.ID, err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatalf("close renderer: %v", err)
	}
}

func TestGolden(t *testing.T) {
	tests := []struct {
		file string
		new  func(io.Writer) Renderer
	}{
		{"text.golden", func(w io.Writer) Renderer { return NewText(w, TextOptions{}) }},
		{"text_color.golden", func(w io.Writer) Renderer { return NewText(w, TextOptions{Color: true}) }},
		{"text_verbose.golden", func(w io.Writer) Renderer { return NewText(w, TextOptions{Verbose: true}) }},
		{"json.golden", NewJSON},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			var buf bytes.Buffer
			renderAll(t, tt.new(&buf), fixtures())
			golden := filepath.Join("testdata", tt.file)
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden file (regenerate with -update): %v", err)
			}
			if got := buf.String(); got != string(want) {
				t.Errorf("output differs from %s (regenerate with -update)\n--- got ---\n%s\n--- want ---\n%s", golden, got, want)
			}
		})
	}
}

// TestRenderFlushes checks each Render leaves a complete block in the
// writer without waiting for Close, as live use needs.
func TestRenderFlushes(t *testing.T) {
	for name, r := range map[string]func(io.Writer) Renderer{
		"text": func(w io.Writer) Renderer { return NewText(w, TextOptions{}) },
		"json": NewJSON,
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			rr := r(&buf)
			if err := rr.Render(sameNode()); err != nil {
				t.Fatal(err)
			}
			if buf.Len() == 0 || buf.Bytes()[buf.Len()-1] != '\n' {
				t.Fatalf("Render left %q in the writer, want one complete path", buf.String())
			}
			if err := rr.Render(nil); err == nil {
				t.Error("Render(nil) succeeded, want an error")
			}
			if err := rr.Close(); err != nil {
				t.Fatal(err)
			}
			if err := rr.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if err := rr.Render(sameNode()); err == nil {
				t.Error("Render after Close succeeded, want an error")
			}
		})
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }

func TestRenderWriteError(t *testing.T) {
	for _, r := range []Renderer{NewText(failWriter{}, TextOptions{}), NewJSON(failWriter{})} {
		if err := r.Render(crossNode()); err == nil {
			t.Errorf("%T: Render to a failing writer succeeded", r)
		}
	}
}

// TestColorPerRenderer checks a colored and a plain renderer do not affect
// each other and ignore the global color.NoColor.
func TestColorPerRenderer(t *testing.T) {
	saved := color.NoColor
	t.Cleanup(func() { color.NoColor = saved })
	for _, global := range []bool{true, false} {
		color.NoColor = global
		var on, off bytes.Buffer
		ron, roff := NewText(&on, TextOptions{Color: true}), NewText(&off, TextOptions{})
		for _, p := range fixtures() {
			if err := ron.Render(p); err != nil {
				t.Fatal(err)
			}
			if err := roff.Render(p); err != nil {
				t.Fatal(err)
			}
		}
		if !strings.Contains(on.String(), "\x1b[") {
			t.Errorf("color.NoColor=%v: colored renderer wrote no escape sequences", global)
		}
		if strings.Contains(off.String(), "\x1b") {
			t.Errorf("color.NoColor=%v: plain renderer wrote escape sequences", global)
		}
		if got := stripANSI(on.String()); got != off.String() {
			t.Errorf("color.NoColor=%v: colored output without escapes differs from plain:\n%s\n---\n%s", global, got, off.String())
		}
	}
}

func stripANSI(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && s[j] != 'm' {
				j++
			}
			i = j
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// awkward is a path whose strings would break naive JSON or text output.
func awkward() *stitch.Path {
	p := forwardDrop()
	p.Clipped = true
	p.Proto = 47 // GRE: no ports, no name in the text header
	p.Hops[0].Dev = "eth\"0\\\x00\x1b[31m\n"
	p.Hops[0].Proto = 47
	p.Hops[1].Dev = "\xff\xfeveth\xc3"
	p.Hops[1].Netns = "ns\u2028with\u2029seps\ttab\u0085"
	p.Hops[2].Dev = "日本語-br"
	p.Hops[3].Hook = hop.Hook(42) // no such hook
	p.Hops[5].Reason = "WEIRD \"reason\"\r\n"
	p.Hops[5].Kind = hop.Drop
	p.Hops[5].Advice = "why\x1b[31m \"quoted\"\n$ cmd\u2028\xff\n"
	p.Warnings = []string{"warn\x00ing\nnext", ""}
	p.Verdict = ""
	return p
}

func TestJSONLines(t *testing.T) {
	var buf bytes.Buffer
	paths := append(fixtures(), awkward())
	renderAll(t, NewJSON(&buf), paths)

	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		p := paths[n]
		n++
		line := sc.Bytes()
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", n, err, line)
		}
		checkTypes(t, n, m, map[string]string{
			"id": "number", "start": "string", "proto": "string", "src": "string",
			"dst": "string", "verdict": "string", "hops": "array",
		})
		if _, err := time.Parse(time.RFC3339Nano, m["start"].(string)); err != nil {
			t.Errorf("line %d: start: %v", n, err)
		}
		if !strings.HasSuffix(m["start"].(string), "Z") {
			t.Errorf("line %d: start %q is not UTC", n, m["start"])
		}
		switch m["verdict"] {
		case "delivered", "dropped", "forwarded", "unknown":
		default:
			t.Errorf("line %d: verdict %q", n, m["verdict"])
		}
		hops := m["hops"].([]any)
		if len(hops) != len(p.Hops) {
			t.Fatalf("line %d: %d hops, want %d", n, len(hops), len(p.Hops))
		}
		for i, hv := range hops {
			h, ok := hv.(map[string]any)
			if !ok {
				t.Fatalf("line %d hop %d: %T, want object", n, i, hv)
			}
			checkTypes(t, n, h, map[string]string{
				"t_ns": "number", "kind": "string", "dev": "string", "netns": "string",
				"src": "string", "dst": "string",
			})
			if got, want := h["dev"], validUTF8(p.Hops[i].Dev); got != want {
				t.Errorf("line %d hop %d: dev %q, want %q", n, i, got, want)
			}
			if got, want := h["netns"], validUTF8(p.Hops[i].Netns); got != want {
				t.Errorf("line %d hop %d: netns %q, want %q", n, i, got, want)
			}
			var kind hop.Kind
			if err := kind.UnmarshalText([]byte(h["kind"].(string))); err != nil {
				t.Errorf("line %d hop %d: %v", n, i, err)
			}
			switch kind {
			case hop.Netfilter:
				checkTypes(t, n, h, map[string]string{"hook": "string", "in": "string", "out": "string", "dur_ns": "number"})
			case hop.NAT:
				checkTypes(t, n, h, map[string]string{"nat": "object"})
				checkTypes(t, n, h["nat"].(map[string]any), map[string]string{"type": "string", "from": "string", "to": "string"})
			case hop.Encap, hop.Decap:
				checkTypes(t, n, h, map[string]string{"outer": "object"})
				checkTypes(t, n, h["outer"].(map[string]any), map[string]string{"src": "string", "dst": "string", "dport": "number", "vni": "number"})
			case hop.Drop:
				checkTypes(t, n, h, map[string]string{"reason": "string", "reason_code": "number"})
				if got, want := h["reason"], validUTF8(p.Hops[i].Reason); got != want {
					t.Errorf("line %d hop %d: reason %q, want %q", n, i, got, want)
				}
			}
		}
	}
	if n != len(paths) {
		t.Errorf("%d lines, want %d", n, len(paths))
	}
}

// validUTF8 is s as encoding/json decodes it after encoding.
func validUTF8(s string) string {
	b, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(b, &out)
	return out
}

func checkTypes(t *testing.T, line int, m map[string]any, want map[string]string) {
	t.Helper()
	for k, typ := range want {
		v, ok := m[k]
		if !ok {
			t.Errorf("line %d: missing %q in %v", line, k, m)
			continue
		}
		var got string
		switch v.(type) {
		case float64:
			got = "number"
		case string:
			got = "string"
		case []any:
			got = "array"
		case map[string]any:
			got = "object"
		case bool:
			got = "bool"
		default:
			got = "null"
		}
		if got != typ {
			t.Errorf("line %d: %q is %s, want %s", line, k, got, typ)
		}
	}
}

func TestTextAwkward(t *testing.T) {
	var buf bytes.Buffer
	renderAll(t, NewText(&buf, TextOptions{}), []*stitch.Path{awkward()})
	out := buf.String()
	for i, c := range []byte(out) {
		if c < 0x20 && c != '\n' || c == 0x7f {
			t.Fatalf("control byte %#x at %d in text output:\n%q", c, i, out)
		}
	}
	// Header, 2 warnings, the hops, 2 lines of advice, clipped note, blank line.
	if got := strings.Count(out, "\n"); got != len(awkward().Hops)+3+2+2 {
		t.Errorf("%d lines, want header, 2 warnings, %d hops, 2 of advice, clipped note and blank line:\n%s", got, len(awkward().Hops), out)
	}
	for _, want := range []string{`eth"0\\\x00\x1b[31m\x0a`, `\xff\xfeveth\xc3`, "日本語-br", "proto=47", "unknown", "clipped"} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "\x00\x01\x1f\x7f", "\n\r\t", "\xff", "a\xc3", "\u2028\u2029", "é日本😀", "<&>"} {
		got := appendJSONString(nil, s)
		if !json.Valid(got) {
			t.Errorf("appendJSONString(%q) = %s, not valid JSON", s, got)
			continue
		}
		var dec string
		if err := json.Unmarshal(got, &dec); err != nil || dec != validUTF8(s) {
			t.Errorf("appendJSONString(%q) = %s, decodes to %q, want %q", s, got, dec, validUTF8(s))
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add("eth0")
	f.Add("\xff\"\\\u2028\x00")
	f.Fuzz(func(t *testing.T, s string) {
		got := appendJSONString(nil, s)
		var dec string
		if err := json.Unmarshal(got, &dec); err != nil {
			t.Fatalf("appendJSONString(%q) = %s: %v", s, got, err)
		}
		if dec != validUTF8(s) {
			t.Fatalf("appendJSONString(%q) decodes to %q, want %q", s, dec, validUTF8(s))
		}
	})
}

func TestAppendDur(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                      "0.0µs",
		49:                     "0.0µs",
		50:                     "0.1µs",
		12345:                  "12.3µs",
		-3100:                  "-3.1µs",
		999999949:              "999999.9µs",
		time.Second:            "1.000000s",
		90*time.Second + 12345: "90.000012s",
	} {
		if got := string(appendDur(nil, d)); got != want {
			t.Errorf("appendDur(%d) = %q, want %q", d, got, want)
		}
	}
}

func TestRenderAllocs(t *testing.T) {
	p := crossNode()
	for name, r := range map[string]Renderer{
		"text":       NewText(io.Discard, TextOptions{}),
		"text-color": NewText(io.Discard, TextOptions{Color: true, Verbose: true}),
		"json":       NewJSON(io.Discard),
	} {
		allocs := testing.AllocsPerRun(100, func() {
			if err := r.Render(p); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 1 {
			t.Errorf("%s: %.1f allocations per path, want at most 1", name, allocs)
		}
	}
}

func benchPath() *stitch.Path {
	p := crossNode()
	p.Hops = p.Hops[:20]
	return p
}

func BenchmarkJSON(b *testing.B) {
	benchRender(b, NewJSON(io.Discard))
}

func BenchmarkText(b *testing.B) {
	benchRender(b, NewText(io.Discard, TextOptions{}))
}

func BenchmarkTextColor(b *testing.B) {
	benchRender(b, NewText(io.Discard, TextOptions{Color: true}))
}

func benchRender(b *testing.B, r Renderer) {
	p := benchPath()
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Render(p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(p.Hops))/b.Elapsed().Seconds(), "hops/s")
}

// TestJSONFieldsDocumented checks every key the JSON renderer writes is
// documented in docs/json.md.
func TestJSONFieldsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "json.md"))
	if err != nil {
		t.Fatalf("read field documentation: %v", err)
	}
	var buf bytes.Buffer
	quiet, late := lateEndPaths()
	renderAll(t, NewJSON(&buf), append(fixtures(), awkward(), quiet, late))
	keys := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				keys[k] = true
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatal(err)
		}
		walk(m)
	}
	for k := range keys {
		if !bytes.Contains(doc, []byte("`"+k+"`")) && !bytes.Contains(doc, []byte(`"`+k+`"`)) {
			t.Errorf("JSON field %q is not documented in docs/json.md", k)
		}
	}
}

// A consume hop that was a kernel drop reason at the packet's destination
// (stitch: normal frees) shows its function and reason, in text and JSON.
func TestConsumeWithReason(t *testing.T) {
	p := finish(&stitch.Path{
		ID: 1, Proto: protoTCP, Src: ap("10.244.1.5:40312"), Dst: ap("10.244.2.7:8080"), TCPFlags: 0x10, Len: 52,
		Verdict: stitch.VerdictDelivered,
		Hops: []stitch.Hop{
			nsWeb.hop(hop.Rx, "eth0", 3, 0),
			func() stitch.Hop {
				h := nsWeb.hop(hop.Consume, "eth0", 3, us(35))
				h.Reason, h.ReasonCode, h.Location, h.Func = "NOT_SPECIFIED", 2, 0xffffffff81a2b3c4, "tcp_rcv_state_process+0x1a4"
				return h
			}(),
		},
	}, 0)
	var text, js bytes.Buffer
	renderAll(t, NewText(&text, TextOptions{}), []*stitch.Path{p})
	if want := "consume  eth0  default/web-6c9f8  consumed by tcp_rcv_state_process (NOT_SPECIFIED)\n"; !strings.Contains(text.String(), want) {
		t.Errorf("text lacks %q:\n%s", want, text.String())
	}
	renderAll(t, NewJSON(&js), []*stitch.Path{p})
	if want := `"kind":"consume"`; !strings.Contains(js.String(), want) ||
		!strings.Contains(js.String(), `"reason":"NOT_SPECIFIED","reason_code":2,"location":"0xffffffff81a2b3c4","function":"tcp_rcv_state_process+0x1a4"}`) {
		t.Errorf("JSON consume hop lacks its reason and function:\n%s", js.String())
	}
	if strings.Contains(text.String(), "advice") || strings.Contains(js.String(), "advice") {
		t.Error("a consume hop has advice")
	}
}

// The widths measured without formatting are those of the formatted text.
func TestWidths(t *testing.T) {
	var r textRenderer
	for _, ns := range []int64{0, 1, 49, 50, 99, 949, 950, 999, 9_949, 9_950, 99_950, 999_949, 999_950,
		999_999_949, 999_999_950, 999_999_999, 1e9, 1_000_000_499, 1_000_000_500, 9_999_999_499, 9_999_999_500,
		12e9, 1 << 62, math.MaxInt64, math.MinInt64, math.MinInt64 + 1} {
		for _, d := range []time.Duration{time.Duration(ns), -time.Duration(ns)} {
			if got, want := durWidth(d), utf8.RuneCount(appendDur(nil, d)); got != want {
				t.Errorf("durWidth(%d) = %d, want %d (%q)", d, got, want, appendDur(nil, d))
			}
			if got, want := deltaWidth(d), utf8.RuneCount(appendDelta(nil, d)); got != want {
				t.Errorf("deltaWidth(%d) = %d, want %d (%q)", d, got, want, appendDelta(nil, d))
			}
		}
	}
	for _, s := range []string{"", "eth0", "a\\b", "tab\there", "\x7f", "héllo", "\xff", "\u200b", "netns:4026532177"} {
		if got, want := r.textOrWidth(s), utf8.RuneCount(appendTextOr(nil, s)); got != want {
			t.Errorf("textOrWidth(%q) = %d, want %d", s, got, want)
		}
	}
}

// A renderer's output for a path does not depend on the paths it rendered
// before (the JSON renderer remembers what hops repeat).
func TestRenderIndependentOfHistory(t *testing.T) {
	paths := slices.Concat(fixtures(), connFixtures(), []*stitch.Path{ipvsLocal(), tableDrop(), ipvsNoEndpoint(), awkward()})
	for name, mk := range map[string]func(io.Writer) Renderer{
		"json": NewJSON,
		"text": func(w io.Writer) Renderer { return NewText(w, TextOptions{Verbose: true}) },
	} {
		alone := make([]string, len(paths))
		for i, p := range paths {
			var buf bytes.Buffer
			renderAll(t, mk(&buf), []*stitch.Path{p})
			alone[i] = buf.String()
		}
		var buf bytes.Buffer
		r := mk(&buf)
		var order []int
		for i := range paths {
			order = append(order, i, len(paths)-1-i, i) // forward, backward, each twice
		}
		for _, i := range order {
			buf.Reset()
			if err := r.Render(paths[i]); err != nil {
				t.Fatal(err)
			}
			if buf.String() != alone[i] {
				t.Errorf("%s: path %d after others:\n%s\nalone:\n%s", name, i, buf.String(), alone[i])
			}
		}
	}
}

// Start times come out as AppendFormat makes them, remembered per second
// or not.
func TestAppendTime(t *testing.T) {
	var m timeMemo
	base := time.Date(2026, 11, 28, 3, 40, 1, 0, time.UTC)
	times := []time.Time{base, base.Add(123456789), base.Add(100), base.Add(999999999), base.Add(time.Second),
		base.Add(time.Second + 500*time.Millisecond), time.Unix(0, 0), time.Unix(0, 1).In(time.FixedZone("x", 3600)),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 5, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 10, time.UTC), time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC), {}}
	for range 2 {
		for _, tm := range times {
			if got, want := string(m.appendTime(nil, tm, false)), tm.UTC().Format(time.RFC3339Nano); got != want {
				t.Errorf("RFC3339Nano %v: %s, want %s", tm, got, want)
			}
			if got, want := string(m.appendTime(nil, tm, true)), tm.UTC().Format(headerTime); got != want {
				t.Errorf("header %v: %s, want %s", tm, got, want)
			}
		}
	}
}

func TestAppendInt(t *testing.T) {
	vals := []int64{0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 12345, 4026532177, 1<<32 - 1, 1 << 32,
		math.MaxInt64, math.MinInt64, math.MinInt64 + 1, -1, -9, -10, -123456789}
	for i := int64(1); i < 1e18; i *= 10 {
		vals = append(vals, i-1, i, i+1, -i)
	}
	for _, v := range vals {
		if got, want := string(appendInt([]byte("x"), v)), "x"+strconv.FormatInt(v, 10); got != want {
			t.Errorf("appendInt(%d) = %s, want %s", v, got, want)
		}
		if got, want := string(appendUint(nil, uint64(v))), strconv.FormatUint(uint64(v), 10); got != want {
			t.Errorf("appendUint(%d) = %s, want %s", uint64(v), got, want)
		}
	}
}

// A drop hop whose device the kernel did not give (stitch: freeDevice) says
// so: the device is where the packet was last seen, which, with hops lost,
// need not be where it died. JSON marks consume hops too.
func TestDropLastSeen(t *testing.T) {
	freed := func(kind hop.Kind, lastSeen bool) stitch.Hop {
		h := nsWeb.hop(kind, "eth0", 3, us(35))
		h.LastSeen = lastSeen
		if kind == hop.Drop {
			h.Reason, h.ReasonCode, h.Func = "SOCKET_CLOSE", 44, "udp_destruct_common+0x5e"
		}
		return h
	}
	path := func(id uint64, h stitch.Hop) *stitch.Path {
		return finish(&stitch.Path{ID: id, Proto: protoUDP, Src: ap("10.244.1.5:40312"), Dst: ap("10.244.2.7:5201"), Len: 92,
			Verdict: stitch.VerdictDropped, Hops: []stitch.Hop{nsWeb.hop(hop.Rx, "eth0", 3, 0), h}}, 0)
	}
	const mark = "(no device from the kernel: shown where last seen)"
	for _, c := range []struct {
		h          stitch.Hop
		text, json bool
	}{
		{freed(hop.Drop, true), true, true},
		{freed(hop.Drop, false), false, false},
		{freed(hop.Consume, true), false, true},
	} {
		var text, js, html bytes.Buffer
		p := path(1, c.h)
		renderAll(t, NewText(&text, TextOptions{}), []*stitch.Path{p})
		renderAll(t, NewJSON(&js), []*stitch.Path{p})
		renderAll(t, NewHTML(&html, HTMLOptions{}), []*stitch.Path{p})
		if got := strings.Contains(text.String(), mark); got != c.text || c.text && !strings.Contains(text.String(), "by udp_destruct_common "+mark+"\n") {
			t.Errorf("%s hop, last seen %v: text marked %v, want %v:\n%s", c.h.Kind, c.h.LastSeen, got, c.text, text.String())
		}
		if got := strings.Contains(js.String(), `"last_seen":true`); got != c.json {
			t.Errorf("%s hop, last seen %v: JSON marked %v, want %v:\n%s", c.h.Kind, c.h.LastSeen, got, c.json, js.String())
		}
		if got := strings.Contains(html.String(), "where last seen"); got != c.text {
			t.Errorf("%s hop, last seen %v: HTML marked %v, want %v", c.h.Kind, c.h.LastSeen, got, c.text)
		}
	}
}

// lateEndPaths are a packet's path that went quiet (it waited for ARP)
// and the late end of it, its drop.
func lateEndPaths() (quiet, late *stitch.Path) {
	quiet = finish(&stitch.Path{ID: 1, Proto: protoUDP, Src: ap("10.244.1.5:40312"), Dst: ap("192.168.50.99:7001"), Len: 37,
		Verdict: stitch.VerdictUnknown, Hops: []stitch.Hop{nsWeb.hop(hop.Tx, "eth0", 3, 0)}}, 0)
	drop := nsWeb.hop(hop.Drop, "eth0", 3, 0)
	drop.Reason, drop.LastSeen = "NEIGH_FAILED", true
	late = finish(&stitch.Path{ID: 2, Proto: protoUDP, Src: ap("10.244.1.5:40312"), Dst: ap("192.168.50.99:7001"), Len: 37,
		Verdict: stitch.VerdictDropped, Hops: []stitch.Hop{drop},
		Late: &stitch.Late{Of: 1, After: 2999992 * time.Microsecond, Verdict: stitch.VerdictUnknown}}, 0)
	return quiet, late
}

// The late end of a packet (stitch.Late) says which path it ends, in text
// and JSON, and the HTML report counts the packet once, by its end.
func TestLateEnd(t *testing.T) {
	quiet, late := lateEndPaths()
	var text, js, html bytes.Buffer
	renderAll(t, NewText(&text, TextOptions{}), []*stitch.Path{quiet, late})
	renderAll(t, NewJSON(&js), []*stitch.Path{quiet, late})
	renderAll(t, NewHTML(&html, HTMLOptions{}), []*stitch.Path{quiet, late})
	if want := "(1 hop, late end of #1, freed 2.999992s after it was last seen)"; !strings.Contains(text.String(), want) {
		t.Errorf("text lacks %q:\n%s", want, text.String())
	}
	if n := strings.Count(text.String(), "late end"); n != 1 {
		t.Errorf("text says late end %d times, want once:\n%s", n, text.String())
	}
	if want := `"late":{"of":1,"after_ns":2999992000,"verdict":"unknown"}`; !strings.Contains(js.String(), want) {
		t.Errorf("JSON lacks %s:\n%s", want, js.String())
	}
	if want := `<b>1</b> packets · <span class="v-dropped">1 dropped</span></p>`; !strings.Contains(html.String(), want) {
		i := strings.Index(html.String(), `class="summary"`)
		t.Errorf("HTML summary, want %s:\n%.200s", want, html.String()[max(i, 0):])
	}
}

// The rest of a packet's way after a wait (stitch.Late.Resumed) says which
// path it goes on from, in text and JSON.
func TestLateResumed(t *testing.T) {
	quiet, late := lateEndPaths()
	late.Late.Resumed, late.Late.After = true, 2012004*time.Microsecond
	late.Hops = []stitch.Hop{nsWeb.hop(hop.Tx, "eth0", 3, 0)}
	var text, js bytes.Buffer
	renderAll(t, NewText(&text, TextOptions{}), []*stitch.Path{quiet, late})
	renderAll(t, NewJSON(&js), []*stitch.Path{quiet, late})
	if want := "(1 hop, the rest of #1, resumed 2.012004s after it was last seen)"; !strings.Contains(text.String(), want) {
		t.Errorf("text lacks %q:\n%s", want, text.String())
	}
	if want := `"late":{"of":1,"after_ns":2012004000,"verdict":"unknown","resumed":true}`; !strings.Contains(js.String(), want) {
		t.Errorf("JSON lacks %s:\n%s", want, js.String())
	}
}

// A fragment, the datagram reassembled from it and split again, and an
// IPv6 fragment: the text ties them by the IPv4 id, JSON marks the
// fragment, the HTML report counts the new verdicts.
func TestFragments(t *testing.T) {
	mk := func(id uint64, src, dst string, v stitch.Verdict, frag bool, seen stitch.FirstSeen) *stitch.Path {
		return &stitch.Path{ID: id, Proto: 17, Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst),
			IPID: 4660, Len: 1458, Verdict: v, Fragment: frag, FirstSeen: seen,
			Hops: []stitch.Hop{{Kind: hop.Tx, Dev: "eth0", Netns: "client"}}}
	}
	paths := []*stitch.Path{
		mk(1, "10.244.1.5:0", "10.244.2.7:0", stitch.VerdictReassembled, true, ""),
		mk(2, "10.244.1.5:40000", "10.244.2.7:7100", stitch.VerdictFragmented, false, stitch.FirstSeenReassembled),
		mk(3, "[fd77:1::5]:0", "[fd77:2::7]:0", stitch.VerdictReassembled, true, ""),
		mk(4, "[fd77:1::5]:40000", "[fd77:2::7]:7100", stitch.VerdictDelivered, false, stitch.FirstSeenReassembled),
	}
	var text, js, html bytes.Buffer
	renderAll(t, NewText(&text, TextOptions{}), paths)
	renderAll(t, NewJSON(&js), paths)
	renderAll(t, NewHTML(&html, HTMLOptions{}), paths)
	for _, want := range []string{
		"UDP 10.244.1.5 → 10.244.2.7 len=1458 reassembled  ", "(1 hop, a fragment of IP id 4660)",
		"len=1458 fragmented  ", "(1 hop, reassembled from the fragments of IP id 4660)",
		"(1 hop, a fragment)", "(1 hop, reassembled from fragments)",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	if n := strings.Count(js.String(), `"fragment":true`); n != 2 {
		t.Errorf("JSON marks %d fragments, want 2:\n%s", n, js.String())
	}
	for _, want := range []string{`"verdict":"fragmented","first_seen":"reassembled"`, `"verdict":"reassembled","fragment":true`} {
		if !strings.Contains(js.String(), want) {
			t.Errorf("JSON lacks %s:\n%s", want, js.String())
		}
	}
	if want := `<span class="v-reassembled">2 reassembled</span>`; !strings.Contains(html.String(), want) {
		i := strings.Index(html.String(), `class="summary"`)
		t.Errorf("HTML summary, want %s:\n%.300s", want, html.String()[max(i, 0):])
	}
}

// TestDropAfterHook: a packet the bridge drops right after PREROUTING
// accepted it (a hairpin SYN, DNATed back to the pod it came from) died
// after the hook, not in it: the text does not say "in PREROUTING", the
// report's map puts the drop at the bridge port. One dropped inside the
// hook (its last view never ran: the stitcher names the hook on the drop)
// is shown in it.
func TestDropAfterHook(t *testing.T) {
	mk := func(id uint64, inHook bool) *stitch.Path {
		ns := func(h stitch.Hop, name string, inode uint32) stitch.Hop {
			h.Netns, h.NetnsInode = name, inode
			return h
		}
		pre := ns(stitch.Hop{Kind: hop.Netfilter, Dev: "cni0", Hook: hop.Prerouting, In: "cni0", T: 11000, Dur: 36000}, "node2", 2)
		nat := ns(stitch.Hop{Kind: hop.NAT, Dev: "cni0", Hook: hop.Prerouting, T: 47000,
			NAT: &stitch.NAT{Type: hop.DNAT, From: netip.MustParseAddrPort("10.96.0.10:80"), To: netip.MustParseAddrPort("10.244.2.7:8080")}}, "node2", 2)
		drop := ns(stitch.Hop{Kind: hop.Drop, Dev: "veth605b5d73", T: 56000, Reason: "NOT_SPECIFIED", Func: "br_handle_frame_finish+0x1a2"}, "node2", 2)
		hops := []stitch.Hop{
			ns(stitch.Hop{Kind: hop.Tx, Dev: "eth0"}, "server", 1),
			ns(stitch.Hop{Kind: hop.Rx, Dev: "veth605b5d73", T: 4000}, "node2", 2),
			pre, nat, drop,
		}
		if inHook {
			// The first view only, then the drop.
			hops[2].Dur, hops[2].Partial = 0, true
			hops = append(hops[:3], drop)
			hops[3].Hook, hops[3].Dev, hops[3].Reason = hop.Prerouting, "cni0", "NETFILTER_DROP"
		}
		return &stitch.Path{ID: id, Proto: 6, Src: netip.MustParseAddrPort("10.244.2.7:39478"), Dst: netip.MustParseAddrPort("10.96.0.10:80"),
			TCPFlags: 2, Len: 74, Verdict: stitch.VerdictDropped, Hops: hops}
	}
	after, in := mk(1, false), mk(2, true)
	if h := after.DropHook(len(after.Hops) - 1); h != hop.NoHook {
		t.Errorf("drop after the hook's last view: DropHook %s", h)
	}
	var text, html bytes.Buffer
	renderAll(t, NewText(&text, TextOptions{}), []*stitch.Path{after, in})
	renderAll(t, NewHTML(&html, HTMLOptions{}), []*stitch.Path{after, in})
	lines := strings.Split(text.String(), "\n")
	var drops []string
	for _, l := range lines {
		if strings.Contains(l, "DROPPED") {
			drops = append(drops, l)
		}
	}
	if len(drops) != 2 || strings.Contains(drops[0], " in PREROUTING") || !strings.Contains(drops[1], "DROPPED reason=NETFILTER_DROP in PREROUTING") {
		t.Errorf("drop lines, want the first after PREROUTING, the second in it:\n%s", strings.Join(drops, "\n"))
	}
	if want := "<title>node2 veth605b5d73: 2 packets&#10;drop NOT_SPECIFIED ×1</title>"; !strings.Contains(html.String(), want) {
		t.Errorf("report lacks %s", want)
	}
	if re := regexp.MustCompile(`<title>node2 PREROUTING at cni0: 2 packets[^<]*drop ([A-Z_]+)`); !slices.Equal(re.FindStringSubmatch(html.String())[1:], []string{"NETFILTER_DROP"}) {
		t.Errorf("report: the drops at PREROUTING %q, want the NETFILTER_DROP only", re.FindAllString(html.String(), -1))
	}
}
