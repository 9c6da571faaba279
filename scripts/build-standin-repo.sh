#!/usr/bin/env bash
# A local, signed apt repository of honest STAND-IN packages with NVIDIA's (and Debian's driver) package
# names, for the molecule scenarios; built from tests/standin-packages/ (see its README.md), cached.
#
#   scripts/build-standin-repo.sh [build]   build when the inputs changed; prints the served folder
#   scripts/build-standin-repo.sh serve     build, then make sure it is served on 127.0.0.1:PORT
#                                           (python3 -m http.server, detached); prints the base URL
#   scripts/build-standin-repo.sh stop      stop that server (only the one this script started)
#   scripts/build-standin-repo.sh status    exit 0 when our server answers with the current build
#
#   GPUOPS_CACHE=/some/dir        cache location (default ~/.cache/gpuops-nvidia)
#   GPUOPS_STANDIN_PORT=17821     loopback port of the server
#
# Layout of $GPUOPS_CACHE/standin-repo/www/ (served as http://127.0.0.1:PORT/), shaped like NVIDIA's:
#   gpgkey                                  ASCII-armoured public key   (like .../libnvidia-container/gpgkey)
#   nvidia-container-toolkit-keyring.gpg    the same key, binary, for signed-by=
#   stable/deb/<arch>/                      flat repo: the toolkit packages, 2 versions each
#                                           (apt: "deb [signed-by=K] http://127.0.0.1:PORT/stable/deb/$(ARCH) /")
#   driver/deb/<arch>/                      flat repo: nvidia-driver, nvidia-smi, firmware-misc-nonfree,
#                                           linux-headers-<arch> stand-ins (what Debian's non-free would give)
#   cuda/repos/debian12/<cuda arch>/        flat repo shaped like NVIDIA's CUDA repository (cuda arch: x86_64,
#                                           sbsa): cuda-keyring_1.1-1_all.deb, cuda-drivers[-<branch>],
#                                           nvidia-open[-<branch>], nvidia-driver, nvidia-smi; debian13 is a
#                                           symlink to the same folder (nothing in it is release-specific)
#   gpuops-standin.json                     what was built (inputs hash, packages): the server check reads it
# Each flat repo has Packages(.gz), Release, InRelease and Release.gpg signed with a throwaway key that is
# generated once (batch, no passphrase) in $GPUOPS_CACHE/standin-repo/gnupg.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/../tests/standin-packages"
src="$(cd "$src" && pwd)"
cache="${GPUOPS_CACHE:-$HOME/.cache/gpuops-nvidia}"
dir="$cache/standin-repo"
www="$dir/www"
port="${GPUOPS_STANDIN_PORT:-17821}"
url="http://127.0.0.1:$port"
cmd="${1:-build}"
KEY_UID="gpuops.nvidia STAND-IN test repository (throwaway key, not NVIDIA) <standin@gpuops.invalid>"
KEY_EMAIL="standin@gpuops.invalid"

log() { echo "build-standin-repo: $*" >&2; }
die() { log "error: $*"; exit 2; }
mkdir -p "$dir"

