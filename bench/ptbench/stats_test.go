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
	// programs 50 ms of BPF time, the address-reading ones 80, pathtrace 100.
	r := &results{Datapath: &datapathResult{Runs: map[string][][]run{"k": make([][]run, len(configNames))}}}
	r.Datapath.Runs["k"][untraced] = []run{{CPUPerUnit: 0.9}, {CPUPerUnit: 1.0}, {CPUPerUnit: 1.1}}
	row := func(c config, ms uint64) costRow {
		return costRow{Scenario: "k", Config: c, TCP: true, Units: 2, Progs: []progStat{{Name: "a", Count: 10, NS: ms * 1e6}, {Name: "b", Count: 10, NS: ms * 1e6}}}
	}
	if got := r.bpfShares("k"); got != "" {
		t.Errorf("bpfShares without the cost phase = %q, want none", got)
	}
	r.Cost = []costRow{row(nullProgs, 50), row(peekProgs, 80), row(traceOther, 100), row(traceFlow, 900)}
	want := "5.0% / 8.0% / 10.0%: reading the addresses 3.0 points over the empty programs, pathtrace 5.0"
	if got := r.bpfShares("k"); got != want {
		t.Errorf("bpfShares = %q, want %q", got, want)
	}
	if got := r.bpfShares("other"); got != "" {
		t.Errorf("bpfShares of a scenario not run = %q, want none", got)
	}
}
