package doctor

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pathtrace/pathtrace/internal/record"
)

// withoutFacts is r's JSON as pathtrace wrote it before facts existed.
func withoutFacts(t *testing.T, r *Report) []byte {
	t.Helper()
	old := *r
	old.Facts = nil
	b, err := json.Marshal(map[uint32]*Report{7: &old})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFactsFromItems: the facts made from the items of a report written
// without them are the facts Collect read.
func TestFactsFromItems(t *testing.T) {
	set := func(kv ...string) fstest.MapFS {
		fsys := fakeNodeFS()
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(fsys, "proc/sys/"+kv[i])
				continue
			}
			fsys["proc/sys/"+kv[i]] = file(kv[i+1] + "\n")
		}
		return fsys
	}
	for _, tc := range []struct {
		name     string
		fsys     fstest.MapFS
		problems []string
	}{
		{"fake node", fakeNodeFS(), nil},
		{"all absent", fstest.MapFS{}, nil},
		{"forwarding off, bridge-nf absent", set("net/ipv4/ip_forward", "0", "net/bridge/bridge-nf-call-iptables", ""), nil},
		{"conntrack full", set("net/netfilter/nf_conntrack_count", "131072"), nil},
		{"conntrack max 0", set("net/netfilter/nf_conntrack_max", "0"), nil},
		{"conntrack count absent", set("net/netfilter/nf_conntrack_count", ""), nil},
		{"conntrack max not a number", set("net/netfilter/nf_conntrack_max", "lots"), nil},
		{"rp_filter effective from all", set("net/ipv4/conf/all/rp_filter", "1", "net/ipv4/conf/eth0/rp_filter", "0"), nil},
		{"rp_filter absent", set("net/ipv4/conf/flannel.1/rp_filter", ""), nil},
		{"short timeout", set("net/netfilter/nf_conntrack_tcp_timeout_established", "600"), nil},
		{"ip_forward not a number", set("net/ipv4/ip_forward", "yes"), []string{`net.ipv4.ip_forward is "yes", not a number`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := collectFake(t, tc.fsys, fakeFlannelNet())
			reports, problems, err := DecodeReports(withoutFacts(t, r))
			if err != nil {
				t.Fatal(err)
			}
			if got := reports[7].Facts; !reflect.DeepEqual(got, r.Facts) {
				t.Errorf("facts from the items\n%+v\nwant what Collect read\n%+v", got, r.Facts)
			}
			if !slices.Equal(problems[7], tc.problems) {
				t.Errorf("problems %q, want %q", problems[7], tc.problems)
			}
		})
	}
}

