#!/usr/bin/env bash
# Fetch real containerd builds from the Debian archive (bookworm 1.6, trixie 1.7, sid 2.x) plus runc,
# unpack them (dpkg -x, no install) into a cache, and print the cache folder.
#
#   scripts/fetch-containerd.sh            -> fetch all (cached: a second call downloads nothing)
#   GPUOPS_CACHE=/some/dir scripts/...     -> cache location (default ~/.cache/gpuops-nvidia)
#
# Layout: $GPUOPS_CACHE/containerd/<suite>/{usr/bin/containerd,usr/bin/ctr,...,VERSION}
#         $GPUOPS_CACHE/runc/usr/sbin/runc
# The archive mirror is read from this machine's own apt sources (or GPUOPS_DEBIAN_MIRROR), never hard-coded.
set -euo pipefail

cache="${GPUOPS_CACHE:-$HOME/.cache/gpuops-nvidia}"
read -r -a suites <<<"${GPUOPS_CONTAINERD_SUITES:-bookworm trixie sid}"
mkdir -p "$cache"

have_all() {
  for s in "${suites[@]}"; do [ -x "$cache/containerd/$s/usr/bin/containerd" ] || return 1; done
  [ -x "$cache/runc/usr/sbin/runc" ]
}
if have_all; then echo "$cache"; exit 0; fi

command -v dpkg >/dev/null || { echo "fetch-containerd: dpkg is required (Debian/Ubuntu host)" >&2; exit 2; }
command -v apt-get >/dev/null || { echo "fetch-containerd: apt-get is required" >&2; exit 2; }

# shellcheck source=scripts/lib/debian-mirror.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/debian-mirror.sh"
mirror=$(debian_mirror) || { echo "fetch-containerd: no Debian mirror in /etc/apt sources (an Ubuntu host?): set GPUOPS_DEBIAN_MIRROR to a Debian archive URL" >&2; exit 2; }
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || { echo "fetch-containerd: $keyring missing (install debian-archive-keyring)" >&2; exit 2; }

work="$cache/apt"
mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/debs"
srclist="$work/sources.list"
: >"$srclist"
for s in "${suites[@]}"; do echo "deb [signed-by=$keyring] $mirror $s main" >>"$srclist"; done
aptopts=(-o "Dir::Etc::SourceList=$srclist" -o Dir::Etc::SourceParts=/dev/null
         -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o Debug::NoLocking=1
         -o APT::Sandbox::User=root -o Acquire::Check-Valid-Until=false)
mkdir -p "$work/cache/archives/partial"
apt-get "${aptopts[@]}" -qq update >&2

# Candidate version of a package in one suite.
version_in() { # pkg suite
  apt-cache "${aptopts[@]}" madison "$1" | awk -F'|' -v s=" $2/main" 'index($3, s) {gsub(/ /,"",$2); print $2}' | sort -V | tail -1
}

fetch() { # pkg suite dest
  local ver; ver=$(version_in "$1" "$2") || true
  [ -n "$ver" ] || { echo "fetch-containerd: $1 not found in $2" >&2; return 1; }
  ( cd "$work/debs" && apt-get "${aptopts[@]}" -qq download "$1=$ver" >&2 )
  local deb; deb=$(find "$work/debs" -maxdepth 1 -name "${1}_${ver//:/%3a}_*.deb" | sort | head -n 1)
  [ -n "$deb" ] || { echo "fetch-containerd: apt-get download $1=$ver left no .deb" >&2; return 1; }
  rm -rf "$3.tmp"; mkdir -p "$3.tmp"; dpkg -x "$deb" "$3.tmp"
  echo "$ver" >"$3.tmp/VERSION"
  rm -rf "$3"; mv "$3.tmp" "$3"
}

for s in "${suites[@]}"; do
  [ -x "$cache/containerd/$s/usr/bin/containerd" ] || { mkdir -p "$cache/containerd"; fetch containerd "$s" "$cache/containerd/$s"; }
done
[ -x "$cache/runc/usr/sbin/runc" ] || fetch runc bookworm "$cache/runc"
rm -rf "$work/debs"/*.deb
echo "$cache"
