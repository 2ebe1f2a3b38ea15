// Package loader picks, per hop kind, the best backend the running kernel
// supports (BTF, else raw, tracepoints; netfilter links, else fentry, else
// kprobes on nf_hook_slow; fentry, else kprobes, for function hops), loads
// and attaches each program on its own with the filter set, reports what
// shows each hop (Tracer.Hops, Plan), reads the ring buffer, and detaches
// on Close.
package loader
