package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/loader"
)

// runNullTracer attaches programs that do nothing, on the same hooks as
// pathtrace (the four raw tracepoints, and every IPv4 netfilter hook at the
// first and last priority in each namespace), writes ready and waits for
// ctx. It measures the floor: what merely running a BPF program at each of
// those points costs the datapath, before any of pathtrace's work.
func runNullTracer(ctx context.Context, nss []string, ready string) (err error) {
	var closers []interface{ Close() error }
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	tp, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "null_tp", Type: ebpf.RawTracepoint, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		return fmt.Errorf("load null raw tracepoint program: %w", err)
	}
	closers = append(closers, tp)
	nf, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "null_nf", Type: ebpf.Netfilter, AttachType: ebpf.AttachNetfilter, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}, // NF_ACCEPT
	})
	if err != nil {
		return fmt.Errorf("load null netfilter program: %w", err)
	}
	closers = append(closers, nf)
	for _, name := range []string{"netif_receive_skb", "net_dev_queue", "kfree_skb", "consume_skb"} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: name, Program: tp})
		if err != nil {
			return fmt.Errorf("attach %s: %w", name, err)
		}
		closers = append(closers, l)
	}
	for _, ns := range nss {
		ls, err := attachNetfilterIn(ns, nf)
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
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "pathtrace: 0 packets, 0 events, 0 lost") // as pathtrace says it
	return nil
}

func attachNetfilterIn(ns string, prog *ebpf.Program) ([]link.Link, error) {
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
		for _, prio := range []int32{loader.PriorityFirst, loader.PriorityLast} {
			l, err := link.AttachNetfilter(link.NetfilterOptions{
				Program: prog, ProtocolFamily: unix.NFPROTO_IPV4,
				Hook: link.NetfilterInetHook(hook), Priority: prio,
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