# --------------------------------------------------------------------------- tools
ensure_tools() {
  local need=()
  command -v dpkg-deb >/dev/null || need+=(dpkg)
  command -v apt-ftparchive >/dev/null || need+=(apt-utils)
  command -v gpg >/dev/null || need+=(gnupg)
  command -v python3 >/dev/null || need+=(python3)
  [ ${#need[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing ${need[*]}: install them (apt-get install ${need[*]}) or run as root"
  log "installing ${need[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >&2
}

# --------------------------------------------------------------------------- key
export GNUPGHOME="$dir/gnupg"
cleanup_agent() { gpgconf --kill gpg-agent >/dev/null 2>&1 || true; }

ensure_key() {
  if [ ! -d "$GNUPGHOME" ] || ! gpg --batch --list-secret-keys "$KEY_EMAIL" >/dev/null 2>&1; then
    log "generating the throwaway signing key (once) in $GNUPGHOME"
    rm -rf "$GNUPGHOME"; mkdir -m 700 "$GNUPGHOME"
    gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
      --quick-generate-key "$KEY_UID" rsa3072 sign never 2>/dev/null
  fi
  gpg --batch --with-colons --list-secret-keys "$KEY_EMAIL" | awk -F: '$1=="fpr" {print $10; exit}'
}

# --------------------------------------------------------------------------- inputs
inputs_hash() { # fpr arch
  {
    echo "$1 $2 $url"
    sha256sum "$here/build-standin-repo.sh" | cut -d' ' -f1
    (cd "$src" && find . -name __pycache__ -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    (cd "$src" && find . -type l -printf '%p -> %l\n' | LC_ALL=C sort)
    (cd "$src" && find . -name __pycache__ -prune -o -type f -perm -u+x -print | LC_ALL=C sort)
  } | sha256sum | cut -c1-16
}

# --------------------------------------------------------------------------- build
subst() { # file version upstream arch   (in place)
  sed -i -e "s|@VERSION@|$2|g" -e "s|@UPSTREAM@|$3|g" -e "s|@BRANCH@|${3%%.*}|g" -e "s|@ARCH@|$4|g" \
    -e "s|@STANDIN_URL@|$url|g" "$1"
}

build_deb() { # pkgdir version arch outdir
  local pdir=$1 version=$2 arch=$3 out=$4 upstream name st f
  upstream=${version%-*}
  st=$(mktemp -d "$tmp/pkg.XXXXXX")
  [ -d "$pdir/root" ] && cp -a "$pdir/root/." "$st/"
  # KEYRING: the path where the package ships the repository's public key (binary, for signed-by=)
  [ -f "$pdir/KEYRING" ] && install -D -m 0644 "$tmp/keyring.gpg" "$st/$(cat "$pdir/KEYRING")"
  find "$st" -name __pycache__ -prune -exec rm -rf {} +
  mkdir -p "$st/DEBIAN"
  cp "$pdir/control" "$st/DEBIAN/control"
  subst "$st/DEBIAN/control" "$version" "$upstream" "$arch"
  name=$(awk -F': *' '$1=="Package" {print $2; exit}' "$st/DEBIAN/control")
  for f in preinst postinst prerm postrm; do
    if [ -f "$pdir/$f" ]; then cp "$pdir/$f" "$st/DEBIAN/$f"; subst "$st/DEBIAN/$f" "$version" "$upstream" "$arch"; fi
  done
  # A marker in every package: what it is, where it comes from.
  mkdir -p "$st/usr/share/gpuops-standin/packages"
  printf 'STAND-IN package %s %s from the gpuops.nvidia test repository (tests/standin-packages): not NVIDIA or Debian software.\n' \
    "$name" "$version" >"$st/usr/share/gpuops-standin/packages/$name"
  find "$st" -path "$st/DEBIAN" -prune -o -type f -print | while read -r f; do subst "$f" "$version" "$upstream" "$arch"; done
  find "$st" -type d -exec chmod 0755 {} +
  find "$st" -type f -exec chmod 0644 {} +
  find "$st/usr/bin" "$st/usr/sbin" "$st/DEBIAN" -maxdepth 1 -type f ! -name control -exec chmod 0755 {} + 2>/dev/null || true
  echo "Installed-Size: $(du -sk --exclude=DEBIAN "$st" | cut -f1)" >>"$st/DEBIAN/control"
  dpkg-deb --root-owner-group -Zgzip --build "$st" "$out/" >/dev/null
  rm -rf "$st"
}

index_repo() { # repodir arch label
  local r=$1 arch=$2 label=$3
  ( cd "$r"
    apt-ftparchive packages . >Packages
    gzip -9nc Packages >Packages.gz
    apt-ftparchive \
      -o APT::FTPArchive::Release::Origin=gpuops-standin \
      -o "APT::FTPArchive::Release::Label=$label" \
      -o APT::FTPArchive::Release::Architectures="$arch all" \
      -o "APT::FTPArchive::Release::Description=STAND-IN packages for the gpuops.nvidia tests, not NVIDIA software" \
      release . >"$tmp/Release"
    mv "$tmp/Release" Release
    gpg --batch --yes --quiet --local-user "$fpr" --digest-algo SHA512 --clearsign -o InRelease Release
    gpg --batch --yes --quiet --local-user "$fpr" --digest-algo SHA512 --detach-sign --armor -o Release.gpg Release
  )
}

build() {
  ensure_tools
  exec 9>"$dir/.lock"
  flock 9
  trap cleanup_agent EXIT
  local arch want
  arch=$(dpkg --print-architecture)
  fpr=$(ensure_key)
  [ -n "$fpr" ] || die "no signing key in $GNUPGHOME"
  want=$(inputs_hash "$fpr" "$arch")
  if [ -f "$www/gpuops-standin.json" ] && [ "$(cat "$dir/.inputs" 2>/dev/null)" = "$want" ]; then
    echo "$www"; return 0
  fi
  log "building the stand-in repository ($want) from $src"
  tmp=$(mktemp -d "$dir/tmp.XXXXXX")
  trap 'rm -rf "$tmp"; cleanup_agent' EXIT
  local new="$tmp/www" pdir repo repos v cuda_arch pkgs=()
  case "$arch" in amd64) cuda_arch=x86_64 ;; arm64) cuda_arch=sbsa ;; *) cuda_arch=$arch ;; esac
  mkdir -p "$new"
  gpg --batch --armor --export "$fpr" >"$new/gpgkey"
  gpg --batch --export "$fpr" >"$new/nvidia-container-toolkit-keyring.gpg"
  cp "$new/nvidia-container-toolkit-keyring.gpg" "$tmp/keyring.gpg"
  for pdir in "$src"/*/; do
    pdir=${pdir%/}
    [ -f "$pdir/control" ] || continue
    read -r -a repos <"$pdir/REPO"
    for repo in "${repos[@]}"; do
      case "$repo" in
        toolkit) repo="stable/deb/$arch" ;;
        driver) repo="driver/deb/$arch" ;;
        cuda) repo="cuda/repos/debian12/$cuda_arch" ;;
        *) die "$pdir/REPO: unknown repo '$repo'" ;;
      esac
      mkdir -p "$new/$repo"
      while read -r v; do
        [ -n "$v" ] || continue
        build_deb "$pdir" "$v" "$arch" "$new/$repo"
      done <"$pdir/VERSIONS"
    done
  done
  index_repo "$new/stable/deb/$arch" "$arch" "STAND-IN nvidia-container-toolkit (not NVIDIA software)"
  index_repo "$new/driver/deb/$arch" "$arch" "STAND-IN NVIDIA driver (not NVIDIA or Debian software)"
  index_repo "$new/cuda/repos/debian12/$cuda_arch" "$arch" "STAND-IN NVIDIA CUDA repository (not NVIDIA software)"
  ln -s debian12 "$new/cuda/repos/debian13"
  mapfile -t pkgs < <(cd "$new" && find . -name '*.deb' | sed 's|^\./||' | LC_ALL=C sort)
  python3 - "$new/gpuops-standin.json" "$want" "$fpr" "$arch" "${pkgs[@]}" <<'EOF'
import json, sys
out, inputs, fpr, arch, debs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
json.dump({"inputs": inputs, "key_fingerprint": fpr, "arch": arch,
           "toolkit_repo": "stable/deb/" + arch, "driver_repo": "driver/deb/" + arch,
           "cuda_repo_base": "cuda/repos",
           "packages": debs, "note": "STAND-IN packages for the gpuops.nvidia tests, not NVIDIA software"},
          open(out, "w"), indent=1)
EOF
  # Swap in place: the server serves the path, so it sees the new build at once.
  rm -rf "$www.old"
  [ -d "$www" ] && mv "$www" "$www.old"
  mv "$new" "$www"
  rm -rf "$www.old"
  echo "$want" >"$dir/.inputs"
  echo "$www"
}

# --------------------------------------------------------------------------- server
served_inputs() { # what our server reports, empty when nothing (or something else) answers
  python3 - "$url/gpuops-standin.json" <<'EOF' 2>/dev/null || true
import json, sys, urllib.request
try:
    print(json.load(urllib.request.urlopen(sys.argv[1], timeout=2)).get("inputs", ""))
except Exception:
    pass
EOF
}

our_pid() { # pid of the server this script started, when it still runs
  local pid
  pid=$(cat "$dir/server.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "http.server $port --bind 127.0.0.1 --directory $www" || return 1
  echo "$pid"
}

port_busy() {
  python3 - "$port" <<'EOF'
import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
EOF
}

serve() {
  build >/dev/null
  local want pid
  want=$(cat "$dir/.inputs")
  if [ "$(served_inputs)" = "$want" ]; then echo "$url"; return 0; fi
  if pid=$(our_pid); then kill "$pid" 2>/dev/null || true; sleep 0.5; fi
  port_busy && die "127.0.0.1:$port is taken by another program: set GPUOPS_STANDIN_PORT to a free port"
  setsid python3 -m http.server "$port" --bind 127.0.0.1 --directory "$www" >"$dir/server.log" 2>&1 </dev/null 9>&- &
  echo $! >"$dir/server.pid"
  for _ in $(seq 1 50); do
    if [ "$(served_inputs)" = "$want" ]; then log "serving $www on $url (pid $(cat "$dir/server.pid"))"; echo "$url"; return 0; fi
    sleep 0.2
  done
  die "the repository server did not come up on $url (log: $dir/server.log)"
}

stop() {
  local pid
  if pid=$(our_pid); then kill "$pid" && log "stopped the server on $url (pid $pid)"; fi
  rm -f "$dir/server.pid"
}

case "$cmd" in
  build) build ;;
  serve) serve ;;
  stop) stop ;;
  status) [ -f "$dir/.inputs" ] && [ "$(served_inputs)" = "$(cat "$dir/.inputs")" ] ;;
  *) die "usage: $0 [build|serve|stop|status]" ;;
esac
