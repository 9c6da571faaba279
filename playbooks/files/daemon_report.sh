#!/usr/bin/env bash
# Start a real containerd on CONFIG in a private temp dir, print what its CRI plugin loaded, stop it.
# Usage: daemon_report.sh CONTAINERD_BINDIR CONFIG
set -euo pipefail
bindir=$1 config=$2
work=$(mktemp -d /tmp/gpuops-demo-XXXXXX)
sock=$work/c.sock
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT
PATH="$bindir:$PATH" "$bindir/containerd" --config "$config" --root "$work/root" --state "$work/state" \
  --address "$sock" >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 1 150); do [ -S "$sock" ] && "$bindir/ctr" --address "$sock" version >/dev/null 2>&1 && break; sleep 0.1; done
echo "containerd $("$bindir/containerd" --version | awk '{print $3}') on $config"
"$bindir/ctr" --address "$sock" plugins ls | awk 'NR==1 || /cri/'
echo "runtimes loaded by the CRI plugin (config dump):"
"$bindir/containerd" --config "$config" config dump 2>/dev/null \
  | grep -E "^\s*\[plugins\..*runtimes\.[^.]+\]$|default_runtime_name|BinaryName = .+[a-z]" | sed 's/^ */  /'
