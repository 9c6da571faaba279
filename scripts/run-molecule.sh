#!/usr/bin/env bash
# Run molecule scenarios of this collection, one after the other, and print a summary.
#
#   scripts/run-molecule.sh smoke default ...   `molecule test -s NAME` for each
#   scripts/run-molecule.sh                     every scenario under molecule/ (except shared/)
#   MOLECULE_COMMAND=converge scripts/...       another molecule command (converge, verify, destroy...)
#
# Before the first scenario: the checkout as collection gpuops.nvidia (.build), the podman images
# (scripts/build-test-images.sh) and the stand-in apt repository, served on 127.0.0.1 for the run
# (scripts/build-standin-repo.sh).  Every scenario runs even when one fails; the exit code is 1 when any
# failed.  Logs: $GPUOPS_MOLECULE_LOGS (default .build/molecule-logs)/<scenario>.log.
# Needs root (rootful podman); uses the project venv (.venv) for molecule/ansible/pytest.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 2
venv="${VENV:-$root/.venv}"
[ -x "$venv/bin/molecule" ] || { echo "run-molecule: $venv/bin/molecule missing: run 'make deps' first" >&2; exit 2; }
export PATH="$venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$root/.build"
export PYTHONDONTWRITEBYTECODE=1
export PY_COLORS="${PY_COLORS:-0}" ANSIBLE_FORCE_COLOR="${ANSIBLE_FORCE_COLOR:-0}"
logs="${GPUOPS_MOLECULE_LOGS:-$root/.build/molecule-logs}"
command="${MOLECULE_COMMAND:-test}"

# Container ulimits: the platforms read these; never above this machine's hard limits.
hard_n=$(ulimit -Hn); hard_u=$(ulimit -Hu)
pick() { if [ "$2" = unlimited ] || [ "$2" -ge "$1" ]; then echo "$1"; else echo "$2"; fi; }
export GPUOPS_ULIMIT_NOFILE="${GPUOPS_ULIMIT_NOFILE:-$(pick 20000 "$hard_n")}"
export GPUOPS_ULIMIT_NPROC="${GPUOPS_ULIMIT_NPROC:-$(pick 8192 "$hard_u")}"

scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
  for d in molecule/*/molecule.yml; do
    s=$(basename "$(dirname "$d")")
    case "$s" in shared|_*) ;; *) scenarios+=("$s") ;; esac
  done
fi
[ ${#scenarios[@]} -gt 0 ] || { echo "run-molecule: no scenarios" >&2; exit 2; }
for s in "${scenarios[@]}"; do
  [ -f "molecule/$s/molecule.yml" ] || { echo "run-molecule: no scenario molecule/$s" >&2; exit 2; }
done

# One molecule run (or bench run) at a time on this machine: the nodes share the host's network and the
# stand-in repository's port.  GPUOPS_PODMAN_LOCK is the lock file (bench/ takes the same one).
lock="${GPUOPS_PODMAN_LOCK:-/tmp/gpuops-nvidia-podman.lock}"
exec 9>"$lock"
if ! flock -n 9; then
  echo "== run-molecule: waiting for another molecule/bench run ($lock)"
  flock 9
fi

t0=$(date +%s)
echo "== run-molecule: collection path, test images, stand-in repository"
scripts/collection-path.sh >/dev/null || exit 2
t=$(date +%s)
scripts/build-test-images.sh || { echo "run-molecule: building the test images failed" >&2; exit 2; }
echo "   images: $(( $(date +%s) - t ))s"
t=$(date +%s)
served_before=0
scripts/build-standin-repo.sh status && served_before=1
scripts/build-standin-repo.sh serve >/dev/null || { echo "run-molecule: the stand-in repository failed" >&2; exit 2; }
echo "   stand-in repository: $(( $(date +%s) - t ))s"
stop_server() { [ "$served_before" = 1 ] || scripts/build-standin-repo.sh stop; }
trap stop_server EXIT

mkdir -p "$logs"
declare -a summary=()
failed=0
for s in "${scenarios[@]}"; do
  echo "== molecule $command -s $s   (log: $logs/$s.log)"
  t=$(date +%s)
  molecule "$command" -s "$s" >"$logs/$s.log" 2>&1
  rc=$?
  dt=$(( $(date +%s) - t ))
  if [ $rc -eq 0 ]; then
    summary+=("PASSED  $s  (${dt}s)")
  else
    failed=$((failed + 1))
    summary+=("FAILED  $s  (${dt}s, exit $rc, log $logs/$s.log)")
    echo "-- last lines of $logs/$s.log:"
    tail -n 40 "$logs/$s.log"
  fi
done

echo
echo "== molecule summary ($command, $(( $(date +%s) - t0 ))s in all)"
printf '%s\n' "${summary[@]}"
passed=$(( ${#scenarios[@]} - failed ))
echo "molecule: $passed passed, $failed failed"
[ $failed -eq 0 ]
