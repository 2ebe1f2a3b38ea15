#!/usr/bin/env bash
# Builds (once, cached) the userland a foreign-architecture guest runs, and prints its root dir.
#   vm/userland.sh ARCH          ARCH: arm64
# The x86 guests use the host's / over 9p; an arm64 guest cannot run the host's binaries, so it
# gets a root of Debian bookworm packages for ARCH (the host's release: the same iptables as
# the x86 guests, which use the host's) unpacked with dpkg-deb (no maintainer scripts):
# static busybox (the initramfs and every applet the packages below do not bring), bash,
# iproute2 (ip, ss, bridge: busybox ip cannot create veth/bridge/vxlan links), tcpdump (libpcap
# compiles filter expressions), iptables
# (nft backend by default, as on the host, and the legacy one), kmod, procps, netbase, and
# their libraries, resolved by apt from a private state (never the system's dpkg architectures).
# The guest mounts it read-only over 9p under a RAM overlay (vm/initramfs-init.sh).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

arch="${1:-}"
case "$arch" in arm64) ;; *) die "usage: vm/userland.sh arm64" ;; esac
suite=bookworm
packages="busybox-static bash iproute2 iptables kmod procps netbase tcpdump"
key="$( (echo "$suite $arch $packages"; cat "$VM_DIR/userland.sh") | sha256sum | cut -c1-12)"
root="$VM_CACHE/userland/$arch-$suite-$key"
if [ -f "$root/.done" ]; then echo "$root"; exit 0; fi

mkdir -p "$VM_CACHE/userland"
exec 8>"$VM_CACHE/userland/.lock"
flock 8
if [ -f "$root/.done" ]; then echo "$root"; exit 0; fi
for t in apt-get dpkg-deb tar; do command -v "$t" >/dev/null || die "$t missing"; done

log "userland $arch: resolving $packages in $suite"
setup_apt "$suite" "$arch"
update_apt "$suite" "$arch" || die "apt update for $suite ($arch) failed"
debs="$VM_CACHE/debs/userland-$arch-$suite"
mkdir -p "$debs/partial"
# An empty status file: apt downloads the packages and their whole dependency closure.
# shellcheck disable=SC2046
apt-get $(apt_opts "$suite" "$arch") -qq -o Dir::Cache::archives="$debs" \
  install --download-only --no-install-recommends -y $packages >/dev/null ||
  die "download of the $arch userland failed"

tmp="$root.new.$$"
rm -rf "$tmp"; mkdir -p "$tmp"/usr/{bin,sbin,lib} "$tmp"/{etc,root,tmp,run,proc,sys,dev,var/tmp}
ln -s usr/bin "$tmp/bin"; ln -s usr/sbin "$tmp/sbin"; ln -s usr/lib "$tmp/lib"
n=0
for deb in "$debs"/*.deb; do
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --keep-directory-symlink
  n=$((n + 1))
done
[ -x "$tmp/bin/busybox" ] || die "no busybox in the $arch userland"
# The alternatives the maintainer scripts would set: iptables-nft, like the host.
for t in iptables iptables-restore iptables-save ip6tables ip6tables-restore ip6tables-save; do
  ln -sf xtables-nft-multi "$tmp/usr/sbin/$t"
done
# busybox applets for what the packages do not bring (sh, awk, sed, mount, ...). The host's
# static busybox (same Debian configuration) lists them: the arm64 one cannot run here.
/bin/busybox --list-full | while read -r p; do
  [ -e "$tmp/$p" ] || [ -L "$tmp/$p" ] || ln -s /usr/bin/busybox "$tmp/$p"
done
echo 'root:x:0:0:root:/root:/bin/bash' >"$tmp/etc/passwd"
echo 'root:x:0:' >"$tmp/etc/group"
chmod 1777 "$tmp/tmp" "$tmp/var/tmp"
touch "$tmp/.done"
rm -rf "$root"; mv "$tmp" "$root"
log "userland $arch: $n packages unpacked in $root ($(du -sh "$root" | cut -f1))"
echo "$root"
