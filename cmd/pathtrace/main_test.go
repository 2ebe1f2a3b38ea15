package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/internal/topology"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pathtrace-test")
	if err != nil {
		panic(err)
	}
	// Readable by the unprivileged user TestNotRoot runs it as.
	if err := os.Chmod(dir, 0o755); err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "pathtrace")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

func run(t *testing.T, cred *syscall.Credential, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{stdout.String(), stderr.String(), code}
}

// oneSentence checks that a failure is reported as one line, with no Go
// panic or stack trace.
func oneSentence(t *testing.T, r result, wantCode int, wantText string) {
	t.Helper()
	if r.code != wantCode {
		t.Errorf("exit code %d, want %d (stderr %q)", r.code, wantCode, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "pathtrace: ") || !strings.Contains(lines[0], wantText) {
		t.Errorf("stderr %q, want one line mentioning %q", r.stderr, wantText)
	}
	if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic") {
		t.Errorf("stderr has a stack trace: %s", r.stderr)
	}
}

func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--pod-ip", "10.244.1"}, `--pod-ip "10.244.1" is not an IPv4 or IPv6 address`},
		{[]string{"--pod-ip", "fe80::1%eth0"}, `--pod-ip "fe80::1%eth0" is not an IPv4 or IPv6 address`},
		{[]string{"--pod-ip", "fd77:1::5::1"}, "not an IPv4 or IPv6 address"},
		{[]string{"-o", "xml"}, `--output "xml" is not text, json, html or svg`},
		{[]string{"-o", "svg"}, "-o svg draws one packet: name it with --packet N"},
		{[]string{"-o", "json", "--packet", "3"}, "--packet chooses the packet of -o svg, not of -o json"},
		{[]string{"replay", "x.pcapng", "-o", "html", "--packet", "3"}, "--packet chooses the packet of -o svg, not of -o html"},
		{[]string{"replay", "x.pcapng", "-o", "svg"}, "-o svg draws one packet"},
		{[]string{"--packet", "-1", "-o", "svg"}, "invalid argument"},
		{[]string{"--color", "sometimes"}, "sometimes"},
		{[]string{"--vxlan-port", "70000"}, "not a UDP port"},
		{[]string{"--count", "-1"}, "negative"},
		{[]string{"--max-per-conn", "-1"}, "negative"},
		{[]string{"replay", "x.pcapng", "--max-per-conn", "-1"}, "--max-per-conn -1 is negative"},
		{[]string{"-r", "x.pcapng", "--hops", "drop"}, "--hops does not apply to a replay (-r)"},
		{[]string{"kubectl", "--pod", "a/b", "--hops", "drops"}, `--hops: hop kind "drops" is not one of`},
		{[]string{"kubectl", "--pod", "a/b", "--ring-size", "3"}, "--ring-size 3 is not a power of two"},
		{[]string{"kubectl", "--pod", "a/b", "--max-per-conn", "-1"}, "--max-per-conn -1 is negative"},
		{[]string{"--hops", "drops"}, `hop kind "drops" is not one of`},
		{[]string{"--scope", "cluster"}, `--scope "cluster" is neither kernel nor node`},
		{[]string{"-r", "x.pcapng", "--scope", "node"}, "--scope does not apply to a replay (-r)"},
		{[]string{"--no-such-flag"}, "unknown flag"},
		{[]string{"port", "80", "and"}, `filter expression "port 80 and": syntax error`},
		{[]string{"tcp", "port", "http2x"}, `filter expression "tcp port http2x": unknown port 'http2x'`},
		{[]string{"-r", "x.pcapng", "tcp"}, "a filter expression does not apply to a replay (-r) yet"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			if strings.Contains(tc.want, "filter expression \"") {
				testutil.Require(t, testutil.Tool("tcpdump"))
			}
			oneSentence(t, run(t, nil, tc.args...), 2, tc.want)
		})
	}
}

func TestNotRoot(t *testing.T) {
	testutil.RequireRoot(t) // to drop to another user
	r := run(t, &syscall.Credential{Uid: 65534, Gid: 65534}, "--pod-ip", "10.244.1.5")
	oneSentence(t, r, 1, "needs root")
}

func waitFile(t *testing.T, path string, done <-chan struct{}) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		select {
		case <-tick.C:
		case <-done:
			t.Fatal("pathtrace exited before writing its ready file")
		case <-deadline:
			t.Fatal("no ready file after 30s")
		}
	}
}

