#!/usr/bin/env bash
# Boots a Debian kernel in QEMU (TCG) and runs a shell command as root in the guest.
#   vm/run.sh SERIES [CMD...]        SERIES: 5.10 | 6.1 | 6.12 | 6.1-arm64 | 6.12-arm64;
#                                    CMD defaults to $VM_CMD
# The guest sees the host's / read-only (9p) under a RAM overlay, so the repo is at the
# same absolute path; the command runs there with bash. An arm64 guest (qemu-system-aarch64,
# TCG) runs an arm64 userland (vm/userland.sh) instead, with the repo and the cache dir bound
# at their host paths. Exit code: the command's, or
# 124 on timeout / 125 when the guest failed before reporting one.
# Environment:
#   VM_TIMEOUT  seconds before the guest is killed (default 900)
#   VM_MEM      guest memory (default 2G)         VM_SMP  vCPUs (default 1)
#   VM_STREAM   1: print the output live (default: 1 if stdout is a terminal or VM_LOGDIR unset)
#   VM_LOGDIR   copy output, console.log, rc and any files the command wrote to $VM_OUT
#               into VM_LOGDIR/SERIES/ (the command output is then not printed)
#   VM_RESULT   append "SERIES PKG VERSION KVER RC SECONDS" to this file
#   VM_KEEP=1   keep the per-run temp dir
#   VM_APPEND   extra kernel command line (e.g. loglevel=7 for a full boot log)
#   VM_CPU      the x86 guest's -cpu (default max,-erms,-fsrm)
#   VM_MODULES  modules to modprobe in the guest before the command (default: none)
#   VM_ENV      extra "NAME=value" lines exported in the guest before the command
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -ge 1 ] || { sed -n '2,21p' "$0"; exit 2; }
series="$1"; shift
suite_of "$series" >/dev/null
cmd="${*:-${VM_CMD:-}}"
[ -n "$cmd" ] || die "no command (give CMD or set VM_CMD)"

kdir="$(kernel_dir "$series" || true)"
if [ -z "$kdir" ] || [ ! -f "$(initrd_of "$kdir")" ]; then
  "$VM_DIR/kernels.sh" --if-missing "$series"
  kdir="$(kernel_dir "$series")"
fi
kver="$(cat "$kdir/kver")"; pkg="$(cat "$kdir/pkg")"; ver="$(cat "$kdir/version")"
arch="$(kernel_arch "$kdir")"
case "$arch" in
  amd64)
    # Without ERMS and FSRM: where the guest CPU has them, the kernel copies memory with
    # `rep movsb` (memcpy_erms in 5.10 and 6.1), which TCG runs slowly; the verifier copies
    # its states all the time, and a 5.10 guest took twice as long (vm/README.md).
    qemu=(qemu-system-x86_64 -accel tcg,thread=multi -cpu "${VM_CPU:-max,-erms,-fsrm}" -machine pc)
    console=ttyS0; binds=""; guestroot=() ;;
  arm64)
    # pauth-impdef: QEMU's cheap pointer-authentication hash (the architected one makes TCG
    # about four times slower)
    qemu=(qemu-system-aarch64 -accel tcg,thread=multi -cpu max,pauth-impdef=on -machine virt)
    console=ttyAMA0; binds="$REPO_DIR $VM_CACHE"
    root="$("$VM_DIR/userland.sh" arm64)"
    guestroot=(-fsdev "local,id=guestroot,path=$root,security_model=none,readonly=on,multidevs=remap"
      -device virtio-9p-pci,fsdev=guestroot,mount_tag=guestroot) ;;
  *) die "$series: no QEMU setup for $arch" ;;
esac
command -v "${qemu[0]}" >/dev/null || die "${qemu[0]} missing: run vm/install-deps.sh"

out="$(mktemp -d "${TMPDIR:-/tmp}/pathtrace-vm.$series.XXXXXX")"
chmod 755 "$out"
cleanup() { [ "${VM_KEEP:-0}" = 1 ] || rm -rf "$out"; }
trap cleanup EXIT
q() { printf '%q' "$1"; }
cat >"$out/env" <<ENV
VM_SERIES=$(q "$series")
VM_KVER=$(q "$kver")
VM_MODDIR=$(q "$kdir/lib/modules/$kver")
VM_REPO=$(q "$REPO_DIR")
VM_KCONFIG=$(q "$kdir/config")
VM_MODULES=$(q "${VM_MODULES:-}")
VM_BINDS=$(q "$binds")
VM_ARCH=$(q "$arch")
export VM_SERIES VM_KVER VM_MODDIR VM_REPO VM_KCONFIG VM_ARCH
ENV
while IFS= read -r l; do
  [[ "$l" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] && printf 'export %s=%q\n' "${l%%=*}" "${l#*=}" >>"$out/env"
done <<<"${VM_ENV:-}"
cp "$VM_DIR/guest-stage2.sh" "$out/stage2.sh"
printf '%s\n' "$cmd" >"$out/cmd.sh"
: >"$out/output"

stream="${VM_STREAM:-}"
if [ -z "$stream" ]; then
  if [ -t 1 ] || [ -z "${VM_LOGDIR:-}" ]; then stream=1; else stream=0; fi
fi

start=$(date +%s.%N)
set +e
timeout --kill-after=10 "${VM_TIMEOUT:-900}" \
  "${qemu[@]}" -nic none \
    -smp "${VM_SMP:-1}" -m "${VM_MEM:-2G}" \
    -nodefaults -no-user-config -display none -no-reboot \
    -serial "file:$out/console.log" -monitor none \
    -kernel "$kdir/vmlinuz" -initrd "$(initrd_of "$kdir")" \
    -append "console=$console ${guestroot:+vm.root=guestroot }panic=-1 oops=panic loglevel=4 random.trust_cpu=on mitigations=off ${VM_APPEND:-}" \
    -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
    -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
    -fsdev local,id=out,path="$out",security_model=none,multidevs=remap \
    -device virtio-9p-pci,fsdev=out,mount_tag=out \
    "${guestroot[@]}" \
    -device virtio-rng-pci \
    >"$out/qemu.log" 2>&1 &
qpid=$!
if [ "$stream" = 1 ]; then
  tail -n +1 -f --pid="$qpid" "$out/output" 2>/dev/null &
  tpid=$!
fi
wait "$qpid"; qrc=$?
[ "$stream" = 1 ] && wait "$tpid" 2>/dev/null
set -e
secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')

if [ -f "$out/rc" ]; then
  rc="$(cat "$out/rc")"
else
  if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then rc=124; why="timed out after ${VM_TIMEOUT:-900}s"
  else rc=125; why="guest ended without a result (qemu exit $qrc)"; fi
  {
    echo "[vm] $series ($kver): $why; last console lines:"
    tail -n 40 "$out/console.log" 2>/dev/null | sed 's/^/  | /'
    [ -s "$out/qemu.log" ] && sed 's/^/  qemu| /' "$out/qemu.log"
  } >&2
fi

if [ -n "${VM_LOGDIR:-}" ]; then
  mkdir -p "$VM_LOGDIR/$series"
  cp -r "$out"/. "$VM_LOGDIR/$series/"
  rm -f "$VM_LOGDIR/$series"/{env,stage2.sh}
fi
if [ "$stream" != 1 ] && [ -z "${VM_LOGDIR:-}" ]; then cat "$out/output"; fi
[ -z "${VM_RESULT:-}" ] || echo "$series $pkg $ver $kver $rc $secs" >>"$VM_RESULT"
log "$series: $pkg $ver: exit $rc in ${secs}s"
exit "$rc"
