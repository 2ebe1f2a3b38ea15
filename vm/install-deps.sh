#!/usr/bin/env bash
# Installs what the QEMU kernel matrix (vm/) needs on a Debian host. Idempotent.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then echo "install-deps.sh: run as root" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  qemu-system-x86 qemu-system-arm busybox-static kmod cpio xz-utils zstd gzip \
  debian-archive-keyring ca-certificates coreutils findutils util-linux >/dev/null
echo "vm deps installed: $(qemu-system-x86_64 --version | head -1)"
