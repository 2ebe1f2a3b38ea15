package features

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	cfeatures "github.com/cilium/ebpf/features"

	"github.com/pathtrace/pathtrace/internal/kernel"
)

// Check returns one clear sentence when this process or kernel cannot run
// pathtrace: it needs root, BTF, raw tracepoints, and a way to see the
// netfilter hooks (BPF netfilter links, else fentry or kprobes on
// nf_hook_slow). Which hop each backend shows is the loader's business.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root to load its kernel programs (CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN); run it with sudo")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return fmt.Errorf("kernel %s has no BTF (/sys/kernel/btf/vmlinux is missing); pathtrace needs a kernel built with CONFIG_DEBUG_INFO_BTF=y", kernel.Release())
	}
	if err := cfeatures.HaveProgramType(ebpf.RawTracepoint); err != nil {
		return fmt.Errorf("kernel %s cannot load raw tracepoint programs: %w", kernel.Release(), err)
	}
	nf := NetfilterLink()
	if nf == nil {
		return nil
	}
	fentry, kprobe := Fentry(), Kprobe()
	if fentry == nil || kprobe == nil {
		return nil
	}
	return fmt.Errorf("kernel %s can show no netfilter hook: %v, %v, %v", kernel.Release(), nf, fentry, kprobe)
}
