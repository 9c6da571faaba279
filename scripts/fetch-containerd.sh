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

# shellcheck source=scripts/lib/debian-mirror.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/debian-mirror.sh"
work="$cache/apt"
debian_apt_init fetch-containerd "$work" "${suites[@]}" || exit 2

fetch() { # pkg suite dest
  local got; got=$(debian_download fetch-containerd "$1" "$2") || return 1
  rm -rf "$3.tmp"; mkdir -p "$3.tmp"; dpkg -x "${got#* }" "$3.tmp"
  echo "${got%% *}" >"$3.tmp/VERSION"
  rm -rf "$3"; mv "$3.tmp" "$3"
}

for s in "${suites[@]}"; do
  [ -x "$cache/containerd/$s/usr/bin/containerd" ] || { mkdir -p "$cache/containerd"; fetch containerd "$s" "$cache/containerd/$s"; }
done
[ -x "$cache/runc/usr/sbin/runc" ] || fetch runc bookworm "$cache/runc"
rm -rf "$work/debs"/*.deb
echo "$cache"
