#!/usr/bin/env bash
# Fetches and prepares Debian kernels for the QEMU matrix (cached).
#   vm/kernels.sh [--if-missing] [SERIES...]     SERIES: 5.10 6.1 6.12 6.1-arm64 6.12-arm64
#                                                 (default: all)
# Each run resolves the newest linux-image-<series>*-<arch>-unsigned of the series'
# Debian suite (bullseye / bookworm / trixie, with -updates and -security) with a
# private apt state per suite and architecture under the cache dir (never the system's
# dpkg architectures); downloads, extracts and prepares it once. An arm64 series also
# gets the arm64 userland its guest runs (vm/userland.sh, cached).
# --if-missing: do nothing for a series that already has a prepared kernel.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if_missing=0
series=()
for a in "$@"; do
  case "$a" in
    --if-missing) if_missing=1 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) suite_of "$a" >/dev/null; series+=("$a") ;;
  esac
done
[ ${#series[@]} -gt 0 ] || read -r -a series <<<"$VM_SERIES_ALL"

for t in apt-get apt-cache dpkg-deb depmod cpio xz zstd gzip; do
  command -v "$t" >/dev/null || die "$t missing: run vm/install-deps.sh"
done
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -x insmod >/dev/null ||
  die "static busybox missing: run vm/install-deps.sh"

INITRD_MODULES="virtio_pci 9pnet_virtio 9p overlay"

# Newest "pkg version" of the series in its suite, for the series' architecture.
resolve() { # $1 series $2 suite
  local re best="" bestv="" p v ks arch
  ks="$(kseries_of "$1")"; arch="$(arch_of "$1")"
  re="^linux-image-${ks//./\\.}\\.[0-9]+(-[0-9]+|\\+deb[0-9.]+)-$arch-unsigned\$"
  # shellcheck disable=SC2046
  for p in $(apt-cache $(apt_opts "$2" "$arch") pkgnames linux-image- | grep -E "$re" || true); do
    v="$(apt-cache $(apt_opts "$2" "$arch") policy "$p" | awk '/Candidate:/ {print $2}')"
    [ -n "$v" ] && [ "$v" != "(none)" ] || continue
    if [ -z "$bestv" ] || dpkg --compare-versions "$v" gt "$bestv"; then best="$p"; bestv="$v"; fi
  done
  [ -n "$best" ] || return 1
  echo "$best $bestv"
}

# Decompresses a module into a file.
unpack_ko() { # $1 src $2 dst
  case "$1" in
    *.ko.xz)  xz -dc "$1" >"$2" ;;
    *.ko.zst) zstd -qdc "$1" >"$2" ;;
    *.ko.gz)  gzip -dc "$1" >"$2" ;;
    *)        cp "$1" "$2" ;;
  esac
}

