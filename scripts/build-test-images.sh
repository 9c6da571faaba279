#!/usr/bin/env bash
# Build the systemd container images the molecule scenarios run on, cached, and import them into podman.
#
#   scripts/build-test-images.sh                 -> localhost/gpuops-test:bookworm and :trixie
#   scripts/build-test-images.sh trixie          -> only that suite
#   GPUOPS_CACHE=/some/dir scripts/...           -> cache location (default ~/.cache/gpuops-nvidia)
#   GPUOPS_DEBIAN_MIRROR=http://...              -> override the mirror read from this machine's apt sources
#
# Each image is `debootstrap --variant=minbase` plus PACKAGES below (systemd as PID 1, python3 for
# Ansible, python3-apt for ansible.builtin.apt, ca-certificates and gnupg for signed third-party repos).
# Its /etc/apt/sources.list points at the same Debian mirror as this machine, so `apt-get install
# containerd` works inside the containers.  The apt lists are left out: run `apt-get update` (or
# ansible.builtin.apt update_cache) first inside a container.
#
# Cache: $GPUOPS_CACHE/images/gpuops-test-<suite>-<key>.tar, key = hash of the suite, the package
# list, the mirror and RECIPE (bump it when the post-processing below changes).  The podman image
# carries the key as label gpuops.recipe: it is (re)imported only when missing or different, so a
# second call takes about a second.  Also installs what it needs (podman, runc, debootstrap) with
# apt-get when missing.  Needs root (debootstrap, rootful podman).
set -euo pipefail

PACKAGES=(systemd systemd-sysv python3 dbus ca-certificates gnupg python3-apt)
RECIPE=4   # bump when the rootfs post-processing changes
IMAGE_REPO=localhost/gpuops-test

cache="${GPUOPS_CACHE:-$HOME/.cache/gpuops-nvidia}"
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bookworm trixie)
dir="$cache/images"
mkdir -p "$dir"

log() { echo "build-test-images: $*" >&2; }
die() { log "error: $*"; exit 2; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap and rootful podman)"
command -v apt-get >/dev/null || die "apt-get is required (Debian/Ubuntu host)"

# --------------------------------------------------------------------------- host tools
# podman from the distribution; runc named explicitly because podman depends on `crun | runc` and
# crun refuses this kind of host (cgroup v1 hybrid).  Rootful podman with host networking needs
# neither uidmap, slirp4netns nor fuse-overlayfs (kernel overlayfs), so no recommends.
need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >&2
fi

# --------------------------------------------------------------------------- mirror
# shellcheck source=scripts/lib/debian-mirror.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/debian-mirror.sh"
mirror=$(debian_mirror) || die "no Debian mirror in /etc/apt sources (an Ubuntu host?): set GPUOPS_DEBIAN_MIRROR to a Debian archive URL"

# One build at a time per cache (two callers would race on the same tarball).
exec 9>"$dir/.lock"
flock 9

key_of() { # suite -> cache key
  printf '%s\n' "$1" "$mirror" "$RECIPE" "${PACKAGES[@]}" | sha256sum | cut -c1-16
}

# --------------------------------------------------------------------------- rootfs
build_rootfs() { # suite tarball
  local suite=$1 tarball=$2 root
  root=$(mktemp -d "$dir/rootfs-$suite.XXXXXX")
  trap 'rm -rf "$root"' RETURN
  local incl; incl=$(IFS=,; echo "${PACKAGES[*]}")
  debootstrap --variant=minbase --include="$incl" "$suite" "$root" "$mirror"
  # apt inside the containers: the same mirror, no stale lists or .debs in the image.
  printf 'deb %s %s main\ndeb %s %s-updates main\n' "$mirror" "$suite" "$mirror" "$suite" >"$root/etc/apt/sources.list"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/*
  mkdir -p "$root/var/lib/apt/lists/partial"
  printf 'Acquire::Languages "none";\n' >"$root/etc/apt/apt.conf.d/99gpuops-test"
  # Fewer files to unpack per package installed in a test (the copyright files stay).
  cat >"$root/etc/dpkg/dpkg.cfg.d/99gpuops-test-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
EOF
  # Each container gets its own machine id at boot; the hostname comes from podman.
  : >"$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id"
  echo "gpuops-test" >"$root/etc/hostname"
  # Masked units.  The containers run privileged with the host's network namespace, so whatever would
  # write kernel-global or host-network state (sysctls, binfmt_misc, kernel modules) must not run; the
  # rest cannot work in a container and would only turn `systemctl is-system-running` "degraded".
  for u in systemd-sysctl.service systemd-modules-load.service systemd-binfmt.service \
           proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount \
           systemd-networkd-wait-online.service getty@tty1.service console-getty.service \
           systemd-firstboot.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$u"
  done
  tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
}

# --------------------------------------------------------------------------- import
image_key() { # image -> its gpuops.recipe label, empty when the image is missing
  podman image inspect --format '{{ index .Config.Labels "gpuops.recipe" }}' "$1" 2>/dev/null || true
}

import_image() { # suite key tarball
  local suite=$1 key=$2 tarball=$3 image="$IMAGE_REPO:$1" old
  old=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
  podman import --quiet \
    --change 'CMD ["/sbin/init"]' \
    --change 'ENV container=podman' \
    --change 'STOPSIGNAL SIGRTMIN+3' \
    --change "LABEL gpuops.recipe=$key" \
    --change "LABEL gpuops.suite=$suite" \
    "$tarball" "$image" >/dev/null
  # The replaced image, when no container uses it any more (best effort).
  [ -z "$old" ] || podman rmi "$old" >/dev/null 2>&1 || true
}

declare -A keys=() pids=()
for suite in "${suites[@]}"; do
  [ -f "/usr/share/debootstrap/scripts/$suite" ] || die "debootstrap does not know the suite '$suite'"
  key=$(key_of "$suite"); keys[$suite]=$key
  tarball="$dir/gpuops-test-$suite-$key.tar"
  if [ "$(image_key "$IMAGE_REPO:$suite")" = "$key" ]; then continue; fi
  if [ ! -f "$tarball" ]; then
    log "building $suite rootfs from $mirror (log: $dir/$suite.log)"
    ( build_rootfs "$suite" "$tarball" ) >"$dir/$suite.log" 2>&1 &
    pids[$suite]=$!
  fi
done

rc=0
for suite in "${!pids[@]}"; do
  if ! wait "${pids[$suite]}"; then
    log "error: debootstrap of $suite failed; last lines of $dir/$suite.log:"
    tail -n 20 "$dir/$suite.log" >&2
    rc=1
  fi
done
[ $rc -eq 0 ] || exit $rc

for suite in "${suites[@]}"; do
  key=${keys[$suite]}
  tarball="$dir/gpuops-test-$suite-$key.tar"
  if [ "$(image_key "$IMAGE_REPO:$suite")" != "$key" ]; then
    log "importing $IMAGE_REPO:$suite"
    import_image "$suite" "$key" "$tarball"
  fi
  # Tarballs of older recipes for this suite.
  for old in "$dir/gpuops-test-$suite-"*.tar; do
    [ "$old" = "$tarball" ] || rm -f "$old"
  done
  echo "$IMAGE_REPO:$suite"
done
