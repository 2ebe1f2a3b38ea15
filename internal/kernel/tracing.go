package kernel

import (
	"io/fs"
	"path"
	"strings"
)

// The functions here read a filesystem whose paths are relative to "/"
// ("proc/mounts"): os.DirFS("/") for the running system, a fake in tests.

// Mounts lists mounted filesystems as {fstype, mount point}, in the order of
// /proc/mounts.
type Mounts [][2]string

// ReadMounts reads proc/mounts from fsys; nil when it cannot be read.
func ReadMounts(fsys fs.FS) Mounts {
	b, err := fs.ReadFile(fsys, "proc/mounts")
	if err != nil {
		return nil
	}
	var m Mounts
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) >= 3 {
			m = append(m, [2]string{f[2], f[1]})
		}
	}
	return m
}

// First returns the preferred mount point of fstype if it is mounted there,
// else its first mount point, else "".
func (m Mounts) First(fstype, preferred string) string {
	found := ""
	for _, e := range m {
		if e[0] != fstype {
			continue
		}
		if e[1] == preferred {
			return preferred
		}
		if found == "" {
			found = e[1]
		}
	}
	return found
}

// LockdownPath shows the kernel lockdown modes, the active one in brackets.
const LockdownPath = "/sys/kernel/security/lockdown"

// ReadLockdown returns the active kernel lockdown mode ("none", "integrity"
// or "confidentiality") from fsys, and an error when LockdownPath cannot be
// read (securityfs not mounted, or no lockdown LSM).
func ReadLockdown(fsys fs.FS) (string, error) {
	b, err := fs.ReadFile(fsys, LockdownPath[1:])
	if err != nil {
		return "", err
	}
	return ParseLockdown(string(b)), nil
}

// ParseLockdown picks the bracketed mode from "none [integrity]
// confidentiality"; text without brackets is returned trimmed.
func ParseLockdown(s string) string {
	for _, f := range strings.Fields(s) {
		if strings.HasPrefix(f, "[") && strings.HasSuffix(f, "]") {
			return strings.Trim(f, "[]")
		}
	}
	return strings.TrimSpace(s)
}

// KprobeState is what a system shows of kprobes.
type KprobeState int

const (
	// KprobesUnknown: tracefs is not mounted and the config is unknown.
	KprobesUnknown KprobeState = iota
	// KprobesAvailable: tracefs has kprobe_events, or there is a kprobe PMU.
	KprobesAvailable
	// KprobesMissing: tracefs is mounted without kprobe_events and there is
	// no kprobe PMU.
	KprobesMissing
	// KprobesNotBuilt: the config lacks CONFIG_KPROBES or
	// CONFIG_KPROBE_EVENTS (tracefs is not mounted to look in).
	KprobesNotBuilt
	// KprobesBuilt: the config has them, but with tracefs not mounted and
	// no kprobe PMU nothing confirms it.
	KprobesBuilt
)

// Kprobes says whether BPF programs can attach kprobes, and on what evidence.
type Kprobes struct {
	State KprobeState
	// Source is the evidence: a file ("/sys/kernel/tracing/kprobe_events"),
	// its absence ("no /sys/kernel/tracing/kprobe_events") or a config line
	// ("/boot/config-6.1.0: CONFIG_KPROBES unset").
	Source string
	// Unset is the config option the kernel is built without
	// ("CONFIG_KPROBES" or "CONFIG_KPROBE_EVENTS"), "" when the config
	// has both or is unknown.
	Unset string
	// Why says in a few words why kprobes cannot be used; "" when
	// Available.
	Why string
}

// Available reports whether the system shows kprobes.
func (k Kprobes) Available() bool { return k.State == KprobesAvailable }

// kprobePMU is the perf PMU that creates kprobes without tracefs.
const kprobePMU = "/sys/bus/event_source/devices/kprobe/type"

// DetectKprobes tells from fsys and the kernel config whether kprobes are
// available: kprobe_events in tracefs (where /proc/mounts has it, else at
// its usual places) or a kprobe PMU say yes; otherwise the config says why
// not, where it is known.
func DetectKprobes(fsys fs.FS, cfg Config) Kprobes {
	tracefs := ReadMounts(fsys).First("tracefs", "/sys/kernel/tracing")
	for _, dir := range []string{tracefs, "/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if dir == "" {
			continue
		}
		events := path.Join(dir, "kprobe_events")
		if exists(fsys, events) {
			return Kprobes{State: KprobesAvailable, Source: events}
		}
	}
	if exists(fsys, kprobePMU) {
		return Kprobes{State: KprobesAvailable, Source: kprobePMU}
	}

	k := Kprobes{Why: "kprobes not available (no kprobe PMU, no kprobe_events in tracefs)"}
	if v, known := cfg.Get("CONFIG_KPROBES"); known && v != "y" {
		k.Unset, k.Why = "CONFIG_KPROBES", "kprobes not built in (CONFIG_KPROBES unset)"
	} else if v, known := cfg.Get("CONFIG_KPROBE_EVENTS"); known && v != "y" {
		k.Unset, k.Why = "CONFIG_KPROBE_EVENTS", "kprobes not usable by BPF (CONFIG_KPROBE_EVENTS unset)"
	}
	switch {
	case tracefs != "":
		k.State, k.Source = KprobesMissing, "no "+path.Join(tracefs, "kprobe_events")
	case k.Unset != "":
		k.State, k.Source = KprobesNotBuilt, cfg.Source+": "+k.Unset+" unset"
	case cfg.Known():
		k.State, k.Source = KprobesBuilt, cfg.Source+": CONFIG_KPROBES=y"
	default:
		k.State, k.Source = KprobesUnknown, "tracefs not mounted and no kernel config"
	}
	return k
}

// exists stats an absolute path in fsys.
func exists(fsys fs.FS, name string) bool {
	_, err := fs.Stat(fsys, strings.TrimPrefix(name, "/"))
	return err == nil
}
