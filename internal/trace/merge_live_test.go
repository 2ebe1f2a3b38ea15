package trace

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/record"
	"github.com/pathtrace/pathtrace/internal/render"
	"github.com/pathtrace/pathtrace/internal/scope"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/topology"
)

var updateMerge = flag.Bool("update-merge", false,
	"TestMergedNodesMatchKernel: refresh testdata/merge's recordings (then run TestMergedReplayGolden -update)")

// mergeDir holds two nodes' --scope node recordings of the demo's
// exchanges and their merged replay.
const mergeDir = "../../testdata/merge"

// TestMergedReplayGolden replays the committed recordings of node1 and
// node2 merged, without privileges, and compares with the renderings in
// testdata/merge (-update rewrites them).
func TestMergedReplayGolden(t *testing.T) {
	files := []string{filepath.Join(mergeDir, "node1.pcapng"), filepath.Join(mergeDir, "node2.pcapng")}
	for _, json := range []bool{true, false} {
		golden := filepath.Join(mergeDir, "merged.txt")
		newRenderer := func(w io.Writer) render.Renderer { return render.NewText(w, render.TextOptions{}) }
		if json {
			golden, newRenderer = filepath.Join(mergeDir, "merged.json"), render.NewJSON
		}
		var buf bytes.Buffer
		sum, err := ReplayFiles(context.Background(), files, ReplayOptions{}, newRenderer(&buf))
		if err != nil {
			t.Fatal(err)
		}
		if len(sum.Clocks) != 1 || !sum.Clocks[0].Known || sum.Merged == 0 || sum.Packets == 0 {
			t.Errorf("summary %s: want node2's clock, packets joined", sum)
		}
		if *updateGolden {
			if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("merged replay differs from %s:\n%s", golden, buf.Bytes())
		}
	}
	// In any order of the files: the first given is the reference.
	var a, b bytes.Buffer
	ReplayFiles(context.Background(), files, ReplayOptions{}, render.NewJSON(&a))
	sum, err := ReplayFiles(context.Background(), []string{files[1], files[0]}, ReplayOptions{}, render.NewJSON(&b))
	if err != nil || sum.Reference != "node2" || len(sum.Clocks) != 1 || sum.Clocks[0].Node != "node1" {
		t.Errorf("node2 first: %s, %v; want node1's clock relative to node2", sum, err)
	}
}

// replayed replays files (one trace, or several nodes' recordings merged)
// and returns the paths and the summary.
func replayed(t *testing.T, files ...string) ([]*stitch.Path, Summary) {
	t.Helper()
	out := &collector{}
	sum, err := ReplayFiles(context.Background(), files, ReplayOptions{}, out)
	if err != nil {
		t.Fatalf("replay %v: %v", files, err)
	}
	return out.paths, sum
}

// hopLine is what a hop shows of the packet, without its times and node.
func hopLine(h *stitch.Hop) string {
	s := fmt.Sprintf("%s %s %s %s in=%s out=%s %s→%s partial=%v", h.Kind, h.Dev, h.Netns, h.Hook, h.In, h.Out, h.Src, h.Dst, h.Partial)
	if h.NAT != nil {
		s += fmt.Sprintf(" nat %s %s→%s", h.NAT.Type, h.NAT.From, h.NAT.To)
	}
	if h.Outer != nil {
		s += fmt.Sprintf(" outer %+v", *h.Outer)
	}
	if h.Table != nil {
		s += fmt.Sprintf(" table %+v", *h.Table)
	}
	return s
}

// pathLines is a path without times, IDs or nodes: its packet, verdict and hops.
func pathLines(p *stitch.Path) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s → %s id=%d flags=%#x %s\n", p.Proto, p.Src, p.Dst, p.IPID, p.TCPFlags, p.Verdict)
	for i := range p.Hops {
		b.WriteString("  " + hopLine(&p.Hops[i]) + "\n")
	}
	return b.String()
}

// hopTimes is p's start and each hop's time from it, with its node.
func hopTimes(p *stitch.Path) string {
	var b strings.Builder
	b.WriteString(p.Start.Format("15:04:05.000000000"))
	for i := range p.Hops {
		fmt.Fprintf(&b, " %s:%v", p.Hops[i].Node, p.Hops[i].T)
	}
	return b.String()
}

// tcpSettled waits until no TCP socket of the pods is between its first
// SYN and its last ACK (listeners, TIME_WAIT and closed sockets aside), 10 s
// at most.
func tcpSettled(t *testing.T, pods ...*topology.Pod) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		open := 0
		for _, p := range pods {
			n, err := openTCP(p)
			if err != nil {
				t.Fatalf("pod %s: %v", p.Name, err)
			}
			open += n
		}
		if open == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Logf("%d TCP sockets still open after 10s; the traces stop anyway", open)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// flushDeferredFrees has every CPU free the skbs other CPUs left it. Since
