// Package topology builds the built-in demo cluster: two flannel-style Kubernetes nodes and
// their pods in fresh network namespaces, with VXLAN, cni0 bridges and kube-proxy iptables rules,
// for `pathtrace demo`, privileged tests and benchmarks; Close removes all of it.
package topology
