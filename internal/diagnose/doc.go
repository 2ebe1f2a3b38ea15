// Package diagnose explains stitched paths with the node reports of
// internal/doctor: advice on each drop hop (where, the kernel's reason, what on
// the node likely caused it and how to check) and warnings on the path.
package diagnose
