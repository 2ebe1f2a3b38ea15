package main

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"

	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/features"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/testutil"
)

func TestBackendItems(t *testing.T) {
	probes := []loader.Probe{
		{Name: "raw tracepoint", State: features.Supported},
		{Name: "fentry", State: features.NotSupported, Why: "fentry refused (EPERM)"},
	}
	hops := []loader.HopSupport{
		{Hop: hop.Rx, Backend: hop.Tracepoint, Source: "raw_tracepoint/netif_receive_skb"},
		{Hop: hop.Table, Reason: "fentry refused (EPERM)"},
	}
	ids := func(items []doctor.Item) string {
		var s []string
		for _, it := range items {
			s = append(s, it.ID+"="+string(it.Status))
		}
		return strings.Join(s, " ")
	}

	items := backendItems(loader.Report{Probes: probes, Hops: hops})
	if got, want := ids(items), "backend.raw-tracepoint=ok backend.fentry=info backend.hop.table=warn"; got != want {
		t.Errorf("items %s, want %s", got, want)
	}
	if it := items[2]; it.Value != "not observable" || !strings.Contains(it.Explain, "fentry refused (EPERM)") {
		t.Errorf("hop item %+v does not say why", it)
	}
	if it := items[1]; it.Value != "not supported" || !strings.Contains(it.Explain, "fentry refused (EPERM)") {
		t.Errorf("probe item %+v does not say why", it)
	}

	items = backendItems(loader.Report{Probes: probes, Hops: hops[:1]})
	if got, want := ids(items), "backend.raw-tracepoint=ok backend.fentry=info backend.hops=ok"; got != want {
		t.Errorf("all observable: items %s, want %s", got, want)
	}

	// How the programs read packets: not a way to attach, and said so.
	for _, c := range []struct {
		state  features.State
		status doctor.Status
		says   string
	}{
		{features.Supported, doctor.StatusOK, "plain loads"},
		{features.NotSupported, doctor.StatusInfo, "with a helper call, about 20 ns more a run"},
	} {
		direct := loader.Probe{Name: loader.DirectReadProbe, State: c.state, Why: "a load of skb->head is not readable memory"}
		items = backendItems(loader.Report{Probes: []loader.Probe{direct}, Hops: hops[:1]})
		if it := items[0]; it.ID != "backend.direct-packet-read" || it.Status != c.status || !strings.Contains(it.Explain, c.says) ||
			strings.Contains(it.Explain, "attach") {
			t.Errorf("direct packet read %s: item %+v", c.state, it)
		}
	}

	// Not as root: the probes cannot tell, and the hops are not named.
	probes = append(probes, loader.Probe{Name: "netfilter link", State: features.Inconclusive, Why: "load program: operation not permitted"})
	items = backendItems(loader.Report{Probes: probes, Hops: hops})
	if got, want := ids(items), "backend.raw-tracepoint=ok backend.fentry=info backend.netfilter-link=unknown backend.hops=unknown"; got != want {
		t.Errorf("inconclusive: items %s, want %s", got, want)
	}
	if it := items[3]; !strings.Contains(it.Explain, "as root") {
		t.Errorf("item %+v does not say to run as root", it)
	}
}

// TestDoctorBackends: `pathtrace doctor` shows the probed backends, as
// root and, inconclusive, as another user.
func TestDoctorBackends(t *testing.T) {
	testutil.RequireRoot(t) // the probes load programs
	for _, cred := range []*syscall.Credential{nil, {Uid: 65534, Gid: 65534}} {
		r := run(t, cred, "doctor", "-o", "json")
		if r.code != 0 {
			t.Fatalf("doctor as %v: exit %d: %s", cred, r.code, r.stderr)
		}
		var rep doctor.Report
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatal(err)
		}
		s := rep.Section(doctor.SectionBackends)
		if s == nil || len(s.Items) < 5 {
			t.Fatalf("as %v: backends section %+v", cred, s)
		}
		inconclusive := rep.Item("backend.hops") != nil && rep.Item("backend.hops").Status == doctor.StatusUnknown
		if want := cred != nil; inconclusive != want {
			t.Errorf("as %v: probes inconclusive %v, want %v: %+v", cred, inconclusive, want, s.Items)
		}
		if rep.Facts == nil || !rep.Facts.IPForward.Is(1) && !rep.Facts.IPForward.Is(0) {
			t.Errorf("as %v: facts %+v", cred, rep.Facts)
		}
	}
	text := run(t, nil, "doctor")
	if text.code != 0 || strings.Contains(text.stdout, "(not probed)") || !strings.Contains(text.stdout, "raw tracepoint") {
		t.Errorf("doctor: exit %d:\n%s", text.code, text.stdout)
	}
}