// Linux 5.19 a socket that has read a segment leaves its free to the CPU
// that allocated the skb (skb_attempt_defer_free), which does it, with the
// consume_skb tracepoint, at its next NET_RX softirq: on a quiet machine,
// at any time later. A trace stopped before then misses the segment's
// consume hop that a trace stopped after has (seen in CI as a FIN's and a
// data segment's last hop in the node trace but not the kernel's). A
// datagram to the pod's loopback from a thread bound to each CPU in turn
// raises that softirq there.
func flushDeferredFrees(t *testing.T, p *topology.Pod) {
	t.Helper()
	err := p.Do(func() error {
		var all unix.CPUSet
		if err := unix.SchedGetaffinity(0, &all); err != nil {
			return fmt.Errorf("affinity: %w", err)
		}
		defer unix.SchedSetaffinity(0, &all)
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrInet4{Port: 9, Addr: [4]byte{127, 0, 0, 1}} // discard: no listener
		for cpu := range len(all) * 64 {
			if !all.IsSet(cpu) {
				continue
			}
			var one unix.CPUSet
			one.Set(cpu)
			if err := unix.SchedSetaffinity(0, &one); err != nil {
				return fmt.Errorf("bind to CPU %d: %w", cpu, err)
			}
			if err := unix.Sendto(fd, []byte("flush"), 0, to); err != nil {
				return fmt.Errorf("loopback datagram on CPU %d: %w", cpu, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("pod %s: flush deferred frees: %v", p.Name, err)
	}
}

// openTCP counts the pod's TCP sockets in a state that sends or awaits
// packets: all but LISTEN, TIME_WAIT and CLOSE (/proc/net/tcp's st).
func openTCP(p *topology.Pod) (n int, err error) {
	err = p.Do(func() error {
		for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
			b, err := os.ReadFile(f)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			for i, line := range strings.Split(string(b), "\n") {
				if fields := strings.Fields(line); i > 0 && len(fields) > 3 {
					switch fields[3] {
					case "06", "07", "0A": // TIME_WAIT, CLOSE, LISTEN
					default:
						n++
					}
				}
			}
		}
		return nil
	})
	return n, err
}

// TestMergedNodesMatchKernel is the proof of issue 14 on one machine:
// node1 and node2 of the demo traced with --scope node at once, and the
// kernel with --scope kernel, during the same exchanges; the two nodes'
// recordings merged show every packet with the same hops in the same
// order as the kernel's trace. Then node2's recording, its clock moved by
// a known offset, merged again: the estimate recovers the offset within
// its uncertainty.
func TestMergedNodesMatchKernel(t *testing.T) {
	for _, cni := range []topology.CNI{topology.CNIFlannel, topology.CNICalicoVXLAN, topology.CNICalicoIPIP, topology.CNIGeneve} {
		t.Run(cni.String(), func(t *testing.T) { mergedNodesMatchKernel(t, cni) })
	}
}

// keepFailed copies the files of dir into a new directory under
// $PT_KEEP_FAILED, named after the test, when the test fails: the
// recordings of a failure that does not come back at will.
func keepFailed(t *testing.T, dir string) {
	keep := os.Getenv("PT_KEEP_FAILED")
	if keep == "" {
		return
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		to, err := os.MkdirTemp(keep, strings.ReplaceAll(t.Name(), "/", "_")+"-")
		if err == nil {
			err = os.CopyFS(to, os.DirFS(dir))
		}
		if err != nil {
			t.Logf("keep the failed test's files: %v", err)
			return
		}
		t.Logf("the failed test's files are in %s", to)
	})
}

func mergedNodesMatchKernel(t *testing.T, cni topology.CNI) {
	c := cluster(t, topology.Options{Prefix: "ptrec", CNI: cni}) // the names of testdata/merge
	dir := t.TempDir()
	keepFailed(t, dir)
	n1, n2 := c.Node(topology.Node1), c.Node(topology.Node2)
	rec := func(name string) string { return filepath.Join(dir, name+".pcapng") }
	lopts := func(netns ...string) loader.Options {
		return loader.Options{PodIPs: []netip.Addr{topology.ClientIP}, Netns: netns}
	}
	stops := []func() ([]*stitch.Path, Summary){
		tracingOpts(t, c, Options{Loader: lopts(n1.NetnsPath, n2.NetnsPath), Record: rec("kernel")}),
		tracingOpts(t, c, Options{Loader: lopts(n1.NetnsPath), Record: rec("node1"), Scope: scope.Node, NodeName: "node1"}),
		tracingOpts(t, c, Options{Loader: lopts(n2.NetnsPath), Record: rec("node2"), Scope: scope.Node, NodeName: "node2"}),
	}
	client := c.Pod(topology.PodClient)
	exchange(t, client, topology.ServerAddr)
	if cni == topology.CNIFlannel {
		exchange(t, client, topology.ClusterIP)
	}
	// The traces stop one after the other: the kernel's first. An exchange
	// ends when the client has read its reply, before the FINs and the
	// last ACK have crossed; stopped then, the kernel's trace would miss
	// them where the node traces stopped later do not (seen on 6.1-arm64).
	tcpSettled(t, client, c.Pod(topology.PodServer))
	flushDeferredFrees(t, client)
	for i, stop := range stops {
		_, sum := stop()
		if sum.Lost != 0 {
			t.Errorf("trace %d lost %d events", i, sum.Lost)
		}
		t.Logf("trace %d: %s", i, sum)
		if i > 0 && sum.OutOfScope == 0 {
			t.Errorf("node trace %d dropped no event of the other node: %s", i, sum)
		}
	}

	kernel, _ := replayed(t, rec("kernel"))
	merged, sum := replayed(t, rec("node1"), rec("node2"))
	if len(kernel) < 6 {
		t.Errorf("the kernel's trace has %d paths, want a TCP exchange's (at least 6)", len(kernel))
	}
	sameAsKernel(t, kernel, merged)
	both := 0
	for _, p := range merged {
		on := map[string]bool{}
		for i := range p.Hops {
			h := &p.Hops[i]
			if h.Node != "node1" && h.Node != "node2" {
				t.Fatalf("hop %d of #%d on node %q", i, p.ID, h.Node)
			}
			on[h.Node] = true
		}
		if len(on) == 2 {
			both++
		}
	}
	t.Logf("%d paths, %d of them joined across the nodes", len(merged), both)
	if both == 0 || both != sum.Merged {
		t.Errorf("%d merged paths cross the nodes, the summary says %d halves joined; want as many, not 0", both, sum.Merged)
	}

	if *updateMerge && !t.Failed() && cni == topology.CNIFlannel {
		for _, name := range []string{"node1", "node2"} {
			b, err := os.ReadFile(rec(name))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(mergeDir, name+".pcapng"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}

	// One kernel: node2's clock is node1's, but for the instants each
	// trace read its two clocks at.
	m1, m2 := meta(t, rec("node1")), meta(t, rec("node2"))
	skew := time.Duration((m2.StartWall.UnixNano() - int64(m2.StartMono)) - (m1.StartWall.UnixNano() - int64(m1.StartMono)))
	checkClock(t, sum, skew)
	inNodesOrder(t, merged, sum, skew, rec("node1"), rec("node2"))

	const shift = 1500*time.Millisecond + 123*time.Microsecond
	shifted := rec("node2-shifted")
	if err := record.ShiftClock(shifted, rec("node2"), shift); err != nil {
		t.Fatal(err)
	}
	merged2, sum2 := replayed(t, rec("node1"), shifted)
	checkClock(t, sum2, skew+shift)
	t.Logf("with node2's clock %v ahead:", shift)
	sameAsKernel(t, kernel, merged2)
	inNodesOrder(t, merged2, sum2, skew+shift, rec("node1"), shifted)
}

// sameAsKernel compares the merged nodes' paths with the kernel's trace:
// the same packets, each with the same hops in the same order. Their order
// is inNodesOrder's to check: the kernel's trace stamps each event with its
// own programs, which run on the hook before or after the node traces' and
// may be interrupted between (an event stamped 16µs apart by two traces,
// CI 2026-12-06), so its times are not those the merge ordered by.
func sameAsKernel(t *testing.T, kernel, merged []*stitch.Path) {
	t.Helper()
	line := func(p *stitch.Path) string { return p.Start.Format("15:04:05.000000000 ") + pathLines(p) }
	at := map[string][]int{} // a packet's lines → its paths in the kernel's trace
	for i, p := range kernel {
		at[pathLines(p)] = append(at[pathLines(p)], i)
	}
	var extra []string
	for _, p := range merged {
		k := pathLines(p)
		if len(at[k]) == 0 {
			extra = append(extra, line(p))
			continue
		}
		at[k] = at[k][1:]
	}
	var missing []string
	for i, p := range kernel {
		if slices.Contains(at[pathLines(p)], i) {
			missing = append(missing, line(p))
		}
	}
	if len(extra)+len(missing) > 0 {
		t.Errorf("merged nodes' paths differ from the kernel's (%d and %d paths):\n--- only in the kernel's trace\n%s--- only in the merged\n%s",
			len(kernel), len(merged), strings.Join(missing, ""), strings.Join(extra, ""))
	}
}

// inNodesOrder checks the merged paths' starts and order against the
// node traces' own stamps. Each merged path starts where a path of its
// first hop's node, replayed alone, starts: node1's (the reference) at
// the same instant, node2's at that instant less the estimated offset of
// node2's clock. Brought to node1's clock with the true offset instead,
// those stamps order the paths as the merge must, but for paths of
// different nodes that start closer than the estimate's error: the merge
// cannot tell those apart (two packets crossing, a client's ACK as the
// server sends its FIN).
func inNodesOrder(t *testing.T, merged []*stitch.Path, sum Summary, trueOffset time.Duration, node1, node2 string) {
	t.Helper()
	if len(sum.Clocks) != 1 {
		return // checkClock said why
	}
	est := sum.Clocks[0].Offset
	type start struct {
		ns    int64
		ipid  uint16
		first string
	}
	alone := map[string]map[start]bool{}
	for node, file := range map[string]string{"node1": node1, "node2": node2} {
		paths, _ := replayed(t, file)
		alone[node] = map[start]bool{}
		for _, p := range paths {
			alone[node][start{p.Start.UnixNano(), p.IPID, hopLine(&p.Hops[0])}] = true
		}
	}
	offsets := map[string][2]time.Duration{"node1": {0, 0}, "node2": {est, trueOffset}} // estimated, true
	stamps := make([]int64, len(merged))                                                // on node1's clock, by the true offset
	for i, p := range merged {
		node := p.Hops[0].Node
		off := offsets[node]
		own := p.Start.Add(off[0]).UnixNano()
		if !alone[node][start{own, p.IPID, hopLine(&p.Hops[0])}] {
			t.Errorf("merged #%d starts on %s at %s, which with %v added is no start of %s's paths replayed alone:\n%s",
				i+1, node, p.Start.Format("15:04:05.000000000"), off[0], node, pathLines(p))
		}
		stamps[i] = own - int64(off[1])
	}
	errEst := (est - trueOffset).Abs()
	for i := range merged {
		for j := i + 1; j < len(merged); j++ {
			late := time.Duration(stamps[i] - stamps[j])
			if late <= 0 {
				continue
			}
			a, b := merged[i], merged[j]
			if late <= errEst && a.Hops[0].Node != b.Hops[0].Node {
				t.Logf("merged, #%d and #%d come in the other order; their nodes stamped them %v apart, within the estimate's error %v", i+1, j+1, late, errEst)
				continue
			}
			t.Errorf("merged, #%d comes before #%d, which its node stamped %v earlier (the estimate of node2's clock is %v off):\n%s\n%s",
				i+1, j+1, late, errEst, hopTimes(a), hopTimes(b))
		}
	}
}

func meta(t *testing.T, file string) record.Meta {
	t.Helper()
	_, m, err := record.ReadAll(file)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkClock checks that the summary has node2's clock offset, both ways,
// within its uncertainty of want.
func checkClock(t *testing.T, sum Summary, want time.Duration) {
	t.Helper()
	if len(sum.Clocks) != 1 {
		t.Fatalf("clocks %+v, want node2's", sum.Clocks)
	}
	c := sum.Clocks[0]
	t.Logf("%s (true %v)", ClockString(c, sum.Reference), want)
	if c.Node != "node2" || !c.Known || c.Pairs == 0 {
		t.Fatalf("clock %+v: want node2's, bounded both ways", c)
	}
	if d := (c.Offset - want).Abs(); d > c.Uncertainty {
		t.Errorf("node2's clock estimated %v ± %v, true %v: %v off", c.Offset, c.Uncertainty, want, d)
	}
}

// The pods of a node are the namespaces its veths lead to, not the other
// node its underlay veth leads to.
func TestScopeNodeNamespaces(t *testing.T) {
	c := cluster(t, topology.Options{})
	n1 := c.Node(topology.Node1)
	in, err := scope.Namespaces([]string{n1.NetnsPath})
	if err != nil {
		t.Fatal(err)
	}
	inode := func(path string) uint32 {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		return uint32(st.Ino)
	}
	want := map[uint32]bool{inode(n1.NetnsPath): true}
	for _, p := range n1.Pods {
		want[inode(p.NetnsPath)] = true
	}
	if !maps.Equal(in, want) {
		names := map[uint32]string{inode(c.Node(topology.Node2).NetnsPath): "node2"}
		for _, p := range c.Pods {
			names[inode(p.NetnsPath)] = p.Name
		}
		t.Errorf("node1's scope %v (node2 and the pods: %v), want node1 and its pods %v", in, names, want)
	}
}
