package main

import (
	"math"
	"testing"
)

func TestGapPerRepetition(t *testing.T) {
	// Three repetitions; the machine is faster in the second, which a
	// gap between medians would mix in and the per-repetition gap cancels.
	r := &datapathResult{Runs: map[string][][]run{"k": make([][]run, len(configNames))}}
	set := func(c config, vals ...float64) {
		for _, v := range vals {
			r.Runs["k"][c] = append(r.Runs["k"][c], run{Value: v})
		}
	}
	set(untraced, 100, 200, 100)
	set(nullProgs, 95, 190, 99)
	set(peekProgs, 91, 184, 100)
	g := r.gap("k", nullProgs, peekProgs)
	want := []float64{4, 3, -1}
	if len(g) != len(want) {
		t.Fatalf("gap = %v, want %v", g, want)
	}
	for i := range want {
		if math.Abs(g[i]-want[i]) > 1e-9 {
			t.Errorf("gap[%d] = %v, want %v", i, g[i], want[i])
		}
	}
	if got, want := g.points(2), "3.0 points (-1.0 to 4.0); more than 2 in 2 of 3"; got != want {
		t.Errorf("points = %q, want %q", got, want)
	}
	// A repetition a config lacks is left out, not read as zero.
	r.Runs["k"][traceOther] = []run{{Value: 90}}
	if g := r.gap("k", nullProgs, traceOther); len(g) != 1 || math.Abs(g[0]-5) > 1e-9 {
		t.Errorf("gap with one repetition = %v, want [5]", g)
	}
}

func TestBPFShares(t *testing.T) {
	// Untraced: 1 s of CPU per GB. Per GB of the cost phase: the empty
	// programs 50 ms of BPF time, the address-reading ones 80, with the
	// hints 90, pathtrace 100.
	r := &results{Datapath: &datapathResult{Runs: map[string][][]run{"k": make([][]run, len(configNames))}}}
	r.Datapath.Runs["k"][untraced] = []run{{CPUPerUnit: 0.9}, {CPUPerUnit: 1.0}, {CPUPerUnit: 1.1}}
	row := func(c config, ms uint64) costRow {
		return costRow{Scenario: "k", Config: c, TCP: true, Units: 2, Progs: []progStat{{Name: "a", Count: 10, NS: ms * 1e6}, {Name: "b", Count: 10, NS: ms * 1e6}}}
	}
	if got := r.bpfShares("k"); got != "" {
		t.Errorf("bpfShares without the cost phase = %q, want none", got)
	}
	r.Cost = []costRow{row(nullProgs, 50), row(peekProgs, 80), row(hintProgs, 90), row(traceOther, 100), row(traceFlow, 900)}
	want := "5.0% / 8.0% / 9.0% / 10.0%: reading the addresses 3.0 points over the empty programs, and the two hints 4.0, pathtrace 5.0"
	if got := r.bpfShares("k"); got != want {
		t.Errorf("bpfShares = %q, want %q", got, want)
	}
	if got := r.bpfShares("other"); got != "" {
		t.Errorf("bpfShares of a scenario not run = %q, want none", got)
	}
}

// TestPerRunTarget: the per-run target holds every program of either kind
// to its empty program, the BTF tracepoint forms too (their names start
// btf_ and btfd_), and leaves out, by name, what runs too rarely to be on
// a packet's path.
func TestPerRunTarget(t *testing.T) {
	empty := costRow{Units: 10, Progs: []progStat{{Name: "null_nf", Count: 200, NS: 200 * 50}, {Name: "null_tp", Count: 110, NS: 110 * 48}}}
	c := costRow{Units: 20, Progs: []progStat{
		{Name: "nf_first_direct", Count: 200, NS: 200 * 60},
		{Name: "nf_last_direct", Count: 200, NS: 200 * 62},
		{Name: "btfd_net_dev_queue", Count: 100, NS: 100 * 72}, // 1.5x: the worst
		{Name: "tp_consume_skb", Count: 20, NS: 20 * 55},
		{Name: "btf_kfree_skb_reason", Count: 1, NS: 1 * 1200}, // 0.05 a unit against 11
		{Name: "lost_prog", Count: 50, NS: 50 * 500},           // no kind: not compared
	}}
	m := perRunTarget(c, empty)
	if !m.ok || m.worst.Name != "btfd_net_dev_queue" || math.Abs(m.ratio-1.5) > 1e-9 {
		t.Fatalf("worst %s %.3f×, want btfd_net_dev_queue 1.5×", m.worst.Name, m.ratio)
	}
	if len(m.rare) != 1 || m.rare[0].Name != "btf_kfree_skb_reason" {
		t.Errorf("rare %v, want btf_kfree_skb_reason", m.rare)
	}
	want := "1.50× (btfd_net_dev_queue, 72 ns); not counted, runs under 1% of the empty program's: btf_kfree_skb_reason 1200 ns"
	if got := m.String(); got != want {
		t.Errorf("String() = %q\nwant %q", got, want)
	}
	for name, kind := range map[string]string{"nf_first": "nf", "btf_netif_receive_skb": "tp", "btfd_net_dev_queue": "tp",
		"tp_kfree_skb": "tp", "null_nf": "nf", "peekbtf_tp": "tp", "emit_tp": "tp", "pt_filter_match": ""} {
		if got := progKind(name); got != kind {
			t.Errorf("progKind(%s) = %q, want %q", name, got, kind)
		}
	}
}
