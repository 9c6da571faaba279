"""scripts/units.sh (`make unit`): `ansible-test units` on the sanity copy of the checkout, and a run in
which not one unit test passed is a failure, whatever ansible-test says (it exits 0 with "All targets
skipped" for an empty selection, and on pytest's "no tests collected")."""
from __future__ import annotations

import re
import subprocess

import pytest

from ansible_run import REPO_ROOT

UNITS = REPO_ROOT / "scripts" / "units.sh"
ANSIBLE_TEST = REPO_ROOT / ".venv" / "bin" / "ansible-test"
SUMMARY = re.compile(r"^== units summary: ansible-test exit (\d+) .*: (\d+) passed, (\d+) failed, (\d+) skipped", re.M)

pytestmark = pytest.mark.skipif(not ANSIBLE_TEST.exists(), reason="no .venv/bin/ansible-test (make deps)")


def units(*args: str) -> tuple[int, str, re.Match | None]:
    p = subprocess.run([str(UNITS), *args], cwd=REPO_ROOT, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=1200, check=False)
    return p.returncode, p.stdout + p.stderr, SUMMARY.search(p.stdout)


def test_an_empty_selection_fails_although_ansible_test_passes() -> None:
    rc, out, summary = units("--exclude", "tests/unit/")
    assert "All targets skipped" in out, out
    assert summary is not None and summary.group(1) == "0" and summary.group(2) == "0", out
    assert rc == 1, out
    assert "not one unit test passed" in out


def test_a_selection_runs_its_tests_under_ansible_test() -> None:
    rc, out, summary = units("tests/unit/plugins/filter/test_cri_filter.py")
    assert rc == 0, out
    assert summary is not None and summary.group(1) == "0", out
    assert int(summary.group(2)) > 0 and summary.group(3) == "0", out
