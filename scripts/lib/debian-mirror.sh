# shellcheck shell=bash
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
