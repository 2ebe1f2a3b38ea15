package main

import (
	"fmt"
	"math"
	"slices"
	"unsafe"

	"github.com/pathtrace/pathtrace/internal/stitch"
)

// dist is a set of repeated measurements.
type dist []float64

func (d dist) sorted() []float64 {
	s := slices.Clone([]float64(d))
	slices.Sort(s)
	return s
}

// median of the measurements; NaN when there are none.
func (d dist) median() float64 {
	s := d.sorted()
	n := len(s)
	switch {
	case n == 0:
		return math.NaN()
	case n%2 == 1:
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func (d dist) min() float64 {
	if len(d) == 0 {
		return math.NaN()
	}
	return slices.Min(d)
}

func (d dist) max() float64 {
	if len(d) == 0 {
		return math.NaN()
	}
	return slices.Max(d)
}

// pct formats a ratio as a percentage with its spread: "97.1% (95.0–99.2)".
func (d dist) pct() string {
	if len(d) == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f%% (%.1f–%.1f)", 100*d.median(), 100*d.min(), 100*d.max())
}

// points formats differences in points: the median, the spread, and in
// how many of them the difference exceeds limit.
func (d dist) points(limit float64) string {
	n := 0
	for _, x := range d {
		if x > limit {
			n++
		}
	}
	return fmt.Sprintf("%.1f points (%.1f to %.1f); more than %g in %d of %d", d.median(), d.min(), d.max(), limit, n, len(d))
}

// fmtf formats the median with its spread using f for each number.
func (d dist) fmtf(f func(float64) string) string {
	if len(d) == 0 {
		return "—"
	}
	if len(d) == 1 {
		return f(d[0])
	}
	return fmt.Sprintf("%s (%s–%s)", f(d.median()), f(d.min()), f(d.max()))
}

// si formats with a k/M/G suffix.
func si(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e9:
		return fmt.Sprintf("%.2fG", v/1e9)
	case a >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case a >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func mib(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }

func ms(v float64) string { return fmt.Sprintf("%.0f ms", v*1e3) }

// sizeofHop is the size of one stitch.Hop, the unit of the stitcher's memory.
var sizeofHop = unsafe.Sizeof(stitch.Hop{})
