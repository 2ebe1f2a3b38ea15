package main

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pathtrace/pathtrace/internal/topology"
)

// startRun is one start of pathtrace.
type startRun struct {
	Ready     time.Duration // exec to the ready file: everything attached
	FirstPath time.Duration // exec to the first line of output: a rendered path
}

// benchStartup starts pathtrace n times while a trickle of packets (1000 a
// second) flows, and times exec to the ready file and to the first rendered
// hop.
func benchStartup(ctx context.Context, c *cluster, bin string, n int) ([]startRun, error) {
	dst := c.Pod(topology.PodPeer)
	sink, err := startReadSink(dst, sinkPort+2)
	if err != nil {
		return nil, err
	}
	defer sink.Close()
	gen, err := newUDPGen(c.Pod(topology.PodClient), benchIP, netip.AddrPortFrom(dst.IP, sinkPort+2))
	if err != nil {
		return nil, err
	}
	defer gen.Close()
	gctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for gctx.Err() == nil {
			gen.send(gctx, 1000, 1000)
		}
	}()

	var runs []startRun
	for range n {
		r, err := startOnce(ctx, c, bin)
		if err != nil {
			return nil, err
		}
		runs = append(runs, r)
	}
	return runs, nil
}

func startOnce(ctx context.Context, c *cluster, bin string) (startRun, error) {
	var r startRun
	dir, err := os.MkdirTemp("", "ptbench")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	ready := filepath.Join(dir, "ready")
	cmd := exec.Command(bin, append(c.tracerArgs(benchIP.String()), "--ready-file", ready)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return r, err
	}
	first := make(chan time.Time, 1)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return r, err
	}
	go func() {
		br := bufio.NewReader(out)
		if _, err := br.ReadByte(); err == nil {
			first <- time.Now()
		}
		for { // keep the pipe drained
			if _, err := br.Discard(1 << 16); err != nil {
				return
			}
		}
	}()
	for r.Ready == 0 {
		if _, err := os.Stat(ready); err == nil {
			r.Ready = time.Since(start)
			break
		}
		if time.Since(start) > 20*time.Second || ctx.Err() != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return r, fmt.Errorf("pathtrace not ready after 20s")
		}
		time.Sleep(200 * time.Microsecond)
	}
	select {
	case t := <-first:
		r.FirstPath = t.Sub(start)
	case <-time.After(10 * time.Second):
	}
	cmd.Process.Signal(os.Interrupt)
	err = cmd.Wait()
	if r.FirstPath == 0 {
		return r, fmt.Errorf("no path rendered within 10s of start (%v)", err)
	}
	return r, nil
}
