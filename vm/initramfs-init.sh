#!/bin/busybox sh
# shellcheck shell=dash
# /init of the guest initramfs (built by vm/kernels.sh; static busybox only).
# Loads virtio/9p/overlay, mounts the host root (9p, read-only) under a tmpfs
# overlay, mounts the per-run 9p share "out" at /run/vm and switches to
# /run/vm/stage2.sh (a copy of vm/guest-stage2.sh) inside that root.
# With vm.root=guestroot on the kernel command line (a foreign-architecture guest), the
# overlay's lower layer is the 9p share "guestroot" (vm/userland.sh) and the host root is
# mounted read-only at /host instead.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "vm-init: FAILED: $*"; echo o >/proc/sysrq-trigger; poweroff -f; sleep 60; }
while read -r m; do
  insmod "/mods/$m" || fail "insmod $m"
done </mods/order
O9P=trans=virtio,version=9p2000.L,msize=262144
lower=hostroot
grep -q 'vm.root=guestroot' /proc/cmdline && lower=guestroot
mount -t 9p -o "$O9P,cache=loose,ro" "$lower" /ro || fail "mount 9p $lower"
mount -t tmpfs -o mode=755 tmpfs /rw || fail "mount tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/ro,upperdir=/rw/upper,workdir=/rw/work /newroot ||
  fail "mount overlay"
if [ "$lower" = guestroot ]; then
  mkdir -p /newroot/host
  mount -t 9p -o "$O9P,cache=loose,ro" hostroot /newroot/host || fail "mount 9p hostroot"
fi
mount -t tmpfs -o mode=755 tmpfs /newroot/run || fail "mount /run"
mkdir -p /newroot/run/vm
mount -t 9p -o "$O9P" out /newroot/run/vm || fail "mount 9p out"
[ -f /newroot/run/vm/stage2.sh ] || fail "no stage2.sh in the out share"
umount /proc /sys /dev
# shellcheck disable=SC2093
exec switch_root /newroot /bin/sh /run/vm/stage2.sh
fail "switch_root"
