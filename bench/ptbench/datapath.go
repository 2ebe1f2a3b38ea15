package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/pathtrace/pathtrace/internal/features"
	"github.com/pathtrace/pathtrace/internal/topology"
)

// scenario is one flow of the datapath benchmark.
type scenario struct {
	Key   string
	Name  string
	UDP   bool
	Dst   string
	Port  int
	Other string   // a pod not in the flow: "tracing another pod"
	Nodes []string // node names the flow crosses: where tcpdump runs
}

var scenarios = []scenario{
	{Key: "xnode-tcp", Name: "cross-node TCP via ClusterIP (DNAT + VXLAN)", Dst: topology.ClusterIP.Addr().String(),
		Port: int(topology.ClusterIP.Port()), Other: topology.PeerIP.String(), Nodes: []string{topology.Node1, topology.Node2}},
	{Key: "xnode-udp", Name: "cross-node UDP 64 B to the server pod (VXLAN)", UDP: true, Dst: topology.ServerIP.String(),
		Port: iperfUDPPort, Other: topology.PeerIP.String(), Nodes: []string{topology.Node1, topology.Node2}},
	{Key: "node-tcp", Name: "same-node TCP to the peer pod (cni0 bridge)", Dst: topology.PeerIP.String(),
		Port: iperfPeerPort, Other: topology.ServerIP.String(), Nodes: []string{topology.Node1}},
	{Key: "node-udp", Name: "same-node UDP 64 B to the peer pod (cni0 bridge)", UDP: true, Dst: topology.PeerIP.String(),
		Port: iperfPeerPort, Other: topology.ServerIP.String(), Nodes: []string{topology.Node1}},
}

// config is how the datapath is observed during a run.
type config int

const (
	untraced config = iota
	nullProgs
	peekProgs     // programs that read the addresses (peek.go), tp_btf on the tracepoints as pathtrace's
	peekRawProgs  // the same with raw tracepoint programs, the skb read with a helper (kernel cost only)
	hintProgs     // programs that read the addresses and look up the two hints as pathtrace does (peek.go)
	emitProgs     // programs that send an event per run, read and dropped (emit.go)
	emitLastProgs // the same, but none at the first netfilter priority
	emitTinyProgs // emitProgs with 16-byte events (emitTinySize)
	traceOther
	traceFlow
	traceFlowJSON
	traceFlowDev // --hops rx,tx: the device hops, as many as tcpdump's copies
	tcpdumpAny
	// The same runs with a second binary (-bin-b), to measure a change
	// side by side.
	traceOtherB
	traceFlowB
	nConfigs
)

var configNames = [...]string{
	untraced:      "untraced",
	nullProgs:     "empty programs, same hooks",
	peekProgs:     "programs reading the addresses, same hooks",
	peekRawProgs:  "the same, raw tracepoints (the skb read with a helper)",
	hintProgs:     "programs reading the addresses and the two hints, same hooks",
	emitProgs:     "programs sending an event per run, read and dropped",
	emitLastProgs: "the same, one event per netfilter hook",
	emitTinyProgs: "the same, every hop, 16-byte events",
	traceOther:    "pathtrace, another pod",
	traceFlow:     "pathtrace, this flow",
	traceFlowJSON: "pathtrace -o json, this flow",
	traceFlowDev:  "pathtrace --hops rx,tx, this flow",
	tcpdumpAny:    "tcpdump -i any -s 128",
	traceOtherB:   "B: pathtrace, another pod",
	traceFlowB:    "B: pathtrace, this flow",
}

func (c config) String() string { return configNames[c] }

// run is one measurement.
type run struct {
	Value float64 // bits/s (TCP) or packets/s received (UDP)
	// CPU is what the run cost: iperf3 client and server (the datapath
	// runs in their context) and the observer process, per GB (TCP) or
	// per datagram (UDP) received. Less noisy than Value on a shared
	// machine: it counts work, not waiting.
	CPUPerUnit float64
	Tracer     tracerResult
	Captured   uint64 // tcpdump
	Dropped    uint64
	CPU        time.Duration // of the observer process(es)
}

// datapathResult holds, per scenario and config, one run per repetition.
type datapathResult struct {
	Reps    int
	Dur     time.Duration
	Configs []config
	Runs    map[string][][]run // scenario key → config → reps
}

// ratio returns, per repetition, cfg's value over the untraced value of the
// same repetition.
func (r *datapathResult) ratio(key string, cfg config) dist {
	var d dist
	runs := r.Runs[key]
	for i := range runs[cfg] {
		if i < len(runs[untraced]) && runs[untraced][i].Value > 0 {
			d = append(d, runs[cfg][i].Value/runs[untraced][i].Value)
		}
	}
	return d
}

// gap returns, per repetition, how many points of untraced throughput a
// leaves above b (b's ratio less a's, times 100; negative where b did
// better): the two measured in the same repetition, so a drift of the
// machine between repetitions cancels.
func (r *datapathResult) gap(key string, a, b config) dist {
	ra, rb := r.ratio(key, a), r.ratio(key, b)
	var d dist
	for i := range min(len(ra), len(rb)) {
		d = append(d, 100*(ra[i]-rb[i]))
	}
	return d
}

// cpuRatio is like ratio for the CPU cost per unit.
func (r *datapathResult) cpuRatio(key string, cfg config) dist {
	var d dist
	runs := r.Runs[key]
	for i := range runs[cfg] {
		if i < len(runs[untraced]) && runs[untraced][i].CPUPerUnit > 0 {
			d = append(d, runs[cfg][i].CPUPerUnit/runs[untraced][i].CPUPerUnit)
		}
	}
	return d
}

