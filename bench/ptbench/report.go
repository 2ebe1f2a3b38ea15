package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// env is the machine a run was made on.
type env struct {
	Date      time.Time
	Kernel    string
	CPU       string
	CPUs      int
	Mem       string
	Go        string
	Commit    string
	Iperf     string
	Tcpdump   string
	LoadStart string
	LoadEnd   string
}

// results is everything a run measured.
type results struct {
	Env        env
	Reps       int
	Dur        time.Duration
	Elapsed    time.Duration
	Micro      []microRow
	Startup    []startRun
	Cost       []costRow
	Datapath   *datapathResult
	Pipeline   []pipeResult
	Memory     *memResult
	Replay     []replayRun
	ReplaySize int64
	UserSpace  []userRow
}

func environment(bin string) env {
	e := env{Date: time.Now().UTC(), CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadStart: loadAvg()}
	e.Kernel = firstLine(cmdOut("uname", "-r"))
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				e.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if kb, err := statusLine("/proc/meminfo", "MemTotal:"); err == nil {
		e.Mem = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
	}
	e.Commit = firstLine(cmdOut("git", "rev-parse", "--short", "HEAD"))
	if strings.TrimSpace(cmdOut("git", "status", "--porcelain", "--untracked-files=no")) != "" {
		e.Commit += " + uncommitted changes"
	}
	e.Iperf = firstLine(cmdOut("iperf3", "--version"))
	e.Tcpdump = firstLine(cmdOut("tcpdump", "--version"))
	return e
}

func cmdOut(name string, args ...string) string {
	b, _ := exec.Command(name, args...).CombinedOutput()
	return string(b)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}

