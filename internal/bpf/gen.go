package bpf

// The kernel programs, compiled with clang and embedded by bpf2go, once per
// architecture: -target amd64,arm64 compiles each program with
// __TARGET_ARCH_x86 / __TARGET_ARCH_arm64 (the kprobes read their arguments
// from pt_regs, whose layout is the architecture's; bpf/include/vmlinux.h
// picks the architecture's kernel types) into *_x86_bpfel.{go,o} (GOARCH 386,
// amd64) and *_arm64_bpfel.{go,o} (GOARCH arm64). The generated files are
// committed so that `go build` needs no clang, for either architecture;
// `make generate` rebuilds them from bpf/. TestEventLayoutSameOnAllArches
// checks that both compile the event contract to the same Go layout.

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Wpadded -Werror" -target amd64,arm64 -type event -type pathtrace_kind -type pathtrace_slot -type pathtrace_flags Tracepoint ../../bpf/tracepoint.c -- -I../../bpf/include
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Wpadded -Werror" -target amd64,arm64 Netfilter ../../bpf/netfilter.c -- -I../../bpf/include
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Wpadded -Werror" -target amd64,arm64 Fentry ../../bpf/fentry.c -- -I../../bpf/include
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Wpadded -Werror" -target amd64,arm64 Kprobe ../../bpf/kprobe.c -- -I../../bpf/include