func (r *datapathResult) values(key string, cfg config) dist {
	var d dist
	for _, x := range r.Runs[key][cfg] {
		d = append(d, x.Value)
	}
	return d
}

// benchDatapath runs every scenario under every config, reps times,
// interleaved: within a repetition the configs of a scenario run back to
// back in an order rotated each repetition, so slow drifts of the machine
// hit every config alike.
func benchDatapath(ctx context.Context, c *cluster, bin, binB string, reps int, dur time.Duration, configs []config) (*datapathResult, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	res := &datapathResult{Reps: reps, Dur: dur, Configs: configs, Runs: map[string][][]run{}}
	for _, s := range scenarios {
		res.Runs[s.Key] = make([][]run, nConfigs)
	}
	client := c.Pod(topology.PodClient)
	for rep := range reps {
		for sn, s := range scenarios {
			for k := range configs {
				cfg := configs[(k+rep+sn)%len(configs)]
				b := bin
				switch cfg {
				case traceOtherB, traceFlowB:
					b = binB
				case nullProgs, peekProgs, hintProgs, emitProgs, emitLastProgs, emitTinyProgs:
					b = self
				}
				r, err := datapathRun(ctx, c, b, s, cfg, client, dur)
				if err != nil {
					return nil, fmt.Errorf("%s, %s: %w", s.Key, cfg, err)
				}
				slog.Debug("datapath", "rep", rep, "scenario", s.Key, "config", cfg.String(), "value", si(r.Value),
					"events", r.Tracer.Events, "lost", r.Tracer.Lost)
				res.Runs[s.Key][cfg] = append(res.Runs[s.Key][cfg], r)
			}
		}
		slog.Info("datapath", "repetition", rep+1, "of", reps)
	}
	return res, nil
}

func datapathRun(ctx context.Context, c *cluster, bin string, s scenario, cfg config, client *topology.Pod, dur time.Duration) (run, error) {
	var r run
	var tr *tracer
	var td *tcpdump
	var err error
	switch cfg {
	case nullProgs, peekProgs, hintProgs, emitProgs, emitLastProgs, emitTinyProgs:
		var null *os.File
		if null, err = devNull(); err != nil {
			return r, err
		}
		defer null.Close()
		tr, err = startTracer(ctx, bin, nullTracerArgs(c, cfg, s.Other), null)
	case traceOther, traceFlow, traceFlowJSON, traceFlowDev, traceOtherB, traceFlowB:
		ip := s.Other
		if cfg != traceOther && cfg != traceOtherB {
			ip = client.IP.String()
		}
		args := c.tracerArgs(ip)
		switch cfg {
		case traceFlowJSON:
			args = append(args, "-o", "json")
		case traceFlowDev:
			args = append(args, "--hops", "rx,tx")
		}
		var null *os.File
		if null, err = devNull(); err != nil {
			return r, err
		}
		defer null.Close()
		tr, err = startTracer(ctx, bin, args, null)
	case tcpdumpAny:
		var ns []string
		for _, n := range s.Nodes {
			ns = append(ns, c.Node(n).NetnsName)
		}
		td, err = startTcpdump(ctx, ns)
	}
	if err != nil {
		return r, err
	}
	ir, ierr := iperf(ctx, client.NetnsName, s.Dst, s.Port, s.UDP, dur)
	if s.UDP {
		r.Value = ir.PPS
	} else {
		r.Value = ir.BitsPerSec
	}
	if tr != nil {
		r.Tracer, err = tr.stop()
		r.CPU = r.Tracer.CPU
	}
	if td != nil {
		r.Captured, r.Dropped, r.CPU = td.stop()
	}
	if ir.Units > 0 {
		per := ir.Units
		if !s.UDP {
			per /= 1e9 // per GB
		}
		r.CPUPerUnit = (ir.CPU + r.CPU).Seconds() / per
	}
	if ierr != nil {
		return r, ierr
	}
	return r, err
}

// nullTracerArgs are ptbench null-tracer's arguments for cfg: the
// address-reading programs compare with the address pathtrace would trace
// (another pod's).
func nullTracerArgs(c *cluster, cfg config, other string) []string {
	args := append([]string{"null-tracer"}, c.tracerArgs()...)
	switch cfg {
	case peekProgs, hintProgs:
		// tp_btf on the tracepoints, as pathtrace's device hops are
		// (its raw tracepoint form is the fallback only).
		args = append(args, "--peek", other)
		if features.BTFTracepoint() == nil {
			args = append(args, "--btf")
		}
		if cfg == hintProgs {
			args = append(args, "--hints")
		}
	case peekRawProgs:
		args = append(args, "--peek", other)
	case emitProgs:
		args = append(args, "--emit", "all")
	case emitLastProgs:
		args = append(args, "--emit", "last")
	case emitTinyProgs:
		args = append(args, "--emit", "all", "--emit-size", strconv.Itoa(emitTinySize))
	}
	return args
}

// devNull is where traced output goes.
func devNull() (*os.File, error) { return os.OpenFile(os.DevNull, os.O_WRONLY, 0) }

// cpu returns the CPU cost per unit of cfg's runs.
func (r *datapathResult) cpu(key string, cfg config) dist {
	var d dist
	for _, x := range r.Runs[key][cfg] {
		d = append(d, x.CPUPerUnit)
	}
	return d
}
