// Package k8s names pods and Services for pathtrace: it reads them from the
// Kubernetes API server (a kubeconfig's server, TLS material and token) when
// a trace starts, keeps them as a table that recordings store, resolves
// --pod and --service to addresses, and names the pods on paths.
package k8s
