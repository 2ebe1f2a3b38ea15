// Package k8slab brings up a real Kubernetes lab on one machine for tests
// and `make lab-up`: etcd and kube-apiserver in the root namespace, two nodes
// in network namespaces each running containerd, runc, CNI plugins, flanneld
// (VXLAN), kubelet and kube-proxy (iptables or nftables mode), a client pod,
// a server pod and a Service, and tears all of it down again.
package k8slab
