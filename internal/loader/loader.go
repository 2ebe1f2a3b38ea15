package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/bpf"
	"github.com/pathtrace/pathtrace/internal/features"
	"github.com/pathtrace/pathtrace/internal/filter"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/kernel"
)

// Netfilter priorities of the first and last programs of each hook. The
// absolute extremes (NF_IP_PRI_FIRST, NF_IP_PRI_LAST) are reserved.
const (
	PriorityFirst = math.MinInt32 + 2
	PriorityLast  = math.MaxInt32 - 1
)

// Limits of the runtime settings (bpf/include/event.h).
const (
	MaxPodIPs     = 16
	MaxVXLANPorts = 4
	MaxSnaplen    = 256
)

// DefaultVXLANPorts are flannel's and the IANA VXLAN port.
var DefaultVXLANPorts = []uint16{8472, 4789}

// Options say what to trace and where.
type Options struct {
	PodIPs     []netip.Addr // IPv4 and IPv6 addresses to follow; none follows every IP packet
	VXLANPorts []uint16     // UDP destination ports parsed as VXLAN
	Snaplen    int          // packet bytes copied per event (0..MaxSnaplen)
	// SnapChanged copies the Snaplen bytes only at the events where a
	// packet's headers are new or changed (its first event on an skb,
	// NAT, encapsulation, decapsulation); the others carry an ICMP
	// packet's headers only, as with Snaplen 0.
	SnapChanged bool
	// NeighborDiscovery follows ICMPv6 neighbour discovery and multicast
	// listener messages (types 130-137, 143) like other packets; without
	// it they are followed only on an skb already followed.
	NeighborDiscovery bool
	// Netns are the node network namespaces (paths, or names under
	// /run/netns) whose netfilter hooks get programs; none means the
	// caller's own.
	Netns []string
	// RingSize is the ring buffer size in bytes (a power of two, MinRing
	// to MaxRing); 0 keeps the default of 8 MiB (DefaultRing).
	RingSize int
	// Backend chooses how hops that have a choice are shown (netfilter
	// hooks, function hops); "" is ChoiceAuto.
	Backend Choice
	// Log receives the debug lines that say which backend shows each hop
	// and why each target failed; nil logs nowhere.
	Log *slog.Logger
	// Probes says what the kernel allows; nil is KernelProbes.
	Probes Probes
	// Filter is a filter expression's translation (internal/filter,
	// Translate), which a packet must match as well as a pod IP, on its
	// outer or (tunneled) inner IPv4 header; nil matches every packet.
	Filter asm.Instructions
	// Hops, when not empty, are the hop kinds to attach programs for
	// (--hops); the free hops (drop, consume) are always attached, see
	// AlwaysAttached.
	Hops []hop.Kind
}

// Node is a network namespace with netfilter programs attached.
type Node struct {
	Path  string // as given, or "" for the tracer's own
	Inode uint32
}

// Tracer is the loaded and attached set of programs.
type Tracer struct {
	Nodes   []Node
	Backend string // the backends in use: "tracepoint+netfilter-link"
	// Hops says, per hop kind, which backend shows it or why none can.
	Hops []HopSupport

	log     *slog.Logger
	maps    sharedMaps
	btf     *btf.Cache // kernel and module BTF during Open
	progs   []*ebpf.Program
	kprobes map[string]*ebpf.Program // loaded kprobe programs, by name (also in progs)
	pre     map[preKey]loadResult    // programs loaded ahead (preload), not yet taken
	links   []link.Link
	reader  *Ring
	started time.Time
}