// TestLiveJSON runs the binary as a user would: attach, wait for the ready
// file, send traffic, interrupt, read the JSON lines.
func TestLiveJSON(t *testing.T) {
	c := demoCluster(t)
	linksBefore := testutil.LinkIDs(t)
	stdout, stderr := traceExchange(t, c, "-o", "json")
	if !strings.Contains(stderr, " packets, ") || !strings.Contains(stderr, " 0 lost") {
		t.Errorf("no summary on stderr: %q", stderr)
	}
	if after := testutil.LinkIDs(t); !slices.Equal(linksBefore, after) {
		t.Errorf("BPF links left behind: before %v, after %v", linksBefore, after)
	}

	var sawDNAT bool
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		n++
		var p struct {
			ID      *uint64 `json:"id"`
			Start   string  `json:"start"`
			Proto   string  `json:"proto"`
			Src     string  `json:"src"`
			Dst     string  `json:"dst"`
			Verdict string  `json:"verdict"`
			Hops    []struct {
				TNs   *int64 `json:"t_ns"`
				Kind  string `json:"kind"`
				Dev   string `json:"dev"`
				Netns string `json:"netns"`
				NAT   *struct {
					Type, From, To string
				} `json:"nat"`
			} `json:"hops"`
		}
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", n, err, sc.Text())
		}
		if p.ID == nil || p.Proto != "tcp" || p.Src == "" || p.Dst == "" || len(p.Hops) == 0 {
			t.Errorf("line %d lacks required fields: %s", n, sc.Text())
		}
		if _, err := time.Parse(time.RFC3339Nano, p.Start); err != nil {
			t.Errorf("line %d: start %q is not RFC 3339", n, p.Start)
		}
		if !slices.Contains([]string{"delivered", "dropped", "forwarded", "reassembled", "fragmented", "unknown"}, p.Verdict) {
			t.Errorf("line %d: verdict %q", n, p.Verdict)
		}
		for _, h := range p.Hops {
			if h.TNs == nil || h.Kind == "" {
				t.Errorf("line %d: hop without t_ns or kind", n)
			}
			if h.NAT != nil && h.NAT.Type == "dnat" && h.NAT.From == "10.96.0.10:80" && h.NAT.To == "10.244.2.7:8080" {
				sawDNAT = true
			}
		}
	}
	if n == 0 {
		t.Fatal("no JSON lines")
	}
	if !sawDNAT {
		t.Errorf("no DNAT hop 10.96.0.10:80 → 10.244.2.7:8080 in %d packets", n)
	}
}

func netnsNames(t *testing.T) []string {
	entries, _ := os.ReadDir("/run/netns")
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestDemo(t *testing.T) {
	testutil.RequireRoot(t)
	before := netnsNames(t)
	r := run(t, nil, "demo", "-o", "json")
	if r.code != 0 {
		t.Fatalf("demo exited %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{`"type":"dnat","from":"10.96.0.10:80","to":"10.244.2.7:8080"`, `"kind":"encap"`, `"dst":"10.244.1.6:8080"`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo output lacks %s", want)
		}
	}
	if after := netnsNames(t); !slices.Equal(before, after) {
		t.Errorf("network namespaces before the demo %v, after %v", before, after)
	}
}

// TestDemoIPVS: with --ipvs the ClusterIP is an IPVS virtual service; the
// two requests to it go one to each real server (round robin), and their
// paths show the IPVS hop.
func TestDemoIPVS(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.Require(t, testutil.IPVS)
	r := run(t, nil, "demo", "--ipvs", "-o", "json")
	if r.code != 0 {
		t.Fatalf("demo --ipvs exited %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{`"kind":"ipvs"`, `"real_server":"10.244.2.7:8080"`, `"real_server":"10.244.1.8:8080"`, `"dst":"10.244.1.6:8080"`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo --ipvs output lacks %s", want)
		}
	}
}

func TestReplayBadInput(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile("../../testdata/pcaps/drop.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"empty":     nil,
		"text":      []byte("not a capture\n"),
		"truncated": good[:len(good)/2],
		"magic":     append([]byte{0xde, 0xad, 0xbe, 0xef}, good[4:]...),
	}
	for name, data := range files {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			r := run(t, nil, "replay", path)
			oneSentence(t, r, 2, "recording "+path+": ")
		})
	}
	t.Run("missing", func(t *testing.T) {
		oneSentence(t, run(t, nil, "replay", filepath.Join(dir, "nope")), 2, "open recording "+filepath.Join(dir, "nope")+": no such file or directory")
	})
	t.Run("no file", func(t *testing.T) {
		oneSentence(t, run(t, nil, "replay"), 2, "replay takes the recording's files, got none")
	})
	t.Run("two traces", func(t *testing.T) {
		oneSentence(t, run(t, nil, "replay", "../../testdata/pcaps/drop.pcapng", "../../testdata/pcaps/clusterip.pcapng"), 2,
			"not consecutive files of one trace: ../../testdata/pcaps/drop.pcapng and ../../testdata/pcaps/clusterip.pcapng were recorded by different traces")
	})
	t.Run("svg of a missing packet", func(t *testing.T) {
		oneSentence(t, run(t, nil, "replay", "../../testdata/pcaps/drop.pcapng", "-o", "svg", "--packet", "99"), 1, "no packet #99 in the trace")
	})
	t.Run("-r with --netns", func(t *testing.T) {
		oneSentence(t, run(t, nil, "-r", "x.pcapng", "--netns", "n1"), 2, "does not apply to a replay")
	})
}

