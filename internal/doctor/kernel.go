package doctor

import (
	"cmp"
	"fmt"
	"path"
	"strings"

	"github.com/pathtrace/pathtrace/internal/kernel"
)

func (c *collector) kernelItems() []Item {
	var items []Item

	rel := Item{ID: "kernel.release", Name: "kernel release", Value: c.release, Status: StatusInfo,
		Explain: "BPF attach points, netfilter hooks and drop reasons differ between kernels",
		Check:   "uname -r", Source: "/proc/sys/kernel/osrelease"}
	if c.release == "" {
		rel.Value, rel.Status = "unknown", StatusUnknown
	}
	items = append(items, rel)

	btf := Item{ID: "kernel.btf", Name: "kernel BTF", Check: "ls -l /sys/kernel/btf/vmlinux",
		Source: "/sys/kernel/btf/vmlinux"}
	if c.exists("sys/kernel/btf/vmlinux") {
		btf.Value, btf.Status = "present", StatusOK
		btf.Explain = "CO-RE programs relocate against it; drop reason names come from it"
	} else {
		btf.Value, btf.Status = "absent", StatusWarn
		btf.Explain = "no CO-RE relocation or drop reason names without an external BTF file (CONFIG_DEBUG_INFO_BTF)"
	}
	items = append(items, btf)

	cfg := Item{ID: "kernel.config", Name: "kernel build config", Status: StatusInfo,
		Explain: "tells built-in from absent features when /proc/modules and /sys/module cannot",
		Check:   "zcat /proc/config.gz | grep CONFIG_BRIDGE=; grep CONFIG_BRIDGE= /boot/config-$(uname -r)"}
	if c.config.Known() {
		cfg.Value, cfg.Source = c.config.Source, c.config.Source
	} else {
		cfg.Value, cfg.Status, cfg.Source = "not found", StatusUnknown, "no /proc/config.gz, no /boot/config-"+c.release
	}
	items = append(items, cfg)

	mounts := kernel.ReadMounts(c.fsys)
	tracefs := mounts.First("tracefs", "/sys/kernel/tracing")
	tf := Item{ID: "tracing.tracefs", Name: "tracefs", Check: "grep tracefs /proc/mounts",
		Source: "/proc/mounts"}
	if tracefs != "" {
		tf.Value, tf.Status = "mounted at "+tracefs, StatusOK
		tf.Explain = "perf-event tracepoints and kprobes are created through it"
	} else {
		tf.Value, tf.Status = "not mounted", StatusWarn
		tf.Explain = "perf-event tracepoints need it for event ids (raw tracepoints do not): mount -t tracefs tracefs /sys/kernel/tracing"
	}
	items = append(items, tf)

	kp := Item{ID: "tracing.kprobes", Name: "kprobes", Explain: "the kprobe backend attaches to kernel functions through kprobe_events"}
	kprobes := kernel.DetectKprobes(c.fsys, c.config)
	kp.Source = kprobes.Source
	switch kprobes.State {
	case kernel.KprobesAvailable:
		kp.Value, kp.Status = "available", StatusOK
	case kernel.KprobesMissing:
		kp.Value, kp.Status = "not available", StatusWarn
	case kernel.KprobesBuilt:
		kp.Value, kp.Status = "built (tracefs not mounted)", StatusInfo
	case kernel.KprobesNotBuilt:
		kp.Value, kp.Status = "not built", StatusWarn
	default:
		kp.Value, kp.Status = "unknown", StatusUnknown
	}
	if kp.Status == StatusWarn {
		kp.Explain = "no kprobe backend: the kernel is built without " + cmp.Or(kprobes.Unset, "CONFIG_KPROBES")
	}
	kp.Check = "ls /sys/kernel/tracing/kprobe_events"
	items = append(items, kp)

	return append(items, c.lockdownItem(mounts))
}

