package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/record"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/internal/topology"
)

// tracer is a pathtrace process started by startTrace.
type tracer struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	exited         chan struct{}
	err            error
	ready          string // its --ready-file
}

// startTrace starts pathtrace with args and --ready-file, and waits until
// it is ready. stdout, if not nil, replaces the buffer as its stdout.
func startTrace(t *testing.T, stdout *os.File, args ...string) *tracer {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	tr := &tracer{exited: make(chan struct{}), ready: ready}
	tr.cmd = exec.Command(binary, append(args, "--ready-file", ready)...)
	tr.cmd.Stdout, tr.cmd.Stderr = &tr.stdout, &tr.stderr
	if stdout != nil {
		tr.cmd.Stdout = stdout
	}
	if err := tr.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { tr.err = tr.cmd.Wait(); close(tr.exited) }()
	t.Cleanup(func() {
		tr.cmd.Process.Kill()
		<-tr.exited
	})
	waitFile(t, ready, tr.exited)
	return tr
}

// stop sends sig and waits, within a generous deadline, for the process to
// exit; it returns how long that took, for the log.
func (tr *tracer) stop(t *testing.T, sig os.Signal) time.Duration {
	t.Helper()
	start := time.Now()
	if err := tr.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tr.exited:
	case <-time.After(20 * time.Second):
		tr.cmd.Process.Kill()
		t.Fatalf("pathtrace did not exit after %v (stderr %q)", sig, tr.stderr.String())
	}
	return time.Since(start)
}

// demoCluster builds the demo topology with its echo servers.
func demoCluster(t *testing.T) *topology.Cluster {
	t.Helper()
	testutil.RequireRoot(t)
	c, err := topology.Build(context.Background(), topology.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	srv, err := topology.StartEchoServer(context.Background(), c.Pod(topology.PodServer), topology.ServerPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return c
}

func traceArgs(c *topology.Cluster, args ...string) []string {
	return append([]string{"--pod-ip", topology.ClientIP.String(),
		"--netns", c.Node(topology.Node1).NetnsName, "--netns", c.Node(topology.Node2).NetnsName}, args...)
}

func clientExchange(t *testing.T, c *topology.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := topology.TCPExchange(ctx, c.Pod(topology.PodClient), topology.ClusterIP, "ping"); err != nil {
		t.Fatal(err)
	}
}

// readRecording reads a recording's files as one, failing on any error: a
// recording without its trailer reads as truncated.
func readRecording(t *testing.T, files ...string) record.Meta {
	t.Helper()
	r, err := record.OpenFiles(context.Background(), files...)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for {
		if _, err := r.Next(); err == io.EOF {
			return r.Meta()
		} else if err != nil {
			t.Fatalf("read %v: %v", files, err)
		}
	}
}

// TestPlantedSymlinks: symbolic links another user planted in a sticky
// world-writable directory (like /tmp), pointing at a root-owned file,
// are replaced by the recording and the ready file; the file they point
// at is not written.
func TestPlantedSymlinks(t *testing.T) {
	testutil.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "tmp")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "root-owned")
	if err := os.WriteFile(target, []byte("root's file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec, ready := filepath.Join(dir, "x.pcapng"), filepath.Join(dir, "ready")
	for _, link := range []string{rec, ready} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(link, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	r := run(t, nil, "--pod-ip", "192.0.2.1", "-w", rec, "--ready-file", ready, "--duration", "300ms")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "root's file\n" {
		t.Errorf("the links' target now holds %q (%v)", b, err)
	}
	if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("the target's mode is %v (%v)", fi.Mode(), err)
	}
	for _, name := range []string{rec, ready} {
		if fi, err := os.Lstat(name); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: %v (%v), want a regular file", name, fi.Mode(), err)
		}
	}
	if b, _ := os.ReadFile(ready); string(b) != "ready\n" {
		t.Errorf("ready file holds %q", b)
	}
	readRecording(t, rec)
}

// TestSignalsWithStdoutBlocked stops a trace whose stdout nobody reads
// with each signal that stops it: it exits, detaches everything, says how
// much output it dropped, and leaves a complete recording.
func TestSignalsWithStdoutBlocked(t *testing.T) {
	c := demoCluster(t)
	before := testutil.LinkIDs(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close() // open, never read
			if _, err := unix.FcntlInt(pw.Fd(), unix.F_SETPIPE_SZ, 4096); err != nil {
				t.Fatal(err)
			}
			rec := filepath.Join(t.TempDir(), "rec.pcapng")
			tr := startTrace(t, pw, traceArgs(c, "-w", rec)...)
			pw.Close()
			// Enough paths to fill the pipe and the queue behind it, so
			// that rendering waits on stdout when the signal comes.
			for range 40 {
				clientExchange(t, c)
			}
			took := tr.stop(t, sig)
			t.Logf("exited %v after %v", sig, took)
			if tr.err != nil {
				t.Errorf("exit: %v\n%s", tr.err, tr.stderr.String())
			}
			if !strings.Contains(tr.stderr.String(), "bytes of output dropped: stdout was not read when pathtrace stopped") {
				t.Errorf("stderr does not count the dropped output: %q", tr.stderr.String())
			}
			if m := readRecording(t, rec); m.Records == 0 {
				t.Error("the recording holds no records")
			}
			if after := testutil.LinkIDs(t); !slices.Equal(before, after) {
				t.Errorf("BPF links before %v, after %v", before, after)
			}
		})
	}
}

