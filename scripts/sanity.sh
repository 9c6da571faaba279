#!/usr/bin/env bash
# `ansible-test sanity` (or `units`) for this checkout, offline-friendly and repeatable:
#   scripts/sanity.sh [extra ansible-test sanity options]   e.g.  --test validate-modules -v
#   scripts/sanity.sh --units [extra ansible-test units options / test paths]   (what scripts/units.sh runs)
#
# 1. Copies the checkout's files (tracked plus untracked-but-not-ignored, as `git ls-files -co
#    --exclude-standard` lists them: no .venv, .build, caches or tests/output) to
#    $GPUOPS_SANITY_DIR/ansible_collections/gpuops/nvidia, where ansible-test wants a collection.
#    The folder is kept between runs (so is the delegated venv in its tests/output/.tmp):
#    re-runs only refresh the files. Default: ~/.cache/gpuops-nvidia/sanity.
# 2. `git init`s the copy (ansible-test lists a collection's files with git; no commit needed).
# 3. Installs a get-pip stand-in in ~/.ansible/test/cache when missing: ansible-test downloads
#    get-pip from a host that is not reachable here; ensurepip + `pip install` from PyPI does
#    the same job. The sanity venvs (~/.ansible/test/venv) get their pinned requirements from PyPI.
# 4. Runs the project venv's ansible-test: the controller in a venv of Python $SANITY_CONTROLLER
#    (what `--venv --python 3.11` does), the per-Python tests (compile, import) on every Python
#    ansible-test supports for modules that this machine has (pythonX.Y on PATH, or pyenv's
#    versions): modules and module_utils run on the managed nodes' Python, not ours.
#    SANITY_PYTHONS="3.11" limits that list. Exit code = ansible-test's.
#    The shellcheck tool is apt-get installed when missing and we are root (else that test is skipped).
# Knobs: VENV=.venv  SANITY_CONTROLLER=3.11  SANITY_PYTHONS="3.8 3.11"  GPUOPS_SANITY_DIR=...
#        SANITY_TRACKED_ONLY=1 (only files git tracks, e.g. to leave out others' work in progress)
# Extra options go to `ansible-test sanity` (--test NAME, --skip-test NAME, -v...), not --python:
# the Pythons are chosen with --controller/--target-python, which exclude it.
# Time here (2 cores): ~3-4 min the first time (sanity venvs from PyPI), ~1-1.5 min after that.
#
# --units: steps 1-3 alike, then `ansible-test units --venv --python $SANITY_CONTROLLER --requirements`
# (a venv of that Python with ansible-test's pytest + tests/unit/requirements.txt from PyPI). Exit 0 only
# when ansible-test passed AND its junit files count at least one passed test: a selection that collects
# nothing ("All targets skipped", exit 0 from ansible-test) fails here.
set -euo pipefail
mode=sanity
if [ "${1:-}" = --units ]; then mode=units; shift; fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv}"
case "$venv" in /*) ;; *) venv="$root/$venv" ;; esac
controller="${SANITY_CONTROLLER:-3.11}"
base="${GPUOPS_SANITY_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gpuops-nvidia/sanity}"
dest="$base/ansible_collections/gpuops/nvidia"
ansible_test="$venv/bin/ansible-test"
start=$SECONDS

[ -x "$ansible_test" ] || { echo "error: $ansible_test missing: run 'make deps' first" >&2; exit 2; }
command -v git >/dev/null 2>&1 || { echo "error: git is required" >&2; exit 2; }

# ------------------------------------------------------------------ shellcheck (optional)
if [ "$mode" = sanity ] && ! command -v shellcheck >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== sanity: installing shellcheck"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends shellcheck >/dev/null 2>&1 \
      || { apt-get -o DPkg::Lock::Timeout=600 update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends shellcheck >/dev/null; } \
      || echo "warning: could not install shellcheck; ansible-test will skip that test" >&2
  else
    echo "warning: shellcheck not found; ansible-test will skip that test" >&2
  fi
fi

# ------------------------------------------------------------------ get-pip stand-in
at_dir="$("$venv/bin/python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')"
pip_version="$(sed -n "s/^ *pip='\([0-9.]*\)',.*/\1/p" "$at_dir/_internal/python_requirements.py" | head -n1)"
pip_version="${pip_version:-24.2}"
get_pip="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"   # as ansible-test names it
if [ ! -s "$get_pip" ]; then
  echo "== $mode: installing the get-pip stand-in $get_pip"
  mkdir -p "$(dirname "$get_pip")"
  cat >"$get_pip.tmp" <<'EOF'
# Stand-in for get-pip.py, written by gpuops.nvidia scripts/sanity.sh: ansible-test runs this
# file (instead of the get-pip it downloads from a host not reachable here) to bootstrap pip
# in a fresh venv.  ensurepip, then `pip install` of the same packages from PyPI.
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel', '--no-pip')]
rc = subprocess.call([sys.executable, '-m', 'ensurepip', '--upgrade', '--default-pip'])
if rc == 0:
    rc = subprocess.call([sys.executable, '-m', 'pip', 'install'] + args)
sys.exit(rc)
EOF
  mv "$get_pip.tmp" "$get_pip"
fi

# ------------------------------------------------------------------ the copy
mkdir -p "$dest"
# One run at a time per copy (a second one waits).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$base/.lock"
  flock 9
fi
# Empty it but for .git and tests/output (ansible-test's delegated venv lives in tests/output/.tmp).
find "$dest" -mindepth 1 -maxdepth 1 ! -name .git ! -name tests -exec rm -rf {} +
if [ -d "$dest/tests" ]; then
  find "$dest/tests" -mindepth 1 -maxdepth 1 ! -name output -exec rm -rf {} +
