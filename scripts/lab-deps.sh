#!/usr/bin/env bash
# What the Kubernetes lab (internal/k8slab, make lab-up, the lab tests)
# needs on top of install-deps.sh: Debian's etcd, containerd, runc, CNI
# plugins, busybox-static (the pods' image), openssl, nftables and
# conntrack, then the Kubernetes binaries built from the Go module proxy
# (lab/k8s/build.sh, cached in /var/cache/pathtrace/k8s; about 7 minutes
# cold on 2 cores, nothing to do warm). Packages install without starting
# their services: the lab runs its own etcd and containerds.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(etcd-server containerd runc containernetworking-plugins busybox-static openssl nftables conntrack util-linux)
if [ "$(id -u)" = 0 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
scripts/install-deps.sh "${pkgs[@]}"
lab/k8s/build.sh >/dev/null
