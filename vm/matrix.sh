#!/usr/bin/env bash
# Runs the smoke check and the Go tests on each kernel series, guests in parallel (VM_JOBS at once).
#   vm/matrix.sh [SERIES...]              (default: 5.10 6.1 6.12 6.1-arm64 6.12-arm64)
# Environment:
#   VM_SMOKE_CMD  guest smoke command         (default: vm/smoke.sh)
#   VM_TEST_PKGS  packages whose test binaries are built on the host first (default ./...;
#                 "none" to skip), once per architecture (GOARCH=arm64 for the arm64 guests);
#                 in the guest $VM_TESTBIN is their directory
#   VM_TEST_CMD   guest test command          (default: vm/gotest.sh --run)
#   VM_JOBS       guests at once (default: the host's CPUs)
#   VM_TIMEOUT, VM_MEM, VM_SMP ... as for vm/run.sh; VM_LOGDIR: where logs go (default: a temp dir)
#   VM_VERBOSE=1  print the whole output of every guest (default: whole output of failed
#                 guests only; for the others the smoke section, "skip" and "ok"/"FAIL" lines)
# Prints each guest's output, then a table; exits 1 if any kernel failed.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -gt 0 ] || read -r -a series_list <<<"$VM_SERIES_ALL"
[ $# -eq 0 ] || series_list=("$@")
smoke="${VM_SMOKE_CMD:-vm/smoke.sh}"
testcmd="${VM_TEST_CMD:-vm/gotest.sh --run}"
pkgs="${VM_TEST_PKGS-./...}"
jobs_max="${VM_JOBS:-$(nproc)}"
[[ "$jobs_max" =~ ^[1-9][0-9]*$ ]] || { log "VM_JOBS=$jobs_max: want a number of guests, 1 or more"; exit 2; }

t0=$(date +%s)
"$VM_DIR/kernels.sh" --if-missing "${series_list[@]}"

logdir="${VM_LOGDIR:-$(mktemp -d "${TMPDIR:-/tmp}/pathtrace-vm-logs.XXXXXX")}"
mkdir -p "$logdir"; : >"$logdir/results"
mkdir -p "$VM_CACHE/tmp"   # not /tmp: the guest mounts its own tmpfs there
testbin="$(mktemp -d "$VM_CACHE/tmp/testbin.XXXXXX")"   # one subdir per architecture
trap 'rm -rf "$testbin"' EXIT
for arch in $(for s in "${series_list[@]}"; do arch_of "$s"; done | sort -u); do
  mkdir -p "$testbin/$arch"
  if [ -n "$pkgs" ] && [ "$pkgs" != none ]; then
    # shellcheck disable=SC2086
    GOARCH="$arch" "$VM_DIR/gotest.sh" --build "$testbin/$arch" $pkgs ||
      { log "building test binaries ($arch) failed"; exit 1; }
  else
    : >"$testbin/$arch/manifest"
  fi
done
tbuild=$(date +%s)

# One boot per kernel: smoke, then tests; each step's exit code goes to $VM_OUT/*.rc.
guestcmd="$(cat <<'G1'
echo '### smoke'
(
G1
printf '%s\n' "$smoke"
cat <<'G2'
); st=$?; echo $st >"$VM_OUT/smoke.rc"; echo "### smoke exit $st"
echo '### tests'
(
G2
printf '%s\n' "$testcmd"
cat <<'G3'
); tt=$?; echo $tt >"$VM_OUT/test.rc"; echo "### tests exit $tt"
[ $st = 0 ] && [ $tt = 0 ]
G3
)"

# At most VM_JOBS guests at once (jobs_max, default: one per host CPU). A TCG guest
# keeps a CPU busy; more guests than CPUs take no less time in all, and
# each guest's timers (TCP retransmits, neighbour probes, the tests' I/O
# timeouts) then run against a vCPU that gets a fraction of a CPU.
for s in "${series_list[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
  VM_LOGDIR="$logdir" VM_RESULT="$logdir/results" VM_STREAM=0 VM_ENV="VM_TESTBIN=$testbin/$(arch_of "$s")" \
    "$VM_DIR/run.sh" "$s" "$guestcmd" 2>"$logdir/$s.stderr" &
done
wait || true
t1=$(date +%s)

fail=0
for s in "${series_list[@]}"; do
  echo "================ $s ================"
  if [ "${VM_VERBOSE:-0}" = 1 ] || [ "$(cat "$logdir/$s/rc" 2>/dev/null)" != 0 ]; then
    cat "$logdir/$s/output" 2>/dev/null
  else  # passed: the smoke section and the per-package / skip / failure lines only
    sed -n -e '/^### smoke$/,/^### smoke exit/p' \
      -e '/^### smoke exit/,${/^\(###\|ok \|skip \|FAIL\|--- FAIL\|panic:\)/p}' "$logdir/$s/output" | uniq
  fi
  grep -v '^\[vm\] .*: exit [0-9]* in ' "$logdir/$s.stderr" || true
done
echo
printf '%-10s %-44s %-16s %-6s %-6s %-7s %s\n' KERNEL PACKAGE VERSION SMOKE TESTS RESULT SECONDS
for s in "${series_list[@]}"; do
  line="$(awk -v s="$s" '$1 == s' "$logdir/results" | tail -1)"
  if [ -z "$line" ]; then
    printf '%-10s %-44s %-16s %-6s %-6s %-7s %s\n' "$s" "?" "?" "-" "-" "ERROR" "-"; fail=1; continue
  fi
  read -r _ pkg ver _ rc secs <<<"$line"
  sm="$(cat "$logdir/$s/smoke.rc" 2>/dev/null || echo -)"; te="$(cat "$logdir/$s/test.rc" 2>/dev/null || echo -)"
  case "$rc" in 0) res=ok ;; 124) res=TIMEOUT; fail=1 ;; 125) res=NOBOOT; fail=1 ;; *) res=FAIL; fail=1 ;; esac
  printf '%-10s %-44s %-16s %-6s %-6s %-7s %s\n' "$s" "$pkg" "$ver" "$sm" "$te" "$res" "$secs"
done
echo "wall: $((t1 - t0))s total (host test build $((tbuild - t0))s, guests in parallel $((t1 - tbuild))s); logs: $logdir"
exit $fail
