// Package bpf holds the compiled kernel programs of pathtrace and the Go
// types bpf2go generates from the event contract in bpf/include/event.h.
// It is data only: loading and attaching live in internal/loader.
package bpf
