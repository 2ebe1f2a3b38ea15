package hop

import (
	"encoding"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// value is what every vocabulary type offers.
type value interface {
	String() string
	encoding.TextMarshaler
}

// vocabulary lists every named value of every type, by type.
func vocabulary() map[string][]value {
	v := map[string][]value{}
	for _, d := range Kinds() {
		v["kind"] = append(v["kind"], d.Kind)
	}
	for h := Prerouting; h <= Postrouting; h++ {
		v["hook"] = append(v["hook"], h)
	}
	for _, b := range []Backend{Tracepoint, NetfilterLink, Fentry, Kprobe, Inferred} {
		v["backend"] = append(v["backend"], b)
	}
	for x := VerdictDrop; x <= VerdictStop; x++ {
		v["verdict"] = append(v["verdict"], x)
	}
	v["engine"] = []value{EngineXTables, EngineNFTables}
	v["family"] = []value{FamilyInet, FamilyIPv4, FamilyARP, FamilyNetdev, FamilyBridge, FamilyIPv6}
	for m := MethodMasq; m <= MethodBypass; m++ {
		v["method"] = append(v["method"], m)
	}
	v["nat"] = []value{DNAT, SNAT}
	v["tunnel"] = []value{TunnelVXLAN}
	return v
}

// Every value has a name of its own that parses back to it; the zero
// values print as "".
func TestNames(t *testing.T) {
	for typ, vals := range vocabulary() {
		seen := map[string]bool{}
		for _, v := range vals {
			name := v.String()
			if name == "" || strings.Contains(name, "(") || seen[name] {
				t.Errorf("%s %#v: name %q is empty, a number or taken", typ, v, name)
			}
			seen[name] = true
			b, _ := v.MarshalText()
			if string(b) != name {
				t.Errorf("%s %s: MarshalText %q", typ, name, b)
			}
		}
	}
	roundTrip := func(u encoding.TextUnmarshaler, name string, back func() string) {
		t.Helper()
		if err := u.UnmarshalText([]byte(name)); err != nil || back() != name {
			t.Errorf("%q: parsed as %q, %v", name, back(), err)
		}
	}
	var k Kind
	for _, d := range Kinds() {
		roundTrip(&k, d.Kind.String(), func() string { return k.String() })
	}
	var h Hook
	roundTrip(&h, "FORWARD", func() string { return h.String() })
	var b Backend
	roundTrip(&b, "netfilter-link", func() string { return b.String() })
	if err := b.UnmarshalText([]byte("ebpf")); err == nil {
		t.Error("backend ebpf parsed")
	}
	for _, z := range []value{NoKind, NoHook, NoBackend, NoVerdict, NoEngine, NoFamily, NoMethod, NoNAT, NoTunnel} {
		if z.String() != "" {
			t.Errorf("zero %T prints %q", z, z.String())
		}
	}
}

// Values the kernel may send but pathtrace has no name for print with the
// kernel's number.
func TestKernelValues(t *testing.T) {
	for _, tt := range []struct {
		got  value
		want string
	}{
		{HookFromKernel(0), "PREROUTING"},
		{HookFromKernel(4), "POSTROUTING"},
		{HookFromKernel(7), "hook(7)"},
		{HookFromKernel(0xff), "hook(255)"},
		{VerdictFromKernel(0), "drop"},
		{VerdictFromKernel(1), "accept"},
		{VerdictFromKernel(0 | 1<<16), "drop"}, // NF_DROP with an errno
		{VerdictFromKernel(9), "verdict(9)"},
		{VerdictFromKernel(0xff), "verdict(255)"},
		{MethodFromKernel(0), "masq"},
		{MethodFromKernel(3), "route"},
		{MethodFromKernel(9), "method(9)"},
		{Family(4), "family(4)"},
		{Engine(3), "engine(3)"},
	} {
		if got := tt.got.String(); got != tt.want {
			t.Errorf("%#v prints %q, want %q", tt.got, got, tt.want)
		}
	}
	if HookFromKernel(0xff) != HookUnknown || HookUnknown.Known() || !HookFromKernel(2).Known() {
		t.Error("HookUnknown is not the kernel's 0xff, or counts as known")
	}
}

func TestKinds(t *testing.T) {
	for i, d := range Kinds() {
		if d.Kind != Kind(i+1) || d.Class == NoClass || d.What == "" || d.Shown == NoKind || d.Shown.Desc().Shown != d.Shown {
			t.Errorf("kind %d: %+v", i+1, d)
		}
	}
	if Kind(200).Desc() != (Desc{}) {
		t.Error("an unknown kind has a description")
	}
}

// The docs name every value a JSON consumer can meet, and the text
// timeline's docs every hop kind a path shows.
func TestDocumented(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("..", "..", "docs", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	jsonDoc, textDoc := read("json.md"), read("output.md")
	for typ, vals := range vocabulary() {
		for _, v := range vals {
			name := v.String()
			switch {
			case typ == "hook" || typ == "tunnel":
				// Hooks are netfilter's own names; tunnels
				// print in text only so far.
				continue
			case typ == "kind" && v.(Kind).Desc().Shown != v:
				// A features row, not a hop kind of paths.
				continue
			case typ == "verdict" && v == VerdictStolen:
				// A stolen packet's table verdict is not shown.
				continue
			case typ == "family" && !strings.Contains(jsonDoc, `"ip"`):
				t.Errorf("docs/json.md names no family")
				continue
			case typ == "family":
				continue // json.md lists examples ("ip", "inet", "bridge", ...)
			}
			if !strings.Contains(jsonDoc, `"`+name+`"`) {
				t.Errorf("docs/json.md does not name %s %q", typ, name)
			}
			if typ == "kind" && !strings.Contains(textDoc, "`"+name+"`") {
				t.Errorf("docs/output.md does not name hop kind %q", name)
			}
		}
	}
}
