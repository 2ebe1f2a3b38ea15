#!/usr/bin/env bash
# Builds local Vagrant boxes (libvirt provider) of Debian's stock kernels from Debian's archive,
# and adds them with `vagrant box add` as pathtrace/debian-SERIES.
#   vagrant/box.sh [SERIES...]       SERIES: 5.10 (bullseye), 6.1 (bookworm), 6.12 (trixie);
#                                    default all three
# Each box: an ext4 root file system made by mmdebstrap (minbase + linux-image-amd64, systemd,
# openssh-server, sudo, the tools the tests run), converted to qcow2, with the kernel and initrd
# next to it for libvirt's direct kernel boot, the vagrant user with Vagrant's insecure key (the
# one Debian's vagrant package ships), DHCP on eth0 by systemd-networkd, and no apt sources.
# Cached in $PATHTRACE_VAGRANT_CACHE (default /var/cache/pathtrace/vagrant): a box is rebuilt
# when the suite's linux-image-amd64 version or this script changes, else only re-added if
# vagrant lost it. Needs root (mmdebstrap in root mode, mkfs.ext4 -d keeps owners).
set -euo pipefail
VAGRANT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$VAGRANT_DIR/lib.sh"

[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap, mkfs.ext4 -d)"
[ $# -gt 0 ] || set -- $VAGRANT_SERIES_ALL
for s in "$@"; do suite_of "$s" >/dev/null; done

# The insecure key pair Vagrant uses for a box's first login; Debian's vagrant ships it.
insecure_pub="$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | tail -1)"
[ -n "$insecure_pub" ] || die "no keys/vagrant.pub in Debian's vagrant package (make vagrant-deps)"
script_hash="$(sha256sum <"$0" | cut -c1-12)"

# Packages of every box: the kernel, an init, sshd, and what the tests and pathtrace run
# (tcpdump: the filter tests compile expressions with it, as pathtrace does; nft: the nftables
# NAT tests write their rules with it).
PACKAGES=linux-image-amd64,initramfs-tools,systemd-sysv,udev,dbus,openssh-server,sudo,rsync,iproute2,iptables,kmod,procps,tcpdump,nftables

build_box() { # $1 series $2 kernel version $3 box file
  local series="$1" kver="$2" out="$3" suite archive security work t0
  suite="$(suite_of "$series")"
  read -r archive security < <(detect_mirrors)
  t0=$(date +%s)
  mkdir -p "$VAGRANT_CACHE/tmp"
  work="$(mktemp -d "$VAGRANT_CACHE/tmp/box-$series.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  log "$series: mmdebstrap $suite (linux-image-amd64 $kver)"
  mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
    --aptopt='Acquire::Languages "none"' --dpkgopt=force-unsafe-io --dpkgopt='path-exclude=/usr/share/{doc,man,locale}/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --customize-hook='
      set -e
      echo "pathtrace-'"$series"'" >"$1/etc/hostname"
      printf "127.0.0.1 localhost\n127.0.1.1 pathtrace-'"$series"'\n" >"$1/etc/hosts"
      echo "/dev/vda / ext4 rw,errors=remount-ro 0 1" >"$1/etc/fstab"
      chroot "$1" useradd -m -s /bin/bash -U vagrant
      echo "vagrant ALL=(ALL) NOPASSWD:ALL" >"$1/etc/sudoers.d/vagrant"; chmod 0440 "$1/etc/sudoers.d/vagrant"
      install -d -m 0700 -o 1000 -g 1000 "$1/home/vagrant/.ssh"
      install -m 0600 -o 1000 -g 1000 '"$insecure_pub"' "$1/home/vagrant/.ssh/authorized_keys"
      printf "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n" >"$1/etc/systemd/network/10-eth0.network"
      chroot "$1" systemctl enable systemd-networkd ssh >/dev/null 2>&1
      chroot "$1" systemctl mask systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
        man-db.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1
      printf "UseDNS no\n" >"$1/etc/ssh/sshd_config.d/pathtrace.conf" 2>/dev/null || echo "UseDNS no" >>"$1/etc/ssh/sshd_config"
      # No apt in the guest: the boxes have no network beyond the host.
      rm -f "$1/etc/apt/sources.list"; rm -rf "$1/etc/apt/sources.list.d"/*
      rm -rf "$1/var/lib/apt/lists"/* "$1/var/cache/apt"/*.bin
    ' \
    "$suite" "$work/root" \
    "deb [signed-by=$KEYRING] $archive $suite main" \
    "deb [signed-by=$KEYRING] $archive $suite-updates main" \
    "deb [signed-by=$KEYRING] $security $suite-security main"
  local vmlinuz initrd krel
  vmlinuz="$(ls "$work"/root/boot/vmlinuz-* | sort -V | tail -1)"
  initrd="$(ls "$work"/root/boot/initrd.img-* | sort -V | tail -1)"
  krel="${vmlinuz##*/vmlinuz-}"
  mkdir -p "$work/box"
  cp "$vmlinuz" "$work/box/vmlinuz"; cp "$initrd" "$work/box/initrd.img"
  log "$series: ext4 image of $(du -sh "$work/root" | cut -f1) (kernel $krel)"
  truncate -s "${VAGRANT_DISK_GB}G" "$work/root.img"
  mkfs.ext4 -q -F -L root -d "$work/root" "$work/root.img"
  rm -rf "$work/root"
  qemu-img convert -f raw -O qcow2 "$work/root.img" "$work/box/box.img"
  rm -f "$work/root.img"
  cat >"$work/box/metadata.json" <<JSON
{"provider": "libvirt", "format": "qcow2", "virtual_size": $VAGRANT_DISK_GB,
 "pathtrace": {"build": "${out##*/}", "series": "$series", "suite": "$suite", "kernel_package": "linux-image-amd64 $kver", "kernel_release": "$krel"}}
JSON
  # Direct kernel boot: the box has no partition table and no boot loader.
  cat >"$work/box/Vagrantfile" <<'RUBY'
# pathtrace's local Debian box: libvirt boots the kernel and initrd next to this file.
Vagrant.configure("2") do |config|
  config.ssh.insert_key = false   # the insecure key only ever reaches the host's isolated network
  config.vm.provider "libvirt" do |lv|
    lv.kernel = File.join(__dir__, "vmlinuz")
    lv.initrd = File.join(__dir__, "initrd.img")
    lv.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0 biosdevname=0 mitigations=off random.trust_cpu=on"
    lv.disk_bus = "virtio"
  end
end
RUBY
  tar -C "$work/box" -cf "$out.tmp" metadata.json Vagrantfile box.img vmlinuz initrd.img
  mv "$out.tmp" "$out"
  log "$series: box $out ($(du -h "$out" | cut -f1)) in $(($(date +%s) - t0))s"
}

