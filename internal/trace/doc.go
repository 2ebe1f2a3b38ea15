// Package trace runs the pipeline: records from the kernel (live) or from a
// recording (replay) are decoded, stitched into per-packet paths and
// rendered. Both sources meet the same code past the decoder.
package trace
