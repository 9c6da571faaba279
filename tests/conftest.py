"""Session-wide set-up for every test under tests/.

Runs at import time (pytest imports this file before collecting any test module), so test
modules may import ``ansible_collections.gpuops.nvidia.plugins.module_utils.X`` at top level:

* ``.build/ansible_collections/gpuops/nvidia`` -> repo root (symlink, idempotent);
* ``.build`` first on ``sys.path`` (plain Python imports of the collection);
* ``ANSIBLE_COLLECTIONS_PATH`` starts with ``.build`` (Ansible subprocesses, and Ansible's
  own collection loader if a test initialises it);
* ``ANSIBLE_PYTHON_INTERPRETER`` = this interpreter, so modules see the venv's tomlkit.
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

BUILD_DIR = ansible_run.ensure_collection_path()
if str(BUILD_DIR) not in sys.path:
    sys.path.insert(0, str(BUILD_DIR))
_paths = [p for p in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep) if p and p != str(BUILD_DIR)]
os.environ["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join([str(BUILD_DIR)] + _paths)
os.environ["ANSIBLE_PYTHON_INTERPRETER"] = sys.executable
if ansible_run.ANSIBLE_CFG.is_file():
    os.environ.setdefault("ANSIBLE_CONFIG", str(ansible_run.ANSIBLE_CFG))

FIXTURES_DIR = _TESTS / "fixtures"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout (== the collection root)."""
    return ansible_run.REPO_ROOT


@pytest.fixture(scope="session")
def collections_path() -> Path:
    """Folder holding ``ansible_collections/gpuops/nvidia``."""
    return BUILD_DIR


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """tests/fixtures (containerd sample configs live in ``fixtures_dir / "containerd"``)."""
    return FIXTURES_DIR


@pytest.fixture(scope="session")
def containerd_fixtures() -> dict[str, Path]:
    """``{"default-1.6.toml": Path, ...}``: every sample config in tests/fixtures/containerd."""
    return {p.name: p for p in sorted((FIXTURES_DIR / "containerd").glob("*.toml"))}
