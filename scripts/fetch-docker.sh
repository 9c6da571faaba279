#!/usr/bin/env bash
# Fetch real Docker Engine builds from the Debian archive (bookworm docker.io 20.10, trixie docker.io 26.1 +
# docker-cli), unpack them (dpkg -x, no install) into a cache, and print the cache folder.
#
#   scripts/fetch-docker.sh                -> fetch all (cached: a second call downloads nothing)
#   GPUOPS_CACHE=/some/dir scripts/...     -> cache location (default ~/.cache/gpuops-nvidia)
#   GPUOPS_DOCKER_SUITES="trixie"          -> suites to fetch (default "bookworm trixie")
#
# Layout: $GPUOPS_CACHE/docker/<suite>/{usr/sbin/dockerd,usr/bin/docker,...,VERSION}
# dockerd needs containerd and runc at run time: the tests use the builds of scripts/fetch-containerd.sh.
# On trixie the client is its own package (docker-cli); bookworm's docker.io carries it.
# Same mechanics as fetch-containerd.sh: private sources list and apt state (its own folder, so it never
# races the other fetch scripts), the mirror read from this machine's apt sources, never hard-coded.
set -euo pipefail

cache="${GPUOPS_CACHE:-$HOME/.cache/gpuops-nvidia}"
read -r -a suites <<<"${GPUOPS_DOCKER_SUITES:-bookworm trixie}"
mkdir -p "$cache"

have() { [ -x "$cache/docker/$1/usr/sbin/dockerd" ] && [ -x "$cache/docker/$1/usr/bin/docker" ]; }
have_all() {
  for s in "${suites[@]}"; do have "$s" || return 1; done
}
if have_all; then echo "$cache"; exit 0; fi

command -v dpkg >/dev/null || { echo "fetch-docker: dpkg is required (Debian/Ubuntu host)" >&2; exit 2; }
command -v apt-get >/dev/null || { echo "fetch-docker: apt-get is required" >&2; exit 2; }

# shellcheck source=scripts/lib/debian-mirror.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/debian-mirror.sh"
mirror=$(debian_mirror) || { echo "fetch-docker: no Debian mirror in /etc/apt sources (an Ubuntu host?): set GPUOPS_DEBIAN_MIRROR to a Debian archive URL" >&2; exit 2; }
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || { echo "fetch-docker: $keyring missing (install debian-archive-keyring)" >&2; exit 2; }

work="$cache/apt-docker"
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
srclist="$work/sources.list"
: >"$srclist"
for s in "${suites[@]}"; do echo "deb [signed-by=$keyring] $mirror $s main" >>"$srclist"; done
# Private lists and cache: no system lock is involved (Debug::NoLocking); a busy system apt cannot block us.
aptopts=(-o "Dir::Etc::SourceList=$srclist" -o Dir::Etc::SourceParts=/dev/null
         -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o Debug::NoLocking=1
         -o APT::Sandbox::User=root -o Acquire::Check-Valid-Until=false -o DPkg::Lock::Timeout=600)
apt-get "${aptopts[@]}" -qq update >&2

version_in() { # pkg suite
  apt-cache "${aptopts[@]}" madison "$1" | awk -F'|' -v s=" $2/main" 'index($3, s) {gsub(/ /,"",$2); print $2}' | sort -V | tail -1
}

unpack() { # pkg suite dest -> prints the version unpacked into dest
  local ver; ver=$(version_in "$1" "$2") || true
  [ -n "$ver" ] || { echo "fetch-docker: $1 not found in $2" >&2; return 1; }
  ( cd "$work/debs" && apt-get "${aptopts[@]}" -qq download "$1=$ver" >&2 )
  local deb; deb=$(find "$work/debs" -maxdepth 1 -name "${1}_${ver//:/%3a}_*.deb" | sort | head -n 1)
  [ -n "$deb" ] || { echo "fetch-docker: apt-get download $1=$ver left no .deb" >&2; return 1; }
  dpkg -x "$deb" "$3"
  echo "$ver"
}

for s in "${suites[@]}"; do
  have "$s" && continue
  dest="$cache/docker/$s"
  mkdir -p "$cache/docker"
  rm -rf "$dest.tmp"; mkdir -p "$dest.tmp"
  ver=$(unpack docker.io "$s" "$dest.tmp")
  if [ ! -x "$dest.tmp/usr/bin/docker" ]; then
    unpack docker-cli "$s" "$dest.tmp" >/dev/null
  fi
  [ -x "$dest.tmp/usr/sbin/dockerd" ] || { echo "fetch-docker: no usr/sbin/dockerd in docker.io of $s" >&2; exit 1; }
  [ -x "$dest.tmp/usr/bin/docker" ] || { echo "fetch-docker: no docker client for $s" >&2; exit 1; }
  echo "$ver" >"$dest.tmp/VERSION"
  rm -rf "$dest"; mv "$dest.tmp" "$dest"
done
rm -f "$work/debs"/*.deb
echo "$cache"
