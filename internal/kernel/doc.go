// Package kernel reads facts of the running system that events carry only
// as numbers: drop-reason names from the kernel's BTF and network namespace
// names from /run/netns. It imports no other pathtrace package.
package kernel
