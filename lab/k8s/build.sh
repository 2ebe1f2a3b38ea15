#!/usr/bin/env bash
# Builds the lab's Kubernetes components from the Go module proxy into a cache
# that outlives the checkout, once per version (versions.env):
#   $PATHTRACE_K8S_CACHE/kubernetes-$K8S_VERSION/{kube-apiserver,kubelet,kube-proxy,kubectl}
#   $PATHTRACE_K8S_CACHE/crictl-$CRICTL_VERSION/crictl
#   $PATHTRACE_K8S_CACHE/flannel-$FLANNEL_VERSION/flanneld
#   $PATHTRACE_K8S_CACHE/pause-<hash of pause/main.go>/pause
# A directory with a .done file is complete and is never rebuilt. Prints the
# directories. Cold: about 7 minutes on 2 cores; warm: nothing to do.
set -euo pipefail
cd "$(dirname "$0")"
. ./versions.env
cache="${PATHTRACE_K8S_CACHE:-/var/cache/pathtrace/k8s}"
export GOFLAGS="-mod=mod -trimpath" GOTOOLCHAIN=local CGO_ENABLED=0

build() { # dir module-dir ldflags packages...
	local dir="$1" mod="$2" ldflags="$3"; shift 3
	if [ -f "$dir/.done" ]; then echo "$dir"; return; fi
	echo "build: $dir" >&2
	rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
	local start=$SECONDS
	(cd "$mod" && go build -ldflags "-s -w $ldflags" -o "$dir.tmp/" "$@")
	touch "$dir.tmp/.done"
	rm -rf "$dir" && mv "$dir.tmp" "$dir"
	echo "build: $dir in $((SECONDS - start)) s" >&2
	echo "$dir"
}

v="k8s.io/component-base/version"
kv="-X $v.gitVersion=$K8S_VERSION -X $v.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
pause_hash=$(sha256sum pause/main.go | cut -c1-12)
build "$cache/pause-$pause_hash" pause "" .
build "$cache/kubernetes-$K8S_VERSION" kubernetes "$kv" \
	k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubelet \
	k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl
build "$cache/crictl-$CRICTL_VERSION" crictl "" sigs.k8s.io/cri-tools/cmd/crictl
build "$cache/flannel-$FLANNEL_VERSION" flannel \
	"-X github.com/flannel-io/flannel/pkg/version.Version=$FLANNEL_VERSION" .
