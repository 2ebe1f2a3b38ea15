package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/testutil"
)

func TestFeaturesBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--backend", "ebpf"}, `backend "ebpf" is not one of auto, tracepoint, fentry, kprobe`},
		{[]string{"features", "--backend", "fexit"}, `backend "fexit" is not one of`},
		{[]string{"features", "-o", "yaml"}, `--output "yaml" is not text or json`},
		{[]string{"features", "now"}, "unknown command"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			oneSentence(t, run(t, nil, tc.args...), 2, tc.want)
		})
	}
}

// TestFeaturesCommand checks that `pathtrace features` lists every hop kind
// with a backend or a reason, in text and JSON, and agrees with itself.
func TestFeaturesCommand(t *testing.T) {
	testutil.RequireRoot(t) // the probes load programs
	r := run(t, nil, "features", "-o", "json")
	if r.code != 0 {
		t.Fatalf("features -o json: exit %d: %s", r.code, r.stderr)
	}
	var rep struct {
		Kernel string
		Probes []struct{ Name, State, Why string }
		Hops   []struct {
			Hop                     string
			Observable              bool
			Backend, Source, Reason string
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("features -o json: %v\n%s", err, r.stdout)
	}
	var kinds []string
	for _, h := range rep.Hops {
		kinds = append(kinds, h.Hop)
		if h.Observable == (h.Backend == "") || (!h.Observable && h.Reason == "") {
			t.Errorf("hop %+v: observable without a backend, or not observable without a reason", h)
		}
	}
	if got, want := strings.Join(kinds, " "), "rx tx netfilter nat table bridge ipvs ipvs-drop encap decap drop consume"; got != want {
		t.Errorf("hops %q, want %q", got, want)
	}
	if len(rep.Probes) != 6 || rep.Probes[5].Name != loader.DirectReadProbe || rep.Kernel != testutil.Release() {
		t.Errorf("kernel %q, probes %+v", rep.Kernel, rep.Probes)
	}

	text := run(t, nil, "features")
	if text.code != 0 || !strings.Contains(text.stdout, "HOP") {
		t.Fatalf("features: exit %d: %s%s", text.code, text.stdout, text.stderr)
	}
	for _, h := range rep.Hops {
		if !h.Observable && !strings.Contains(text.stdout, "not observable: "+h.Reason) {
			t.Errorf("text listing does not say why %s is not observable (%s):\n%s", h.Hop, h.Reason, text.stdout)
		}
	}
}
