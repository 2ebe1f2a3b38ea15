package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tracer is a running pathtrace process.
type tracer struct {
	cmd     *exec.Cmd
	stderr  *bytes.Buffer
	started time.Time
	Ready   time.Duration // exec to ready file
	ready   string
	cpu0    time.Duration // CPU used by the time it was ready
}

// tracerArgs are the flags of a pathtrace run on the cluster's nodes.
func (c *cluster) tracerArgs(podIPs ...string) []string {
	var args []string
	for _, ip := range podIPs {
		args = append(args, "--pod-ip", ip)
	}
	for _, ns := range c.nodeNetns() {
		args = append(args, "--netns", ns)
	}
	return args
}

// startTracer runs bin with args plus --ready-file, stdout to out, and
// returns once the ready file exists.
func startTracer(ctx context.Context, bin string, args []string, out io.Writer) (*tracer, error) {
	dir, err := os.MkdirTemp("", "ptbench")
	if err != nil {
		return nil, err
	}
	t := &tracer{stderr: &bytes.Buffer{}, ready: filepath.Join(dir, "ready")}
	t.cmd = exec.Command(bin, append(args, "--ready-file", t.ready)...)
	t.cmd.Stdout = out
	t.cmd.Stderr = t.stderr
	t.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	t.started = time.Now()
	if err := t.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	for {
		if _, err := os.Stat(t.ready); err == nil {
			t.Ready = time.Since(t.started)
			t.cpu0, _ = procCPU(t.cmd.Process.Pid)
			return t, nil
		}
		if ctx.Err() != nil || time.Since(t.started) > 20*time.Second {
			t.cmd.Process.Kill()
			t.cmd.Wait()
			return nil, fmt.Errorf("pathtrace did not become ready: %s", strings.TrimSpace(t.stderr.String()))
		}
		if st, _ := procState(t.cmd.Process.Pid); st == "Z" {
			t.cmd.Wait()
			return nil, fmt.Errorf("pathtrace exited before it was ready: %s", strings.TrimSpace(t.stderr.String()))
		}
		time.Sleep(500 * time.Microsecond)
	}
}

// procState is the state letter of a process (R, S, Z, ...).
func procState(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+3 > len(b) {
		return "", errors.New("bad stat")
	}
	return string(b[i+2 : i+3]), nil
}

// tracerResult is what a stopped tracer reported.
type tracerResult struct {
	Packets, Events, Lost uint64
	CPU                   time.Duration // user + system time of the process once ready
	StartCPU              time.Duration // ... and before
	HWM                   uint64        // VmHWM just before stopping, bytes
	MaxRSS                uint64        // peak RSS over the whole life (rusage), bytes
}

var summaryRE = regexp.MustCompile(`pathtrace: (\d+) packets, (\d+) events, (\d+) lost`)

// stop interrupts the tracer and collects its summary.
func (t *tracer) stop() (tracerResult, error) {
	var r tracerResult
	r.HWM, _ = vmHWM(t.cmd.Process.Pid)
	cpu1, cerr := procCPU(t.cmd.Process.Pid)
	t.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- t.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.cmd.Process.Kill()
		err = fmt.Errorf("pathtrace did not stop within 10s of SIGINT")
		<-done
	}
	os.RemoveAll(filepath.Dir(t.ready))
	if f := os.Getenv("PTBENCH_TRACER_STDERR"); f != "" {
		os.WriteFile(f, t.stderr.Bytes(), 0o644)
	}
	r.StartCPU = t.cpu0
	if cerr == nil {
		r.CPU = cpu1 - t.cpu0
	}
	if st := t.cmd.ProcessState; st != nil {
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
			r.MaxRSS = uint64(ru.Maxrss) << 10
		}
	}
	m := summaryRE.FindStringSubmatch(t.stderr.String())
	if m == nil {
		return r, errors.Join(err, fmt.Errorf("no summary from pathtrace: %s", strings.TrimSpace(t.stderr.String())))
	}
	r.Packets, _ = strconv.ParseUint(m[1], 10, 64)
	r.Events, _ = strconv.ParseUint(m[2], 10, 64)
	r.Lost, _ = strconv.ParseUint(m[3], 10, 64)
	return r, err
}

// procCPU is the user + system time of a live process (/proc/PID/stat).
func procCPU(pid int) (time.Duration, error) {
	_, cpu, err := procStat(pid)
	return cpu, err
}

// procStat is a live process's name and user + system time, from
// /proc/PID/stat.
func procStat(pid int) (comm string, cpu time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, err
	}
	open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || close < open {
		return "", 0, errors.New("bad stat")
	}
	f := strings.Fields(string(b[close+1:]))
	if len(f) < 13 {
		return "", 0, errors.New("bad stat")
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)                                       // field 14
	st, _ := strconv.ParseUint(f[12], 10, 64)                                       // field 15
	return string(b[open+1 : close]), time.Duration(ut+st) * time.Second / 100, nil // USER_HZ
}

