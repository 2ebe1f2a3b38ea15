#!/usr/bin/env bash
# Writes a vmlinux.h for CO-RE from a kernel's BTF and the BTF of some of its modules.
#   scripts/vmlinux-h.sh VMLINUX_BTF [MODULE.ko[.xz|.zst]...] > bpf/include/vmlinux_<arch>.h
# VMLINUX_BTF: /sys/kernel/btf/vmlinux, or a raw BTF blob (bpf/include/README.md). A module's
# types (vxlan_dev, nft_chain, xt_table where those are modules, as on Debian's arm64 kernels)
# are added once each, after the kernel's, so the programs compile against one header.
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,6p' "$0" >&2; exit 2; }
bpftool="$(command -v bpftool || echo /usr/sbin/bpftool)"
base="$1"; shift
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
"$bpftool" btf dump file "$base" format c >"$tmp/base.h"
n=$(wc -l <"$tmp/base.h")
tail=5  # the closing "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX ... #endif" lines
head -n $((n - tail)) "$tmp/base.h"
: >"$tmp/added.h"
for ko in "$@"; do
  case "$ko" in
    *.xz)  xz -dc "$ko" >"$tmp/m.ko" ;;
    *.zst) zstd -qdc "$ko" >"$tmp/m.ko" ;;
    *)     cp "$ko" "$tmp/m.ko" ;;
  esac
  # split BTF: the dump is the kernel's, with the module's types inserted before the tail
  "$bpftool" btf dump file "$tmp/m.ko" -B "$base" format c >"$tmp/m.h"
  m=$(wc -l <"$tmp/m.h")
  cmp -s <(head -n $((n - tail)) "$tmp/base.h") <(head -n $((n - tail)) "$tmp/m.h") ||
    { echo "vmlinux-h: $ko: dump does not start with the kernel's types" >&2; exit 1; }
  sed -n "$((n - tail + 1)),$((m - tail))p" "$tmp/m.h" >>"$tmp/added.h"
done
# one definition per named type; anonymous enums once per text
awk 'BEGIN { RS = ""; ORS = "\n\n" }
  { split($0, l, "\n"); key = (l[1] == "enum {") ? $0 : l[1] }
  !(key in seen) { seen[key] = 1; print }' "$tmp/added.h"
tail -n "$tail" "$tmp/base.h"
