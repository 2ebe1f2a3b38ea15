package features

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	cfeatures "github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/kernel"
)

// A probe returns nil when the feature is supported, an error wrapping
// ebpf.ErrNotSupported (saying why) when it is not, and any other error when
// the probe could not tell (inconclusive).

// State names a probe result.
type State string

const (
	Supported    State = "supported"
	NotSupported State = "not supported"
	Inconclusive State = "inconclusive"
)

// StateOf classifies a probe's error.
func StateOf(err error) State {
	switch {
	case err == nil:
		return Supported
	case errors.Is(err, ebpf.ErrNotSupported):
		return NotSupported
	}
	return Inconclusive
}

// notSupported wraps ebpf.ErrNotSupported with a reason users can act on.
type notSupported struct{ why string }

func (e *notSupported) Error() string { return e.why }
func (e *notSupported) Is(target error) bool {
	return target == ebpf.ErrNotSupported
}

// NotSupportedError returns an error that says why and wraps
// ebpf.ErrNotSupported.
func NotSupportedError(format string, a ...any) error {
	return &notSupported{why: fmt.Sprintf(format, a...)}
}

// Why is the reason of a probe error in a few words: the text of a
// NotSupportedError, or the error itself.
func Why(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// RawTracepoint probes for raw tracepoint programs (4.17+).
var RawTracepoint = sync.OnceValue(func() error {
	return programType(ebpf.RawTracepoint, "raw tracepoint programs")
})

// NetfilterLink probes for BPF netfilter programs (6.4+).
var NetfilterLink = sync.OnceValue(func() error {
	err := programType(ebpf.Netfilter, "BPF netfilter links")
	if errors.Is(err, ebpf.ErrNotSupported) {
		return NotSupportedError("no BPF netfilter links (they need Linux 6.4)")
	}
	return err
})

func programType(pt ebpf.ProgramType, what string) error {
	err := cfeatures.HaveProgramType(pt)
	if errors.Is(err, ebpf.ErrNotSupported) {
		return NotSupportedError("no %s: %v", what, err)
	}
	return err
}

// fentryProbeTarget is a core kernel function every kernel has in its BTF.
const fentryProbeTarget = "netif_receive_skb"

// Fentry probes for fentry/fexit programs (BPF trampolines, 5.5+) by loading
// one against a core kernel function and attaching it (a no-op, detached at
// once): arm64 before 6.4 loads them but cannot attach them to kernel
// functions. Attaching can still fail for a given function; that costs only
// its hop.
var Fentry = sync.OnceValue(func() error {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return NotSupportedError("fentry needs kernel BTF (/sys/kernel/btf/vmlinux)")
	}
	err := tracingNoop(ebpf.AttachTraceFEntry, fentryProbeTarget)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EPERM):
		why := "fentry refused (EPERM)"
		if mode, err := kernel.ReadLockdown(hostFS); err == nil && mode != "" && mode != "none" {
			why = fmt.Sprintf("fentry refused (EPERM; kernel lockdown=%s)", mode)
		}
		return NotSupportedError("%s", why)
	case tracingUnsupported(err):
		return NotSupportedError("no fentry programs: %v", err)
	}
	return fmt.Errorf("probe fentry: %w", err)
})

// btfTracepointProbeTarget is a tracepoint every kernel has, with BTF.
const btfTracepointProbeTarget = "netif_receive_skb"

// BTFTracepoint probes for BTF tracepoint programs (tp_btf, 5.5+) by loading
// one on a core tracepoint and attaching it (a no-op, detached at once).
// Unlike fentry they need no trampoline: this machine's 6.18 under
// lockdown=integrity refuses fentry and attaches these.
var BTFTracepoint = sync.OnceValue(func() error {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return NotSupportedError("BTF tracepoints need kernel BTF (/sys/kernel/btf/vmlinux)")
	}
	err := tracingNoop(ebpf.AttachTraceRawTp, btfTracepointProbeTarget)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EPERM):
		return NotSupportedError("BTF tracepoints refused (EPERM)")
	case tracingUnsupported(err):
		return NotSupportedError("no BTF tracepoint programs: %v", err)
	}
	return fmt.Errorf("probe BTF tracepoints: %w", err)
})

// tracingNoop loads a program of type tracing that does nothing, attaches
// it to target and detaches it.
func tracingNoop(at ebpf.AttachType, target string) error {
	prog, err := ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{
		Type:       ebpf.Tracing,
		AttachType: at,
		AttachTo:   target,
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	}, ebpf.ProgramOptions{LogDisabled: true})
	if err != nil {
		return err
	}
	defer prog.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return fmt.Errorf("attach to %s: %w", target, err)
	}
	return l.Close()
}