// vmHWM reads the peak resident set size of a process from
// /proc/PID/status, in bytes.
func vmHWM(pid int) (uint64, error) {
	return statusField(pid, "VmHWM:")
}

func statusField(pid int, key string) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("%s missing from /proc/%d/status", key, pid)
}

// tcpdump is one tcpdump process per node namespace.
type tcpdump struct {
	cmds    []*exec.Cmd
	stderrs []*syncBuffer
}

// syncBuffer is a bytes.Buffer safe to write from the exec goroutine while
// being read.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startTcpdump runs `tcpdump -i any -s 128 -w /dev/null` in each namespace
// and returns once each says it is listening.
func startTcpdump(ctx context.Context, netns []string) (*tcpdump, error) {
	td := &tcpdump{}
	for _, ns := range netns {
		buf := &syncBuffer{}
		cmd := exec.Command("ip", "netns", "exec", ns, "tcpdump", "-i", "any", "-s", "128", "-w", "/dev/null")
		cmd.Stderr = buf
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			td.stop()
			return nil, fmt.Errorf("start tcpdump: %w", err)
		}
		td.cmds = append(td.cmds, cmd)
		td.stderrs = append(td.stderrs, buf)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, b := range td.stderrs {
		for !strings.Contains(b.String(), "listening on") {
			if time.Now().After(deadline) || ctx.Err() != nil {
				td.stop()
				return nil, fmt.Errorf("tcpdump did not start: %s", b.String())
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	return td, nil
}

var tcpdumpRE = regexp.MustCompile(`(\d+) packets captured[\s\S]*?(\d+) packets dropped by kernel`)

// stop interrupts every tcpdump and returns the packets captured and
// dropped, summed.
func (td *tcpdump) stop() (captured, dropped uint64, cpu time.Duration) {
	for _, c := range td.cmds {
		c.Process.Signal(os.Interrupt)
	}
	for i, c := range td.cmds {
		c.Wait()
		if st := c.ProcessState; st != nil {
			cpu += st.UserTime() + st.SystemTime()
		}
		if m := tcpdumpRE.FindStringSubmatch(td.stderrs[i].String()); m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			d, _ := strconv.ParseUint(m[2], 10, 64)
			captured += n
			dropped += d
		}
	}
	return captured, dropped, cpu
}

// iperfResult is one iperf3 client run, as seen by the receiver.
type iperfResult struct {
	BitsPerSec float64       // TCP: received goodput
	PPS        float64       // UDP: datagrams received per second
	SentPPS    float64       // UDP: datagrams sent per second
	Units      float64       // what was received: bytes (TCP) or datagrams (UDP)
	CPU        time.Duration // iperf3 client and server, as iperf3 measures them
}

// iperf runs an iperf3 client in the pod's namespace.
func iperf(ctx context.Context, netnsName, dst string, port int, udp bool, dur time.Duration) (iperfResult, error) {
	args := []string{"netns", "exec", netnsName, "iperf3", "-c", dst, "-p", strconv.Itoa(port),
		"-t", strconv.FormatFloat(dur.Seconds(), 'f', -1, 64), "-J"}
	if udp {
		args = append(args, "-u", "-l", "64", "-b", "0")
	}
	ctx, cancel := context.WithTimeout(ctx, dur+20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).Output()
	var res iperfResult
	var j struct {
		Error string `json:"error"`
		End   struct {
			CPU struct {
				Host   float64 `json:"host_total"`
				Remote float64 `json:"remote_total"`
			} `json:"cpu_utilization_percent"`
			SumReceived struct {
				Seconds     float64 `json:"seconds"`
				Bytes       float64 `json:"bytes"`
				BitsPerSec  float64 `json:"bits_per_second"`
				Packets     float64 `json:"packets"`
				LostPackets float64 `json:"lost_packets"`
			} `json:"sum_received"`
			SumSent struct {
				Seconds float64 `json:"seconds"`
				Packets float64 `json:"packets"`
			} `json:"sum_sent"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal(out, &j); jerr != nil {
		return res, fmt.Errorf("iperf3 to %s:%d: %w (%v)", dst, port, jerr, err)
	}
	if j.Error != "" {
		return res, fmt.Errorf("iperf3 to %s:%d: %s", dst, port, j.Error)
	}
	r := j.End.SumReceived
	res.BitsPerSec = r.BitsPerSec
	res.Units = r.Bytes
	res.CPU = time.Duration((j.End.CPU.Host + j.End.CPU.Remote) / 100 * r.Seconds * float64(time.Second))
	if udp && r.Seconds > 0 {
		res.PPS = (r.Packets - r.LostPackets) / r.Seconds
		res.Units = r.Packets - r.LostPackets
		if j.End.SumSent.Seconds > 0 {
			res.SentPPS = j.End.SumSent.Packets / j.End.SumSent.Seconds
		}
	}
	return res, nil
}