// TestReplayMerged replays two nodes' --scope node recordings merged, as
// the golden file of internal/trace has them, with node2's clock on the
// closing line.
func TestReplayMerged(t *testing.T) {
	want, err := os.ReadFile("../../testdata/merge/merged.json")
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, nil, "replay", "-o", "json", "../../testdata/merge/node1.pcapng", "../../testdata/merge/node2.pcapng")
	if r.code != 0 || r.stdout != string(want) || !strings.Contains(r.stderr, "halves joined across nodes; clock of node2 +") {
		t.Errorf("merged replay: exit %d, stderr %q, output equal to the golden file: %v", r.code, r.stderr, r.stdout == string(want))
	}
}

// TestReplayMaxPerConn replays committed recordings, one node's and two
// merged, with --max-per-conn N: the output must be the packets of the
// full replay that are among the first N of their connection (protocol
// and endpoints, either direction), in order and renumbered, nothing else.
func TestReplayMaxPerConn(t *testing.T) {
	for _, files := range [][]string{
		{"../../testdata/pcaps/clusterip.pcapng"},
		{"../../testdata/merge/node1.pcapng", "../../testdata/merge/node2.pcapng"},
	} {
		full := run(t, nil, append([]string{"replay", "-o", "json"}, files...)...)
		if full.code != 0 {
			t.Fatalf("replay %v: exit %d, %s", files, full.code, full.stderr)
		}
		all := jsonPackets(t, full.stdout)
		for _, n := range []int{1, 2} {
			var want []map[string]any
			seen := map[string]int{}
			for _, p := range all {
				a, b := p["src"].(string), p["dst"].(string)
				if b < a {
					a, b = b, a
				}
				k := fmt.Sprint(p["proto"], " ", a, " ", b)
				if seen[k]++; seen[k] <= n {
					want = append(want, p)
				}
			}
			if len(want) == len(all) {
				t.Fatalf("replay %v: every connection has at most %d packets: the test shows nothing", files, n)
			}
			r := run(t, nil, append([]string{"replay", "-o", "json", "--max-per-conn", strconv.Itoa(n)}, files...)...)
			got := jsonPackets(t, r.stdout)
			if r.code != 0 || len(got) != len(want) {
				t.Fatalf("replay %v --max-per-conn %d: exit %d, %d packets, want %d of %d (%s)", files, n, r.code, len(got), len(want), len(all), r.stderr)
			}
			for i := range got {
				if id := got[i]["id"]; id != float64(i+1) {
					t.Errorf("--max-per-conn %d: packet %d has id %v", n, i+1, id)
				}
				delete(got[i], "id")
				w := maps.Clone(want[i])
				delete(w, "id")
				if !reflect.DeepEqual(got[i], w) {
					t.Errorf("replay %v --max-per-conn %d: packet %d is not the full replay's packet %v", files, n, i+1, want[i]["id"])
				}
			}
		}
	}
}

// jsonPackets parses -o json output, one object per line.
func jsonPackets(t *testing.T, out string) []map[string]any {
	t.Helper()
	var ps []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var p map[string]any
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			t.Fatalf("JSON line %q: %v", line, err)
		}
		ps = append(ps, p)
	}
	return ps
}

// TestReplayAsUser replays committed recordings without privileges: one
// of the demo, and one made on the Kubernetes lab (internal/k8slab), whose
// pod, Service and Node names come from the recording alone.
func TestReplayAsUser(t *testing.T) {
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	// t.TempDir's parent is private to root; nobody needs a readable path.
	dir, err := os.MkdirTemp("", "pathtrace-replay")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, names := range map[string][]string{
		"clusterip": nil,
		"lab-names": {`"src_pod":"default/client"`, `"dst_pod":"default/server"`, `"service":"default/web:http"`,
			`"node":"ptlab-node1"`, `"src_node":"ptlab-node1","dst_node":"ptlab-node2"`},
	} {
		data, err := os.ReadFile("../../testdata/pcaps/" + name + ".pcapng")
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, name+".pcapng")
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile("../../testdata/pcaps/" + name + ".json")
		if err != nil {
			t.Fatal(err)
		}
		r := run(t, cred, "replay", file, "-o", "json")
		if r.code != 0 || r.stdout != string(want) {
			t.Errorf("replay %s as nobody: exit %d, stderr %q, output equal to the golden file: %v", name, r.code, r.stderr, r.stdout == string(want))
		}
		for _, n := range names {
			if !strings.Contains(r.stdout, n) {
				t.Errorf("replay %s as nobody: no %s", name, n)
			}
		}
	}
}

