package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/pathtrace/pathtrace/internal/topology"
)

// pipeFlow is a flow the event-pipeline benchmark drives: UDP from the
// client pod's bench address, which only this benchmark uses, to a sink.
type pipeFlow struct {
	Key, Name string
	Dst       *topology.Pod
}

// stepSpec is what one step of the sweep does.
type stepSpec struct {
	Label   string
	EPS     float64       // events per second asked for; 0: as fast as the senders go
	Senders int           // concurrent senders (one per core at most)
	Pause   time.Duration // SIGSTOP pathtrace this long mid-step: the reader stalls
}

// pipeStep is one rate of the sweep.
type pipeStep struct {
	Spec      stepSpec
	TargetEPS float64       // events per second asked for
	Sent      int           // datagrams sent
	Dur       time.Duration // sending time
	Received  uint64        // datagrams that reached the sink
	Res       tracerResult  // pathtrace's own count: events decoded, lost
	Expected  uint64        // Sent × events per packet
}

func (s pipeStep) offered() float64   { return float64(s.Expected) / s.Dur.Seconds() }
func (s pipeStep) delivered() float64 { return float64(s.Res.Events) / s.Dur.Seconds() }

// accounted reports whether every event the kernel made was either
// decoded or counted lost.
func (s pipeStep) accounted() bool { return s.Res.Events+s.Res.Lost == s.Expected }

// pipeResult is the sweep of one flow.
type pipeResult struct {
	Flow      pipeFlow
	PerPacket uint64 // events per datagram, from the calibration
	Calib     pipeStep
	Steps     []pipeStep
}

// zeroLoss is the highest delivered rate with nothing lost and every event
// accounted for.
func (r *pipeResult) zeroLoss() float64 {
	best := 0.0
	for _, s := range r.Steps {
		if s.Spec.Pause == 0 && s.Res.Lost == 0 && s.accounted() {
			best = max(best, s.delivered())
		}
	}
	return best
}

// benchPipeline measures events per second from the kernel through
// pathtrace's decode, stitch (and render to /dev/null) with zero loss, and
// checks the loss counter: for a flow whose every datagram makes the same
// number of events E (calibrated at a low rate), events decoded + lost
// must equal datagrams sent × E at every rate.
func benchPipeline(ctx context.Context, c *cluster, bin string, dur time.Duration, specs []stepSpec) ([]pipeResult, error) {
	client := c.Pod(topology.PodClient)
	flows := []pipeFlow{
		{"node", "same node: client → peer (cni0 bridge)", c.Pod(topology.PodPeer)},
		{"xnode", "across nodes: client → server (VXLAN)", c.Pod(topology.PodServer)},
	}
	var results []pipeResult
	for _, f := range flows {
		sink, err := startSink(f.Dst, sinkPort)
		if err != nil {
			return nil, err
		}
		var gens []*udpGen
		closeAll := func() {
			for _, g := range gens {
				g.Close()
			}
			sink.Close()
		}
		for range 2 {
			g, err := newUDPGen(client, benchIP, netip.AddrPortFrom(f.Dst.IP, sinkPort))
			if err != nil {
				closeAll()
				return nil, err
			}
			gens = append(gens, g)
		}
		res := pipeResult{Flow: f}
		run := func(n int, rate float64, senders int, pause time.Duration) (pipeStep, error) {
			null, err := devNull()
			if err != nil {
				return pipeStep{}, err
			}
			defer null.Close()
			tr, err := startTracer(ctx, bin, c.tracerArgs(benchIP.String()), null)
			if err != nil {
				return pipeStep{}, err
			}
			before := sink.count()
			if pause > 0 {
				go func() {
					time.Sleep(dur/2 - pause/2)
					tr.cmd.Process.Signal(syscall.SIGSTOP)
					time.Sleep(pause)
					tr.cmd.Process.Signal(syscall.SIGCONT)
				}()
			}
			senders = max(1, min(senders, len(gens)))
			var wg sync.WaitGroup
			var mu sync.Mutex
			sent, d := 0, time.Duration(0)
			for i := range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					k, t := gens[i].send(ctx, n/senders, rate/float64(senders))
					mu.Lock()
					sent += k
					d = max(d, t)
					mu.Unlock()
				}()
			}
			wg.Wait()
			// The last datagrams' events are in the ring or on their
			// way; pathtrace drains the ring when interrupted.
			time.Sleep(50 * time.Millisecond)
			r, err := tr.stop()
			step := pipeStep{Sent: sent, Dur: d, Received: sink.count() - before, Res: r}
			return step, err
		}
		// Calibrate at a rate every part keeps up with.
		calib, err := run(2000, 2000, 1, 0)
		if err != nil {
			closeAll()
			return nil, err
		}
		res.Calib = calib
		if calib.Res.Lost != 0 || calib.Sent == 0 || calib.Res.Events%uint64(calib.Sent) != 0 {
			slog.Warn("pipeline calibration is not exact: the loss check is approximate", "flow", f.Key,
				"sent", calib.Sent, "events", calib.Res.Events, "lost", calib.Res.Lost)
		}
		res.PerPacket = uint64(math.Round(float64(calib.Res.Events) / float64(max(calib.Sent, 1))))
		short := false
		for _, spec := range specs {
			if spec.EPS > 0 && short {
				continue // the senders could not make a lower rate
			}
			pps := spec.EPS / float64(res.PerPacket)
			n := int(pps * dur.Seconds())
			if spec.EPS == 0 { // as fast as the senders go: enough for dur
				n = int(2e6 / float64(res.PerPacket) * dur.Seconds())
			}
			step, err := run(n, pps, spec.Senders, spec.Pause)
			if err != nil {
				closeAll()
				return nil, err
			}
			step.Spec = spec
			step.TargetEPS = spec.EPS
			step.Expected = uint64(step.Sent) * res.PerPacket
			res.Steps = append(res.Steps, step)
			slog.Info("pipeline", "flow", f.Key, "step", spec.Label, "offered", si(step.offered()),
				"delivered", si(step.delivered()), "lost", step.Res.Lost, "accounted", step.accounted())
			if spec.EPS > 0 && step.offered() < 0.8*spec.EPS {
				short = true
			}
		}
		closeAll()
		results = append(results, res)
	}
	return results, nil
}

func (s pipeStep) String() string {
	return fmt.Sprintf("%s: offered %s/s delivered %s/s, %d decoded + %d lost = %d, expected %d",
		s.Spec.Label, si(s.offered()), si(s.delivered()), s.Res.Events, s.Res.Lost, s.Res.Events+s.Res.Lost, s.Expected)
}