// tracingUnsupported reports whether err from tracingNoop means the kernel
// has no such programs, rather than that the probe failed.
func tracingUnsupported(err error) bool {
	return errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL) ||
		errors.Is(err, unix.E2BIG) || errors.Is(err, unix.Errno(524)) // ENOTSUPP
}

// Kprobe probes for kprobes BPF programs can attach to: the kprobe program
// type, then the kernel's kprobe PMU or tracefs kprobe_events (with the
// kernel config to say why not).
var Kprobe = sync.OnceValue(func() error {
	if err := programType(ebpf.Kprobe, "kprobe programs"); err != nil {
		return err
	}
	if k := kernel.DetectKprobes(hostFS, kernelConfig()); !k.Available() {
		return NotSupportedError("%s", k.Why)
	}
	return nil
})

// hostFS is the running system's filesystem, as the kernel package reads it.
var hostFS = os.DirFS("/")

// kernelConfig is the running kernel's build config, read once.
var kernelConfig = sync.OnceValue(func() kernel.Config {
	return kernel.LoadConfig(hostFS, kernel.Release())
})

// btf is the kernel's BTF, and its modules', for the probes here: parsed
// on first use and shared by every probe until ReleaseBTF. Parsing
// vmlinux's takes 100–200 ms of CPU (seconds under emulation), and every
// module's BTF is read against it (btf.LoadKernelModuleSpec parses
// vmlinux's again for each module). The mutex covers the reads too: the
// types are decoded lazily, into maps that concurrent readers (two
// traces opened together) would write at once. The loader's programs
// relocate against a cache of their own, from several goroutines.
var btfState struct {
	sync.Mutex
	c *btf.Cache
}

// lockedBTF returns the probes' BTF cache; the caller holds btfState.
func lockedBTF() *btf.Cache {
	if btfState.c == nil {
		btfState.c = btf.NewCache()
	}
	return btfState.c
}

// ReleaseBTF lets the parsed BTF go once the programs are loaded: tens of
// MiB a long trace has no use for. The next lookup parses it again.
func ReleaseBTF() {
	btfState.Lock()
	btfState.c = nil
	btfState.Unlock()
}

// Function says where a kernel function is and how it can be reached.
type Function struct {
	Name   string
	Module string // "" for vmlinux
	// Loaded: the function is in the running kernel (kallsyms, or BTF).
	Loaded bool
	// BTF is nil when fentry can target the function (a BTF FUNC in
	// vmlinux or in its module's BTF), or says why not.
	BTF error
	// Kallsyms is nil when a kprobe can target the function (a text
	// symbol in /proc/kallsyms), or says why not.
	Kallsyms error
}

// FuncRef names a kernel function and the module that has it ("" for the
// core kernel).
type FuncRef struct{ Name, Module string }

// LookupFunctions finds each function in BTF and kallsyms (one scan for all).
// It reads the system each time: modules come and go.
func LookupFunctions(refs ...FuncRef) []Function {
	names := make([]string, len(refs))
	for i, r := range refs {
		names[i] = r.Name
	}
	syms, symErr := kernel.KallsymsModules(names...)
	out := make([]Function, len(refs))
	for i, r := range refs {
		f := Function{Name: r.Name, Module: r.Module}
		f.BTF = funcBTF(r.Name, r.Module)
		switch _, ok := syms[r.Name]; {
		case symErr != nil:
			f.Kallsyms = symErr
		case !ok:
			f.Kallsyms = NotSupportedError("no %s in /proc/kallsyms", r.Name)
		}
		f.Loaded = f.BTF == nil || f.Kallsyms == nil
		if !f.Loaded && r.Module != "" && !ModuleLoaded(r.Module) {
			err := NotSupportedError("module %s not loaded", r.Module)
			f.BTF, f.Kallsyms = err, err
		}
		out[i] = f
	}
	return out
}

// ModuleLoaded reports whether a kernel module is loaded (or built in).
func ModuleLoaded(module string) bool {
	_, err := os.Stat("/sys/module/" + module)
	return err == nil
}

func funcBTF(name, module string) error {
	btfState.Lock()
	defer btfState.Unlock()
	spec, err := lockedBTF().Kernel()
	if err != nil {
		return NotSupportedError("no kernel BTF: %v", err)
	}
	var fn *btf.Func
	if err := spec.TypeByName(name, &fn); err == nil {
		return nil
	}
	if module == "" {
		return NotSupportedError("no BTF for %s", name)
	}
	mspec, err := lockedBTF().Module(module)
	if errors.Is(err, fs.ErrNotExist) {
		if !ModuleLoaded(module) {
			return NotSupportedError("module %s not loaded", module)
		}
		return NotSupportedError("module %s has no BTF (CONFIG_DEBUG_INFO_BTF_MODULES)", module)
	}
	if err != nil {
		return fmt.Errorf("load BTF of module %s: %w", module, err)
	}
	if err := mspec.TypeByName(name, &fn); err != nil {
		return NotSupportedError("no BTF for %s in module %s", name, module)
	}
	return nil
}

