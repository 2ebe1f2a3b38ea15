package loader

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/bpf"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/kernel"
)

// MaxNodes bounds the node network namespaces (--netns) whose netfilter
// hooks nf_hook_slow programs show (bpf/include/funcs.h).
const MaxNodes = 16

// specs are the collection specs of every attach family, with the runtime
// settings written; fentry and kprobe are nil where their backend cannot
// run (Probes) or is not asked for.
type specs struct {
	tp, nf, fentry, kprobe *ebpf.CollectionSpec
}

// errNoObject: a program of an object loadSpecs left out (its backend
// cannot run); the plan does not pick such a backend.
var errNoObject = errors.New("its program object is not loaded: the backend is not available")

func loadSpecs(opts *Options, nodes []Node) (*specs, error) {
	var s specs
	var err error
	if s.tp, err = loadSpec("tracepoint", bpf.LoadTracepoint); err != nil {
		return nil, err
	}
	if s.nf, err = loadSpec("netfilter", bpf.LoadNetfilter); err != nil {
		return nil, err
	}
	// The function-hop objects only where their backend can run: each is
	// a 1 MB ELF, parsed and kept in memory while the programs load.
	funcs := opts.Backend != ChoiceTracepoint
	if funcs && opts.Probes.Fentry() == nil {
		if s.fentry, err = loadSpec("fentry", bpf.LoadFentry); err != nil {
			return nil, err
		}
	}
	if funcs && opts.Probes.Kprobe() == nil {
		if s.kprobe, err = loadSpec("kprobe", bpf.LoadKprobe); err != nil {
			return nil, err
		}
	}
	var inodes [MaxNodes]uint32
	for i, n := range nodes {
		inodes[i] = n.Inode
	}
	for _, spec := range []*ebpf.CollectionSpec{s.tp, s.nf, s.fentry, s.kprobe} {
		if spec == nil {
			continue
		}
		if err := setVariables(spec, opts); err != nil {
			return nil, err
		}
		if err := inlineFilter(spec, opts.Filter); err != nil {
			return nil, err
		}
		// Every object declares the shared ring buffer, and a replacement
		// map must match its spec (sharedMaps).
		if opts.RingSize > 0 {
			spec.Maps["events"].MaxEntries = uint32(opts.RingSize)
		}
	}
	for _, spec := range []*ebpf.CollectionSpec{s.fentry, s.kprobe} {
		if spec == nil {
			continue
		}
		for name, v := range map[string]any{"nf_netns": inodes, "n_nf_netns": uint32(len(nodes))} {
			if err := spec.Variables[name].Set(v); err != nil {
				return nil, fmt.Errorf("set %s: %w", name, err)
			}
		}
	}
	return &s, nil
}

func loadSpec(name string, load func() (*ebpf.CollectionSpec, error)) (*ebpf.CollectionSpec, error) {
	spec, err := load()
	if err != nil {
		return nil, fmt.Errorf("load %s spec: %w", name, err)
	}
	return spec, nil
}

// attachTracepoints attaches the device and free hops want asks for, one
// program at a time so that a missing one costs its hop only.
func (t *Tracer) attachTracepoints(spec *ebpf.CollectionSpec, pr Probes, want func(hop.Kind) bool) map[hop.Kind]HopSupport {
	hops := map[hop.Kind]HopSupport{}
	for _, tp := range tpHops {
		if !want(tp.hop) {
			continue
		}
		var h HopSupport
		err := pr.RawTracepoint()
		if err == nil {
			var errs []error
			for _, prog := range tp.programs(pr) {
				if err = t.attachTracepoint(spec, prog, tp.tp); err == nil {
					h = HopSupport{Hop: tp.hop, Backend: hop.Tracepoint, Source: prog.source(tp.tp)}
					if prog.noReason {
						h.Reason = noDropReason(pr)
					}
					break
				}
				t.log.Debug("tracepoint program unavailable", "hop", tp.hop, "program", prog.name, "err", err)
				errs = append(errs, err)
			}
			if err != nil {
				err = errors.Join(errs...)
			}
		}
		if err != nil {
			h = HopSupport{Hop: tp.hop, Reason: err.Error()}
			t.log.Debug("hop not observable", "hop", tp.hop, "err", err)
		}
		hops[tp.hop] = h
	}
	return hops
}

