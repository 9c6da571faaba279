#!/usr/bin/env bash
# `ansible-test units` on the copy of this checkout that scripts/sanity.sh keeps (same set-up, same knobs):
#   scripts/units.sh [extra ansible-test units options / test paths]   e.g.  tests/unit/plugins/filter -v
# Fails when ansible-test fails or when not one unit test passed (see scripts/sanity.sh, --units).
exec "$(dirname "${BASH_SOURCE[0]}")/sanity.sh" --units "$@"
