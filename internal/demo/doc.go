// Package demo runs pathtrace on the built-in two-node cluster: it builds
// the topology, traces the client pod while it talks to a ClusterIP service
// on the other node and to a pod on its own node, and tears it all down.
package demo
