#!/usr/bin/env bash
# Go tests in the QEMU guests: compile on the host (CGO_ENABLED=0 go test -c), run in the guest.
#   vm/gotest.sh [-k SERIES] PKG [TEST FLAGS...]
#       host: build PKG's test binary and run it in a guest (SERIES: -k, else $KERNEL, else 6.12),
#       from the package's directory. Flags may be go-test style (-run X -v -count 1) or -test.*.
#   vm/gotest.sh --build DIR [PKG...]
#       host: build the test binaries of PKG... (default ./...) into DIR, listed in DIR/manifest.
#   vm/gotest.sh --run [DIR] [TEST FLAGS...]
#       guest: run every binary of DIR/manifest (DIR defaults to $VM_TESTBIN) from its package
#       directory; prints "ok"/"FAIL" per package; exits 1 if any failed.
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

run() { # $1 DIR (optional), rest flags
  local dir="${VM_TESTBIN:-}"
  if [ $# -gt 0 ] && [ -d "$1" ]; then dir="$1"; shift; fi
  [ -n "$dir" ] && [ -f "$dir/manifest" ] || { echo "gotest: no manifest (DIR or \$VM_TESTBIN)" >&2; return 2; }
  mapfile -t flags < <(testflags "$@")
  local bin pdir ip rc=0 t0 secs st
  if [ ! -s "$dir/manifest" ]; then echo "gotest: no test binaries"; return 0; fi
  while IFS=$'\t' read -r bin pdir ip; do
    t0=$(date +%s.%N)
    (cd "$pdir" && "$dir/$bin" "${flags[@]}") </dev/null; st=$?
    secs=$(awk -v s="$t0" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
    if [ $st = 0 ]; then echo "ok   $ip ${secs}s"; else echo "FAIL $ip ${secs}s (exit $st)"; rc=1; fi
  done <"$dir/manifest"
  return $rc
}

case "${1:-}" in
  --build) shift; [ $# -ge 1 ] || { echo "usage: $0 --build DIR [PKG...]" >&2; exit 2; }; build "$@" ;;
  --run) shift; run "$@" ;;
  ""|-h|--help) sed -n '2,11p' "$0"; exit 2 ;;
  *)
    series="${KERNEL:-6.12}"
    if [ "$1" = -k ]; then series="$2"; shift 2; fi
    pkg="$1"; shift
    . "$VM_DIR/lib.sh"; mkdir -p "$VM_CACHE/tmp"
    tb="$(mktemp -d "$VM_CACHE/tmp/testbin.XXXXXX")"  # host /tmp is hidden in the guest
    trap 'rm -rf "$tb"' EXIT
    build "$tb" "$pkg" || exit 1
    printf -v guestcmd '%q ' "$VM_DIR/gotest.sh" --run "$tb" "$@"
    "$VM_DIR/run.sh" "$series" "$guestcmd"
    ;;
esac
