#!/usr/bin/env bash
# Installs, from Debian's packages, what the demo and the tests need on a
# fresh machine: iptables, nftables and iproute2 (demo topology, nft in tests), procps (sysctl, in
# the doctor tests), tshark and tcpdump (recordings), chromium (the HTML
# report's browser test, headless), clang and libbpf-dev
# (only for `make generate`), plus any package named as an argument (make
# bench: iperf3). Idempotent and quick when everything is there; needs root
# to install. internal/testutil's tools list the commands tests need.
set -euo pipefail

need=(iptables nftables iproute2 procps tshark tcpdump chromium "$@")
[ "${WITH_CLANG:-0}" = 1 ] && need+=(clang llvm libbpf-dev)

missing=()
for p in "${need[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing Debian packages: ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
