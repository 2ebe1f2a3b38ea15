// Package loader loads pathtrace's kernel programs with the filter set,
// attaches them (raw tracepoints globally, netfilter links in each node
// network namespace), reads the ring buffer, and detaches on Close.
package loader
