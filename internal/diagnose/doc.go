// Package diagnose explains stitched paths with the node reports of
// internal/doctor: advice on each drop hop (where, the kernel's reason, what on
// the node likely caused it and how to check), warnings on the path, and the
// names of the Service ports the path's NAT and IPVS hops translate.
package diagnose
