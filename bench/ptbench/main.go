package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/pathtrace/pathtrace/internal/record"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := mainErr(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ptbench: %v\n", err)
		os.Exit(1)
	}
}

// phases, in the order they run.
var allPhases = []string{"micro", "startup", "cost", "datapath", "pipeline", "memory", "replay", "userspace"}

func mainErr(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "null-tracer" {
		return nullTracerMain(ctx, args[1:])
	}
	fs := flag.NewFlagSet("ptbench", flag.ContinueOnError)
	bin := fs.String("bin", "bin/pathtrace", "the pathtrace binary to measure")
	binB := fs.String("bin-b", "", "a second pathtrace binary measured side by side with -bin in the datapath runs (A/B of a change)")
	phases := fs.String("phases", strings.Join(allPhases, ","), "phases to run: "+strings.Join(allPhases, ","))
	reps := fs.Int("reps", 4, "repetitions of each datapath measurement")
	dur := fs.Duration("dur", 2*time.Second, "length of each datapath and pipeline measurement")
	memDur := fs.Duration("mem-dur", 60*time.Second, "length of the memory run")
	memRate := fs.Float64("mem-rate", 100e3, "datagrams per second of the memory run")
	scen := fs.String("scenarios", "", "comma-separated datapath scenarios (default all: "+scenarioKeys()+")")
	doc := fs.String("doc", "docs/BENCHMARKS.md", "report to update (\"\": none)")
	profiles := fs.String("profiles", "bench/out/profiles", "directory for the CPU profiles of the userspace phase (\"\": none)")
	pipeSteps := fs.String("steps", "", "only the pipeline steps whose label contains this")
	goBin := fs.String("go", "go", "the go command, for the micro-benchmarks")
	verbose := fs.Bool("v", false, "log every measurement")
	hold := fs.Bool("hold", false, "build the cluster, print its prefix and wait for Ctrl-C (manual experiments)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *verbose {
		slog.SetLogLoggerLevel(slog.LevelDebug)
	}
	if os.Geteuid() != 0 {
		return errNotRoot
	}
	want := map[string]bool{}
	for _, p := range strings.Split(*phases, ",") {
		if !slices.Contains(allPhases, p) {
			return fmt.Errorf("unknown phase %q (phases: %s)", p, strings.Join(allPhases, ","))
		}
		want[p] = true
	}
	if *scen != "" {
		var keep []scenario
		for _, s := range scenarios {
			if strings.Contains(","+*scen+",", ","+s.Key+",") {
				keep = append(keep, s)
			}
		}
		scenarios = keep
	}
	if _, err := os.Stat(*bin); err != nil {
		return fmt.Errorf("pathtrace binary: %w (make build)", err)
	}

	res := &results{Env: environment(*bin), Reps: *reps, Dur: *dur}
	started := time.Now()
	phase := func(name string) bool {
		if want[name] {
			slog.Info("phase", "name", name, "elapsed", time.Since(started).Round(time.Second))
		}
		return want[name] && ctx.Err() == nil
	}
	var errs []error
	fail := func(name string, err error) {
		if err != nil {
			slog.Error("phase failed", "name", name, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}

	if phase("micro") {
		var err error
		res.Micro, err = benchMicro(ctx, *goBin, 3)
		fail("micro", err)
	}
	needCluster := false
	for _, p := range []string{"startup", "cost", "datapath", "pipeline", "memory"} {
		needCluster = needCluster || want[p]
	}
	if needCluster || *hold {
		c, err := buildCluster(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		if *hold {
			fmt.Println(c.Prefix)
			<-ctx.Done()
			return nil
		}
		if phase("startup") {
			res.Startup, err = benchStartup(ctx, c, *bin, 5)
			fail("startup", err)
		}
		if phase("cost") {
			res.Cost, err = benchCost(ctx, c, *bin, *dur)
			fail("cost", err)
		}
		if phase("datapath") {
			configs := []config{untraced, nullProgs, peekProgs, hintProgs, traceOther, emitProgs, emitLastProgs, emitTinyProgs, traceFlow, traceFlowDev, tcpdumpAny}
			if *binB != "" {
				configs = append(configs, traceOtherB, traceFlowB)
			}
			res.Datapath, err = benchDatapath(ctx, c, *bin, *binB, *reps, *dur, configs)
			fail("datapath", err)
		}
		if phase("pipeline") {
			steps := pipelineSteps(*dur)
			if *pipeSteps != "" {
				steps = slices.DeleteFunc(steps, func(s stepSpec) bool { return !strings.Contains(s.Label, *pipeSteps) })
			}
			res.Pipeline, err = benchPipeline(ctx, c, *bin, *dur, steps)
			fail("pipeline", err)
		}
		if phase("memory") {
			var m memResult
			m, err = benchMemory(ctx, c, *bin, *memRate, *memDur)
			res.Memory = &m
			fail("memory", err)
		}
	}
	if phase("replay") || want["userspace"] {
		dir, err := os.MkdirTemp("", "ptbench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		file := filepath.Join(dir, "userspace.pcapng")
		if want["replay"] {
			res.Replay, res.ReplaySize, err = benchReplay(ctx, *bin, dir, replayEvents, 3)
			fail("replay", err)
		}
		if phase("userspace") {
			if err = record.Repeat(seedRecording, file, replayEvents); err == nil {
				res.UserSpace, err = benchUserSpace(ctx, file, *profiles, *goBin)
			}
			fail("userspace", err)
		}
	}
	res.Elapsed = time.Since(started)
	res.Env.LoadEnd = loadAvg()

	fmt.Print(res.summary())
	if *doc != "" && ctx.Err() == nil {
		if err := res.updateDoc(*doc); err != nil {
			errs = append(errs, err)
		} else {
			slog.Info("report written", "file", *doc)
		}
	}
	return errors.Join(errs...)
}

// replayEvents is the size of the replayed recording.
const replayEvents = 1_000_000

// pipelineSteps is the event-rate sweep: fixed rates, then as fast as one
// sender goes, as fast as two go (both cores: the reader gets little CPU),
// and a reader stalled for half the step (SIGSTOP), to see loss counted.
func pipelineSteps(dur time.Duration) []stepSpec {
	var s []stepSpec
	for _, r := range []float64{100e3, 250e3, 500e3, 750e3, 1e6, 1.25e6} {
		s = append(s, stepSpec{Label: si(r) + "/s", EPS: r, Senders: 1})
	}
	return append(s,
		stepSpec{Label: "1 sender, full speed", Senders: 1},
		stepSpec{Label: "2 senders, full speed", Senders: 2},
		stepSpec{Label: "250k/s, reader stopped " + (dur / 2).String(), EPS: 250e3, Senders: 1, Pause: dur / 2},
	)
}

func scenarioKeys() string {
	var k []string
	for _, s := range scenarios {
		k = append(k, s.Key)
	}
	return strings.Join(k, ",")
}

// nullTracerMain is `ptbench null-tracer --netns NS... --ready-file F
// [--peek ADDR [--hints] [--btf] | --emit all|last [--emit-size N]]`.
func nullTracerMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("null-tracer", flag.ContinueOnError)
	var nss stringList
	fs.Var(&nss, "netns", "node network namespace to attach the netfilter programs in (repeatable)")
	ready := fs.String("ready-file", "", "file written once everything is attached")
	peekStr := fs.String("peek", "", "read each packet's IPv4 addresses and compare them with this one")
	btfTP := fs.Bool("btf", false, "with -peek: tp_btf programs on the tracepoints")
	hints := fs.Bool("hints", false, "with -peek: then look up the packet's connection and skb hint slots, as pathtrace does")
	emit := fs.String("emit", "", "send an event per run (all), or per run but at the first netfilter priority (last), and read them")
	size := fs.Int("emit-size", int(emitSize), "with -emit: bytes per event, a multiple of 8 (default: pathtrace's event without packet bytes)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var peek netip.Addr
	if *peekStr != "" {
		a, err := netip.ParseAddr(*peekStr)
		if err != nil || !a.Is4() {
			return fmt.Errorf("null-tracer: --peek %q is not an IPv4 address", *peekStr)
		}
		peek = a
	}
	return runNullTracer(ctx, nss, *ready, peek, *hints, *btfTP, *emit, int32(min(max(*size, 0), 1<<20)))
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }
