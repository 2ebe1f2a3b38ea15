#!/usr/bin/env bash
# Checks that vagrant/Vagrantfile is valid without booting anything: `vagrant
# validate --ignore-provider` (needs no box and no hypervisor) when vagrant is
# installed, else a Ruby syntax check (`ruby -c`). As root on Debian it installs
# vagrant first (apt), or ruby if vagrant cannot be installed.
#   vagrant/validate.sh [--syntax-only]
set -euo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ "${1:-}" != --syntax-only ] && ! command -v vagrant >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends vagrant >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ruby >/dev/null 2>&1 || true
fi

if [ "${1:-}" != --syntax-only ] && command -v vagrant >/dev/null; then
  # Keep vagrant's state out of the checkout and the user's home.
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  out="$(cd "$dir" && VAGRANT_DOTFILE_PATH="$tmp/dot" VAGRANT_HOME="$tmp/home" VAGRANT_CHECKPOINT_DISABLE=1 \
    vagrant validate --ignore-provider 2>&1)" || { echo "$out" >&2; echo "vagrant/validate.sh: Vagrantfile invalid" >&2; exit 1; }
  echo "vagrant/validate.sh: $(vagrant --version): $(echo "$out" | tail -1)"
elif command -v ruby >/dev/null; then
  ruby -c "$dir/Vagrantfile" >/dev/null
  echo "vagrant/validate.sh: ruby -c Vagrantfile: syntax OK (vagrant not used)"
else
  echo "vagrant/validate.sh: neither vagrant nor ruby available" >&2
  exit 1
fi
