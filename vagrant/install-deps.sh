#!/usr/bin/env bash
# Installs what `make vagrant-test` needs on a Debian host, from Debian's packages: Vagrant with
# its libvirt provider, libvirt's daemons, QEMU (TCG), mmdebstrap and qemu-utils for the boxes,
# dnsmasq for the boxes' DHCP, rsync and ssh for the synced folders. Idempotent and quick when
# everything is there. Starts nothing (vagrant/test.sh starts libvirtd when it needs it).
set -euo pipefail
need=(vagrant vagrant-libvirt libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
  qemu-system-x86 qemu-utils mmdebstrap debian-archive-keyring e2fsprogs dnsmasq-base iptables
  rsync openssh-client python3 util-linux)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "vagrant/install-deps.sh: missing Debian packages: ${missing[*]}; run as root" >&2
  exit 1
fi
echo "vagrant/install-deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