// TestDemoInterrupted stops the demo with SIGINT while it traces: it must
// still remove every namespace it made.
func TestDemoInterrupted(t *testing.T) {
	testutil.RequireRoot(t)
	before := netnsNames(t)
	linksBefore := testutil.LinkIDs(t)
	cmd := exec.Command(binary, "demo")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var log []string
	for sc.Scan() {
		log = append(log, sc.Text())
		if strings.HasPrefix(sc.Text(), "demo: tracing") {
			cmd.Process.Signal(os.Interrupt)
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("interrupted demo: %v (stderr so far %q)", err, log)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the demo did not stop after SIGINT")
	}
	if after := netnsNames(t); !slices.Equal(before, after) {
		t.Errorf("network namespaces before %v, after an interrupted demo %v", before, after)
	}
	if after := testutil.LinkIDs(t); !slices.Equal(linksBefore, after) {
		t.Errorf("BPF links left behind by an interrupted demo: %v → %v", linksBefore, after)
	}
}

// TestLiveRecordToStdout: -w - writes the recording to stdout, as tcpdump
// -w - does, and nothing else there; a replay reading that stream shows
// the exchange, the DNAT at node1 included.
func TestLiveRecordToStdout(t *testing.T) {
	c := demoCluster(t)
	stdout, _ := traceExchange(t, c, "-w", "-")
	if !bytes.HasPrefix(stdout.Bytes(), []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		t.Fatalf("stdout does not start with a pcapng section header: %q", stdout.Bytes()[:min(stdout.Len(), 16)])
	}
	replay := exec.Command(binary, "replay", "/dev/stdin")
	replay.Stdin = stdout
	out, err := replay.CombinedOutput()
	if err != nil {
		t.Fatalf("replay of the stream: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "DNAT "+topology.ClusterIP.String()) {
		t.Errorf("the replay of the stream shows no DNAT of %s:\n%s", topology.ClusterIP, out)
	}
}

// traceExchange runs the binary on the demo cluster's nodes, following the
// client, with args: once it is attached, the client sends a TCP exchange
// through the ClusterIP, then pathtrace is interrupted. It returns what
// pathtrace wrote.
func traceExchange(t *testing.T, c *topology.Cluster, args ...string) (stdout *bytes.Buffer, stderr string) {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command(binary, append([]string{"--pod-ip", topology.ClientIP.String(),
		"--netns", c.Node(topology.Node1).NetnsName, "--netns", c.Node(topology.Node2).NetnsPath,
		"--ready-file", ready}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	waitFile(t, ready, exited)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err := topology.TCPExchange(ctx, c.Pod(topology.PodClient), topology.ClusterIP, "ping")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("pathtrace did not exit after SIGINT")
	}
	if waitErr != nil {
		t.Fatalf("pathtrace: %v\n%s", waitErr, errOut.String())
	}
	return &out, errOut.String()
}

// TestLiveDurationFromAttach: --duration counts from the ready file, when
// everything is attached, not from the start: loading the programs takes
// seconds on a busy node and would eat a short trace. The exchange sent
// once the file is there is traced, and pathtrace exits no sooner than the
// duration after the file's modification time.
func TestLiveDurationFromAttach(t *testing.T) {
	c := demoCluster(t)
	const d = time.Second
	tr := startTrace(t, nil, traceArgs(c, "--duration", d.String(), "-o", "json")...)
	fi, err := os.Stat(tr.ready)
	if err != nil {
		t.Fatal(err)
	}
	clientExchange(t, c)
	select {
	case <-tr.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("pathtrace --duration %v still running 30s after its ready file", d)
	}
	if ran := time.Since(fi.ModTime()); ran < d {
		t.Errorf("pathtrace exited %v after its ready file, before its --duration %v had passed", ran, d)
	}
	if tr.err != nil {
		t.Errorf("exit: %v: %s", tr.err, tr.stderr.String())
	}
	if !strings.Contains(tr.stdout.String(), `"src":"`+topology.ClientIP.String()) {
		t.Errorf("the client's exchange, sent once attached, is not in the trace:\n%s", tr.stdout.String())
	}
}