// attachNetfilterHops shows the IPv4 netfilter hooks of the nodes with the
// first candidate that attaches: netfilter links in each node namespace,
// or programs on nf_hook_slow filtered to the nodes' namespaces. When a
// backend the kernel supports fails to attach and no other does, that is
// an error, not a hop the kernel cannot show.
func (t *Tracer) attachNetfilterHops(s *specs, pr Probes, paths []string, cands []candidate) (HopSupport, error) {
	var attachErr error // of the first supported backend that failed
	for i := range cands {
		c := &cands[i]
		if c.err != nil {
			continue
		}
		mark := len(t.links)
		switch c.backend {
		case hop.NetfilterLink:
			c.err = t.attachNetfilterLinks(s.nf, pr, paths)
		case hop.Fentry:
			c.err = t.attachFentry(s.fentry, "fentry_nf_hook_slow", "fexit_nf_hook_slow")
		case hop.Kprobe:
			c.err = t.attachKprobe(s.kprobe, nfHookSlow.Name, "kprobe_nf_hook_slow", "kretprobe_nf_hook_slow")
		}
		if c.err != nil {
			// Half a hook is worse than none: detach this candidate's links.
			t.closeLinksFrom(mark)
			t.log.Debug("netfilter backend failed", "backend", c.backend, "err", c.err)
			if attachErr == nil {
				attachErr = c.err
			}
			continue
		}
		h := HopSupport{Hop: hop.Netfilter, Backend: c.backend, Source: c.source, Reason: reasons(cands[:i])}
		t.log.Debug("netfilter hops", "backend", h.Backend, "source", h.Source, "skipped", h.Reason)
		return h, nil
	}
	if attachErr != nil {
		return HopSupport{}, fmt.Errorf("show netfilter hooks: %w", attachErr)
	}
	h := HopSupport{Hop: hop.Netfilter, Reason: reasons(cands)}
	t.log.Debug("netfilter hops not observable", "reason", h.Reason)
	return h, nil
}

// nfPrograms are the netfilter link programs, first and last priority, in
// the order to try: the direct form first where the kernel allows it
// (DirectSKBRead), whose packet bytes are plain loads (~20 ns less per
// run on 6.18; 6.12 and older refuse it, a load of skb->head is a number
// there), then the form that reads them with bpf_probe_read_kernel.
func nfPrograms(pr Probes) [][]string {
	plain := []string{"nf_first", "nf_last"}
	if pr.DirectSKBRead() != nil {
		return [][]string{plain}
	}
	return [][]string{{"nf_first_direct", "nf_last_direct"}, plain}
}

// loadNetfilterPrograms loads the first pair of nfPrograms that loads.
func (t *Tracer) loadNetfilterPrograms(spec *ebpf.CollectionSpec, pr Probes) (first, last *ebpf.Program, err error) {
	var errs []error
	for _, names := range nfPrograms(pr) {
		if first, err = t.loadProgram(spec, names[0]); err == nil {
			if last, err = t.loadProgram(spec, names[1]); err == nil {
				return first, last, nil
			}
			t.unloadProgram(first) // half a pair is of no use
		}
		t.log.Debug("netfilter programs unavailable", "programs", names, "err", err)
		errs = append(errs, err)
	}
	return nil, nil, errors.Join(errs...)
}

func (t *Tracer) attachNetfilterLinks(spec *ebpf.CollectionSpec, pr Probes, paths []string) error {
	first, last, err := t.loadNetfilterPrograms(spec, pr)
	if err != nil {
		return err
	}
	for _, p := range paths {
		if _, err := t.attachNetfilter(p, first, last); err != nil {
			return err
		}
	}
	return nil
}

// attachFuncHop shows a function hop with the first candidate that
// attaches to at least one of its targets.
func (t *Tracer) attachFuncHop(s *specs, f funcHop, cands []candidate) HopSupport {
	for i := range cands {
		c := &cands[i]
		if c.err != nil {
			continue
		}
		var attached []string
		var errs []error
		for _, target := range c.targets {
			mark := len(t.links)
			entry, ret := target.programs(c.backend)
			var err error
			switch c.backend {
			case hop.Fentry:
				// The return program first, as with kretprobes:
				// entries whose return is not there yet would push
				// frames nobody pops.
				for _, prog := range []string{ret, entry} {
					if prog != "" && err == nil {
						err = t.attachFentryTo(s.fentry, prog, target.fn.Name)
					}
				}
			case hop.Kprobe:
				err = t.attachKprobe(s.kprobe, target.fn.Name, entry, ret)
			}
			if err != nil {
				t.closeLinksFrom(mark)
				errs = append(errs, err)
				t.log.Debug("function hop target failed", "hop", f.hop, "backend", c.backend, "function", target.fn.Name, "err", err)
				continue
			}
			attached = append(attached, target.fn.Name)
		}
		if len(attached) == 0 {
			c.err = errors.Join(errs...)
			continue
		}
		// The source names what was attached, which may be fewer
		// functions than the plan had.
		entry, ret := c.targets[0].programs(c.backend)
		source := sourceOf(c.backend, entry, ret, attached)
		h := HopSupport{Hop: f.hop, Backend: c.backend, Source: source, Reason: reasons(cands[:i])}
		t.log.Debug("function hop", "hop", f.hop, "backend", h.Backend, "source", h.Source, "skipped", h.Reason)
		return h
	}
	h := HopSupport{Hop: f.hop, Reason: reasons(cands)}
	t.log.Debug("function hop not observable", "hop", f.hop, "reason", h.Reason)
	return h
}

// attachFentry loads and attaches fentry/fexit programs of spec, each on
// the function its section names.
func (t *Tracer) attachFentry(spec *ebpf.CollectionSpec, progs ...string) error {
	for _, name := range progs {
		if err := t.attachFentryTo(spec, name, ""); err != nil {
			return err
		}
	}
	return nil
}

