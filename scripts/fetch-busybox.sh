#!/usr/bin/env bash
# Fetch Debian's busybox-static (one static binary: a tiny rootfs for `ctr run --rootfs`) from the
# Debian archive, unpack it (dpkg -x, no install) into a cache, and print the cache folder.
#
#   scripts/fetch-busybox.sh               -> fetch (cached: a second call downloads nothing)
#   GPUOPS_CACHE=/some/dir scripts/...     -> cache location (default ~/.cache/gpuops-nvidia)
#   GPUOPS_BUSYBOX_SUITE=trixie            -> suite to take it from (default bookworm)
#
# Layout: $GPUOPS_CACHE/busybox/bin/busybox  (+ $GPUOPS_CACHE/busybox/VERSION)
# Same mechanics as fetch-containerd.sh (scripts/lib/debian-mirror.sh), in its own apt folder.
set -euo pipefail

cache="${GPUOPS_CACHE:-$HOME/.cache/gpuops-nvidia}"
suite="${GPUOPS_BUSYBOX_SUITE:-bookworm}"
dest="$cache/busybox"
mkdir -p "$cache"

if [ -x "$dest/bin/busybox" ]; then echo "$cache"; exit 0; fi

# shellcheck source=scripts/lib/debian-mirror.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/debian-mirror.sh"
work="$cache/apt-busybox"
debian_apt_init fetch-busybox "$work" "$suite" || exit 2
got=$(debian_download fetch-busybox busybox-static "$suite") || exit 1
ver=${got%% *} deb=${got#* }

rm -rf "$dest.tmp"; mkdir -p "$dest.tmp/unpacked"
dpkg -x "$deb" "$dest.tmp/unpacked"
bin=""
for cand in bin/busybox usr/bin/busybox; do
  [ -x "$dest.tmp/unpacked/$cand" ] && { bin="$dest.tmp/unpacked/$cand"; break; }
done
[ -n "$bin" ] || { echo "fetch-busybox: no busybox binary in $deb" >&2; exit 1; }
mkdir -p "$dest.tmp/bin"
cp "$bin" "$dest.tmp/bin/busybox"
rm -rf "$dest.tmp/unpacked"
echo "$ver" >"$dest.tmp/VERSION"
rm -rf "$dest"; mv "$dest.tmp" "$dest"
rm -f "$work/debs"/*.deb
echo "$cache"
