package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/pathtrace/pathtrace/internal/record"
)

// seedRecording is the committed recording replay's throughput is measured
// on, repeated: a real cross-node ClusterIP exchange.
const seedRecording = "testdata/pcaps/clusterip.pcapng"

// replayRun is one replay and one tcpdump read of the same file.
type replayRun struct {
	Replay, Tcpdump       time.Duration // wall time
	ReplayCPU, TcpdumpCPU time.Duration
	Events                uint64
	// Busy is what kept the machine busy while replay ran.
	Busy machineBusy
}

var replayedRE = regexp.MustCompile(`replayed (\d+) packets, (\d+) events`)

// benchReplay replays an n-event recording to JSON (to /dev/null) and reads
// it with tcpdump -r FILE -w /dev/null, reps times, interleaved.
func benchReplay(ctx context.Context, bin, dir string, n, reps int) ([]replayRun, int64, error) {
	file := filepath.Join(dir, "bench.pcapng")
	if err := record.Repeat(seedRecording, file, n); err != nil {
		return nil, 0, fmt.Errorf("write the replay recording: %w", err)
	}
	defer os.Remove(file)
	if err := settle(file); err != nil {
		return nil, 0, err
	}
	fi, err := os.Stat(file)
	if err != nil {
		return nil, 0, err
	}
	var runs []replayRun
	for range reps {
		var r replayRun
		before := takeCPUSnap()
		st, stderr, err := timed(ctx, bin, "replay", file, "-o", "json")
		if err != nil {
			return nil, 0, fmt.Errorf("pathtrace replay: %w: %s", err, stderr)
		}
		r.Replay, r.ReplayCPU = st.wall, st.cpu
		r.Busy = before.until(takeCPUSnap(), st.cpu)
		if m := replayedRE.FindStringSubmatch(stderr); m != nil {
			r.Events, _ = strconv.ParseUint(m[2], 10, 64)
		}
		st, stderr, err = timed(ctx, "tcpdump", "-r", file, "-w", "/dev/null")
		if err != nil {
			return nil, 0, fmt.Errorf("tcpdump -r: %w: %s", err, stderr)
		}
		r.Tcpdump, r.TcpdumpCPU = st.wall, st.cpu
		runs = append(runs, r)
	}
	return runs, fi.Size(), nil
}

// settle writes the just-made recording back to the disk and reads it
// once, before anything is timed: else the kernel's writeback of a few
// hundred megabytes shares the two CPUs with the first replay, and only
// the first command of the first repetition (pathtrace's) pays for it.
func settle(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", file, err)
	}
	_, err = io.Copy(io.Discard, f)
	return err
}

type procTime struct{ wall, cpu time.Duration }

// timed runs a command with stdout to /dev/null and returns its wall and
// CPU time and its stderr.
func timed(ctx context.Context, name string, args ...string) (procTime, string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	null, err := devNull()
	if err != nil {
		return procTime{}, "", err
	}
	defer null.Close()
	cmd.Stdout = null
	var stderr syncBuffer
	cmd.Stderr = &stderr
	start := time.Now()
	err = cmd.Run()
	t := procTime{wall: time.Since(start)}
	if st := cmd.ProcessState; st != nil {
		t.cpu = st.UserTime() + st.SystemTime()
	}
	return t, stderr.String(), err
}
