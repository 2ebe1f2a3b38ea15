package k8slab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a program the lab started.
type Proc struct {
	Name string `json:"name"` // e.g. "kubelet-ptlab-node1"
	PID  int    `json:"pid"`
	Exe  string `json:"exe"` // the program, to recognise the PID later
	Log  string `json:"log"`
}

// startProc starts argv in a session of its own (it outlives `make lab-up`),
// in the network namespace netns if not empty (nsenter --net: unlike `ip
// netns exec` it keeps the root mount namespace, where containerd's mounts
// must be), with stdout and stderr to a log file.
func (l *Lab) startProc(name, netns string, env []string, argv ...string) (*Proc, error) {
	logPath := filepath.Join(l.Dir, "logs", name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer f.Close()
	exe := argv[0]
	if netns != "" {
		argv = append([]string{l.Bins.Nsenter, "--net=" + netnsPath(netns), "--"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go cmd.Wait() // reap it when it ends while we run; after, init does
	p := &Proc{Name: name, PID: cmd.Process.Pid, Exe: exe, Log: logPath}
	l.state.Procs = append(l.state.Procs, *p)
	return p, l.save()
}

// alive reports whether the process runs p.Exe (not a zombie, not a reused PID).
func (p Proc) alive() bool {
	return runs(p.PID, p.Exe)
}

// runs reports whether pid is a live process whose executable or first
// argument is exe (nsenter execs the program, so the PID keeps).
func runs(pid int, exe string) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := strings.LastIndexByte(string(stat), ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
		return false
	}
	if target, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && (target == exe || strings.TrimSuffix(target, " (deleted)") == exe) {
		return true
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	arg0, _, _ := strings.Cut(string(cmdline), "\x00")
	return arg0 == exe || strings.Contains(string(cmdline), "\x00"+exe+"\x00")
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs and waits again.
func stopPID(pid int, exe string, grace time.Duration) {
	if !runs(pid, exe) {
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	if waitGone(pid, exe, grace) {
		return
	}
	syscall.Kill(pid, syscall.SIGKILL)
	waitGone(pid, exe, 5*time.Second)
}

func waitGone(pid int, exe string, d time.Duration) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if !runs(pid, exe) {
			return true
		}
	}
	return !runs(pid, exe)
}

// pidsMatching lists live processes whose command line satisfies match.
func pidsMatching(match func(cmdline []string) bool) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || len(b) == 0 {
			continue
		}
		if match(strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func netnsPath(name string) string { return filepath.Join("/run/netns", name) }