// attachFentryTo loads fentry/fexit program name for function fn (its
// section's function when ""), and attaches it. A BPF trampoline program
// is verified for one function: each target loads its own copy.
func (t *Tracer) attachFentryTo(spec *ebpf.CollectionSpec, name, fn string) error {
	if spec == nil {
		return fmt.Errorf("%s: %w", name, errNoObject)
	}
	if fn != "" && spec.Programs[name] != nil && spec.Programs[name].AttachTo != fn {
		spec = spec.Copy()
		spec.Programs[name].AttachTo = fn
	}
	p, err := t.loadProgram(spec, name)
	if err != nil {
		return err
	}
	start := time.Now()
	l, err := link.AttachTracing(link.TracingOptions{Program: p})
	t.log.Debug("attach", "program", name, "took", time.Since(start))
	if err != nil {
		return fmt.Errorf("attach %s to %s: %w", name, spec.Programs[name].AttachTo, err)
	}
	t.links = append(t.links, l)
	return nil
}

// attachKprobe loads entry (and ret, if not "") and attaches them as a
// kprobe and a kretprobe on symbol. The kretprobe goes first: an entry
// program whose return program is not there yet would push frames nobody
// pops (bpf/kprobe.c), and every later return would pop the wrong one.
func (t *Tracer) attachKprobe(spec *ebpf.CollectionSpec, symbol, entry, ret string) error {
	if spec == nil {
		return fmt.Errorf("%s: %w", entry, errNoObject)
	}
	for _, name := range []string{ret, entry} {
		if name == "" {
			continue
		}
		// A kprobe program is not tied to a function: load it once
		// for every symbol it is attached to.
		p := t.kprobes[name]
		if p == nil {
			var err error
			if p, err = t.loadProgram(spec, name); err != nil {
				return err
			}
			if t.kprobes == nil {
				t.kprobes = map[string]*ebpf.Program{}
			}
			t.kprobes[name] = p
		}
		var err error
		attach, what := link.Kprobe, "kprobe"
		if name == ret {
			attach, what = link.Kretprobe, "kretprobe"
		}
		var l link.Link
		start := time.Now()
		if name == ret {
			l, err = t.attachKretprobe(symbol, p)
		} else {
			l, err = attach(symbol, p, nil)
		}
		t.log.Debug("attach", "program", name, "symbol", symbol, "took", time.Since(start))
		if err != nil {
			return fmt.Errorf("attach %s %s: %w", what, symbol, err)
		}
		t.links = append(t.links, l)
	}
	return nil
}

// retprobeMaxActive is how many calls of a function a kretprobe follows at
// once (the kernel's maximum). The default the perf kprobe PMU gives,
// max(10, 2 * CPUs), runs out on nf_hook_slow, which nests (br_netfilter,
// softirqs) and holds an instance while a stolen packet's whole path runs
// inside it: returns are then missed and hooks lose their last view.
const retprobeMaxActive = 4096

// attachKretprobe attaches a kretprobe with retprobeMaxActive instances,
// which only tracefs can set, falling back to the PMU's default.
func (t *Tracer) attachKretprobe(symbol string, p *ebpf.Program) (link.Link, error) {
	l, err := link.Kretprobe(symbol, p, &link.KprobeOptions{RetprobeMaxActive: retprobeMaxActive})
	if err == nil {
		return l, nil
	}
	t.log.Debug("kretprobe with maxactive through tracefs failed, using the perf PMU's default", "symbol", symbol, "err", err)
	return link.Kretprobe(symbol, p, nil)
}

func (t *Tracer) closeLinksFrom(mark int) {
	for _, l := range t.links[mark:] {
		l.Close()
	}
	t.links = t.links[:mark]
}

// nodesOf returns the nodes of the network namespaces given as names or
// paths (none: the caller's own). A namespace given twice, by the same or
// another name, is one node, under its first name.
func nodesOf(specs []string, log *slog.Logger) ([]Node, error) {
	if len(specs) == 0 {
		specs = []string{""}
	}
	var nodes []Node
	for _, spec := range specs {
		n, err := nodeOf(spec)
		if err != nil {
			return nil, err
		}
		if i := slices.IndexFunc(nodes, func(m Node) bool { return m.Inode == n.Inode }); i >= 0 {
			log.Debug("network namespace given again: traced once", "netns", spec, "as", nodes[i].Path)
			continue
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// nodeOf returns the node for a network namespace given as a name or a path
// ("" for the caller's own) with its inode.
func nodeOf(path string) (Node, error) {
	n := Node{Path: path}
	p := "/proc/self/ns/net"
	if path != "" {
		h, err := kernel.OpenNetns(path)
		if err != nil {
			return n, err
		}
		defer h.Close()
		var st unix.Stat_t
		if err := unix.Fstat(int(h), &st); err != nil {
			return n, fmt.Errorf("stat network namespace %s: %w", path, err)
		}
		n.Inode = uint32(st.Ino)
		return n, nil
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return n, fmt.Errorf("stat own network namespace: %w", err)
	}
	n.Inode = uint32(st.Ino)
	return n, nil
}
