#!/usr/bin/env bash
# Installs, from Debian's packages, what make bench needs on a fresh machine:
# iperf3 (the datapath load), tcpdump (the comparison), iptables and
# iproute2 (the demo cluster). Idempotent and quick when everything is
# there; needs root to install.
set -euo pipefail

need=(iperf3 tcpdump iptables iproute2)

missing=()
for p in "${need[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "bench/install-deps: missing Debian packages: ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
	exit 1
fi
echo "bench/install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
