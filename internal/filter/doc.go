// Package filter turns a tcpdump filter expression into code the kernel
// programs run: libpcap's compiler (tcpdump -ddd, raw IP link type) makes
// classic BPF, Translate makes it an eBPF function that replaces the
// pt_filter stub of bpf/include/common.h, and Program matches in Go (replay).
package filter
