package bpf

// The kernel programs, compiled with clang and embedded by bpf2go. The
// generated files are committed so that `go build` needs no clang; `make
// generate` rebuilds them from bpf/.

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Wpadded -Werror -D__TARGET_ARCH_x86" -target bpfel -type event -type pathtrace_kind -type pathtrace_slot -type pathtrace_flags Tracepoint ../../bpf/tracepoint.c -- -I../../bpf/include
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Wpadded -Werror -D__TARGET_ARCH_x86" -target bpfel Netfilter ../../bpf/netfilter.c -- -I../../bpf/include
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Wpadded -Werror -D__TARGET_ARCH_x86" -target bpfel Fentry ../../bpf/fentry.c -- -I../../bpf/include
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Wpadded -Werror -D__TARGET_ARCH_x86" -target bpfel Kprobe ../../bpf/kprobe.c -- -I../../bpf/include