start_vagrant_env
mkdir -p "$VAGRANT_CACHE/boxes"
declare -A box
for series in "$@"; do
  suite="$(suite_of "$series")"
  kver="$(kernel_version "$suite")" || die "$series: cannot resolve linux-image-amd64 in $suite"
  box[$series]="$VAGRANT_CACHE/boxes/debian-$series-${kver}-$script_hash.box"
  echo "$kver" >"$VAGRANT_CACHE/boxes/debian-$series.kver"
done
# The missing boxes, built at once (mostly downloads and dpkg).
pids=()
for series in "$@"; do
  [ -f "${box[$series]}" ] && continue
  build_box "$series" "$(cat "$VAGRANT_CACHE/boxes/debian-$series.kver")" "${box[$series]}" &
  pids+=($!)
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
[ $fail = 0 ] || die "building a box failed"
for series in "$@"; do
  name="$(box_name "$series")"
  # Re-add when the box vagrant has is not this file (its metadata names the build).
  have="$(cat "$VAGRANT_HOME/boxes/${name//\//-VAGRANTSLASH-}/0/libvirt/metadata.json" 2>/dev/null || true)"
  want="$(tar -xOf "${box[$series]}" metadata.json)"
  if [ "$have" != "$want" ]; then
    log "$series: vagrant box add $name"
    vagrant box add --force --name "$name" --provider libvirt "${box[$series]}" >/dev/null
    remove_base_volumes "$series"   # a stale base image in the pool would shadow the new box
  fi
  # Older builds of this series.
  find "$VAGRANT_CACHE/boxes" -name "debian-$series-*.box" ! -path "${box[$series]}" -delete
  echo "$series $name linux-image-amd64 $(cat "$VAGRANT_CACHE/boxes/debian-$series.kver") ${box[$series]}"
done
