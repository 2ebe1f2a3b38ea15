package testutil

import (
	"os"
	"testing"
)

// LabEnv opts in to the tests on the Kubernetes lab (internal/k8slab): they
// start real Kubernetes components, about 15 s per lab, and need
// scripts/lab-deps.sh's packages and builds. `make lab-test` sets it.
const LabEnv = "PATHTRACE_LAB"

// RequireLab gates a test on the Kubernetes lab: it needs root, then skips
// unless LabEnv=1, and, opted in, fails when find (k8slab.FindBinaries)
// reports a program missing.
func RequireLab(tb testing.TB, find func() error) {
	tb.Helper()
	RequireRoot(tb)
	if os.Getenv(LabEnv) != "1" {
		tb.Skip("the Kubernetes lab tests run with " + LabEnv + "=1 (make lab-test): they start kube-apiserver, etcd, " +
			"two nodes' containerd, kubelet, flanneld and kube-proxy (about 15 s per lab once lab/k8s/build.sh has built them)")
	}
	if err := find(); err != nil {
		tb.Fatalf("%s=1 but the lab cannot start: %v", LabEnv, err)
	}
}