func (c *collector) lockdownItem(mounts kernel.Mounts) Item {
	it := Item{ID: "tracing.lockdown", Name: "kernel lockdown", Check: "cat /sys/kernel/security/lockdown"}
	explain := map[string]struct {
		s Status
		e string
	}{
		"none":            {StatusOK, "no lockdown restrictions on BPF or tracing"},
		"integrity":       {StatusWarn, "BPF writes to user memory are blocked; fentry/fexit programs may be refused (EPERM)"},
		"confidentiality": {StatusBad, "BPF reads of kernel memory, kprobes and perf tracing are blocked"},
	}
	if mode, err := kernel.ReadLockdown(c.fsys); err == nil {
		it.Value, it.Source = mode, kernel.LockdownPath
		if e, ok := explain[mode]; ok {
			it.Status, it.Explain = e.s, e.e
		} else {
			it.Status, it.Explain = StatusUnknown, "unrecognised lockdown mode"
		}
		return it
	}
	securityfs := mounts.First("securityfs", "/sys/kernel/security") != ""
	lsm, known := c.config.Get("CONFIG_SECURITY_LOCKDOWN_LSM")
	switch {
	case known && lsm == "":
		it.Value, it.Source = "none", c.config.Source+": CONFIG_SECURITY_LOCKDOWN_LSM unset"
	case securityfs:
		it.Value, it.Source = "none", "securityfs mounted without a lockdown file: lockdown LSM not active"
	default:
		// securityfs is not mounted: the boot-time floor is all we can tell.
		it.Value, it.Status, it.Source = "unknown", StatusUnknown, "securityfs not mounted"
		it.Explain = "mount -t securityfs securityfs /sys/kernel/security to read it"
		it.Check = "mount -t securityfs securityfs /sys/kernel/security; cat /sys/kernel/security/lockdown"
		if v, _ := c.config.Get("CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY"); v == "y" {
			it.Value, it.Status = "confidentiality", StatusBad
			it.Source += "; " + c.config.Source + ": CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY=y"
			it.Explain = explain["confidentiality"].e
		} else if v, _ := c.config.Get("CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY"); v == "y" {
			it.Value, it.Status = "integrity or stricter", StatusWarn
			it.Source += "; " + c.config.Source + ": CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY=y"
			it.Explain = explain["integrity"].e
		}
		return it
	}
	it.Status, it.Explain = explain["none"].s, explain["none"].e
	return it
}

// moduleSpec describes one module the report checks.
type moduleSpec struct {
	name    string
	config  string // Kconfig symbol
	core    bool   // a typical Kubernetes node needs it
	explain string
}

var moduleSpecs = []moduleSpec{
	{"bridge", "CONFIG_BRIDGE", true, "Linux bridge: same-node pod traffic crosses cni0/cbr0"},
	{"br_netfilter", "CONFIG_BRIDGE_NETFILTER", true, "lets iptables/nftables see bridged pod-to-pod traffic (Service DNAT, NetworkPolicy)"},
	{"nf_conntrack", "CONFIG_NF_CONNTRACK", true, "connection tracking: Service NAT and stateful NetworkPolicy need it"},
	{"nf_nat", "CONFIG_NF_NAT", true, "NAT engine behind Service DNAT and pod egress masquerade"},
	{"ip_tables", "CONFIG_IP_NF_IPTABLES", false, "legacy x_tables (iptables-legacy); iptables-nft uses nf_tables instead"},
	{"nf_tables", "CONFIG_NF_TABLES", false, "nftables: iptables-nft rules and kube-proxy nftables mode live here"},
	{"ip_vs", "CONFIG_IP_VS", false, "IPVS load balancer, needed by kube-proxy IPVS mode"},
	{"ip_vs_rr", "CONFIG_IP_VS_RR", false, "IPVS round-robin scheduler (kube-proxy IPVS default)"},
	{"ip_vs_wrr", "CONFIG_IP_VS_WRR", false, "IPVS weighted round-robin scheduler"},
	{"ip_vs_sh", "CONFIG_IP_VS_SH", false, "IPVS source-hashing scheduler (session affinity)"},
	{"ip_vs_lc", "CONFIG_IP_VS_LC", false, "IPVS least-connection scheduler"},
	{"ip_vs_wlc", "CONFIG_IP_VS_WLC", false, "IPVS weighted least-connection scheduler"},
	{"vxlan", "CONFIG_VXLAN", false, "VXLAN overlays: flannel.1, vxlan.calico, cilium_vxlan"},
	{"ipip", "CONFIG_NET_IPIP", false, "IP-in-IP overlay: calico tunl0"},
	{"geneve", "CONFIG_GENEVE", false, "Geneve overlay (cilium, OVN-Kubernetes)"},
	{"veth", "CONFIG_VETH", true, "veth pairs connect every pod to the node"},
}

// Module states as reported in Item.Value.
const (
	modLoaded    = "loaded"
	modBuiltin   = "built-in"
	modAvailable = "module, not loaded"
	modAbsent    = "absent"
	modNotLoaded = "not loaded"
	modUnknown   = "unknown"
)

