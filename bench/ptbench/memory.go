package main

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/pathtrace/pathtrace/internal/topology"
)

// memResult is the memory of pathtrace tracing a steady flow.
type memResult struct {
	Rate     float64 // datagrams per second asked for
	Sent     int
	Dur      time.Duration
	Res      tracerResult
	RSS      []uint64 // VmRSS once a second
	Ready    time.Duration
	FlowName string
}

// peakFirstHalf and peakSecondHalf show whether memory still grows.
func (m memResult) peaks() (first, second uint64) {
	for i, v := range m.RSS {
		if i < len(m.RSS)/2 {
			first = max(first, v)
		} else {
			second = max(second, v)
		}
	}
	return first, second
}

// benchMemory traces a UDP flow of rate datagrams per second for dur and
// samples pathtrace's resident memory. The sink reads the datagrams: the
// kernel frees most of them without a tracepoint, so their paths never end
// normally and the stitcher holds each until its idle time or until it is
// evicted (stitch.DefaultMaxActive), and the kernel's tracked map until LRU
// eviction: the flood that must stay bounded.
func benchMemory(ctx context.Context, c *cluster, bin string, rate float64, dur time.Duration) (memResult, error) {
	dst := c.Pod(topology.PodPeer)
	res := memResult{Rate: rate, Dur: dur, FlowName: "client → peer, same node, 64-byte UDP"}
	sink, err := startReadSink(dst, sinkPort+1)
	if err != nil {
		return res, err
	}
	defer sink.Close()
	gen, err := newUDPGen(c.Pod(topology.PodClient), benchIP, netip.AddrPortFrom(dst.IP, sinkPort+1))
	if err != nil {
		return res, err
	}
	defer gen.Close()
	null, err := devNull()
	if err != nil {
		return res, err
	}
	defer null.Close()
	tr, err := startTracer(ctx, bin, c.tracerArgs(benchIP.String()), null)
	if err != nil {
		return res, err
	}
	res.Ready = tr.Ready
	pid := tr.cmd.Process.Pid
	sctx, stop := context.WithCancel(ctx)
	sampled := make(chan []uint64)
	go func() {
		var rss []uint64
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				sampled <- rss
				return
			case <-t.C:
				if v, err := statusField(pid, "VmRSS:"); err == nil {
					rss = append(rss, v)
				}
			}
		}
	}()
	res.Sent, res.Dur = gen.sendFor(ctx, int(rate*dur.Seconds()), rate, dur)
	stop()
	res.RSS = <-sampled
	res.Res, err = tr.stop()
	if err != nil {
		return res, fmt.Errorf("memory run: %w", err)
	}
	return res, nil
}
