package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestMachineBusy: the rest of the machine is its busy time less the timed
// command's and ptbench's, and the processes that used the most are named.
func TestMachineBusy(t *testing.T) {
	self := os.Getpid()
	a := cpuSnap{at: time.Unix(100, 0), busy: 10 * time.Second, steal: time.Second, procs: map[int]procTicks{
		self: {"ptbench", time.Second}, 7: {"kworker/0:1", 0}, 8: {"iperf3", time.Second}, 9: {"idle", time.Second},
	}}
	b := cpuSnap{at: time.Unix(102, 0), busy: 13 * time.Second, steal: time.Second + 200*time.Millisecond, procs: map[int]procTicks{
		self: {"ptbench", time.Second + 100*time.Millisecond}, 7: {"kworker/0:1", 400 * time.Millisecond},
		8: {"iperf3", time.Second + 10*time.Millisecond}, 9: {"idle", time.Second},
		10: {"replay", time.Second}, // not alive at the start
	}}
	o := a.until(b, 2*time.Second)
	if o.Self != 100*time.Millisecond || o.Steal != 200*time.Millisecond || o.Wall != 2*time.Second {
		t.Fatalf("%+v", o)
	}
	if len(o.Top) != 2 || o.Top[0].Comm != "kworker/0:1" || o.Top[1].Comm != "iperf3" { // ptbench apart, replay and idle not
		t.Fatalf("top %+v", o.Top)
	}
	got := o.String()
	for _, want := range []string{"the command 1.00", "ptbench 0.05", "the rest of the machine 0.45", "steal 0.10", "kworker/0:1 0.20"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "iperf3") { // under 2 % of a CPU
		t.Errorf("%q names a process that used 0.5%% of a CPU", got)
	}
	if s := takeCPUSnap(); s.busy == 0 || s.procs[self].comm == "" {
		t.Errorf("snapshot of this machine: busy %v, this process %+v", s.busy, s.procs[self])
	}
}