// TestReplayStalledFIFO stops a replay that waits on a FIFO, whether no
// one opened it for writing or the writer stalled halfway.
func TestReplayStalledFIFO(t *testing.T) {
	data, err := os.ReadFile("../../testdata/pcaps/clusterip.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	for _, half := range []bool{false, true} {
		t.Run(fmt.Sprintf("writer %v", half), func(t *testing.T) {
			fifo := filepath.Join(t.TempDir(), "fifo")
			if err := unix.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			tr := &tracer{exited: make(chan struct{})}
			tr.cmd = exec.Command(binary, "replay", fifo, "-o", "json")
			tr.cmd.Stdout, tr.cmd.Stderr = &tr.stdout, &tr.stderr
			if err := tr.cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { tr.err = tr.cmd.Wait(); close(tr.exited) }()
			if half {
				w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // waits for the replay to open it
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
				if _, err := w.Write(data[:len(data)/2]); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(300 * time.Millisecond) // it reads, then waits
			t.Logf("exited after %v", tr.stop(t, syscall.SIGINT))
			if tr.err != nil {
				t.Errorf("exit: %v (stderr %q)", tr.err, tr.stderr.String())
			}
			if !strings.Contains(tr.stderr.String(), "pathtrace: replayed ") {
				t.Errorf("stderr %q lacks the summary", tr.stderr.String())
			}
			if half && tr.stdout.Len() == 0 {
				t.Error("the paths read before the stall were not rendered")
			}
		})
	}
}

// TestHeadersOnlyByDefault sends a UDP datagram with a marker in its
// payload: a default recording has no payload, one with --snaplen 256
// has it.
func TestHeadersOnlyByDefault(t *testing.T) {
	c := demoCluster(t)
	marker := []byte("PATHTRACE-PAYLOAD-MARKER")
	for _, snaplen := range []string{"", "256"} {
		t.Run("snaplen="+snaplen, func(t *testing.T) {
			rec := filepath.Join(t.TempDir(), "rec.pcapng")
			args := traceArgs(c, "-w", rec, "-q")
			if snaplen != "" {
				args = append(args, "--snaplen", snaplen)
			}
			tr := startTrace(t, nil, args...)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			conn, err := c.Pod(topology.PodClient).Dial(ctx, "udp4", topology.ServerIP.String()+":9999")
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Write(marker); err != nil {
				t.Fatal(err)
			}
			conn.Close()
			time.Sleep(200 * time.Millisecond) // the datagram crosses the nodes
			tr.stop(t, syscall.SIGINT)
			if tr.err != nil {
				t.Fatalf("exit: %v\n%s", tr.err, tr.stderr.String())
			}
			m := readRecording(t, rec)
			data, err := os.ReadFile(rec)
			if err != nil {
				t.Fatal(err)
			}
			if m.Records == 0 {
				t.Fatal("no records")
			}
			if got, want := bytes.Contains(data, marker), snaplen != ""; got != want {
				t.Errorf("the payload is in the recording: %v, want %v", got, want)
			}
			if m.Filter.HeadersOnly != (snaplen == "") {
				t.Errorf("header says headers only: %v", m.Filter.HeadersOnly)
			}
		})
	}
}

// rotatedTrace traces the demo cluster with args (-G 1 and more) during n
// exchanges a little more than a second apart, and stops.
func rotatedTrace(t *testing.T, n int, args ...string) *tracer {
	t.Helper()
	c := demoCluster(t)
	tr := startTrace(t, nil, traceArgs(c, args...)...)
	for i := range n {
		if i > 0 {
			time.Sleep(1100 * time.Millisecond)
		}
		clientExchange(t, c)
	}
	tr.stop(t, syscall.SIGINT)
	if tr.err != nil {
		t.Fatalf("exit: %v\n%s", tr.err, tr.stderr.String())
	}
	return tr
}

// TestRotateByTime records with -G 1 over several seconds: each file is a
// complete recording, and the files replayed together, in any order, give
// what the live run printed.
func TestRotateByTime(t *testing.T) {
	base := filepath.Join(t.TempDir(), "rec.pcapng")
	tr := rotatedTrace(t, 3, "-o", "json", "-w", base, "-G", "1")
	files, _ := filepath.Glob(base + "*")
	if len(files) < 3 {
		t.Fatalf("files %v, want at least 3", files)
	}
	for i := range files {
		name := record.Rotation{Every: time.Second}.FileName(base, i)
		if m := readRecording(t, name); m.FileIndex != i {
			t.Errorf("%s is file %d", name, m.FileIndex)
		}
		if r := run(t, nil, "replay", name); r.code != 0 {
			t.Errorf("replay %s alone: exit %d: %s", name, r.code, r.stderr)
		}
	}
	rand.Shuffle(len(files), func(i, j int) { files[i], files[j] = files[j], files[i] })
	r := run(t, nil, append([]string{"replay", "-o", "json"}, files...)...)
	if r.code != 0 || r.stdout != tr.stdout.String() {
		t.Errorf("replay of %v: exit %d (%s), output equal to the live run's: %v", files, r.code, r.stderr, r.stdout == tr.stdout.String())
	}
}

// TestRotateKeep keeps the last -W files.
func TestRotateKeep(t *testing.T) {
	base := filepath.Join(t.TempDir(), "rec.pcapng")
	rotatedTrace(t, 4, "-q", "-w", base, "-G", "1", "-W", "2")
	files, _ := filepath.Glob(base + "*")
	if !slices.Equal(files, []string{base + "0", base + "1"}) {
		t.Fatalf("files %v, want %s0 and %s1", files, base, base)
	}
	if m := readRecording(t, files...); m.FileIndex < 3 {
		t.Errorf("the last file kept is file %d, want 3 or later", m.FileIndex)
	}
}

// TestFullDisk records to a file system that fills up during the trace:
// one error line naming the file and the cause, exit 1, nothing left
// attached.
func TestFullDisk(t *testing.T) {
	c := demoCluster(t)
	dir := t.TempDir()
	// Room for the header and a few records; the mount is private to
	// this test and removed after it.
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=96k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	before := testutil.LinkIDs(t)
	rec := filepath.Join(dir, "rec.pcapng")
	tr := startTrace(t, nil, traceArgs(c, "-q", "-w", rec)...)
	for range 30 {
		select {
		case <-tr.exited:
		default:
			clientExchange(t, c)
			continue
		}
		break
	}
	select {
	case <-tr.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("pathtrace still runs with the disk full (stderr %q)", tr.stderr.String())
	}
	r := result{tr.stdout.String(), tr.stderr.String(), tr.cmd.ProcessState.ExitCode()}
	// The summary line, then the error (after the warnings of the start).
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if !strings.Contains(l, "level=WARN") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 || !strings.Contains(lines[0], " packets, ") {
		t.Errorf("stderr %q, want the summary and one error", r.stderr)
	}
	oneSentence(t, result{r.stdout, lines[len(lines)-1], r.code}, 1, "write recording "+rec+": no space left on device")
	if after := testutil.LinkIDs(t); !slices.Equal(before, after) {
		t.Errorf("BPF links before %v, after %v", before, after)
	}
}

// TestBadPaths: a path or namespace that cannot be used is bad input, said
// in one sentence before anything is attached (no summary line), exit 2;
// the names given keep what they had.
func TestBadPaths(t *testing.T) {
	testutil.RequireRoot(t) // the checks come after the one for root
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	kept := filepath.Join(dir, "kept.pcapng")
	if err := os.WriteFile(kept, []byte("an old recording"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := testutil.LinkIDs(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--netns", "/etc/passwd"}, "--netns: /etc/passwd is not a network namespace"},
		{[]string{"--netns", "/proc/self/ns/mnt"}, "--netns: /proc/self/ns/mnt is not a network namespace but a mount namespace"},
		{[]string{"--netns", fifo}, "--netns: " + fifo + " is not a network namespace"},
		{[]string{"--netns", "pathtrace-no-such-netns"}, "--netns: open network namespace /run/netns/pathtrace-no-such-netns: no such file or directory"},
		{[]string{"-w", filepath.Join(dir, "missing", "x.pcapng")}, "-w: create " + filepath.Join(dir, "missing", "x.pcapng") + ": no such file or directory"},
		{[]string{"-w", dir}, "-w: create " + dir + ": it is a directory"},
		{[]string{"-w", fifo}, "-w: create " + fifo + ": it is a FIFO that no process reads"},
		{[]string{"-w", kept, "--ready-file", filepath.Join(dir, "missing", "ready")}, "--ready-file: create " + filepath.Join(dir, "missing", "ready") + ": no such file or directory"},
		{[]string{"-w", "x.pcapng", "-W", "3"}, "-W keeps the last files of a recording that -C or -G rotates"},
		{[]string{"-G", "10"}, "-G rotates recording files: it needs -w FILE"},
		{[]string{"-w", "x.pcapng", "-C", "-1"}, "-C -1 is negative"},
		{[]string{"--ring-size", "3"}, "--ring-size 3 is not a power of two from 1 to 256 (MiB)"},
		{[]string{"--ring-size", "512"}, "--ring-size 512 is not a power of two from 1 to 256 (MiB)"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			oneSentence(t, run(t, nil, append([]string{"--pod-ip", "192.0.2.1"}, tc.args...)...), 2, tc.want)
		})
	}
	if b, _ := os.ReadFile(kept); string(b) != "an old recording" {
		t.Errorf("a trace that did not start replaced %s: %q", kept, b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("the failed starts left files: %v", entries)
	}
	if after := testutil.LinkIDs(t); !slices.Equal(before, after) {
		t.Errorf("BPF links before %v, after %v", before, after)
	}
}
