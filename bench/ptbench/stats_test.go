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