func statusLine(file, key string) (uint64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			var v uint64
			_, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &v)
			return v, err
		}
	}
	return 0, fmt.Errorf("%s: no %s", file, key)
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// table is a Markdown table, also printed on the terminal.
type table struct {
	head []string
	rows [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) markdown() string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(t.head, " | ") + " |\n|")
	for range t.head {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range t.rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

func (t *table) text() string {
	w := make([]int, len(t.head))
	for i, h := range t.head {
		w[i] = len([]rune(h))
	}
	for _, r := range t.rows {
		for i, c := range r {
			w[i] = max(w[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		for i, c := range cells {
			b.WriteString(c + strings.Repeat(" ", w[i]-len([]rune(c))+2))
		}
		b.WriteString("\n")
	}
	line(t.head)
	for _, r := range t.rows {
		line(r)
	}
	return b.String()
}

// section is a titled block of the report: prose and a table.
type section struct {
	title string
	intro string
	tab   *table
	notes []string
}

func (r *results) sections() []section {
	var out []section
	if d := r.Datapath; d != nil {
		head := []string{"flow", "untraced (median)"}
		for _, c := range d.Configs[1:] {
			head = append(head, c.String())
		}
		thr := &table{head: head}
		cpu := &table{head: head}
		for _, s := range scenarios {
			fmtv := func(v float64) string { return fmt.Sprintf("%.1f Gbit/s", v/1e9) }
			cpuv := func(v float64) string { return fmt.Sprintf("%.2f s/GB", v) }
			if s.UDP {
				fmtv = func(v float64) string { return si(v) + "/s" }
				cpuv = func(v float64) string { return fmt.Sprintf("%.1f µs", v*1e6) }
			}
			row := []string{s.Name, d.values(s.Key, untraced).fmtf(fmtv)}
			crow := []string{s.Name, d.cpu(s.Key, untraced).fmtf(cpuv)}
			for _, c := range d.Configs[1:] {
				row = append(row, d.ratio(s.Key, c).pct())
				crow = append(crow, d.cpuRatio(s.Key, c).pct())
			}
			thr.add(row...)
			cpu.add(crow...)
		}
		out = append(out, section{
			title: "Datapath: throughput and packet rate",
			intro: fmt.Sprintf("Received throughput (TCP) and datagrams received per second (64-byte UDP payload), "+
				"as a percentage of the untraced run of the same repetition; median (min–max) of %d repetitions of %s each, "+
				"the configurations interleaved in a rotating order. iperf3 in the pod namespaces (`ip netns exec`): "+
				"TCP with its defaults, UDP with `-u -l 64 -b 0`.", d.Reps, d.Dur),
			tab: thr,
		}, section{
			title: "Datapath: CPU per unit of traffic",
			intro: "CPU time of iperf3 (client and server: the datapath runs in their context) and of the observer " +
				"(pathtrace from ready to stop, or tcpdump), per GB or per datagram received, as a percentage of the untraced run. " +
				"It counts work rather than waiting, so it moves less than the throughput when other work shares the machine.",
			tab: cpu,
		})
	}
	if len(r.Cost) > 0 {
		t := &table{head: []string{"flow", "programs", "runs per datagram (UDP) or GB (TCP)", "ns / run", "BPF time per datagram or GB", "events", "lost"}}
		for _, c := range r.Cost {
			tot := c.total()
			runs, bpf := fmt.Sprintf("%.1f", float64(tot.Count)/c.Units), fmt.Sprintf("%.2f µs", float64(tot.NS)/c.Units/1e3)
			if c.TCP {
				runs, bpf = si(float64(tot.Count)/c.Units), fmt.Sprintf("%.1f ms", float64(tot.NS)/c.Units/1e6)
			}
			t.add(c.Scenario, c.Config.String(), runs, fmt.Sprintf("%.0f", tot.perRun()), bpf,
				fmt.Sprint(c.Events), fmt.Sprint(c.Lost))
		}
		var per []string
		for _, c := range r.Cost {
			var ps []string
			for _, p := range c.Progs {
				// The runs per datagram too: the average of a program
				// that runs once in thousands of datagrams (drops) is
				// a handful of cold runs.
				ps = append(ps, fmt.Sprintf("%s %.0f ns (%s runs / %s)", p.Name, p.perRun(), runsPer(p.Count, c.Units), c.unit()))
			}
			per = append(per, fmt.Sprintf("%s, %s: %s", c.Scenario, c.Config, strings.Join(ps, ", ")))
		}
		out = append(out, section{
			title: "Kernel side: cost per program run",
			intro: "From `kernel.bpf_stats_enabled=1` (run_time_ns / run_cnt of pathtrace's own programs), " +
				"iperf3 at full rate (UDP: `-b 0`; TCP: its defaults, per GB received). The statistics add two clock reads to every run; " +
				"they are off for every other measurement.",
			tab: t, notes: per,
		})
	}
	if len(r.Pipeline) > 0 {
		t := &table{head: []string{"flow", "step", "offered events/s", "decoded events/s", "decoded", "lost", "decoded + lost = sent × events/datagram"}}
		var notes []string
		for _, p := range r.Pipeline {
			for _, s := range p.Steps {
				ok := "✓"
				if !s.accounted() {
					ok = fmt.Sprintf("✗ (%d ≠ %d)", s.Res.Events+s.Res.Lost, s.Expected)
				}
				t.add(p.Flow.Key, s.Spec.Label, si(s.offered()), si(s.delivered()), fmt.Sprint(s.Res.Events), fmt.Sprint(s.Res.Lost), ok)
			}
			notes = append(notes, fmt.Sprintf("%s: %d events per datagram (calibrated: %d datagrams at 2000/s → %d events, %d lost); highest rate with nothing lost: **%s events/s**.",
				p.Flow.Name, p.PerPacket, p.Calib.Sent, p.Calib.Res.Events, p.Calib.Res.Lost, si(p.zeroLoss())))
		}
		out = append(out, section{
			title: "Event pipeline: kernel → ring buffer → decode → stitch → render",
			intro: "The pathtrace binary traces a flow that only this benchmark uses (a second address of the client pod) " +
				"and renders to /dev/null; a Go sender makes 64-byte UDP datagrams at the rate asked for, and an iptables DROP " +
				"rule in the destination pod ends each the same way, so every datagram makes the same number of events. " +
				"The check: events decoded + the loss counter = datagrams sent × events per datagram, at every rate.",
			tab: t, notes: notes,
		})
	}
	if len(r.UserSpace) > 0 {
		t := &table{head: []string{"stage (user space only, recorded events)", "events/s", "CPU ns / event", "of which this stage", "bytes allocated / event"}}
		var notes []string
		for _, u := range r.UserSpace {
			stage := fmt.Sprintf("%.0f", u.StageCPU)
			if u.Base != "" {
				stage += " (over " + u.Base + ")"
			}
			t.add(u.Stage, si(u.EPS), fmt.Sprintf("%.0f", u.CPUPer), stage, fmt.Sprintf("%.0f", u.BytesPer))
		}
		for _, u := range r.UserSpace {
			p := u.Profile
			if p == nil {
				continue
			}
			var parts, top []string
			for _, sh := range p.Shares {
				parts = append(parts, fmt.Sprintf("%s %.0f%%", sh.Label, sh.Pct))
			}
			for _, f := range p.Top {
				top = append(top, fmt.Sprintf("`%s` %.1f%%", f.Name, f.FlatPct))
			}
			notes = append(notes, fmt.Sprintf("%s: profile `%s`; samples by stage: %s; top functions (flat): %s.",
				u.Stage, p.File, strings.Join(parts, ", "), strings.Join(top, ", ")))
		}
		out = append(out, section{
			title: "User space alone",
			intro: fmt.Sprintf("The %s-event recording below, held in memory (the read row: read from the file, in the page cache), "+
				"through pathtrace's packages in one goroutine as the live trace runs them (paths recycled, flushed every 256 events); "+
				"best of three. CPU is the process's (the GC's threads too), per event; \"of which this stage\" is the row's CPU "+
				"less that of the row it extends. Then each row runs again for %s under the CPU profiler, its samples labeled "+
				"by stage (pprof label `stage`: read, decode, stitch, annotate, render).", si(replayEvents), profileFor),
			tab: t, notes: notes,
		})
	}
	if len(r.Startup) > 0 {
		var ready, first dist
		for _, s := range r.Startup {
			ready = append(ready, s.Ready.Seconds())
			first = append(first, s.FirstPath.Seconds())
		}
		t := &table{head: []string{"from exec to", "median (min–max)"}}
		t.add("ready file (everything attached)", ready.fmtf(ms))
		t.add("first rendered hop", first.fmtf(ms))
		out = append(out, section{
			title: "Start-up",
			intro: fmt.Sprintf("%d starts of `pathtrace --pod-ip IP --netns node1 --netns node2 --ready-file F` while 1000 datagrams/s "+
				"of the traced address flow; the first rendered hop is the first byte on stdout.", len(r.Startup)),
			tab: t,
		})
	}
	if m := r.Memory; m != nil && m.Sent > 0 {
		f, s := m.peaks()
		t := &table{head: []string{"measure", "value"}}
		t.add("datagrams sent (asked)", fmt.Sprintf("%d in %s: %s/s (%s/s)", m.Sent, m.Dur.Round(time.Second), si(float64(m.Sent)/m.Dur.Seconds()), si(m.Rate)))
		t.add("paths rendered, events decoded, lost", fmt.Sprintf("%d, %d, %d", m.Res.Packets, m.Res.Events, m.Res.Lost))
		t.add("peak RSS (VmHWM)", mib(float64(m.Res.HWM)))
		t.add("RSS, highest sample in the first / second half", mib(float64(f))+" / "+mib(float64(s)))
		out = append(out, section{
			title: "Memory",
			intro: fmt.Sprintf("pathtrace tracing %s for %s. The sink reads the datagrams: the kernel frees most of them "+
				"without a tracepoint, so their paths never end normally — the flood the caps below must hold.", m.FlowName, m.Dur.Round(time.Second)),
			tab: t,
			notes: []string{fmt.Sprintf("Caps: stitch.DefaultMaxActive = %d paths, stitch.DefaultMaxHeldHops = %d hops (%d bytes each) "+
				"and %d hops per path (DefaultMaxHops); the kernel's `tracked` LRU map = 16384 skbs; the ring buffer = %d MiB (mapped once, all of it resident from the start); "+
				"RSS samples once a second: %s.", stitch.DefaultMaxActive, stitch.DefaultMaxHeldHops, hopSize(), stitch.DefaultMaxHops, loader.DefaultRing>>20, rssSeries(m.RSS))},
		})
	}
	if len(r.Replay) > 0 {
		var rep, td, ratio, eps, repCPU, tdCPU dist
		var busy []string
		for i, x := range r.Replay {
			rep = append(rep, x.Replay.Seconds())
			td = append(td, x.Tcpdump.Seconds())
			ratio = append(ratio, x.Replay.Seconds()/x.Tcpdump.Seconds())
			if x.Replay > 0 {
				eps = append(eps, float64(x.Events)/x.Replay.Seconds())
			}
			repCPU = append(repCPU, x.ReplayCPU.Seconds())
			tdCPU = append(tdCPU, x.TcpdumpCPU.Seconds())
			busy = append(busy, fmt.Sprintf("run %d, %s: %s", i+1, ms(x.Replay.Seconds()), x.Busy))
		}
		t := &table{head: []string{"command", "wall time", "CPU time", "events/s"}}
		t.add("`pathtrace replay FILE -o json > /dev/null`", rep.fmtf(ms), repCPU.fmtf(ms), eps.fmtf(si))
		t.add("`tcpdump -r FILE -w /dev/null`", td.fmtf(ms), tdCPU.fmtf(ms), "")
		t.add("ratio replay / tcpdump", ratio.fmtf(func(v float64) string { return fmt.Sprintf("%.1f×", v) }), "", "")
		out = append(out, section{
			title: "Replay",
			intro: fmt.Sprintf("A %s-event recording (%s, the committed testdata/pcaps/clusterip.pcapng repeated with shifted times and skb addresses), "+
				"%d runs each, interleaved. CPU time is the process's, user and system (its threads together).", si(replayEvents), mib(float64(r.ReplaySize)), len(r.Replay)),
			tab:   t,
			notes: []string{"What was busy while replay ran, in CPUs on average over its wall time (/proc): " + strings.Join(busy, "; ") + "."},
		})
	}
	if len(r.Micro) > 0 {
		t := &table{head: []string{"benchmark", "ns/op", "events/s or hops/s", "B/op", "allocs/op"}}
		for _, m := range r.Micro {
			rate := m.Metrics["events/s"]
			if len(rate) == 0 {
				rate = m.Metrics["hops/s"]
			}
			t.add(m.Pkg+" "+m.Name, m.Metrics["ns/op"].fmtf(func(v float64) string { return fmt.Sprintf("%.0f", v) }),
				rate.fmtf(si), m.Metrics["B/op"].fmtf(func(v float64) string { return fmt.Sprintf("%.0f", v) }),
				m.Metrics["allocs/op"].fmtf(func(v float64) string { return fmt.Sprintf("%.0f", v) }))
		}
		out = append(out, section{title: "Go micro-benchmarks", intro: "`go test -bench -benchmem -count 3`; median (min–max). Not asserted.", tab: t})
	}
	return out
}

func hopSize() int { return int(sizeofHop) }

func rssSeries(v []uint64) string {
	var s []string
	for _, x := range v {
		s = append(s, fmt.Sprintf("%.0f", float64(x)/(1<<20)))
	}
	return strings.Join(s, " ") + " MiB"
}

// targets lists the targets with what this run measured.
func (r *results) targets() *table {
	t := &table{head: []string{"target", "measured", "met"}}
	mark := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "**no**"
	}
	for _, c := range r.Cost {
		if c.Config != traceOther {
			continue
		}
		var empty costRow
		for _, n := range r.Cost {
			if n.Scenario == c.Scenario && n.Config == nullProgs {
				empty = n
			}
		}
		if m := perRunTarget(c, empty); m.ok {
			t.add("another pod: every program per run ≤ 1.3× the empty one: "+c.Scenario, m.String(), mark(m.ratio <= 1.3))
		}
		// Context, not a target: the same against programs that only
		// read the packet's addresses, and that read them and ask the
		// two hints, each held to the empty programs as pathtrace is:
		// a floor over 1.3× puts the target out of reach of any
		// program that does what it does.
		for _, n := range r.Cost {
			if n.Scenario != c.Scenario || (n.Config != peekProgs && n.Config != peekRawProgs && n.Config != hintProgs) {
				continue
			}
			var ps []string
			for _, p := range n.Progs {
				ps = append(ps, fmt.Sprintf("%s %.0f ns", p.Name, p.perRun()))
			}
			v := strings.Join(ps, ", ")
			if m := perRunTarget(n, empty); m.ok {
				v += fmt.Sprintf("; the worst %.2f× the empty one", m.ratio)
			}
			t.add("context: "+n.Config.String()+", per run: "+c.Scenario, v, "—")
		}
	}
	if d := r.Datapath; d != nil {
		for _, s := range scenarios {
			v, floor := d.ratio(s.Key, traceOther).median(), d.ratio(s.Key, nullProgs).median()
			if !math.IsNaN(v) && !math.IsNaN(floor) {
				t.add("tracing another pod within 2 points of the empty programs: "+s.Key,
					fmt.Sprintf("%.1f%% vs %.1f%% of untraced", 100*v, 100*floor), mark(v >= floor-0.02))
			}
		}
		for _, s := range scenarios {
			f, td := d.ratio(s.Key, traceFlow).median(), d.ratio(s.Key, tcpdumpAny).median()
			if !math.IsNaN(f) && !math.IsNaN(td) {
				t.add("tracing this flow cheaper than tcpdump -i any: "+s.Key,
					fmt.Sprintf("%.1f%% vs %.1f%% of untraced", 100*f, 100*td), mark(f >= td))
			}
		}
		// Context: the floors the two targets above are held to.
		for _, s := range scenarios {
			o, p, h := d.ratio(s.Key, traceOther).median(), d.ratio(s.Key, peekProgs).median(), d.ratio(s.Key, hintProgs).median()
			if !math.IsNaN(o) && !math.IsNaN(p) && !math.IsNaN(h) {
				t.add("context: another pod vs programs reading the addresses / and the two hints: "+s.Key,
					fmt.Sprintf("%.1f%% vs %.1f%% / %.1f%% of untraced", 100*o, 100*p, 100*h), "—")
			}
		}
		// The kernel side's share of the datapath's CPU, from the cost
		// phase: less noisy than the throughput, and what a CPU-bound
		// flow loses.
		for _, s := range scenarios {
			if share := r.bpfShares(s.Key); share != "" {
				t.add("context: BPF time as a share of the untraced CPU per unit (empty programs / reading the addresses / and the two hints / pathtrace, another pod): "+s.Key, share, "—")
			}
		}
		// The same per repetition: how far below the empty programs
		// reading the addresses alone leaves the flow, with the hints,
		// and pathtrace.
		for _, s := range scenarios {
			for _, c := range []config{peekProgs, hintProgs, traceOther} {
				if g := d.gap(s.Key, nullProgs, c); len(g) > 0 {
					t.add("context: "+c.String()+" below the empty programs, per repetition: "+s.Key, g.points(2), "—")
				}
			}
		}
		for _, s := range scenarios {
			f, td := d.ratio(s.Key, traceFlowDev).median(), d.ratio(s.Key, tcpdumpAny).median()
			if !math.IsNaN(f) && !math.IsNaN(td) {
				t.add("context: this flow with --hops rx,tx vs tcpdump -i any: "+s.Key,
					fmt.Sprintf("%.1f%% vs %.1f%% of untraced", 100*f, 100*td), "—")
			}
		}
		// The floor of any tracer that sends an event per hop: what of
		// "this flow" is the events themselves, what pathtrace's work on
		// them.
		for _, s := range scenarios {
			a, l := d.ratio(s.Key, emitProgs).median(), d.ratio(s.Key, emitLastProgs).median()
			f, td := d.ratio(s.Key, traceFlow).median(), d.ratio(s.Key, tcpdumpAny).median()
			if !math.IsNaN(a) && !math.IsNaN(l) && !math.IsNaN(f) && !math.IsNaN(td) {
				t.add("context: an event per hop, read and dropped (every hop / one per netfilter hook) vs this flow vs tcpdump -i any: "+s.Key,
					fmt.Sprintf("%.1f%% / %.1f%% vs %.1f%% vs %.1f%% of untraced", 100*a, 100*l, 100*f, 100*td), "—")
			}
		}
		// The floor of "smaller events": the same programs sending 16
		// bytes an event instead of pathtrace's header.
		for _, s := range scenarios {
			a, tiny := d.ratio(s.Key, emitProgs).median(), d.ratio(s.Key, emitTinyProgs).median()
			td := d.ratio(s.Key, tcpdumpAny).median()
			if !math.IsNaN(a) && !math.IsNaN(tiny) && !math.IsNaN(td) {
				t.add(fmt.Sprintf("context: an event per hop of %d bytes vs %d bytes vs tcpdump -i any: %s", emitSize, emitTinySize, s.Key),
					fmt.Sprintf("%.1f%% vs %.1f%% vs %.1f%% of untraced", 100*a, 100*tiny, 100*td), "—")
			}
		}
	}
	if len(r.Pipeline) > 0 || len(r.UserSpace) > 0 {
		best := 0.0
		for _, p := range r.Pipeline {
			best = max(best, p.zeroLoss())
		}
		us := 0.0
		for _, u := range r.UserSpace {
			if u.Stage == "decode + stitch" {
				us = u.EPS
			}
		}
		t.add("≥ 1M hop events/s decode + stitch without loss",
			fmt.Sprintf("live %s/s (all the kernel made); user space alone %s/s", si(best), si(us)), mark(best >= 1e6 || us >= 1e6))
	}
	if len(r.Replay) > 0 {
		var eps, ratio dist
		for _, x := range r.Replay {
			if x.Replay > 0 && x.Tcpdump > 0 {
				eps = append(eps, float64(x.Events)/x.Replay.Seconds())
				ratio = append(ratio, x.Replay.Seconds()/x.Tcpdump.Seconds())
			}
		}
		if len(eps) > 0 {
			t.add("replay ≥ 2M events/s", si(eps.median())+"/s", mark(eps.median() >= 2e6))
			t.add("replay ≤ 2× tcpdump -r", fmt.Sprintf("%.1f×", ratio.median()), mark(ratio.median() <= 2))
		}
	}
	if len(r.Startup) > 0 {
		var ready dist
		for _, s := range r.Startup {
			ready = append(ready, s.Ready.Seconds())
		}
		t.add("ready within 0.5 s", ms(ready.max())+" (slowest)", mark(ready.max() <= 0.5))
	}
	if m := r.Memory; m != nil && m.Res.HWM > 0 {
		t.add("peak RSS ≤ 64 MB in the 60 s test", mib(float64(m.Res.HWM)), mark(float64(m.Res.HWM) <= 64e6))
	}
	return t
}

// summary is what make bench prints.
func (r *results) summary() string {
	var b strings.Builder
	e := r.Env
	fmt.Fprintf(&b, "\npathtrace benchmarks — %s, Linux %s, %d × %s, %s; load %s → %s; %s\n",
		e.Date.Format("2006-01-02 15:04 MST"), e.Kernel, e.CPUs, e.CPU, e.Mem, e.LoadStart, e.LoadEnd, r.Elapsed.Round(time.Second))
	for _, s := range r.sections() {
		fmt.Fprintf(&b, "\n== %s\n%s", s.title, s.tab.text())
		for _, n := range s.notes {
			fmt.Fprintf(&b, "  %s\n", strings.ReplaceAll(n, "**", ""))
		}
	}
	fmt.Fprintf(&b, "\n== Targets\n%s", strings.ReplaceAll(r.targets().text(), "**", ""))
	return b.String()
}

// Markers of the generated part of docs/BENCHMARKS.md; the rest of the file
// is written by hand and kept.
const (
	beginMarker = "<!-- make bench: generated from here -->"
	endMarker   = "<!-- make bench: generated up to here -->"
)

func (r *results) markdown() string {
	var b strings.Builder
	e := r.Env
	fmt.Fprintf(&b, "%s\n\n## Latest run\n\n", beginMarker)
	fmt.Fprintf(&b, "- Date: %s\n- Kernel: Linux %s\n- Machine: %d × %s, %s RAM; load average %s at the start, %s at the end\n",
		e.Date.Format("2006-01-02 15:04 MST"), e.Kernel, e.CPUs, e.CPU, e.Mem, e.LoadStart, e.LoadEnd)
	fmt.Fprintf(&b, "- pathtrace %s, built with %s; %s; %s\n- `make bench` took %s\n\n", e.Commit, e.Go, e.Iperf, e.Tcpdump, r.Elapsed.Round(time.Second))
	fmt.Fprintf(&b, "### Targets\n\n%s\n", r.targets().markdown())
	for _, s := range r.sections() {
		fmt.Fprintf(&b, "### %s\n\n%s\n\n%s", s.title, s.intro, s.tab.markdown())
		for _, n := range s.notes {
			fmt.Fprintf(&b, "\n%s\n", n)
		}
		b.WriteString("\n")
	}
	b.WriteString(endMarker + "\n")
	return b.String()
}

// updateDoc replaces the generated part of the report, keeping the rest.
func (r *results) updateDoc(path string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	doc := string(old)
	gen := r.markdown()
	i, j := strings.Index(doc, beginMarker), strings.Index(doc, endMarker)
	switch {
	case i >= 0 && j > i:
		doc = doc[:i] + gen + doc[j+len(endMarker)+1:]
	default:
		if doc == "" {
			doc = "# Benchmarks\n\n"
		}
		doc += "\n" + gen
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}

// runsPer formats runs per datagram (or GB) with the digits a rare program
// needs.
func runsPer(runs uint64, packets float64) string {
	if packets <= 0 {
		return "?"
	}
	v := float64(runs) / packets
	switch {
	case v == 0:
		return "0"
	case v >= 1000:
		return si(v)
	case v >= 0.1:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.1g", v)
	}
}

// bpfShares gives, for scenario key, the BPF time per datagram or GB of the
// empty programs, the address-reading ones, those that also ask the two
// hints, and pathtrace tracing another pod (cost phase) as a share of the
// untraced run's CPU per unit (datapath phase, median); "" without both
// phases. The statistics' own clock reads are in each figure alike (the
// four run about as often): the differences are what compare.
func (r *results) bpfShares(key string) string {
	if r.Datapath == nil || len(r.Datapath.Runs[key]) <= int(untraced) {
		return ""
	}
	cpu := r.Datapath.cpu(key, untraced).median()
	if math.IsNaN(cpu) || cpu <= 0 {
		return ""
	}
	share := map[config]float64{}
	for _, c := range r.Cost {
		if c.Scenario != key || c.Units <= 0 {
			continue
		}
		switch c.Config {
		case nullProgs, peekProgs, hintProgs, traceOther:
			share[c.Config] = 100 * float64(c.total().NS) / 1e9 / c.Units / cpu
		}
	}
	n, pk, h, o := share[nullProgs], share[peekProgs], share[hintProgs], share[traceOther]
	if n == 0 || pk == 0 || h == 0 || o == 0 {
		return ""
	}
	return fmt.Sprintf("%.1f%% / %.1f%% / %.1f%% / %.1f%%: reading the addresses %.1f points over the empty programs, and the two hints %.1f, pathtrace %.1f",
		n, pk, h, o, pk-n, h-n, o-n)
}
