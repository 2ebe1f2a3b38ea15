// Package hop is pathtrace's vocabulary: the kinds of hop a packet's path is
// made of, the netfilter hooks, the backends that show hops, and the verdicts,
// table engines and families, IPVS methods, NAT types and tunnels hops carry.
//
// Each is a small typed enum whose zero value means "none" or "not known",
// with the one name it has in text, JSON, `pathtrace features` and the docs
// (String, MarshalText, UnmarshalText). internal/decode maps the kernel's
// values (bpf/include/event.h) to these once; every other package compares
// typed values, never strings. Kinds lists every hop kind with its
// description, for the renderers, `pathtrace features` and the docs test.
package hop
