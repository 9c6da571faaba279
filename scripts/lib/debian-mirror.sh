# shellcheck shell=bash
# Debian archive helpers of the fetch scripts (sourced).
#
# debian_mirror: print the Debian archive mirror this machine already uses (deb822 or one-line apt sources,
# the main archive, not security), or GPUOPS_DEBIAN_MIRROR when set; no trailing slash. Returns 1 when none
# is found (an Ubuntu host: set GPUOPS_DEBIAN_MIRROR). Never hard-codes a host.
debian_mirror() {
  local mirror="" f m
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    m=$(awk 'BEGIN{RS="";FS="\n"} /Signed-By: .*debian-archive-keyring/ && !/-security/ {
           for(i=1;i<=NF;i++) if ($i ~ /^URIs:/) {sub(/^URIs:[ \t]*/,"",$i); split($i,a," "); print a[1]; exit}}' "$f")
    [ -n "$m" ] && { mirror=$m; break; }
  done
  if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '$1=="deb" && $0 !~ /security/ {for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  mirror="${GPUOPS_DEBIAN_MIRROR:-$mirror}"
  mirror="${mirror%/}"
  [ -n "$mirror" ] || return 1
  printf '%s\n' "$mirror"
}

# debian_apt_init TOOL WORK SUITE...: what the fetch scripts share. Checks dpkg and apt-get, writes a
# private sources list of this machine's Debian mirror for the SUITEs into WORK (each script its own WORK,
# so they never race), sets the array `aptopts` (private lists and cache: no system lock is involved, a busy
# system apt cannot block us) and runs apt-get update. Messages start with TOOL; returns 2 when it cannot.
debian_apt_init() {
  local tool=$1 work=$2 mirror s keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  shift 2
  command -v dpkg >/dev/null || { echo "$tool: dpkg is required (Debian/Ubuntu host)" >&2; return 2; }
  command -v apt-get >/dev/null || { echo "$tool: apt-get is required" >&2; return 2; }
  mirror=$(debian_mirror) || { echo "$tool: no Debian mirror in /etc/apt sources (an Ubuntu host?): set GPUOPS_DEBIAN_MIRROR to a Debian archive URL" >&2; return 2; }
  [ -f "$keyring" ] || { echo "$tool: $keyring missing (install debian-archive-keyring)" >&2; return 2; }
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
  : >"$work/sources.list"
  for s in "$@"; do echo "deb [signed-by=$keyring] $mirror $s main" >>"$work/sources.list"; done
  debian_work=$work
  aptopts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
           -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o Debug::NoLocking=1
           -o APT::Sandbox::User=root -o Acquire::Check-Valid-Until=false -o DPkg::Lock::Timeout=600)
  apt-get "${aptopts[@]}" -qq update >&2
}

# debian_download TOOL PKG SUITE: the newest PKG of SUITE downloaded into WORK/debs (after debian_apt_init);
# prints "VERSION DEB-PATH".
debian_download() {
  local tool=$1 ver deb
  ver=$(apt-cache "${aptopts[@]}" madison "$2" | awk -F'|' -v s=" $3/main" 'index($3, s) {gsub(/ /,"",$2); print $2}' | sort -V | tail -1) || true
  [ -n "$ver" ] || { echo "$tool: $2 not found in $3" >&2; return 1; }
  ( cd "$debian_work/debs" && apt-get "${aptopts[@]}" -qq download "$2=$ver" >&2 )
  deb=$(find "$debian_work/debs" -maxdepth 1 -name "${2}_${ver//:/%3a}_*.deb" | sort | head -n 1)
  [ -n "$deb" ] || { echo "$tool: apt-get download $2=$ver left no .deb" >&2; return 1; }
  printf '%s %s\n' "$ver" "$deb"
}
