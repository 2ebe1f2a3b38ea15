// Package scope narrows a trace to what one node would see (--scope node):
// the node's network namespaces and the pods attached to them by veth
// pairs, found through netlink; events of other namespaces are dropped in
// user space, before they are recorded or stitched.
package scope
