#!/usr/bin/env bash
# Go tests in the QEMU guests: compile on the host (CGO_ENABLED=0 go test -c), run in the guest.
#   vm/gotest.sh [-k SERIES] PKG [TEST FLAGS...]
#       host: build PKG's test binary and run it in a guest (SERIES: -k, else $KERNEL, else 6.12;
#       GOARCH=arm64 for an arm64 series),
#       from the package's directory. Flags may be go-test style (-run X -v -count 1) or -test.*.
#   vm/gotest.sh --build DIR [PKG...]
#       host: build the test binaries of PKG... (default ./...) into DIR, listed in DIR/manifest
#       (for $GOARCH when set).
#   vm/gotest.sh --run [DIR] [TEST FLAGS...]
#       guest: run every binary of DIR/manifest (DIR defaults to $VM_TESTBIN) from its package
#       directory, with PATHTRACE_TEST_STRICT=1 (a skip internal/testutil does not expect on
#       this kernel fails); prints "skip TEST: reason" per skipped test, the failures, and
#       "ok"/"FAIL" per package (everything with -v; the whole -v output of each binary goes
#       to $VM_OUT/tests/ when set); exits 1 if any failed.
set -uo pipefail
VM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$VM_DIR/.." && pwd)"

testflags() { # go-test style flags -> test binary flags
  local a
  for a in "$@"; do
    case "$a" in
      -test.*) printf '%s\n' "$a" ;;
      -run|-run=*|-skip|-skip=*|-v|-v=*|-count|-count=*|-timeout|-timeout=*|-short|-failfast|\
      -bench|-bench=*|-benchtime|-benchtime=*|-benchmem|-cpu|-cpu=*|-parallel|-parallel=*|-list|-list=*)
        printf '%s\n' "-test.${a#-}" ;;
      *) printf '%s\n' "$a" ;;
    esac
  done
}

build() { # $1 DIR, rest PKGs
  local dir="$1"; shift
  [ $# -gt 0 ] || set -- ./...
  mkdir -p "$dir"; : >"$dir/manifest"
  local list ip pdir bin rc=0
  list="$(cd "$REPO_DIR" && go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}} {{.Dir}}{{end}}' "$@")" || return 1
  while read -r ip pdir; do
    [ -n "$ip" ] || continue
    bin="$(echo "$ip" | tr '/.' '__').test"
    if (cd "$REPO_DIR" && CGO_ENABLED=0 go test -c -o "$dir/$bin" "$ip"); then
      printf '%s\t%s\t%s\n' "$bin" "$pdir" "$ip" >>"$dir/manifest"
    else
      echo "gotest: build of $ip failed" >&2; rc=1
    fi
  done <<<"$list"
  echo "gotest: $(wc -l <"$dir/manifest") test binaries in $dir" >&2
  return $rc
}

# quiet: the -test.v output of a binary as without -v (failures with their logs, panics),
# plus one "skip TEST: reason" line per skipped test.
quiet() {
  awk '
    /^(panic: |fatal error: )/ { raw = 1 }
    raw { print; next }
    /^=== (RUN|CONT|NAME) / { cur = $3; if ($2 == "RUN") logs[cur] = ""; next }
    /^=== / { next }
    /^ *--- PASS: / { delete logs[$3]; next }
    /^ *--- SKIP: / {
      reason = logs[$3]; gsub(/\n */, " ", reason); sub(/^ +/, "", reason); sub(/ +$/, "", reason)
      print "skip " $3 ": " reason; delete logs[$3]; next
    }
    /^ *--- FAIL: / { print; printf "%s", logs[$3]; delete logs[$3]; next }
    /^    / && cur != "" { logs[cur] = logs[cur] $0 "\n"; next }
    { print }'
}

run() { # $1 DIR (optional), rest flags
  local dir="${VM_TESTBIN:-}"
  if [ $# -gt 0 ] && [ -d "$1" ]; then dir="$1"; shift; fi
  [ -n "$dir" ] && [ -f "$dir/manifest" ] || { echo "gotest: no manifest (DIR or \$VM_TESTBIN)" >&2; return 2; }
  mapfile -t flags < <(testflags "$@")
  local bin pdir ip rc=0 t0 secs st verbose=0 f logs=/dev/null
  for f in "${flags[@]}"; do case "$f" in -test.v|-test.v=true) verbose=1 ;; esac; done
  if [ -n "${VM_OUT:-}" ]; then mkdir -p "$VM_OUT/tests"; fi
  export PATHTRACE_TEST_STRICT=1
  if [ ! -s "$dir/manifest" ]; then echo "gotest: no test binaries"; return 0; fi
  while IFS=$'\t' read -r bin pdir ip; do
    t0=$(date +%s.%N)
    if [ $verbose = 1 ]; then
      (cd "$pdir" && "$dir/$bin" "${flags[@]}") </dev/null; st=$?
    else
      [ -z "${VM_OUT:-}" ] || logs="$VM_OUT/tests/${bin%.test}.log"
      (cd "$pdir" && "$dir/$bin" -test.v "${flags[@]}") </dev/null 2>&1 | tee "$logs" | quiet
      st=${PIPESTATUS[0]}
    fi
    secs=$(awk -v s="$t0" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
    if [ $st = 0 ]; then echo "ok   $ip ${secs}s"; else echo "FAIL $ip ${secs}s (exit $st)"; rc=1; fi
  done <"$dir/manifest"
  return $rc
}

case "${1:-}" in
  --build) shift; [ $# -ge 1 ] || { echo "usage: $0 --build DIR [PKG...]" >&2; exit 2; }; build "$@" ;;
  --run) shift; run "$@" ;;
  ""|-h|--help) sed -n '2,14p' "$0"; exit 2 ;;
  *)
    series="${KERNEL:-6.12}"
    if [ "$1" = -k ]; then series="$2"; shift 2; fi
    pkg="$1"; shift
    . "$VM_DIR/lib.sh"; mkdir -p "$VM_CACHE/tmp"
    tb="$(mktemp -d "$VM_CACHE/tmp/testbin.XXXXXX")"  # host /tmp is hidden in the guest
    trap 'rm -rf "$tb"' EXIT
    GOARCH="$(arch_of "$series")" build "$tb" "$pkg" || exit 1
    printf -v guestcmd '%q ' "$VM_DIR/gotest.sh" --run "$tb" "$@"
    "$VM_DIR/run.sh" "$series" "$guestcmd"
    ;;
esac
