// Package features answers what the running kernel lets pathtrace use: BPF
// program types and attach families (probed once and cached, in cilium/ebpf's
// three states), and where a kernel function can be reached from (BTF,
// kallsyms), which changes as modules load and is read afresh.
package features
