# Common settings for the vm/ scripts (sourced, not executed).
# shellcheck shell=bash

VM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034 # used by the scripts that source this
REPO_DIR="$(cd "$VM_DIR/.." && pwd)"
# Cache for the private apt state, the downloaded .debs and the extracted kernels.
VM_CACHE="${PATHTRACE_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pathtrace-vm}"
VM_SERIES_ALL="5.10 6.1 6.12"

log() { echo "[vm] $*" >&2; }
die() { echo "[vm] error: $*" >&2; exit 2; }

suite_of() {
  case "$1" in
    5.10) echo bullseye ;;
    6.1)  echo bookworm ;;
    6.12) echo trixie ;;
    *) die "unknown kernel series '$1' (want one of: $VM_SERIES_ALL)" ;;
  esac
}

# Mirror URIs, read from the system's apt sources (one-line and deb822 formats).
# Prints "<archive-uri> <security-uri>"; defaults to deb.debian.org.
detect_mirrors() {
  local uris archive="" security=""
  uris="$( { cat /etc/apt/sources.list 2>/dev/null
             cat /etc/apt/sources.list.d/*.list 2>/dev/null
             cat /etc/apt/sources.list.d/*.sources 2>/dev/null; } |
           sed -e 's/#.*//' |
           awk '$1=="deb" { for (i=2;i<=NF;i++) if ($i ~ /^[a-z+]+:\/\//) { print $i; break } }
                $1=="URIs:" { for (i=2;i<=NF;i++) print $i }')"
  local u
  for u in $uris; do
    u="${u%/}"
    case "$u" in
      */debian-security) [ -n "$security" ] || security="$u" ;;
      */debian)          [ -n "$archive" ]  || archive="$u" ;;
    esac
  done
  [ -n "$archive" ]  || archive="http://deb.debian.org/debian"
  [ -n "$security" ] || security="${archive%/debian}/debian-security"
  echo "$archive $security"
}

# Directory of the prepared kernel for a series (empty if none yet).
kernel_dir() {
  local f="$VM_CACHE/kernels/$1.current"
  [ -f "$f" ] && [ -f "$(cat "$f")/vmlinuz" ] && cat "$f"
}

# The initramfs of a prepared kernel for this checkout's vm/initramfs-init.sh (named by
# its hash, so checkouts with different init scripts can share the cache).
initrd_of() { # $1 kdir
  echo "$1/initrd-$(sha256sum "$VM_DIR/initramfs-init.sh" | cut -c1-12).cpio.gz"
}
