# Common settings for the local-box scripts of vagrant/ (sourced, not executed).
# shellcheck shell=bash

VAGRANT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Boxes, vagrant's home, the private apt state (vm/lib.sh's helpers, pointed here so the two
# matrices never share apt lists) and the libvirt storage pool.
VAGRANT_CACHE="${PATHTRACE_VAGRANT_CACHE:-/var/cache/pathtrace/vagrant}"
PATHTRACE_VM_CACHE="$VAGRANT_CACHE" . "$VAGRANT_DIR/../vm/lib.sh"
VAGRANT_SERIES_ALL="5.10 6.1 6.12"
VAGRANT_DISK_GB="${VAGRANT_DISK_GB:-4}"
# libvirt objects the scripts create and remove again: an isolated network (DHCP only: no
# forwarding, no DNS) and a storage pool.
VAGRANT_NET=pathtrace-vagrant
VAGRANT_NET_BRIDGE=virbr-ptv
VAGRANT_NET_PREFIX="${PATHTRACE_VAGRANT_NET:-192.168.124}"
VAGRANT_POOL=pathtrace-vagrant
export LIBVIRT_DEFAULT_URI=qemu:///system

log() { echo "[vagrant] $*" >&2; }
die() { echo "[vagrant] error: $*" >&2; exit 2; }

box_name() { echo "pathtrace/debian-$1"; }

# Vagrant's state under the cache, not the user's home; no update checks.
start_vagrant_env() {
  export VAGRANT_HOME="$VAGRANT_CACHE/home" VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_NO_COLOR=1
  mkdir -p "$VAGRANT_HOME"
  chmod 0755 "$VAGRANT_CACHE" "$VAGRANT_HOME"   # qemu (libvirt-qemu) reads the box's kernel
}

# The version of linux-image-amd64 in suite $1 (+ -updates, -security), from a private apt state.
kernel_version() {
  setup_apt "$1" amd64
  update_apt "$1" amd64 || return 1
  # shellcheck disable=SC2046
  apt-cache $(apt_opts "$1" amd64) policy linux-image-amd64 | awk '$1 == "Candidate:" { print $2 }' | grep -v '(none)'
}

# Deletes the pool's base images of the boxes of series $1 (all boxes without $1).
remove_base_volumes() {
  virsh pool-info "$VAGRANT_POOL" >/dev/null 2>&1 || return 0
  local v prefix
  prefix="pathtrace-VAGRANTSLASH-"
  [ -z "${1:-}" ] || prefix="$(box_name "$1" | sed 's,/,-VAGRANTSLASH-,')_vagrant_box_image_"
  virsh vol-list "$VAGRANT_POOL" 2>/dev/null | awk 'NR > 2 && $1 != "" { print $1 }' | while read -r v; do
    case "$v" in "$prefix"*) virsh vol-delete --pool "$VAGRANT_POOL" "$v" >/dev/null ;; esac
  done
}
