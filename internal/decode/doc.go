// Package decode turns the bytes of one ring-buffer record (live, or read
// back from a recording) into a typed Event. It is pure: no system lookups,
// no BPF; the layout comes from the bpf2go-generated type.
package decode
