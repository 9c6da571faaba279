#!/usr/bin/env bash
# Fetch Debian's busybox-static (one static binary: a tiny rootfs for `ctr run --rootfs`) from the
# Debian archive, unpack it (dpkg -x, no install) into a cache, and print the cache folder.
#
#   scripts/fetch-busybox.sh               -> fetch (cached: a second call downloads nothing)
#   GPUOPS_CACHE=/some/dir scripts/...     -> cache location (default ~/.cache/gpuops-nvidia)
#   GPUOPS_BUSYBOX_SUITE=trixie            -> suite to take it from (default bookworm)
#
# Layout: $GPUOPS_CACHE/busybox/bin/busybox  (+ $GPUOPS_CACHE/busybox/VERSION)
# Same mechanics as fetch-containerd.sh: private sources list, mirror read from this machine's own
# apt sources (never hard-coded), its own lists/cache folder so it never races that script.
set -euo pipefail

cache="${GPUOPS_CACHE:-$HOME/.cache/gpuops-nvidia}"
suite="${GPUOPS_BUSYBOX_SUITE:-bookworm}"
dest="$cache/busybox"
mkdir -p "$cache"

if [ -x "$dest/bin/busybox" ]; then echo "$cache"; exit 0; fi

command -v dpkg >/dev/null || { echo "fetch-busybox: dpkg is required (Debian/Ubuntu host)" >&2; exit 2; }
command -v apt-get >/dev/null || { echo "fetch-busybox: apt-get is required" >&2; exit 2; }

# shellcheck source=scripts/lib/debian-mirror.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/debian-mirror.sh"
mirror=$(debian_mirror) || { echo "fetch-busybox: no Debian mirror in /etc/apt sources (an Ubuntu host?): set GPUOPS_DEBIAN_MIRROR to a Debian archive URL" >&2; exit 2; }
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || { echo "fetch-busybox: $keyring missing (install debian-archive-keyring)" >&2; exit 2; }

work="$cache/apt-busybox"
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
srclist="$work/sources.list"
echo "deb [signed-by=$keyring] $mirror $suite main" >"$srclist"
aptopts=(-o "Dir::Etc::SourceList=$srclist" -o Dir::Etc::SourceParts=/dev/null
         -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o Debug::NoLocking=1
         -o APT::Sandbox::User=root)
apt-get "${aptopts[@]}" -qq update >&2

ver=$(apt-cache "${aptopts[@]}" madison busybox-static | awk -F'|' -v s=" $suite/main" 'index($3, s) {gsub(/ /,"",$2); print $2}' | sort -V | tail -1)
[ -n "$ver" ] || { echo "fetch-busybox: busybox-static not found in $suite" >&2; exit 1; }
( cd "$work/debs" && apt-get "${aptopts[@]}" -qq download "busybox-static=$ver" >&2 )
deb=$(find "$work/debs" -maxdepth 1 -name "busybox-static_${ver//:/%3a}_*.deb" | sort | head -n 1)
[ -n "$deb" ] || { echo "fetch-busybox: apt-get download busybox-static=$ver left no .deb" >&2; exit 1; }

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
