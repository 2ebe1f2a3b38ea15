#!/usr/bin/env bash
# Fetches and prepares Debian kernels for the QEMU matrix (cached).
#   vm/kernels.sh [--if-missing] [SERIES...]     SERIES: 5.10 6.1 6.12 (default: all)
# Each run resolves the newest linux-image-<series>*-amd64-unsigned of the series'
# Debian suite (bullseye / bookworm / trixie, with -updates and -security) with a
# private apt state under the cache dir; downloads, extracts and prepares it once.
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
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx insmod ||
  die "static busybox missing: run vm/install-deps.sh"

KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
INITRD_MODULES="virtio_pci 9pnet_virtio 9p overlay"

apt_opts() { # private apt state for suite $1
  local d="$VM_CACHE/apt/$1"
  echo "-o Dir::Etc::sourcelist=$d/sources.list -o Dir::Etc::sourceparts=$d/empty.d
        -o Dir::Etc::preferences=$d/empty.pref -o Dir::Etc::preferencesparts=$d/empty.d
        -o Dir::State=$d/state -o Dir::State::status=$d/status -o Dir::Cache=$d/cache
        -o APT::Architecture=amd64 -o APT::Architectures=amd64 -o Acquire::Languages=none
        -o APT::Sandbox::User=root -o Debug::NoLocking=1"
}

setup_apt() { # $1 suite
  local d="$VM_CACHE/apt/$1" archive security
  read -r archive security < <(detect_mirrors)
  mkdir -p "$d/empty.d" "$d/state/lists/partial" "$d/cache/archives/partial"
  : >"$d/status"; : >"$d/empty.pref"
  cat >"$d/sources.list" <<SRC
deb [signed-by=$KEYRING] $archive $1 main
deb [signed-by=$KEYRING] $archive $1-updates main
deb [signed-by=$KEYRING] $security $1-security main
SRC
}

# Newest "pkg version" of the series in its suite.
resolve() { # $1 series $2 suite
  local re best="" bestv="" p v
  re="^linux-image-${1//./\\.}\\.[0-9]+(-[0-9]+|\\+deb[0-9.]+)-amd64-unsigned\$"
  # shellcheck disable=SC2046
  for p in $(apt-cache $(apt_opts "$2") pkgnames linux-image- | grep -E "$re" || true); do
    v="$(apt-cache $(apt_opts "$2") policy "$p" | awk '/Candidate:/ {print $2}')"
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
  cp /bin/busybox "$tmp/bin/busybox"
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
  local s="$1" suite pkg ver kdir deb tmp kver mroot
  suite="$(suite_of "$s")"
  if [ "$if_missing" = 1 ] && kdir="$(kernel_dir "$s")" && [ -n "$kdir" ]; then
    [ -f "$(initrd_of "$kdir")" ] || build_initrd "$kdir"
    return 0
  fi
  setup_apt "$suite"
  # shellcheck disable=SC2046
  if ! apt-get $(apt_opts "$suite") -qq update >"$VM_CACHE/apt/$suite/update.log" 2>&1; then
    cat "$VM_CACHE/apt/$suite/update.log" >&2
    if kdir="$(kernel_dir "$s")" && [ -n "$kdir" ]; then
      log "$s: apt update failed; keeping the cached kernel $(cat "$kdir/pkg")"; return 0
    fi
    die "$s: apt update for $suite failed"
  fi
  read -r pkg ver < <(resolve "$s" "$suite") || die "$s: no linux-image-$s*-amd64-unsigned in $suite"
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
    (cd "$VM_CACHE/debs" && apt-get $(apt_opts "$suite") -qq download "$pkg=$ver") ||
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
  echo "$kver" >"$kdir/kver"; echo "$pkg" >"$kdir/pkg"; echo "$ver" >"$kdir/version"
  # modules.dep & co for modprobe in the guest (depmod of kmod 30 reads .ko.xz/.ko.zst)
  depmod -b "$kdir" "$kver"
  build_initrd "$kdir"
  touch "$kdir/.done"
  echo "$kdir" >"$VM_CACHE/kernels/$s.current"
  # prune older kernels / debs of this series
  local old
  for old in "$VM_CACHE"/kernels/linux-image-"$s".*-amd64-unsigned_*; do
    case "$old" in "$kdir") ;; *) [ -d "$old" ] && [[ "$(basename "$old")" =~ ^linux-image-${s//./\\.}\.[0-9] ]] && rm -rf "$old" ;; esac
  done
  for old in "$VM_CACHE"/debs/linux-image-"$s".*.deb; do
    [ -e "$old" ] && [ "$old" != "$deb" ] && [[ "$(basename "$old")" =~ ^linux-image-${s//./\\.}\.[0-9] ]] && rm -f "$old"
  done
  log "$s: ready: $pkg $ver (kernel $kver) in $kdir"
}

mkdir -p "$VM_CACHE/kernels"
exec 9>"$VM_CACHE/.lock"
flock 9   # concurrent runs share the cache
for s in "${series[@]}"; do prepare "$s"; done
