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
# Same mechanics as fetch-containerd.sh (scripts/lib/debian-mirror.sh), in its own apt folder.
set -euo pipefail

cache="${GPUOPS_CACHE:-$HOME/.cache/gpuops-nvidia}"
read -r -a suites <<<"${GPUOPS_DOCKER_SUITES:-bookworm trixie}"
mkdir -p "$cache"

have() { [ -x "$cache/docker/$1/usr/sbin/dockerd" ] && [ -x "$cache/docker/$1/usr/bin/docker" ]; }
have_all() {
  for s in "${suites[@]}"; do have "$s" || return 1; done
}
if have_all; then echo "$cache"; exit 0; fi

# shellcheck source=scripts/lib/debian-mirror.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/debian-mirror.sh"
work="$cache/apt-docker"
debian_apt_init fetch-docker "$work" "${suites[@]}" || exit 2

unpack() { # pkg suite dest -> prints the version unpacked into dest
  local got; got=$(debian_download fetch-docker "$1" "$2") || return 1
  dpkg -x "${got#* }" "$3"
  echo "${got%% *}"
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