# Builds <kdir>/initrd-<hash of init>.cpio.gz: static busybox, vm/initramfs-init.sh as /init, and the
# virtio / 9p / overlay modules (decompressed, in dependency order) unless built in.
build_initrd() { # $1 kdir
  local kdir="$1" kver mdir tmp m path line deps dep order=()
  kver="$(cat "$kdir/kver")"; mdir="$kdir/lib/modules/$kver"
  tmp="$(mktemp -d)"
  mkdir -p "$tmp"/{bin,dev,proc,sys,mods,ro,rw,newroot,out}
  if [ "$(kernel_arch "$kdir")" = amd64 ]; then
    cp /bin/busybox "$tmp/bin/busybox"
  else
    cp "$("$VM_DIR/userland.sh" "$(kernel_arch "$kdir")")/bin/busybox" "$tmp/bin/busybox"
  fi
  cp "$VM_DIR/initramfs-init.sh" "$tmp/init"; chmod 755 "$tmp/init"
  add() { # module path relative to $mdir; deps first (modules.dep lists them transitively)
    local p="$1" x
    for x in "${order[@]}"; do [ "$x" = "$p" ] && return 0; done
    order+=("$p")
  }
  for m in $INITRD_MODULES; do
    line="$(grep -E "(^|/)(${m//_/[-_]})\\.ko(\\.xz|\\.zst|\\.gz)?:" "$mdir/modules.dep" || true)"
    if [ -z "$line" ]; then
      grep -qE "/${m//_/[-_]}\\.ko\$" "$mdir/modules.builtin" ||
        die "$kver: module $m neither in modules.dep nor built in"
      continue
    fi
    path="${line%%:*}"; deps="${line#*:}"
    # modprobe loads the listed dependencies from last to first
    for dep in $(echo $deps | tr ' ' '\n' | tac); do add "$dep"; done
    add "$path"
  done
  : >"$tmp/mods/order"
  for path in "${order[@]}"; do
    m="$(basename "$path")"; m="${m%%.ko*}.ko"
    unpack_ko "$mdir/$path" "$tmp/mods/$m"
    echo "$m" >>"$tmp/mods/order"
  done
  local initrd; initrd="$(initrd_of "$kdir")"
  (cd "$tmp" && find . | cpio -o -H newc --quiet | gzip -1) >"$initrd.new.$$"
  mv "$initrd.new.$$" "$initrd"
  log "$kver: initramfs modules (load order): $(tr '\n' ' ' <"$tmp/mods/order")"
  rm -rf "$tmp"
}

prepare() { # $1 series
  local s="$1" suite pkg ver kdir deb tmp kver mroot arch ks
  suite="$(suite_of "$s")"; arch="$(arch_of "$s")"; ks="$(kseries_of "$s")"
  [ "$arch" = amd64 ] || "$VM_DIR/userland.sh" "$arch" >/dev/null
  if [ "$if_missing" = 1 ] && kdir="$(kernel_dir "$s")" && [ -n "$kdir" ]; then
    [ -f "$(initrd_of "$kdir")" ] || build_initrd "$kdir"
    return 0
  fi
  setup_apt "$suite" "$arch"
  if ! update_apt "$suite" "$arch"; then
    if kdir="$(kernel_dir "$s")" && [ -n "$kdir" ]; then
      log "$s: apt update failed; keeping the cached kernel $(cat "$kdir/pkg")"; return 0
    fi
    die "$s: apt update for $suite failed"
  fi
  read -r pkg ver < <(resolve "$s" "$suite") || die "$s: no linux-image-$ks*-$arch-unsigned in $suite"
  kdir="$VM_CACHE/kernels/${pkg}_${ver}"
  if [ -f "$kdir/.done" ]; then
    [ -f "$(initrd_of "$kdir")" ] || build_initrd "$kdir"
    echo "$kdir" >"$VM_CACHE/kernels/$s.current"
    log "$s: $pkg $ver (cached)"; return 0
  fi
  log "$s: fetching $pkg $ver from $suite"
  mkdir -p "$VM_CACHE/debs"
  deb="$(ls "$VM_CACHE/debs/${pkg}_${ver/:/%3a}"_*.deb 2>/dev/null | head -1 || true)"
  if [ -z "$deb" ]; then
    # shellcheck disable=SC2046
    (cd "$VM_CACHE/debs" && apt-get $(apt_opts "$suite" "$arch") -qq download "$pkg=$ver") ||
      die "$s: download of $pkg=$ver failed"
    deb="$(ls "$VM_CACHE/debs/${pkg}_"*.deb | head -1)"
  fi
  rm -rf "$kdir"; mkdir -p "$kdir/lib/modules"
  tmp="$(mktemp -d "$VM_CACHE/extract.XXXXXX")"
  dpkg-deb -x "$deb" "$tmp"
  kver="$(basename "$(ls "$tmp"/boot/vmlinuz-* | head -1)")"; kver="${kver#vmlinuz-}"
  mroot="$tmp/lib/modules/$kver"; [ -d "$mroot" ] || mroot="$tmp/usr/lib/modules/$kver"
  [ -d "$mroot" ] || die "$s: no module tree for $kver in $deb"
  mv "$tmp/boot/vmlinuz-$kver" "$kdir/vmlinuz"
  cp "$tmp/boot/config-$kver" "$kdir/config" 2>/dev/null || true
  mv "$mroot" "$kdir/lib/modules/$kver"
  rm -rf "$tmp"
  echo "$kver" >"$kdir/kver"; echo "$pkg" >"$kdir/pkg"; echo "$ver" >"$kdir/version"; echo "$arch" >"$kdir/arch"
  # modules.dep & co for modprobe in the guest (depmod of kmod 30 reads .ko.xz/.ko.zst)
  depmod -b "$kdir" "$kver"
  build_initrd "$kdir"
  touch "$kdir/.done"
  echo "$kdir" >"$VM_CACHE/kernels/$s.current"
  # prune older kernels / debs of this series
  local old
  for old in "$VM_CACHE"/kernels/linux-image-"$ks".*-"$arch"-unsigned_*; do
    case "$old" in "$kdir") ;; *) [ -d "$old" ] && [[ "$(basename "$old")" =~ ^linux-image-${ks//./\\.}\.[0-9] ]] && rm -rf "$old" ;; esac
  done
  for old in "$VM_CACHE"/debs/linux-image-"$ks".*-"$arch"-unsigned_*.deb; do
    [ -e "$old" ] && [ "$old" != "$deb" ] && [[ "$(basename "$old")" =~ ^linux-image-${ks//./\\.}\.[0-9] ]] && rm -f "$old"
  done
  log "$s: ready: $pkg $ver (kernel $kver) in $kdir"
}

mkdir -p "$VM_CACHE/kernels"
exec 9>"$VM_CACHE/.lock"
flock 9   # concurrent runs share the cache
for s in "${series[@]}"; do prepare "$s"; done
