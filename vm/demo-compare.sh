#!/usr/bin/env bash
# Runs `pathtrace demo -o json` in an x86 and an arm64 guest of the same kernel series and
# compares the paths: for each packet, its protocol, addresses and the kinds, devices and node
# of its hops (veth names and namespace prefixes, which are random, are normalised). A path's
# final consume hop is left out: whether a FIN ends in a consume hop depends on which socket
# closes first, a race between the endpoints, not on the architecture (seen on 6.12: 4 of the
# 16 paths differ in it between x86 and arm64, all else the same).
#   vm/demo-compare.sh [SERIES]        SERIES: 6.1 or 6.12 (default 6.12)
# Exits 0 when both architectures show the same set of paths; prints the difference otherwise.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
series="${1:-6.12}"
mkdir -p "$VM_CACHE/tmp"
work="$(mktemp -d "$VM_CACHE/tmp/demo.XXXXXX")"
trap 'rm -rf "$work"' EXIT
for arch in amd64 arm64; do
  (cd "$REPO_DIR" && CGO_ENABLED=0 GOARCH=$arch go build -o "$work/pathtrace-$arch" ./cmd/pathtrace)
done
for s in "$series" "$series-arm64"; do
  arch="$(arch_of "$s")"
  VM_LOGDIR="$work/logs" VM_STREAM=0 "$VM_DIR/run.sh" "$s" \
    "$work/pathtrace-$arch demo -o json >\$VM_OUT/demo.json" >/dev/null
done
# One line per packet: proto src dst flags verdict | kind@dev@node ...
sig() {
  python3 - "$1" <<'PY'
import json, re, sys
for line in open(sys.argv[1]):
    p = json.loads(line)
    hops = []
    for h in p["hops"]:
        dev = re.sub(r"^veth[0-9a-f]+$", "veth*", h.get("dev", ""))
        node = re.sub(r"^pt[0-9a-f]+-", "", h.get("netns", "")).split("/")[0]
        hops.append("%s@%s@%s" % (h["kind"], dev, node))
    if hops and hops[-1].startswith("consume@"):
        hops.pop()
    print(p["proto"], p["src"].split(":")[0], p["dst"].split(":")[0], p.get("tcp_flags", ""),
          p["verdict"], "|", " ".join(hops))
PY
}
sig "$work/logs/$series/demo.json" | sort -u >"$work/x86.txt"
sig "$work/logs/$series-arm64/demo.json" | sort -u >"$work/arm64.txt"
echo "demo paths: $(wc -l <"$work/x86.txt") distinct on x86 $series, $(wc -l <"$work/arm64.txt") on arm64 $series"
if diff -u "$work/x86.txt" "$work/arm64.txt"; then
  echo "demo-compare: same paths on x86 and arm64 ($series)"
else
  echo "demo-compare: the paths differ (- x86, + arm64)"; exit 1
fi
