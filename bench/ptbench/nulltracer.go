package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/features"
	"github.com/pathtrace/pathtrace/internal/loader"
)

// runNullTracer attaches programs that do nothing, on the same hooks as
// pathtrace (the four tracepoints, and every IPv4 netfilter hook at the
// first and last priority in each namespace), writes ready and waits for
// ctx. It measures the floor: what merely running a BPF program at each of
// those points costs the datapath, before any of pathtrace's work. With a
// valid peek address the programs read each packet's IPv4 addresses and
// compare them with it (peek.go): the floor of looking at the packet; with
// hints too, they then look up the packet's two hint slots as pathtrace
// does (peek.go): the floor of following a connection through NAT.
// With btfTP, the tracepoint programs are tp_btf programs (one per
// tracepoint), whose skb argument is a typed pointer read with plain loads.
// With emit "all" or "last" the programs send an event per run instead
// (emit.go): every program, or all but those at the first netfilter
// priority; each event is emitSize bytes (pathtrace's without packet
// bytes) unless size says otherwise.
func runNullTracer(ctx context.Context, nss []string, ready string, peek netip.Addr, hints, btfTP bool, emit string, size int32) (err error) {
	var closers []interface{ Close() error }
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	if (btfTP || hints) && !peek.IsValid() {
		return errors.New("null-tracer: --btf and --hints need --peek")
	}
	if emit != "" && (peek.IsValid() || (emit != "all" && emit != "last")) {
		return errors.New("null-tracer: --emit is all or last, without --peek")
	}
	if size < emitTinySize || size > emitSize || size%8 != 0 {
		return fmt.Errorf("null-tracer: --emit-size is a multiple of 8 from %d to %d", emitTinySize, emitSize)
	}
	tpSpec := &ebpf.ProgramSpec{
		Name: "null_tp", Type: ebpf.RawTracepoint, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	}
	nfSpec := &ebpf.ProgramSpec{
		Name: "null_nf", Type: ebpf.Netfilter, AttachType: ebpf.AttachNetfilter, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}, // NF_ACCEPT
	}
	if peek.IsValid() {
		o, err := kernelSKBOffsets()
		if err != nil {
			return err
		}
		// A raw tracepoint's skb is a scalar, read with a helper; a
		// tp_btf program's and a netfilter program's a typed pointer,
		// through which the packet is read with plain loads where the
		// kernel allows it, as pathtrace's direct forms do.
		direct := features.DirectSKBRead() == nil
		var hm *hintMaps
		if hints {
			if hm, err = newHintMaps(); err != nil {
				return err
			}
			closers = append(closers, hm)
		}
		tpIn, err := peekInsns(o, peek, !btfTP, btfTP && direct, 0, hm)
		if err != nil {
			return err
		}
		nfIn, err := peekInsns(o, peek, false, direct, 1, hm)
		if err != nil {
			return err
		}
		// args[0] of the tracepoints is the skb; bpf_nf_ctx is
		// {state, skb}.
		tpSpec.Name, tpSpec.Instructions = "peek_tp", append(asm.Instructions{asm.LoadMem(asm.R6, asm.R1, 0, asm.DWord)}, tpIn...)
		nfSpec.Name, nfSpec.Instructions = "peek_nf", append(asm.Instructions{asm.LoadMem(asm.R6, asm.R1, 8, asm.DWord)}, nfIn...)
		if btfTP {
			tpSpec.Name, tpSpec.Type, tpSpec.AttachType = "peekbtf_tp", ebpf.Tracing, ebpf.AttachTraceRawTp
		}
		if hints {
			tpSpec.Name = "hint" + strings.TrimPrefix(tpSpec.Name, "peek")
			nfSpec.Name = "hint_nf"
		}
	}
	var m *emitMaps
	nfFirstSpec := nfSpec
	if emit != "" {
		if m, err = newEmitMaps(); err != nil {
			return err
		}
		closers = append(closers, m)
		tpSpec.Name, tpSpec.Instructions = "emit_tp", emitInsns(m, 0, size)
		nfSpec = nfSpec.Copy()
		nfSpec.Name, nfSpec.Instructions = "emit_nf", emitInsns(m, 1, size)
		if emit == "all" {
			nfFirstSpec = nfSpec
		}
	}
	// One raw tracepoint program serves all four; a tp_btf program is
	// loaded for its tracepoint.
	tps := map[string]*ebpf.Program{}
	for _, name := range tracepoints {
		if p := tps[tracepoints[0]]; p != nil && !btfTP {
			tps[name] = p
			continue
		}
		spec := tpSpec
		if btfTP {
			spec = tpSpec.Copy()
			spec.AttachTo = name
		}
		tp, err := ebpf.NewProgram(spec)
		if err != nil {
			return fmt.Errorf("load %s program for %s: %w", spec.Name, name, err)
		}
		closers = append(closers, tp)
		tps[name] = tp
	}
	nf, err := ebpf.NewProgram(nfSpec)
	if err != nil {
		return fmt.Errorf("load %s program: %w", nfSpec.Name, err)
	}
	closers = append(closers, nf)
	nfFirst := nf
	if nfFirstSpec != nfSpec {
		if nfFirst, err = ebpf.NewProgram(nfFirstSpec); err != nil {
			return fmt.Errorf("load %s program: %w", nfFirstSpec.Name, err)
		}
		closers = append(closers, nfFirst)
	}
	for _, name := range tracepoints {
		var l link.Link
		if btfTP {
			l, err = link.AttachTracing(link.TracingOptions{Program: tps[name], AttachType: ebpf.AttachTraceRawTp})
		} else {
			l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: name, Program: tps[name]})
		}
		if err != nil {
			return fmt.Errorf("attach %s: %w", name, err)
		}
		closers = append(closers, l)
	}
	for _, ns := range nss {
		ls, err := attachNetfilterIn(ns, nfFirst, nf)
		for _, l := range ls {
			closers = append(closers, l)
		}
		if err != nil {
			return err
		}
	}
	if err := os.WriteFile(ready, []byte("ready\n"), 0o644); err != nil {
		return err
	}
	var events uint64
	if m != nil {
		if events, err = drainEmitted(ctx, m.ring, nil); err != nil {
			return fmt.Errorf("read the ring: %w", err)
		}
	}
	<-ctx.Done()
	var lost uint64
	if m != nil {
		lost = m.lostEvents()
	}
	fmt.Fprintf(os.Stderr, "pathtrace: 0 packets, %d events, %d lost\n", events, lost) // as pathtrace says it
	return nil
}

// tracepoints are the ones pathtrace's programs use.
var tracepoints = []string{"netif_receive_skb", "net_dev_queue", "kfree_skb", "consume_skb"}

// attachNetfilterIn attaches first at the first priority and last at the
// last of every IPv4 hook in ns.
func attachNetfilterIn(ns string, first, last *ebpf.Program) ([]link.Link, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, err
	}
	defer orig.Close()
	target, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", ns, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return nil, err
	}
	var links []link.Link
	var errs []error
	for hook := range 5 {
		for _, at := range []struct {
			prio int32
			prog *ebpf.Program
		}{{loader.PriorityFirst, first}, {loader.PriorityLast, last}} {
			l, err := link.AttachNetfilter(link.NetfilterOptions{
				Program: at.prog, ProtocolFamily: unix.NFPROTO_IPV4,
				Hook: link.NetfilterInetHook(hook), Priority: at.prio,
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("attach netfilter hook %d in %s: %w", hook, ns, err))
				continue
			}
			links = append(links, l)
		}
	}
	if err := netns.Set(orig); err != nil {
		runtime.LockOSThread() // leave this thread to die
		errs = append(errs, err)
	}
	return links, errors.Join(errs...)
}
