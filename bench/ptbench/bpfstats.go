package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"

	"github.com/pathtrace/pathtrace/internal/topology"
)

// progStat is the kernel's run-time statistics of the programs of one name.
type progStat struct {
	Name  string
	Count uint64 // runs
	NS    uint64 // nanoseconds spent running
}

func (p progStat) perRun() float64 {
	if p.Count == 0 {
		return 0
	}
	return float64(p.NS) / float64(p.Count)
}

// bpfStats sums run_cnt and run_time_ns per program name over the programs
// the process pid holds open (found through /proc/PID/fdinfo).
func bpfStats(pid int) (map[string]progStat, error) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	stats := map[string]progStat{}
	seen := map[uint64]bool{} // link fds name their program too
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		_, rest, ok := strings.Cut(string(b), "\nprog_id:\t")
		if !ok {
			continue
		}
		idStr, _, _ := strings.Cut(rest, "\n")
		id, err := strconv.ParseUint(idStr, 10, 32)
		if err != nil || seen[id] {
			continue
		}
		seen[id] = true
		prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
		if err != nil {
			continue
		}
		info, err := prog.Info()
		st, serr := prog.Stats()
		prog.Close()
		if err != nil || serr != nil {
			continue
		}
		s := stats[info.Name]
		s.Name = info.Name
		s.Count += st.RunCount
		s.NS += uint64(st.Runtime)
		stats[info.Name] = s
	}
	return stats, nil
}

// withBPFStats turns kernel.bpf_stats_enabled on for the duration of fn.
// The statistics cost every program two clock reads, so they are never on
// while the datapath ratios are measured.
func withBPFStats(fn func() error) error {
	const path = "/proc/sys/kernel/bpf_stats_enabled"
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte("1"), 0); err != nil {
		return fmt.Errorf("enable bpf stats: %w", err)
	}
	defer os.WriteFile(path, old, 0)
	return fn()
}

// costRow is the kernel-side cost of one traced run, per program.
type costRow struct {
	Scenario string
	Config   config
	// Units is what the run's figures are per: datagrams sent by iperf3
	// (UDP), or GB received (TCP; its sender's segments are not counted).
	Units  float64
	TCP    bool
	Progs  []progStat
	Events uint64
	Lost   uint64
}

// unit names what a row's figures are per.
func (r costRow) unit() string {
	if r.TCP {
		return "GB"
	}
	return "datagram"
}

// benchCost runs each scenario at full rate (UDP: iperf3 -b 0; TCP: its
// defaults) under pathtrace tracing another pod and this flow, and the
// floors' programs, with bpf_stats on, and returns what each program cost
// per run and per datagram or GB.
func benchCost(ctx context.Context, c *cluster, bin string, dur time.Duration) ([]costRow, error) {
	var rows []costRow
	client := c.Pod(topology.PodClient)
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	err = withBPFStats(func() error {
		for _, s := range scenarios {
			for _, cfg := range []config{nullProgs, peekProgs, peekRawProgs, hintProgs, traceOther, emitProgs, emitLastProgs, emitTinyProgs, traceFlow, traceFlowDev} {
				b, args := bin, c.tracerArgs(s.Other)
				switch cfg {
				case traceFlow:
					args = c.tracerArgs(client.IP.String())
				case traceFlowDev:
					args = append(c.tracerArgs(client.IP.String()), "--hops", "rx,tx")
				case nullProgs, peekProgs, peekRawProgs, hintProgs, emitProgs, emitLastProgs, emitTinyProgs:
					b, args = self, nullTracerArgs(c, cfg, s.Other)
				}
				null, err := devNull()
				if err != nil {
					return err
				}
				tr, err := startTracer(ctx, b, args, null)
				null.Close()
				if err != nil {
					return err
				}
				pid := tr.cmd.Process.Pid
				before, err := bpfStats(pid)
				if err != nil {
					tr.stop()
					return err
				}
				ir, ierr := iperf(ctx, client.NetnsName, s.Dst, s.Port, s.UDP, dur)
				after, err := bpfStats(pid)
				res, serr := tr.stop()
				if ierr != nil || err != nil || serr != nil {
					return fmt.Errorf("cost of %s, %s: %v %v %v", s.Key, cfg, ierr, err, serr)
				}
				row := costRow{Scenario: s.Key, Config: cfg, Units: ir.SentPPS * dur.Seconds(), Events: res.Events, Lost: res.Lost}
				if !s.UDP {
					row.TCP, row.Units = true, ir.Units/1e9
				}
				for name, a := range after {
					b := before[name]
					row.Progs = append(row.Progs, progStat{Name: name, Count: a.Count - b.Count, NS: a.NS - b.NS})
				}
				slices.SortFunc(row.Progs, func(a, b progStat) int { return strings.Compare(a.Name, b.Name) })
				rows = append(rows, row)
			}
		}
		return nil
	})
	return rows, err
}

// total sums the programs of a row.
func (r costRow) total() progStat {
	var t progStat
	for _, p := range r.Progs {
		t.Count += p.Count
		t.NS += p.NS
	}
	return t
}

// progKind is the hook kind of one of the cost phase's programs: "nf" for
// the netfilter programs (nf_first_direct, null_nf, peek_nf), "tp" for the
// tracepoint ones, raw, tp_btf and tp_btf's direct form (tp_consume_skb,
// btf_kfree_skb, btfd_net_dev_queue, null_tp, peekbtf_tp, hintbtf_tp), "" for anything
// else.
func progKind(name string) string {
	switch first, rest, _ := strings.Cut(name, "_"); first {
	case "nf":
		return "nf"
	case "tp", "btf", "btfd":
		return "tp"
	case "null", "peek", "peekbtf", "hint", "hintbtf", "emit":
		return progKind(rest)
	}
	return ""
}

// rareShare: a program that runs less often than this share of the empty
// program of its kind (per unit of traffic) is not on the packet's path
// (drops: a few a GB) and is not held to the per-run target; the
// report names it, with its cost.
const rareShare = 0.01

// runTarget is the per-run target's measure: the worst program on the
// path against the empty program of its kind, and the rare ones apart.
type runTarget struct {
	ok    bool
	worst progStat
	ratio float64
	rare  []progStat
}

// perRunTarget compares each of pathtrace's programs (c, tracing another
// pod) with the empty program of its kind (empty), from one scenario's
// cost rows.
func perRunTarget(c, empty costRow) runTarget {
	floor := map[string]progStat{}
	for _, p := range empty.Progs {
		floor[progKind(p.Name)] = p
	}
	var m runTarget
	for _, p := range c.Progs {
		f, ok := floor[progKind(p.Name)]
		if !ok || f.perRun() == 0 || p.Count == 0 || c.Units <= 0 || empty.Units <= 0 {
			continue
		}
		if float64(p.Count)/c.Units < rareShare*float64(f.Count)/empty.Units {
			m.rare = append(m.rare, p)
			continue
		}
		if r := p.perRun() / f.perRun(); !m.ok || r > m.ratio {
			m.ok, m.worst, m.ratio = true, p, r
		}
	}
	return m
}

func (m runTarget) String() string {
	s := fmt.Sprintf("%.2f× (%s, %.0f ns)", m.ratio, m.worst.Name, m.worst.perRun())
	for _, p := range m.rare {
		s += fmt.Sprintf("; not counted, runs under %.0f%% of the empty program's: %s %.0f ns", 100*rareShare, p.Name, p.perRun())
	}
	return s
}
