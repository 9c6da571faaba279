"""Session-wide set-up for every test under tests/.

Runs at import time (pytest imports this file before collecting any test module), so test
modules may import ``ansible_collections.gpuops.nvidia.plugins.module_utils.X`` at top level.

``tests/`` goes first on ``sys.path`` (``import ansible_run``, ``from fixtures.facts import ...``), and
modules run by Ansible use this interpreter (``ANSIBLE_PYTHON_INTERPRETER``, so they see its tomlkit).
The collection itself is found in one of three ways:

* under ``ansible-test units`` (its ``ansible_pytest_collections`` plugin is loaded): the checkout
  already is ``ansible_collections/gpuops/nvidia`` and ansible-test's collection loader and
  ``ANSIBLE_COLLECTIONS_PATH`` serve it: nothing is changed (no symlink, no ``sys.path`` entry);
* plain pytest in a checkout that sits at ``.../ansible_collections/gpuops/nvidia``: the folder
  holding ``ansible_collections`` goes first on ``sys.path`` and ``ANSIBLE_COLLECTIONS_PATH``;
* plain pytest anywhere else: ``.build/ansible_collections/gpuops/nvidia`` -> repo root (symlink,
  idempotent), and ``.build`` goes first on both.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

import ansible_run  # noqa: E402  (needs tests/ on sys.path first)

# ansible-test loads its plugin (PYTEST_PLUGINS) before any conftest.
UNDER_ANSIBLE_TEST = "ansible_pytest_collections" in sys.modules

if UNDER_ANSIBLE_TEST:
    COLLECTIONS_ROOT = ansible_run.in_place_collections_root()
    if COLLECTIONS_ROOT is None:  # ansible-test refuses any other layout: say so if it ever changes
        raise RuntimeError(f"ansible-test runs the tests in {ansible_run.REPO_ROOT}, not in an ansible_collections/gpuops/nvidia folder")
else:
    COLLECTIONS_ROOT = ansible_run.ensure_collection_path()
    if str(COLLECTIONS_ROOT) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS_ROOT))
    _paths = [p for p in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep) if p and p != str(COLLECTIONS_ROOT)]
    os.environ["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join([str(COLLECTIONS_ROOT)] + _paths)
os.environ["ANSIBLE_PYTHON_INTERPRETER"] = sys.executable
if ansible_run.ANSIBLE_CFG.is_file():
    os.environ.setdefault("ANSIBLE_CONFIG", str(ansible_run.ANSIBLE_CFG))

FIXTURES_DIR = _TESTS / "fixtures"

# Registered here, not in pytest.ini: ansible-test runs pytest with its own ini file (and --strict-markers).
MARKERS = (
    "integration: runs real binaries (containerd daemons, ansible-playbook)",
    "slow: takes more than a few seconds",
    "requires_root: needs uid 0",
)


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout (== the collection root)."""
    return ansible_run.REPO_ROOT


@pytest.fixture(scope="session")
def collections_path() -> Path:
    """Folder holding ``ansible_collections/gpuops/nvidia``."""
    return COLLECTIONS_ROOT


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """tests/fixtures (containerd sample configs live in ``fixtures_dir / "containerd"``)."""
    return FIXTURES_DIR


@pytest.fixture(scope="session")
def containerd_fixtures() -> dict[str, Path]:
    """``{"default-1.6.toml": Path, ...}``: every sample config in tests/fixtures/containerd."""
    return {p.name: p for p in sorted((FIXTURES_DIR / "containerd").glob("*.toml"))}