fi
(
  cd "$root"
  if [ -n "${SANITY_TRACKED_ONLY:-}" ]; then git ls-files -z -c; else git ls-files -z -co --exclude-standard; fi | while IFS= read -r -d '' f; do
    # listed but gone (deleted, not yet committed) or a stray symlink loop: leave out
    if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
  done | tar --null -T - -cf -
) | tar -C "$dest" -xf -
if [ ! -d "$dest/.git" ]; then
  git -C "$dest" init -q
fi
nfiles="$(git -C "$dest" ls-files -co --exclude-standard | wc -l)"
echo "== $mode: $nfiles files copied to $dest"

# ------------------------------------------------------------------ units
# shellcheck disable=SC2016  # Python source, no shell expansion wanted
count_junit='
import glob, os, sys
import xml.etree.ElementTree as ET
tests = bad = skipped = 0
for path in glob.glob(os.path.join(sys.argv[1], "*-units.xml")):
    root = ET.parse(path).getroot()
    for suite in ([root] if root.tag == "testsuite" else root.iter("testsuite")):
        tests += int(suite.get("tests", 0))
        bad += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
print(tests - bad - skipped, bad, skipped)
'
if [ "$mode" = units ]; then
  junit="$dest/tests/output/junit"
  log="$base/units.log"
  rm -rf "$junit"
  cd "$dest"
  set +e
  PATH="$venv/bin:$PATH" "$ansible_test" units --venv --python "$controller" --requirements --color no "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  read -r passed bad skipped <<<"$("$venv/bin/python" -c "$count_junit" "$junit")"
  echo
  echo "== units summary: ansible-test exit $rc after $((SECONDS - start))s: $passed passed, $bad failed, $skipped skipped (full log: $log)"
  if [ "$rc" -eq 0 ] && [ "$passed" -eq 0 ]; then
    echo "error: not one unit test passed: the selection collected nothing (or ansible-test saw no tests)" >&2
    rc=1
  fi
  exit "$rc"
fi

# ------------------------------------------------------------------ target Pythons
# The real executable of a working interpreter for version $1: pythonX.Y on PATH (a pyenv shim of
# a version that is not selected fails the check), else the newest pyenv build of it.
find_python() {
  local v="$1" cand
  local cands=()
  cand="$(command -v "python$v" 2>/dev/null || true)"
  [ -n "$cand" ] && cands+=("$cand")
  local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
  if [ -d "$pyenv_root/versions" ]; then
    while IFS= read -r cand; do cands+=("$cand"); done < <(
      find "$pyenv_root/versions" -mindepth 3 -maxdepth 3 -path "*/versions/$v.*/bin/python$v" | sort -rV)
  fi
  local out
  for cand in "${cands[@]}"; do
    out="$("$cand" -c 'import sys; print("%d.%d %s" % (sys.version_info[:2] + (sys.executable,)))' 2>/dev/null || true)"
    if [ "${out%% *}" = "$v" ] && [ -x "${out#* }" ]; then
      echo "${out#* }"; return 0
    fi
  done
  return 1
}
if [ -n "${SANITY_PYTHONS:-}" ]; then
  read -r -a versions <<<"$SANITY_PYTHONS"
else
  read -r -a versions <<<"$("$venv/bin/python" -c 'from ansible_test._util.target.common.constants import CONTROLLER_PYTHON_VERSIONS as c, REMOTE_ONLY_PYTHON_VERSIONS as r; print(" ".join(r + c))' 2>/dev/null || echo 3.8 3.9 3.10 3.11 3.12 3.13)"
fi
# ansible-test makes its venvs (import test) with the pythonX.Y it finds on PATH, whatever
# --target-python says: $base/bin holds one pythonX.Y per found version, first on its PATH.
pybin="$base/bin"
rm -rf "$pybin"; mkdir -p "$pybin"
targets=()
found=()
missing=()
for v in "${versions[@]}"; do
  if py="$(find_python "$v")"; then
    targets+=(--target-python "$v@$py"); found+=("$v")
    printf '#!/bin/sh\nexec "%s" "$@"\n' "$py" >"$pybin/python$v"
    chmod +x "$pybin/python$v"
  else
    missing+=("$v")
  fi
done
[ ${#targets[@]} -gt 0 ] || { echo "error: no Python of ${versions[*]} found" >&2; exit 2; }
echo "== sanity: controller Python $controller (venv); target Pythons: ${found[*]}${missing[*]:+ (not on this machine: ${missing[*]})}"

# ------------------------------------------------------------------ ansible-test
log="$base/sanity.log"
cd "$dest"
set +e
PATH="$pybin:$venv/bin:$PATH" "$ansible_test" sanity --controller "origin:python=venv/$controller" "${targets[@]}" \
  --color no "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e

# ------------------------------------------------------------------ summary
ran="$(grep -cE '^Running sanity test ' "$log" || true)"
failed="$(sed -n '/^FATAL: The [0-9]* sanity test(s) listed below/,/^FATAL: Command/p' "$log" | grep -vE '^FATAL' | tr '\n' ' ' || true)"
echo
echo "== sanity summary: ansible-test exit $rc after $((SECONDS - start))s ($ran test runs; full log: $log)"
grep -E '^WARNING: Skipping' "$log" | sed 's/^/  /' || true
if [ "$rc" -eq 0 ]; then
  echo "  all sanity tests passed"
else
  echo "  failed: ${failed:-see the log}"
  grep -E '^ERROR: ' "$log" | sed 's/^/  /' | head -n 60
fi
exit "$rc"
