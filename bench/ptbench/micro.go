package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// microRow is one Go benchmark: the median of its runs.
type microRow struct {
	Name    string
	Pkg     string
	Metrics map[string]dist // unit → values ("ns/op", "events/s", "B/op", ...)
}

// microBenchmarks are run by make bench, not asserted.
var microBenchmarks = []struct{ pkg, pattern string }{
	{"./internal/decode", "^BenchmarkDecode$"},
	{"./internal/stitch", "^(BenchmarkStitch|BenchmarkStitchRecycle)$"},
	{"./internal/render", "^(BenchmarkJSON|BenchmarkText)$"},
	{"./internal/trace", "^BenchmarkRecorder$"}, // what -w adds for each event
}

var benchLineRE = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+(.*)$`)

// benchMicro runs the Go benchmarks of decode, stitch, render and the
// recorder count times each and returns their figures.
func benchMicro(ctx context.Context, goBin string, count int) ([]microRow, error) {
	var rows []microRow
	for _, b := range microBenchmarks {
		cmd := exec.CommandContext(ctx, goBin, "test", "-run", "^$", "-bench", b.pattern, "-benchmem",
			"-benchtime", "1s", "-count", strconv.Itoa(count), b.pkg)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("go test -bench %s: %w: %s", b.pkg, err, out)
		}
		byName := map[string]*microRow{}
		var order []string
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			m := benchLineRE.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			r := byName[m[1]]
			if r == nil {
				r = &microRow{Name: m[1], Pkg: strings.TrimPrefix(b.pkg, "./"), Metrics: map[string]dist{}}
				byName[m[1]] = r
				order = append(order, m[1])
			}
			f := strings.Fields(m[3])
			for i := 0; i+1 < len(f); i += 2 {
				v, err := strconv.ParseFloat(f[i], 64)
				if err == nil {
					r.Metrics[f[i+1]] = append(r.Metrics[f[i+1]], v)
				}
			}
		}
		for _, n := range order {
			rows = append(rows, *byName[n])
		}
	}
	return rows, nil
}
