#!/bin/bash
# Guest smoke check: kernel, BTF, mounts, the modules our tests modprobe (loaded, then
# unloaded again), a few kernel facts.
rc=0
echo "kernel: $(uname -r)"
ls -l /sys/kernel/btf/vmlinux || rc=1
mount | grep -E 'tracefs|bpf' || rc=1
# load, check module BTF, unload again: the tests start from a clean module state
mods="ip_vs vxlan bridge br_netfilter veth ipip geneve"
loaded() { awk '{ print $1 }' /proc/modules | sort; }
before="$(loaded)"
for m in $mods; do
  modprobe "$m" || { echo "modprobe $m failed"; rc=1; }
done
echo "modprobe $mods: $([ $rc = 0 ] && echo ok || echo FAILED)"
echo "module BTF: $([ -e /sys/kernel/btf/bridge ] && echo yes || echo no)"
# the modules loaded since $before (grep, not comm: the arm64 guest has no comm)
added() { loaded | grep -vxF -f <(echo "$before"); }
for _ in 1 2 3 4; do
  for m in $(added); do rmmod "$m" 2>/dev/null; done
done
left="$(added | tr '\n' ' ')"
[ -z "$left" ] || echo "still loaded after unload: $left"
cfg="${VM_KCONFIG:-/boot/config-$(uname -r)}"
if [ -f "$cfg" ]; then
  for c in FPROBE NETFILTER_BPF_LINK KPROBES DEBUG_INFO_BTF_MODULES; do
    echo "CONFIG_$c=$(grep -E "^CONFIG_$c=" "$cfg" | cut -d= -f2)"
  done
fi
exit $rc
