#!/bin/sh
# Runs as PID 1 in the guest after switch_root (host root over 9p + tmpfs overlay).
# Mounts the kernel filesystems, binds the guest kernel's modules, runs /run/vm/cmd.sh
# in the repo dir as root, writes /run/vm/output and /run/vm/rc, powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/go/bin
export HOME=/root TERM=dumb LANG=C.UTF-8 VM_OUT=/run/vm VM_GUEST=1
. /run/vm/env
m() { mkdir -p "$4" 2>/dev/null; mount -t "$1" -o "$2" "$3" "$4" || echo "vm-stage2: mount $1 on $4 failed"; }
m proc     nosuid,nodev,noexec proc     /proc
m sysfs    nosuid,nodev,noexec sysfs    /sys
m devtmpfs mode=755            devtmpfs /dev
ln -sf /proc/self/fd /dev/fd; ln -sf fd/0 /dev/stdin; ln -sf fd/1 /dev/stdout; ln -sf fd/2 /dev/stderr
m devpts   gid=5,mode=620,ptmxmode=666 devpts /dev/pts
m tmpfs    mode=1777           tmpfs    /dev/shm
case "$VM_REPO:$VM_MODDIR:${VM_TESTBIN:-}:" in
  /tmp/*|*:/tmp/*) ;;  # keep the host's /tmp (read-only, under the overlay) visible
  *) m tmpfs mode=1777 tmpfs /tmp ;;
esac
m tracefs  defaults            tracefs  /sys/kernel/tracing
m debugfs  defaults            debugfs  /sys/kernel/debug
m bpf      mode=700            bpf      /sys/fs/bpf
m cgroup2  nsdelegate          cgroup2  /sys/fs/cgroup
# a guest with its own userland (vm/userland.sh) sees the host's root at /host: bind the
# repo and the cache (kernel modules, test binaries) at their host paths
for p in ${VM_BINDS:-}; do
  mkdir -p "$p" && mount --bind "/host$p" "$p" || echo "vm-stage2: bind of $p failed"
done
mkdir -p /run/netns /run/lock "/lib/modules/$VM_KVER"
mount --bind "$VM_MODDIR" "/lib/modules/$VM_KVER" || echo "vm-stage2: module bind failed"
[ -f "$VM_KCONFIG" ] && mkdir -p /boot && cp "$VM_KCONFIG" "/boot/config-$VM_KVER"
hostname "pathtrace-vm-$VM_SERIES" 2>/dev/null
ip link set lo up 2>/dev/null
for mod in ${VM_MODULES:-}; do modprobe "$mod" || echo "vm-stage2: modprobe $mod failed"; done
echo "vm-stage2: running command (kernel $(uname -r))"
cd "$VM_REPO" || echo "vm-stage2: cd $VM_REPO failed"
/bin/bash /run/vm/cmd.sh </dev/null >/run/vm/output 2>&1
echo $? >/run/vm/rc.tmp
mv /run/vm/rc.tmp /run/vm/rc
sync
echo "vm-stage2: done, rc=$(cat /run/vm/rc)"
/bin/busybox poweroff -f
echo o >/proc/sysrq-trigger
sleep 60
