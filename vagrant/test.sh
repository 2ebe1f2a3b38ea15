#!/usr/bin/env bash
# The kernel-dependent privileged tests, and a live trace of the IPVS demo, on local Debian
# boxes (bullseye 5.10, bookworm 6.1, trixie 6.12) under Vagrant + libvirt with QEMU's TCG.
#   vagrant/test.sh [SERIES...]      (default: 5.10 6.1 6.12)
# Steps: build or reuse the boxes (vagrant/box.sh), cross-build the test binaries and pathtrace
# on the host (CGO_ENABLED=0), start libvirtd and virtlogd if they are not running, create an
# isolated libvirt network (DHCP only) and a storage pool, then per box: vagrant up (rsync of
# the checkout and the binaries), vm/gotest.sh --run in the guest, `pathtrace demo --ipvs -o
# json`, vagrant destroy. Prints each guest's output, then a table; removes every domain,
# volume, network and pool it made, and stops the daemons it started, also on failure.
# Environment:
#   VM_TEST_PKGS, VM_TEST_RUN, VM_TEST_SKIP
#                               packages, -test.run and -test.skip regexps, as for `make vm-test`
#   VAGRANT_PARALLEL            boxes booted at once (default 2; TCG on 2 cores)
#   VAGRANT_TIMEOUT             seconds for a box's tests and demo (default 1500)
#   VAGRANT_LOCK                a lock file held (flock) while VMs run, not while boxes build
#   VAGRANT_BESIDE              a command (bash, from the checkout) run as one more VM job in the
#                               slot the first box frees, for example `make vm-test
#                               VM_KERNELS=6.12-arm64`; its output is printed, its exit code counted
#   VAGRANT_BOXES=added         use the boxes vagrant has, without checking for a newer kernel
#   VAGRANT_VERBOSE=1           print the whole output of every guest (default: failed ones)
#   PATHTRACE_VAGRANT_CACHE     boxes and vagrant's home (default /var/cache/pathtrace/vagrant)
# Exits 1 if any box failed.
set -euo pipefail
VAGRANT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$VAGRANT_DIR/lib.sh"

declare -A MACHINE=([5.10]=bullseye [6.1]=bookworm [6.12]=trixie)
pkgs="${VM_TEST_PKGS:-./internal/features ./internal/loader ./internal/trace ./internal/topology ./internal/doctor}"
run_re="${VM_TEST_RUN:-.}"
skip_re="${VM_TEST_SKIP:-}"
parallel="${VAGRANT_PARALLEL:-2}"
timeout_s="${VAGRANT_TIMEOUT:-1500}"