// FuncParams returns the parameter names of a kernel function from BTF
// (vmlinux, else its module's).
func FuncParams(ref FuncRef) ([]string, error) {
	btfState.Lock()
	defer btfState.Unlock()
	spec, err := lockedBTF().Kernel()
	if err != nil {
		return nil, NotSupportedError("no kernel BTF: %v", err)
	}
	var fn *btf.Func
	if err := spec.TypeByName(ref.Name, &fn); err != nil {
		if ref.Module == "" {
			return nil, NotSupportedError("no BTF for %s", ref.Name)
		}
		mspec, err := lockedBTF().Module(ref.Module)
		if err != nil {
			return nil, NotSupportedError("no BTF for module %s: %v", ref.Module, err)
		}
		if err := mspec.TypeByName(ref.Name, &fn); err != nil {
			return nil, NotSupportedError("no BTF for %s in module %s", ref.Name, ref.Module)
		}
	}
	proto, ok := fn.Type.(*btf.FuncProto)
	if !ok {
		return nil, fmt.Errorf("BTF of %s: %T is not a function prototype", ref.Name, fn.Type)
	}
	names := make([]string, len(proto.Params))
	for i, p := range proto.Params {
		names[i] = p.Name
	}
	return names, nil
}

// DropReasons probes whether the kfree_skb tracepoint carries a drop reason:
// the reason (enum skb_drop_reason) came in Linux 5.17 with the tracepoint's
// reason argument and the kfree_skb_reason function together, so a kernel
// without it has no other place to read one from.
func DropReasons() error {
	btfState.Lock()
	defer btfState.Unlock()
	spec, err := lockedBTF().Kernel()
	if err != nil {
		return NotSupportedError("no kernel BTF: %v", err)
	}
	var e *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &e); err != nil {
		return NotSupportedError("no drop reasons before Linux 5.17 (no enum skb_drop_reason, no kfree_skb_reason)")
	}
	return nil
}

// DirectSKBRead probes whether a BTF tracepoint may read the memory a
// typed skb's head points to with plain loads: whether the verifier types
// a load of skb->head as memory (read-only, untrusted: the JIT's
// fault-tolerant loads; 6.18 does) rather than as a number (6.12 and
// older). It loads a program that reads one byte there, and attaches
// nothing. pathtrace's device and netfilter programs have a form that
// reads packets so (track_typed's direct form in bpf/include/common.h).
var DirectSKBRead = sync.OnceValue(func() error {
	if err := BTFTracepoint(); err != nil {
		return err
	}
	off, err := SKBFieldOffset("head")
	if err != nil {
		return err
	}
	prog, err := ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{
		Type:       ebpf.Tracing,
		AttachType: ebpf.AttachTraceRawTp,
		AttachTo:   btfTracepointProbeTarget,
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 0, asm.DWord),          // the skb
			asm.LoadMem(asm.R3, asm.R2, int16(off), asm.DWord), // skb->head
			asm.LoadMem(asm.R0, asm.R3, 0, asm.Byte),           // the byte it points to
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	}, ebpf.ProgramOptions{LogDisabled: true})
	switch {
	case err == nil:
		return prog.Close()
	case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPERM):
		return NotSupportedError("a load of skb->head is not readable memory to the verifier: %v", err)
	}
	return fmt.Errorf("probe direct skb reads: %w", err)
})

// SKBFieldOffset is the byte offset of sk_buff's field name in the
// running kernel's BTF, looked for in anonymous structs and unions too
// (network_header sits in a struct group on newer kernels).
func SKBFieldOffset(name string) (uint32, error) {
	btfState.Lock()
	defer btfState.Unlock()
	spec, err := lockedBTF().Kernel()
	if err != nil {
		return 0, NotSupportedError("no kernel BTF: %v", err)
	}
	var skb *btf.Struct
	if err := spec.TypeByName("sk_buff", &skb); err != nil {
		return 0, fmt.Errorf("kernel BTF: sk_buff: %w", err)
	}
	var find func(members []btf.Member, base uint32) (uint32, bool)
	find = func(members []btf.Member, base uint32) (uint32, bool) {
		for _, m := range members {
			off := base + uint32(m.Offset.Bytes())
			if m.Name == name {
				return off, true
			}
			if m.Name != "" {
				continue
			}
			var inner []btf.Member
			switch t := m.Type.(type) {
			case *btf.Struct:
				inner = t.Members
			case *btf.Union:
				inner = t.Members
			}
			if o, ok := find(inner, off); ok {
				return o, true
			}
		}
		return 0, false
	}
	off, ok := find(skb.Members, 0)
	if !ok {
		return 0, fmt.Errorf("kernel BTF: sk_buff has no %s", name)
	}
	return off, nil
}
