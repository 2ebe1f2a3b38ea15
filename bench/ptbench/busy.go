package main

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// cpuSnap is the machine's CPU time by kind and every process's CPU time
// at one moment, read from /proc: what was busy besides a command comes
// from two of them.
type cpuSnap struct {
	at          time.Time
	busy, steal time.Duration     // all CPUs, /proc/stat
	procs       map[int]procTicks // pid → comm and CPU time
}

type procTicks struct {
	comm string
	cpu  time.Duration
}

// takeCPUSnap reads /proc/stat and every /proc/PID/stat.
func takeCPUSnap() cpuSnap {
	s := cpuSnap{at: time.Now(), procs: map[int]procTicks{}}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := bytes.Cut(b, []byte("\n"))
		f := strings.Fields(string(line))
		// cpu user nice system idle iowait irq softirq steal ...
		if len(f) > 8 && f[0] == "cpu" {
			for i, v := range f[1:9] {
				n, _ := strconv.ParseUint(v, 10, 64)
				d := time.Duration(n) * time.Second / 100 // USER_HZ
				switch i {
				case 3, 4: // idle, iowait
				case 7:
					s.steal = d
				default:
					s.busy += d
				}
			}
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, cpu, err := procStat(pid)
		if err != nil {
			continue
		}
		s.procs[pid] = procTicks{comm: comm, cpu: cpu}
	}
	return s
}

// machineBusy is what kept the machine busy in the window between two
// snapshots: the command timed in it (Mine, from its rusage: it exited
// before the second snapshot), ptbench itself, the rest (the machine's
// busy time less those two), the hypervisor's steal, and the processes
// alive at both ends that used the most.
type machineBusy struct {
	Wall, Busy, Mine, Self, Steal time.Duration
	Top                           []procShare
}

type procShare struct {
	Comm string
	CPU  time.Duration
}

// until is what was busy from a to b, a later snapshot; mine is the CPU
// time of the command timed between them.
func (a cpuSnap) until(b cpuSnap, mine time.Duration) machineBusy {
	o := machineBusy{Wall: b.at.Sub(a.at), Busy: b.busy - a.busy, Steal: b.steal - a.steal, Mine: mine}
	self := os.Getpid()
	for pid, pb := range b.procs {
		pa, ok := a.procs[pid]
		if !ok || pid == self || pb.comm != pa.comm || pb.cpu <= pa.cpu {
			continue
		}
		o.Top = append(o.Top, procShare{Comm: pb.comm, CPU: pb.cpu - pa.cpu})
	}
	if pb, ok := b.procs[self]; ok {
		o.Self = pb.cpu - a.procs[self].cpu
	}
	sort.Slice(o.Top, func(i, j int) bool { return o.Top[i].CPU > o.Top[j].CPU })
	if len(o.Top) > 3 {
		o.Top = o.Top[:3]
	}
	return o
}

// String says, in CPUs on average over the window, what was busy.
func (o machineBusy) String() string {
	if o.Wall <= 0 {
		return "?"
	}
	cpus := func(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()/o.Wall.Seconds()) }
	rest := max(o.Busy-o.Mine-o.Self, 0)
	s := fmt.Sprintf("the command %s, ptbench %s, the rest of the machine %s (steal %s)", cpus(o.Mine), cpus(o.Self), cpus(rest), cpus(o.Steal))
	var top []string
	for _, p := range o.Top {
		if p.CPU*50 < o.Wall { // under 2 % of a CPU
			break
		}
		top = append(top, fmt.Sprintf("%s %s", p.Comm, cpus(p.CPU)))
	}
	if len(top) > 0 {
		s += "; most: " + strings.Join(top, ", ")
	}
	return s
}
