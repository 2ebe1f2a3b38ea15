// Package kernel is the one place that reads facts of the running system: the
// release, build config, lockdown, kprobes, /proc/kallsyms, drop-reason names
// and network namespaces (by name or path). It imports no other pathtrace package.
package kernel
