# Common settings for the vm/ scripts (sourced, not executed).
# shellcheck shell=bash

VM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034 # used by the scripts that source this
REPO_DIR="$(cd "$VM_DIR/.." && pwd)"
# Cache for the private apt state, the downloaded .debs and the extracted kernels.
VM_CACHE="${PATHTRACE_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pathtrace-vm}"
# A series is a Debian kernel series, with "-arm64" for an arm64 guest (qemu-system-aarch64).
VM_SERIES_ALL="5.10 6.1 6.12 6.1-arm64 6.12-arm64"

log() { echo "[vm] $*" >&2; }
die() { echo "[vm] error: $*" >&2; exit 2; }

suite_of() {
  case "$1" in
    5.10) echo bullseye ;;
    6.1|6.1-arm64)  echo bookworm ;;
    6.12|6.12-arm64) echo trixie ;;
    *) die "unknown kernel series '$1' (want one of: $VM_SERIES_ALL)" ;;
  esac
}

# Debian architecture of a series' guest: amd64, or arm64 for "<series>-arm64".
arch_of() {
  case "$1" in *-arm64) echo arm64 ;; *) echo amd64 ;; esac
}

# The kernel series without the architecture ("6.12-arm64" -> "6.12").
kseries_of() { echo "${1%-arm64}"; }

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

# Debian architecture of a prepared kernel (kernels prepared before arm64 have no "arch").
kernel_arch() { cat "$1/arch" 2>/dev/null || echo amd64; }

# The initramfs of a prepared kernel for this checkout's vm/initramfs-init.sh (named by
# its hash, so checkouts with different init scripts can share the cache).
initrd_of() { # $1 kdir
  echo "$1/initrd-$(sha256sum "$VM_DIR/initramfs-init.sh" | cut -c1-12).cpio.gz"
}

KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

# The private apt state of suite $1 for Debian architecture $2 (default amd64): its own
# sources, status, lists and cache under the cache dir; the system's apt and dpkg are untouched.
apt_dir() { # $1 suite [$2 arch]
  case "${2:-amd64}" in amd64) echo "$VM_CACHE/apt/$1" ;; *) echo "$VM_CACHE/apt/$1-$2" ;; esac
}

apt_opts() { # $1 suite [$2 arch]
  local d arch="${2:-amd64}"
  d="$(apt_dir "$1" "$arch")"
  echo "-o Dir::Etc::sourcelist=$d/sources.list -o Dir::Etc::sourceparts=$d/empty.d
        -o Dir::Etc::preferences=$d/empty.pref -o Dir::Etc::preferencesparts=$d/empty.d
        -o Dir::State=$d/state -o Dir::State::status=$d/status -o Dir::Cache=$d/cache
        -o APT::Architecture=$arch -o APT::Architectures=$arch -o Acquire::Languages=none
        -o APT::Sandbox::User=root -o Debug::NoLocking=1"
}

setup_apt() { # $1 suite [$2 arch]
  local d archive security arch="${2:-amd64}"
  d="$(apt_dir "$1" "$arch")"
  read -r archive security < <(detect_mirrors)
  mkdir -p "$d/empty.d" "$d/state/lists/partial" "$d/cache/archives/partial"
  : >"$d/status"; : >"$d/empty.pref"
  cat >"$d/sources.list" <<SRC
deb [arch=$arch signed-by=$KEYRING] $archive $1 main
deb [arch=$arch signed-by=$KEYRING] $archive $1-updates main
deb [arch=$arch signed-by=$KEYRING] $security $1-security main
SRC
}

# apt-get update of a private state; prints the log on failure.
update_apt() { # $1 suite [$2 arch]
  local d; d="$(apt_dir "$1" "${2:-amd64}")"
  # shellcheck disable=SC2046
  apt-get $(apt_opts "$1" "${2:-amd64}") -qq update >"$d/update.log" 2>&1 || { cat "$d/update.log" >&2; return 1; }
}
