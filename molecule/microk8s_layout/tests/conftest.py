"""Shared testinfra helpers (molecule/shared/checks.py) on sys.path, and its podman-backend hook."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from checks import pytest_configure  # noqa: E402,F401 pylint: disable=unused-import