func (c *collector) moduleItems() []Item {
	procMods, procErr := c.read("proc/modules")
	loaded := map[string]bool{}
	if procErr == nil {
		for line := range strings.Lines(string(procMods)) {
			if f := strings.Fields(line); len(f) > 0 {
				loaded[f[0]] = true
			}
		}
	}
	modDir := "lib/modules/" + c.release
	builtin := moduleFileSet(c.read(modDir + "/modules.builtin"))
	available := moduleFileSet(c.read(modDir + "/modules.dep"))

	var items []Item
	support := Item{ID: "module.support", Name: "module loading", Status: StatusInfo,
		Check:   "cat /proc/modules | wc -l",
		Explain: "without module support every feature below is either built in or missing"}
	if procErr == nil {
		support.Value, support.Source = "enabled", "/proc/modules"
	} else if v, known := c.config.Get("CONFIG_MODULES"); known && v == "" {
		support.Value, support.Source = "disabled", c.config.Source+": CONFIG_MODULES unset"
	} else {
		support.Value, support.Source = "disabled or hidden", "no /proc/modules"
	}
	items = append(items, support)

	for _, m := range moduleSpecs {
		state, src := c.moduleState(m, procErr == nil, loaded, builtin, available)
		it := Item{ID: "module." + m.name, Name: m.name, Value: state, Source: src, Explain: m.explain,
			Check: fmt.Sprintf("grep -w ^%s /proc/modules; modinfo -F filename %s", m.name, m.name)}
		switch state {
		case modLoaded, modBuiltin:
			it.Status = StatusOK
		case modAvailable:
			it.Status = StatusInfo
			if m.name == "br_netfilter" {
				it.Status = StatusWarn
				it.Explain = "not loaded on demand: until `modprobe br_netfilter`, bridged pod traffic skips netfilter"
			}
		case modNotLoaded:
			it.Status = StatusInfo
		case modAbsent:
			it.Status = StatusInfo
			if m.core {
				it.Status = StatusWarn
			}
		default:
			it.Status = StatusUnknown
		}
		items = append(items, it)
	}
	return items
}

// moduleState tells whether a module is loaded, built in, loadable or
// absent, and from which evidence. /sys/module/NAME exists for loaded modules
// and for built-ins with parameters or a version only, so its absence proves
// nothing.
func (c *collector) moduleState(m moduleSpec, haveProc bool, loaded, builtin, available map[string]bool) (string, string) {
	if loaded[m.name] {
		return modLoaded, "/proc/modules"
	}
	modDir := "/lib/modules/" + c.release
	if builtin[m.name] {
		return modBuiltin, modDir + "/modules.builtin"
	}
	cfg, known := c.config.Get(m.config)
	if known {
		switch cfg {
		case "y":
			return modBuiltin, c.config.Source + ": " + m.config + "=y"
		case "m":
			return modAvailable, c.config.Source + ": " + m.config + "=m"
		}
	}
	if c.exists("sys/module/" + m.name) {
		if haveProc {
			return modBuiltin, "/sys/module/" + m.name + " without a /proc/modules entry"
		}
		return modBuiltin, "/sys/module/" + m.name + " (no module support)"
	}
	if known {
		return modAbsent, c.config.Source + ": " + m.config + " unset"
	}
	if available[m.name] {
		return modAvailable, modDir + "/modules.dep"
	}
	if builtin != nil {
		// modules.builtin lists every built-in: not there and not loaded.
		if available != nil {
			return modAbsent, "not in /proc/modules, modules.builtin or modules.dep"
		}
		return modNotLoaded, "not in /proc/modules or modules.builtin"
	}
	if haveProc {
		return modUnknown, "not in /proc/modules; no modules.builtin or kernel config to tell a built-in without /sys/module entry"
	}
	return modUnknown, "no module support, no modules.builtin or kernel config, no /sys/module entry"
}

// moduleFileSet turns modules.builtin or modules.dep lines
// ("kernel/net/bridge/br_netfilter.ko[.xz]: deps") into module names; nil if
// the file could not be read.
func moduleFileSet(b []byte, err error) map[string]bool {
	if err != nil {
		return nil
	}
	set := map[string]bool{}
	for line := range strings.Lines(string(b)) {
		p, _, _ := strings.Cut(strings.TrimSpace(line), ":")
		if p == "" {
			continue
		}
		base := path.Base(p)
		if i := strings.Index(base, ".ko"); i >= 0 {
			base = base[:i]
		}
		set[strings.ReplaceAll(base, "-", "_")] = true
	}
	return set
}