# ---- phase 2 (re-executed under VAGRANT_LOCK): the VMs -------------------------------------
if [ "${1:-}" = --vms ]; then
  shift
  run="$1"; shift
  date +%s >"$run/logs/vms.start"   # (after the lock)
  start_vagrant_env
  export VAGRANT_DOTFILE_PATH="$run/dot" PATHTRACE_VAGRANT_LOCAL=1 PATHTRACE_VAGRANT_TESTBIN="$run/bin" \
    PATHTRACE_VAGRANT_LOGDIR="$run/logs" PATHTRACE_VAGRANT_NET="$VAGRANT_NET_PREFIX" \
    PATHTRACE_VAGRANT_NETWORK="$VAGRANT_NET" PATHTRACE_VAGRANT_POOL="$VAGRANT_POOL"
  started=()
  remove_objects() {
    local m s
    for s in "${series_list[@]}"; do
      (cd "$VAGRANT_DIR" && timeout 300 vagrant destroy -f "${MACHINE[$s]}" >>"$run/logs/${s}.destroy" 2>&1) || true
    done
    # Domains, volumes, the network and the pool this run made, whatever vagrant left.
    for m in $(virsh list --all --name 2>/dev/null | grep -E '^pathtrace-(bullseye|bookworm|trixie)$' || true); do
      virsh destroy "$m" >/dev/null 2>&1 || true; virsh undefine --nvram "$m" >/dev/null 2>&1 || virsh undefine "$m" >/dev/null 2>&1 || true
    done
    if virsh pool-info "$VAGRANT_POOL" >/dev/null 2>&1; then
      for m in $(virsh vol-list "$VAGRANT_POOL" 2>/dev/null | awk 'NR > 2 && $1 != "" { print $1 }'); do
        virsh vol-delete --pool "$VAGRANT_POOL" "$m" >/dev/null 2>&1 || true
      done
      virsh pool-destroy "$VAGRANT_POOL" >/dev/null 2>&1 || true
      virsh pool-undefine "$VAGRANT_POOL" >/dev/null 2>&1 || true
    fi
    rmdir "$VAGRANT_CACHE/pool" 2>/dev/null || true
    virsh net-destroy "$VAGRANT_NET" >/dev/null 2>&1 || true
    virsh net-undefine "$VAGRANT_NET" >/dev/null 2>&1 || true
  }
  # libvirt's network driver adds LIBVIRT_* chains (jumped to from the built-in ones) to the
  # filter, nat and mangle tables when it starts a network, and leaves them, empty, behind.
  remove_chains() {
    local cmd t c b
    for cmd in iptables ip6tables; do
      for t in filter nat mangle; do
        for c in $("$cmd" -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^LIBVIRT_/ { print $2 }'); do
          [ "$("$cmd" -t "$t" -S "$c" 2>/dev/null | wc -l)" = 1 ] || continue   # not empty: not ours
          for b in $("$cmd" -t "$t" -S 2>/dev/null | awk -v c="$c" '$1 == "-A" && $3 == "-j" && $4 == c && NF == 4 { print $2 }'); do
            "$cmd" -t "$t" -D "$b" -j "$c" 2>/dev/null || true
          done
          "$cmd" -t "$t" -X "$c" 2>/dev/null || true
        done
      done
    done
  }
  # libvirt revalidates its cached QEMU capabilities at every call, and probes QEMU again (~4 s)
  # when KVM looked usable at the last probe and is not usable now by the user QEMU runs as:
  # with a /dev/kvm only root may open (no udev to apply Debian's root:kvm 0660), every call.
  # Give /dev/kvm udev's owner and mode while the VMs run (they use TCG all the same).
  kvm_mode=""
  if [ -c /dev/kvm ] && getent group kvm >/dev/null && [ "$(stat -c %G:%a /dev/kvm)" != kvm:660 ]; then
    kvm_mode="$(stat -c %u:%g:%a /dev/kvm)"
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
  fi
  had_chains=0
  iptables -S LIBVIRT_INP >/dev/null 2>&1 && had_chains=1
  cleanup() {
    local p
    remove_objects
    [ "$had_chains" = 1 ] || remove_chains
    if [ -n "$kvm_mode" ]; then
      chown "${kvm_mode%:*}" /dev/kvm; chmod "${kvm_mode##*:}" /dev/kvm
    fi
    for p in "${started[@]}"; do kill "$p" 2>/dev/null || true; done
  }
  series_list=("$@")
  trap cleanup EXIT
  trap 'exit 130' INT TERM

  # libvirtd and virtlogd: PID 1 may not be systemd (containers, CI), so start them here.
  if ! virsh version >/dev/null 2>&1; then
    if [ ! -S /run/libvirt/virtlogd-sock ]; then
      virtlogd -d -p "$run/virtlogd.pid"; started+=("$(cat "$run/virtlogd.pid")")
    fi
    libvirtd -d -p "$run/libvirtd.pid"
    for _ in $(seq 50); do virsh version >/dev/null 2>&1 && break; sleep 0.2; done
    started=("$(cat "$run/libvirtd.pid")" "${started[@]}")
    log "started libvirtd (pid ${started[0]})"
  fi
  virsh version >/dev/null || die "libvirtd does not answer"
  # Left over from a run that was killed: remove before creating.
  remove_objects
  virsh net-define /dev/stdin >/dev/null <<XML
<network>
  <name>$VAGRANT_NET</name>
  <bridge name='$VAGRANT_NET_BRIDGE' stp='on' delay='0'/>
  <dns enable='no'/>
  <ip address='$VAGRANT_NET_PREFIX.1' netmask='255.255.255.0'>
    <dhcp><range start='$VAGRANT_NET_PREFIX.2' end='$VAGRANT_NET_PREFIX.254'/></dhcp>
  </ip>
</network>
XML
  virsh net-start "$VAGRANT_NET" >/dev/null
  mkdir -p "$VAGRANT_CACHE/pool"
  virsh pool-define-as "$VAGRANT_POOL" dir --target "$VAGRANT_CACHE/pool" >/dev/null
  virsh pool-start "$VAGRANT_POOL" >/dev/null

  stamp() { local l; while IFS= read -r l; do printf '%(%T)T %s\n' -1 "$l"; done; }
  one() { # $1 series: up, tests, demo, destroy; writes $run/logs/SERIES.*
    local s="$1" m="${MACHINE[$1]}" t0 t1 t2 rc=0
    t0=$(date +%s)
    # (time-stamped, without the upload's progress counter)
    if ! (cd "$VAGRANT_DIR" && timeout 1200 vagrant up "$m" --provider libvirt 2>&1 |
          sed -u -E 's/(\x1b\[K)?Progress: [0-9]+%(\x1b\[K)?//g' | stamp; exit "${PIPESTATUS[0]}") >"$run/logs/$s.up"; then
      echo "up failed" >"$run/logs/$s.status"; echo "$s $t0 $(date +%s) $(date +%s)" >"$run/logs/$s.times"
      (cd "$VAGRANT_DIR" && timeout 300 vagrant destroy -f "$m") >>"$run/logs/$s.destroy" 2>&1 || true
      return 1
    fi
    t1=$(date +%s)
    (cd "$VAGRANT_DIR" && timeout "$timeout_s" vagrant ssh "$m" -c "sudo bash $run/bin/guest.sh" </dev/null) \
      >"$run/logs/$s.output" 2>&1 || rc=$?
    t2=$(date +%s)
    echo "$rc" >"$run/logs/$s.rc"
    echo "$s $t0 $t1 $t2" >"$run/logs/$s.times"
    (cd "$VAGRANT_DIR" && timeout 300 vagrant destroy -f "$m") >>"$run/logs/$s.destroy" 2>&1 || true
    return "$rc"
  }

  beside() { # VAGRANT_BESIDE; writes $run/logs/beside.*
    local t0 rc=0
    t0=$(date +%s)
    (cd "$REPO_DIR" && bash -c "$VAGRANT_BESIDE") </dev/null >"$run/logs/beside.output" 2>&1 || rc=$?
    echo "$rc" >"$run/logs/beside.rc"
    echo "beside $t0 $t0 $(date +%s)" >"$run/logs/beside.times"
    return "$rc"
  }

  # The boxes in the order given; VAGRANT_BESIDE takes the first slot a box frees.
  jobs_list=()
  for s in "${series_list[@]}"; do
    [ -z "${VAGRANT_BESIDE:-}" ] || [ "${#jobs_list[@]}" != "$parallel" ] || jobs_list+=(beside)
    jobs_list+=("$s")
  done
  [ -z "${VAGRANT_BESIDE:-}" ] || [[ " ${jobs_list[*]} " == *" beside "* ]] || jobs_list+=(beside)
  pids=()
  for s in "${jobs_list[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n || true; done
    if [ "$s" = beside ]; then
      log "beside: $VAGRANT_BESIDE"
      beside &
    else
      log "$s: vagrant up ${MACHINE[$s]}"
      one "$s" &
    fi
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || true; done
  exit 0
fi

# ---- phase 1: boxes and binaries -----------------------------------------------------------
[ "$(id -u)" = 0 ] || die "run as root (libvirt's system instance, mmdebstrap)"
[ $# -gt 0 ] || read -r -a series <<<"$VAGRANT_SERIES_ALL"
[ $# -eq 0 ] || series=("$@")
for s in "${series[@]}"; do [ -n "${MACHINE[$s]:-}" ] || die "unknown series '$s' (want: $VAGRANT_SERIES_ALL)"; done
t0=$(date +%s)
[ "${VAGRANT_BOXES:-build}" = added ] || "$VAGRANT_DIR/box.sh" "${series[@]}" >/dev/null
tbox=$(date +%s)

mkdir -p "$VAGRANT_CACHE/tmp"
run="$(mktemp -d "$VAGRANT_CACHE/tmp/run.XXXXXX")"
chmod 0755 "$run"
mkdir -p "$run/logs"
# shellcheck disable=SC2086
GOARCH=amd64 "$REPO_DIR/vm/gotest.sh" --build "$run/bin" $pkgs || die "building test binaries failed"
(cd "$REPO_DIR" && CGO_ENABLED=0 GOARCH=amd64 go build -o "$run/bin/pathtrace" ./cmd/pathtrace) || die "building pathtrace failed"
printf -v run_q '%q' "$run_re"
printf -v skip_q '%q' "$skip_re"
cat >"$run/bin/guest.sh" <<GUEST
# Runs in the guest as root (vagrant ssh -c 'sudo bash guest.sh').
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
echo "### kernel \$(uname -r)"
echo '### tests'
bash $REPO_DIR/vm/gotest.sh --run $run/bin -test.run $run_q -test.skip $skip_q; tt=\$?
echo "### tests exit \$tt"
echo '### demo'
$run/bin/pathtrace demo --ipvs -o json >/tmp/demo.json 2>/tmp/demo.err; dd=\$?
sed 's/^/demo-json: /' /tmp/demo.json; sed 's/^/demo-err: /' /tmp/demo.err
echo "### demo exit \$dd"
[ \$tt = 0 ] && [ \$dd = 0 ]
GUEST
tbuild=$(date +%s)

vms=("$VAGRANT_DIR/test.sh" --vms "$run" "${series[@]}")
if [ -n "${VAGRANT_LOCK:-}" ]; then
  log "waiting for $VAGRANT_LOCK"
  flock "$VAGRANT_LOCK" "${vms[@]}"
else
  "${vms[@]}"
fi
t1=$(date +%s)

# ---- report --------------------------------------------------------------------------------
fail=0
for s in "${series[@]}"; do
  echo "================ $s (${MACHINE[$s]}) ================"
  rc="$(cat "$run/logs/$s.rc" 2>/dev/null || echo -)"
  if [ ! -f "$run/logs/$s.output" ]; then
    tail -30 "$run/logs/$s.up" 2>/dev/null; continue
  fi
  if [ "${VAGRANT_VERBOSE:-0}" = 1 ] || [ "$rc" != 0 ]; then
    grep -v '^demo-json: ' "$run/logs/$s.output"
  else
    grep -E '^(###|ok |skip |FAIL|--- FAIL|panic:|demo-err: pathtrace:)' "$run/logs/$s.output" | uniq
  fi
done
echo
printf '%-6s %-22s %-5s %-6s %-5s %-7s %-7s %-6s %-6s %s\n' SERIES KERNEL TESTS PKGS SKIPS IPVS RESULT UP_S RUN_S BACKENDS
for s in "${series[@]}"; do
  out="$run/logs/$s.output"
  rc="$(cat "$run/logs/$s.rc" 2>/dev/null || echo -)"
  read -r _ a b c <<<"$(cat "$run/logs/$s.times" 2>/dev/null || echo "$s 0 0 0")"
  if [ ! -f "$out" ]; then
    printf '%-6s %-22s %-5s %-6s %-5s %-7s %-7s %-6s %-6s %s\n' "$s" "?" - - - - NOUP "$((b - a))" - -; fail=1; continue
  fi
  kernel="$(awk '/^### kernel / { print $3; exit }' "$out")"
  te="$(awk '/^### tests exit / { print $4 }' "$out")"
  nok="$(grep -c '^ok ' "$out" || true)"; nfail="$(grep -c '^FAIL ' "$out" || true)"
  nskip="$(grep -c '^skip ' "$out" || true)"
  # The demo's paths: requests with an IPVS hop, and "kind=backend" per hop kind seen.
  read -r ipvs backends < <(sed -n 's/^demo-json: //p' "$out" | python3 -c '
import json, sys
seen, ipvs, paths = {}, 0, 0
for line in sys.stdin:
    try:
        p = json.loads(line)
    except ValueError:
        continue
    paths += 1
    kinds = [h.get("kind") for h in p.get("hops", [])]
    ipvs += "ipvs" in kinds
    for h in p.get("hops", []):
        if h.get("backend"):
            seen.setdefault(h["backend"], set()).add(h["kind"])
print("%d/%d" % (ipvs, paths), " ".join("%s:%s" % (b, ",".join(sorted(k))) for b, k in sorted(seen.items())) or "-")')
  case "$rc" in 0) res=ok ;; 124) res=TIMEOUT; fail=1 ;; *) res=FAIL; fail=1 ;; esac
  [ "$ipvs" != "0/0" ] && [ "${ipvs%%/*}" != 0 ] || { res=FAIL; fail=1; }
  printf '%-6s %-22s %-5s %-6s %-5s %-7s %-7s %-6s %-6s %s\n' "$s" "$kernel" "${te:--}" "$nok/$((nok + nfail))" "$nskip" \
    "$ipvs" "$res" "$((b - a))" "$((c - b))" "$backends"
done
if [ -n "${VAGRANT_BESIDE:-}" ]; then
  rc="$(cat "$run/logs/beside.rc" 2>/dev/null || echo -)"
  read -r _ a _ c <<<"$(cat "$run/logs/beside.times" 2>/dev/null || echo "beside 0 0 0")"
  echo "beside: $VAGRANT_BESIDE: exit $rc in $((c - a))s; its output:"
  sed 's/^/  /' "$run/logs/beside.output" 2>/dev/null || true
  [ "$rc" = 0 ] || fail=1
fi
tvms="$(cat "$run/logs/vms.start" 2>/dev/null || echo "$tbuild")"
echo "wall: $((t1 - t0))s (boxes $((tbox - t0))s, host build $((tbuild - tbox))s, waiting for the lock $((tvms - tbuild))s, VMs $((t1 - tvms))s, $parallel at a time); logs: $run/logs"
# The binaries go, the logs stay.
rm -rf "$run/bin" "$run/dot"
exit $fail
