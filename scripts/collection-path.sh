#!/usr/bin/env bash
# Make this checkout importable as the Ansible collection gpuops.nvidia and print the folder
# to use as ANSIBLE_COLLECTIONS_PATH (and on PYTHONPATH for plain `import ansible_collections...`):
#   .build/ansible_collections/gpuops/nvidia -> ../../..   (a relative symlink to the repo root)
# Idempotent; the same code runs from tests/conftest.py.
#   export ANSIBLE_COLLECTIONS_PATH="$(scripts/collection-path.sh)"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "${PYTHON:-python3}" "$root/tests/ansible_run.py" --collection-path