// TestDecodeDamagedReports: whatever is wrong with a report, DecodeReports
// leaves the fact unknown and says what, in one clause.
func TestDecodeDamagedReports(t *testing.T) {
	good := withoutFacts(t, collectFake(t, fakeNodeFS(), fakeFlannelNet()))
	fresh, err := json.Marshal(map[uint32]*Report{7: collectFake(t, fakeNodeFS(), fakeFlannelNet())})
	if err != nil {
		t.Fatal(err)
	}
	edit := func(b []byte, old, new string) []byte {
		if !strings.Contains(string(b), old) {
			t.Fatalf("no %s in the report", old)
		}
		return []byte(strings.Replace(string(b), old, new, 1))
	}
	item := func(id string) string { return `"id":"sysctl.` + id + `"` }
	for _, tc := range []struct {
		name    string
		json    []byte
		problem string
		unknown func(*Facts) Sysctl // the fact left unknown
	}{
		{"empty ip_forward", edit(good, `"name":"net.ipv4.ip_forward","value":"1"`, `"name":"net.ipv4.ip_forward","value":""`),
			"net.ipv4.ip_forward is empty", func(f *Facts) Sysctl { return f.IPForward }},
		{"empty rp_filter of a device", edit(good, `"name":"net.ipv4.conf.flannel/1.rp_filter","value":"0 (off)"`, `"name":"net.ipv4.conf.flannel/1.rp_filter","value":""`),
			"net.ipv4.conf.flannel.1.rp_filter is empty", func(f *Facts) Sysctl { return f.RPFilter.Devices["flannel.1"] }},
		{"timeout not a number", edit(good, `"value":"86400s"`, `"value":"long"`),
			`net.netfilter.nf_conntrack_tcp_timeout_established is "long", not a number`, func(f *Facts) Sysctl { return f.ConntrackTCPEstablished }},
		{"conntrack empty", edit(good, `"value":"111412 / 131072 (85.0% full)"`, `"value":""`),
			"net.netfilter.nf_conntrack_usage is empty", func(f *Facts) Sysctl { return f.Conntrack.Max }},
		{"conntrack garbled", edit(good, `"value":"111412 / 131072 (85.0% full)"`, `"value":"111412 of 131072"`),
			`net.netfilter.nf_conntrack_usage is "111412 of 131072", not a count and a maximum`, func(f *Facts) Sysctl { return f.Conntrack.Count }},
		{"long value", edit(good, `"value":"86400s"`, `"value":"`+strings.Repeat("x", 1000)+`"`),
			`net.netfilter.nf_conntrack_tcp_timeout_established is "` + strings.Repeat("x", 40) + `...", not a number`, func(f *Facts) Sysctl { return f.ConntrackTCPEstablished }},
		{"item gone", edit(good, item("net.ipv4.vs.conntrack"), item("net.ipv4.vs.kontrack")),
			"it has no net.ipv4.vs.conntrack item", func(f *Facts) Sysctl { return f.IPVSConntrack }},
		{"section gone", edit(good, `"id":"sysctls"`, `"id":"sysctlz"`),
			"it has no sysctls section", func(f *Facts) Sysctl { return f.BridgeNFCallIPTables }},
		{"fact without a value", edit(fresh, `"ip_forward":{"state":"present","value":1}`, `"ip_forward":{"state":"present"}`),
			"net.ipv4.ip_forward has no value", func(f *Facts) Sysctl { return f.IPForward }},
		{"fact in a strange state", edit(fresh, `"all":{"state":"present","value":0}`, `"all":{"state":"prisent","value":0}`),
			`net.ipv4.conf.all.rp_filter has the state "prisent"`, func(f *Facts) Sysctl { return f.RPFilter.All }},
		{"device fact in a strange state", edit(fresh, `"eth0":{"state":"present","value":1}`, `"eth0":{"state":"?"}`),
			`net.ipv4.conf.eth0.rp_filter has the state "?"`, func(f *Facts) Sysctl { return f.RPFilter.Devices["eth0"] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reports, problems, err := DecodeReports(tc.json)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(problems[7], []string{tc.problem}) {
				t.Errorf("problems %q, want %q", problems[7], tc.problem)
			}
			r := reports[7]
			if r == nil || r.Facts == nil {
				t.Fatalf("report %+v", r)
			}
			if s := tc.unknown(r.Facts); s.State == Present || s.State == Absent {
				t.Errorf("fact %+v, want unknown", s)
			}
			if tc.name != "section gone" && !r.Facts.IPv6Forwarding.Is(1) {
				t.Errorf("the intact facts were lost: %+v", r.Facts)
			}
		})
	}

	for _, tc := range []struct {
		name, json string
		err        bool
		problem    string
	}{
		{"not an object", `["a"]`, true, ""},
		{"not inodes", `{"node1":{}}`, true, ""},
		{"report of the wrong shape", `{"7":{"sections":5}}`, false, "it does not decode (json: "},
		{"report null", `{"7":null}`, false, ""},
		{"report empty", `{"7":{}}`, false, "it has no sysctls section"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reports, problems, err := DecodeReports([]byte(tc.json))
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want one: %v", err, tc.err)
			}
			if tc.err {
				return
			}
			if tc.problem == "" {
				if len(problems) != 0 || len(reports) != 0 {
					t.Errorf("reports %v, problems %v", reports, problems)
				}
				return
			}
			if len(problems[7]) != 1 || !strings.HasPrefix(problems[7][0], tc.problem) {
				t.Errorf("problems %q, want one starting %q", problems[7], tc.problem)
			}
		})
	}
}

// TestDecodeRecordedReports: the reports of the committed recordings were
// written before facts existed; their facts come from the items, whole.
func TestDecodeRecordedReports(t *testing.T) {
	files, err := filepath.Glob("../../testdata/pcaps/*.pcapng")
	if err != nil || len(files) == 0 {
		t.Fatalf("recordings: %v %v", files, err)
	}
	for _, file := range files {
		// The reports are in the section header.
		r, err := record.OpenFile(file)
		if err != nil {
			t.Fatal(err)
		}
		raw := r.Meta().Reports
		r.Close()
		reports, problems, err := DecodeReports(raw)
		if err != nil || len(problems) != 0 || len(reports) != 2 {
			t.Fatalf("%s: %d reports, problems %v, err %v", file, len(reports), problems, err)
		}
		for inode, rep := range reports {
			f := rep.Facts
			pct, ok := f.Conntrack.Percent()
			if !f.IPForward.Is(1) || !f.BridgeNFCallIPTables.Is(1) || !ok || pct > 1 || f.IPVSConntrack.State != Absent ||
				!f.ConntrackTCPEstablished.Is(432000) || !f.RPFilter.All.Is(0) || len(f.RPFilter.Devices) != 3 || !f.RPFilter.Devices["flannel.1"].Is(0) {
				t.Errorf("%s: node %d: facts %+v", file, inode, f)
			}
		}
	}
}

func TestRPFilterEffective(t *testing.T) {
	rp := RPFilter{All: present(1), Devices: map[string]Sysctl{"a": present(2), "b": present(0), "c": {State: Absent}}}
	for dev, want := range map[string]int64{"a": 2, "b": 1, "c": 1, "d": 1} {
		if got, ok := rp.Effective(dev); !ok || got != want {
			t.Errorf("Effective(%s) = %d %v, want %d", dev, got, ok, want)
		}
	}
	rp.All = Sysctl{State: Unsure, Text: "x"}
	if got, ok := rp.Effective("a"); !ok || got != 2 {
		t.Errorf("all unknown: Effective(a) = %d %v, want a's own 2", got, ok)
	}
	if _, ok := rp.Effective("c"); ok {
		t.Error("neither known: Effective(c) is known")
	}
}
