#!/usr/bin/env bash
# Molecule's `dependency` step for every gpuops.nvidia scenario (dependency: {name: shell, command: ...}):
# runs before create, on every `molecule test|create|converge`, and is cheap when all is cached.
#   - the checkout as the collection gpuops.nvidia (.build/ansible_collections/gpuops/nvidia)
#   - the podman images localhost/gpuops-test:{bookworm,trixie} (scripts/build-test-images.sh)
#   - the stand-in apt repository, served on 127.0.0.1:${GPUOPS_STANDIN_PORT:-17821}
# GPUOPS_TEST_SUITES limits the images built (default: bookworm trixie).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/scripts/collection-path.sh" >/dev/null
# shellcheck disable=SC2086
"$root/scripts/build-test-images.sh" ${GPUOPS_TEST_SUITES:-bookworm trixie} >/dev/null
"$root/scripts/build-standin-repo.sh" serve >/dev/null