// Open loads the programs, sets the filter and attaches everything. On error
// nothing stays loaded or attached.
func Open(opts Options) (_ *Tracer, err error) {
	if err := validate(&opts); err != nil {
		return nil, err
	}
	// Before 5.11 BPF memory counts against RLIMIT_MEMLOCK; RemoveMemlock
	// does nothing on kernels that account it to the memory cgroup.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise the memlock limit for BPF maps: %w", err)
	}
	// The programs' kernel BTF, parsed once for them all. The probes
	// have their own (internal/features): cilium/ebpf's lazily decoded types
	// are not safe to read from the probes while the preloads relocate
	// against them (concurrent map writes on 6.1, where fentry needs
	// the function lookups). Theirs is let go once the programs load.
	t := &Tracer{started: time.Now(), btf: btf.NewCache(), log: opts.Log}
	defer features.ReleaseBTF()
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if opts.Probes == nil {
		opts.Probes = KernelProbes
	}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()

	if t.Nodes, err = nodesOf(opts.Netns, t.log); err != nil {
		return nil, err
	}
	paths := make([]string, len(t.Nodes))
	for i, n := range t.Nodes {
		paths[i] = n.Path
	}
	s, err := loadSpecs(&opts, t.Nodes)
	if err != nil {
		return nil, err
	}
	if err := t.maps.create(s); err != nil {
		return nil, err
	}

	// Each hop on its own: a missing function or program type costs that
	// hop, recorded in t.Hops, never the whole trace.
	want := wanted(opts.Hops)
	loaded := t.preload(preloads(s, &opts, want))
	p := makePlan(opts.Backend, opts.Probes)
	loaded()
	hops := t.attachTracepoints(s.tp, opts.Probes, want)
	if want(hop.Netfilter) || want(hop.NAT) {
		if hops[hop.Netfilter], err = t.attachNetfilterHops(s, opts.Probes, paths, p.netfilter); err != nil {
			return nil, err
		}
	}
	for _, f := range funcHops {
		if want(f.hop) {
			hops[f.hop] = t.attachFuncHop(s, f, p.funcs[f.hop])
		}
	}
	t.closePreloaded()
	t.Hops = notAsked(supportTable(hops), want)
	t.Backend = backendSummary(t.Hops)
	if len(t.links) == 0 {
		var why []string
		for _, h := range t.Hops {
			why = append(why, h.String())
		}
		return nil, fmt.Errorf("%w: %s", errNothingObservable, strings.Join(why, "; "))
	}
	t.btf = nil

	t.reader, err = OpenRing(t.maps.Events)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer reader: %w", err)
	}
	return t, nil
}

func validate(opts *Options) error {
	if len(opts.PodIPs) > MaxPodIPs {
		return fmt.Errorf("at most %d pod IPs can be traced at once, got %d", MaxPodIPs, len(opts.PodIPs))
	}
	for _, ip := range opts.PodIPs {
		if !ip.IsValid() || ip.Zone() != "" {
			return fmt.Errorf("pod IP %s is not an IPv4 or IPv6 address", ip)
		}
	}
	if opts.VXLANPorts == nil {
		opts.VXLANPorts = DefaultVXLANPorts
	}
	if len(opts.VXLANPorts) > MaxVXLANPorts {
		return fmt.Errorf("at most %d VXLAN ports, got %d", MaxVXLANPorts, len(opts.VXLANPorts))
	}
	if len(opts.Netns) > MaxNodes {
		return fmt.Errorf("at most %d node network namespaces, got %d", MaxNodes, len(opts.Netns))
	}
	if opts.Backend == "" {
		opts.Backend = ChoiceAuto
	}
	if _, err := ParseChoice(string(opts.Backend)); err != nil {
		return err
	}
	if opts.Snaplen < 0 || opts.Snaplen > MaxSnaplen {
		return fmt.Errorf("snaplen %d is out of range 0..%d", opts.Snaplen, MaxSnaplen)
	}
	if n := opts.RingSize; n != 0 && !ValidRingSize(n) {
		return fmt.Errorf("ring buffer of %d bytes: its size must be a power of two from %d to %d", n, MinRing, MaxRing)
	}
	return nil
}

// The ring buffer's sizes (Options.RingSize). The kernel takes a power of
// two multiple of the page size; the reader (Ring) maps it once, and the
// kernel fills the mapping when it is made: the process's RSS holds its
// size from the start.
const (
	DefaultRing = 8 << 20
	MinRing     = 1 << 20
	MaxRing     = 256 << 20
)

// ValidRingSize reports whether n bytes is a ring buffer size Open takes:
// a power of two from MinRing to MaxRing.
func ValidRingSize(n int) bool { return n >= MinRing && n <= MaxRing && n&(n-1) == 0 }

func setVariables(spec *ebpf.CollectionSpec, opts *Options) error {
	// Network byte order in memory, as the kernel compares it.
	var ips [MaxPodIPs]uint32
	var ip6s [MaxPodIPs * 4]uint32
	n4, n6 := 0, 0
	for _, ip := range opts.PodIPs {
		if ip = ip.Unmap(); ip.Is4() {
			b := ip.As4()
			ips[n4] = binary.NativeEndian.Uint32(b[:])
			n4++
			continue
		}
		b := ip.As16()
		for j := range 4 {
			ip6s[4*n6+j] = binary.NativeEndian.Uint32(b[4*j:])
		}
		n6++
	}
	nd := uint32(0)
	if opts.NeighborDiscovery {
		nd = 1
	}
	var ports [MaxVXLANPorts]uint16
	copy(ports[:], opts.VXLANPorts)
	set := map[string]any{
		"pod_ips":       ips,
		"n_pod_ips":     uint32(n4),
		"pod_ip6s":      ip6s,
		"n_pod_ip6s":    uint32(n6),
		"trace_nd":      nd,
		"vxlan_ports":   ports,
		"n_vxlan_ports": uint32(len(opts.VXLANPorts)),
		"snaplen":       uint32(opts.Snaplen),
		"snap_changed":  boolU32(opts.SnapChanged),
		"filter_on":     boolU32(opts.Filter != nil),
	}
	for name, v := range set {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("set %s: variable missing from the program object", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

// inlineFilter puts the filter expression's code (or, without one, code
// that matches everything) in place of every call of the pt_filter stub,
// in every program of spec (its one call is in pt_filter_match): always,
// as a stub left a function of its own costs a call frame the deepest
// programs have no stack for.
func inlineFilter(spec *ebpf.CollectionSpec, fn asm.Instructions) error {
	if fn == nil {
		fn = filter.MatchAll
	}
	for name, p := range spec.Programs {
		insns, err := filter.Inline(p.Instructions, filter.Stub, fn)
		if err != nil {
			return fmt.Errorf("program %s: %w", name, err)
		}
		p.Instructions = insns
	}
	return nil
}

func boolU32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// loadProgram loads one program of spec on its own with the maps every
// program object shares, so that a program the kernel refuses costs only
// its own hops; or takes it (or its error) from the programs preload
// loaded.
func (t *Tracer) loadProgram(spec *ebpf.CollectionSpec, name string) (*ebpf.Program, error) {
	key := preKey{spec, name}
	r, ok := t.pre[key]
	if ok {
		delete(t.pre, key)
	} else {
		r.prog, r.err = t.loadOne(spec, name)
	}
	if r.err != nil {
		return nil, r.err
	}
	t.progs = append(t.progs, r.prog)
	return r.prog, nil
}

// unloadProgram closes prog, loaded by loadProgram and attached nowhere:
// the first of a pair whose second did not load.
func (t *Tracer) unloadProgram(prog *ebpf.Program) {
	if i := slices.Index(t.progs, prog); i >= 0 {
		t.progs = slices.Delete(t.progs, i, i+1)
	}
	prog.Close()
}

func (t *Tracer) loadOne(spec *ebpf.CollectionSpec, name string) (*ebpf.Program, error) {
	start := time.Now()
	defer func() { t.log.Debug("program load", "program", name, "took", time.Since(start)) }()
	s := spec.Copy()
	for n := range s.Programs {
		if n != name {
			delete(s.Programs, n)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(s, ebpf.CollectionOptions{
		MapReplacements: t.maps.replacements(s),
		Cache:           t.btf,
	})
	if err != nil {
		return nil, fmt.Errorf("load program %s: %w", name, err)
	}
	defer coll.Close()
	p := coll.Programs[name]
	delete(coll.Programs, name) // keep it open past coll.Close
	return p, nil
}

// preKey names a program of one spec.
type preKey struct {
	spec *ebpf.CollectionSpec
	name string
}

// loadResult is a program preload loaded, or why it could not.
type loadResult struct {
	prog *ebpf.Program
	err  error
}

// preloads are the programs Open will surely try to attach: the device and
// free tracepoints and the netfilter link programs, where the kernel has
// them and the hops are wanted.
func preloads(s *specs, opts *Options, want func(hop.Kind) bool) map[*ebpf.CollectionSpec][]string {
	pre := map[*ebpf.CollectionSpec][]string{}
	if opts.Probes.RawTracepoint() == nil {
		for _, tp := range tpHops {
			if want(tp.hop) {
				pre[s.tp] = append(pre[s.tp], tp.programs(opts.Probes)[0].name)
			}
		}
	}
	if (want(hop.Netfilter) || want(hop.NAT)) && (opts.Backend == ChoiceAuto || opts.Backend == ChoiceTracepoint) &&
		opts.Probes.NetfilterLink() == nil {
		pre[s.nf] = nfPrograms(opts.Probes)[0]
	}
	return pre
}

// preload starts loading the programs of each spec at once, one goroutine
// each, and returns a function that waits for them all. Most of Open's
// time is the verifier's, which checks one program on one CPU: loaded
// one after the other, six programs took a second on two cores. The
// results wait in t.pre for loadProgram; closePreloaded closes what no
// attach step took.
func (t *Tracer) preload(progs map[*ebpf.CollectionSpec][]string) (wait func()) {
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	t.pre = map[preKey]loadResult{}
	for spec, names := range progs {
		for _, name := range names {
			wg.Go(func() {
				p, err := t.loadOne(spec, name)
				mu.Lock()
				t.pre[preKey{spec, name}] = loadResult{p, err}
				mu.Unlock()
			})
		}
	}
	return wg.Wait
}

func (t *Tracer) closePreloaded() {
	for k, r := range t.pre {
		if r.prog != nil {
			r.prog.Close()
		}
		delete(t.pre, k)
	}
}

// attachTracepoint attaches prog to the tracepoint tp: a BTF tracepoint's
// program knows its tracepoint from its section name.
func (t *Tracer) attachTracepoint(spec *ebpf.CollectionSpec, prog tpProgram, tp string) error {
	p, err := t.loadProgram(spec, prog.name)
	if err != nil {
		return err
	}
	var l link.Link
	if prog.btf {
		l, err = link.AttachTracing(link.TracingOptions{Program: p})
	} else {
		l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: p})
	}
	if err != nil {
		return fmt.Errorf("attach %s: %w", prog.source(tp), err)
	}
	t.links = append(t.links, l)
	return nil
}

// attachNetfilter attaches first and last on every IPv4 and IPv6 hook of
// the network namespace at path ("" for the caller's own). A netfilter link belongs to
// the namespace of the thread that creates it.
func (t *Tracer) attachNetfilter(path string, first, last *ebpf.Program) (Node, error) {
	node := Node{Path: path}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return node, fmt.Errorf("get own network namespace: %w", err)
	}
	defer orig.Close()
	target := orig
	if path != "" {
		target, err = kernel.OpenNetns(path)
		if err != nil {
			runtime.UnlockOSThread()
			return node, err
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			return node, fmt.Errorf("enter network namespace %s: %w", path, err)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(target), &st); err == nil {
		node.Inode = uint32(st.Ino)
	}

	attachErr := t.attachHooks(path, first, last)
	if path != "" {
		if err := netns.Set(orig); err != nil {
			// The thread is in the wrong namespace: leave it locked so
			// the runtime retires it with this goroutine.
			return node, fmt.Errorf("return to own network namespace: %w", err)
		}
	}
	runtime.UnlockOSThread()
	return node, attachErr
}

// priorityTries bounds the priorities tried for each slot: the first
// program takes PriorityFirst or the next free one above it, the last
// PriorityLast or the next free one below it. The kernel refuses (EBUSY) a
// second BPF netfilter program at a priority of the hook taken by one:
// another pathtrace, or another BPF tool.
const priorityTries = 32

// attachHooks attaches first and last on every IPv4 and IPv6 hook of the
// current network namespace, each at the free priority nearest its end
// (each family's hooks have priorities of their own), and logs the
// priorities taken. A kernel without IPv6 keeps the IPv4 hooks, with a
// warning.
func (t *Tracer) attachHooks(path string, first, last *ebpf.Program) error {
	if err := t.attachFamily(path, unix.NFPROTO_IPV4, first, last); err != nil {
		return err
	}
	mark := len(t.links)
	if err := t.attachFamily(path, unix.NFPROTO_IPV6, first, last); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return err
		}
		t.closeLinksFrom(mark)
		t.log.Warn("IPv6 netfilter hooks not shown", "netns", nsLabel(path), "err", err)
	}
	return nil
}

// attachFamily attaches first and last on the five hooks of family pf
// (NFPROTO_IPV4, NFPROTO_IPV6).
func (t *Tracer) attachFamily(path string, pf link.NetfilterProtocolFamily, first, last *ebpf.Program) error {
	fam := "IPv4"
	if pf == unix.NFPROTO_IPV6 {
		fam = "IPv6"
	}
	for hook := range 5 {
		var prios [2]int32
		for i, slot := range []struct {
			prog       *ebpf.Program
			prio, step int32
		}{{first, PriorityFirst, 1}, {last, PriorityLast, -1}} {
			l, prio, err := attachFree(slot.prog, pf, link.NetfilterInetHook(hook), slot.prio, slot.step)
			if err != nil {
				return fmt.Errorf("attach netfilter program to %s %s in %s: %w", fam, hookName(hook), nsLabel(path), err)
			}
			t.links = append(t.links, l)
			prios[i] = prio
		}
		t.log.Debug("netfilter priorities", "netns", nsLabel(path), "family", fam, "hook", hookName(hook), "first", prios[0], "last", prios[1])
	}
	return nil
}

// attachFree attaches prog to hook of family pf at prio, or, while the
// kernel says a priority is taken, at the next one step away, up to
// priorityTries.
func attachFree(prog *ebpf.Program, pf link.NetfilterProtocolFamily, hook link.NetfilterInetHook, prio, step int32) (link.Link, int32, error) {
	for i := range int32(priorityTries) {
		p := prio + i*step
		l, err := link.AttachNetfilter(link.NetfilterOptions{
			Program:        prog,
			ProtocolFamily: pf,
			Hook:           hook,
			Priority:       p,
		})
		if err == nil {
			return l, p, nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return nil, 0, fmt.Errorf("priority %d: %w", p, err)
		}
	}
	return nil, 0, fmt.Errorf("priorities %d to %d are all taken by other BPF netfilter programs (other pathtrace runs?): %w",
		prio, prio+(priorityTries-1)*step, unix.EBUSY)
}

// hookName names an IPv4 netfilter hook by its number.
func hookName(hook int) string {
	if h := hop.HookFromKernel(uint8(hook)); h.Known() {
		return h.String()
	}
	return fmt.Sprintf("hook %d", hook)
}

func nsLabel(path string) string {
	if path == "" {
		return "own network namespace"
	}
	return "network namespace " + path
}

// SetDeadline bounds the next Read; see Ring.SetDeadline.
func (t *Tracer) SetDeadline(d time.Time) { t.reader.SetDeadline(d) }

// Read waits for the next record and stores it in rec; rec.RawSample
// points into the ring until the next Read or Close. It returns
// os.ErrDeadlineExceeded when the deadline passes and ringbuf.ErrClosed
// after Close.
func (t *Tracer) Read(rec *ringbuf.Record) error { return t.reader.Read(rec) }

// LostPerCPU returns, by CPU, the events the kernel could not put in the
// ring buffer because it was full.
func (t *Tracer) LostPerCPU() ([]uint64, error) {
	var perCPU []uint64
	if err := t.maps.Lost.Lookup(uint32(0), &perCPU); err != nil {
		return nil, fmt.Errorf("read lost counter: %w", err)
	}
	return perCPU, nil
}

// Missed returns the runs of the programs the kernel skipped because the
// program was running already on that CPU (its recursion check: a program
// interrupted, on its CPU, by an event that runs it again; for kprobes,
// any BPF kprobe program running there). A skipped run sends no event: the
// hop of a traced packet, if it was one, is missing, and unlike a full
// ring buffer nothing else tells. The kernel counts them since 5.12
// (kprobes' since 6.7); where it does not, they count 0.
func (t *Tracer) Missed() (uint64, error) {
	var n uint64
	for _, p := range t.progs {
		st, err := p.Stats()
		if err != nil {
			return n, fmt.Errorf("read program statistics: %w", err)
		}
		n += st.RecursionMisses
	}
	return n, nil
}

// ConnStats counts the connections the kernel followed whole (the conns
// table of bpf/include/common.h).
type ConnStats struct {
	Connections uint64 // connections added, by their original tuple
	// Evicted counts the connections whose original tuple the table, full,
	// evicted (least recently used first): their packets are no longer
	// followed before NAT, unless they match the filter.
	Evicted uint64
	Keys    uint64 // keys added (four a connection and translation)
	Live    uint64 // keys in the table now
}

// Conns reads the connection counters and counts the table's keys, in one
// pass over it.
func (t *Tracer) Conns() (ConnStats, error) {
	var s ConnStats
	for i, dst := range []*uint64{&s.Keys, &s.Connections} {
		var perCPU []uint64
		if err := t.maps.ConnStats.Lookup(uint32(i), &perCPU); err != nil {
			return s, fmt.Errorf("read connection counters: %w", err)
		}
		for _, n := range perCPU {
			*dst += n
		}
	}
	var k bpf.TracepointPtConnKey
	var role uint32
	var live uint64 // original tuples
	it := t.maps.Conns.Iterate()
	for it.Next(&k, &role) {
		s.Live++
		if role == connOrig {
			live++
		}
	}
	if err := it.Err(); err != nil {
		return s, fmt.Errorf("count connections: %w", err)
	}
	if s.Connections > live {
		s.Evicted = s.Connections - live
	}
	return s, nil
}

// connOrig is the conns value of a connection's original tuple
// (PT_CONN_ORIG).
const connOrig = 1

// Close detaches every program and frees the maps. It is safe to call more
// than once.
func (t *Tracer) Close() error {
	var errs []error
	if t.reader != nil {
		errs = append(errs, t.reader.Close())
		t.reader = nil
	}
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	t.links = nil
	for _, p := range t.progs {
		errs = append(errs, p.Close())
	}
	t.progs, t.kprobes = nil, nil
	t.closePreloaded()
	errs = append(errs, t.maps.close())
	return errors.Join(errs...)
}
