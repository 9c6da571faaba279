"""Fixtures for tests that run the real containerd (see harness.py for what they do).

* ``builds`` (session): {"1.6": Build, "1.7": Build, "2.1": Build}.  When the builds cannot be had, or
  we are not root, tests are SKIPPED — unless ``$CI`` is set, then they FAIL loudly.
* ``build``: parametrized over 1.6 / 1.7 / 2.1 (test ids ``[1.6]`` …).
* ``daemon_factory(build, config_path=None, **kw)`` -> started :class:`harness.Daemon`, stopped at
  teardown.  ``supervisor_factory(...)`` -> started :class:`supervisor.Supervisor`, same.
* ``busybox`` (session): path of the static busybox; ``rootfs``: a fresh busybox rootfs folder.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import supervisor  # noqa: E402

VERSIONS = list(harness.SUITES)


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: runs real containerd daemons (root, Linux)")


def unavailable(reason: str):
    """Skip, or fail when $CI is set: CI must never go green by skipping the real-daemon tests."""
    if harness.in_ci():
        pytest.fail("integration prerequisites missing in CI: " + reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def builds():
    if os.geteuid() != 0:
        unavailable("needs root (containerd, runc, mount namespaces)")
    try:
        return harness.builds()
    except harness.BuildsUnavailable as e:
        unavailable(str(e))


@pytest.fixture(params=VERSIONS)
def build(request, builds):
    return builds[request.param]


@pytest.fixture(scope="session")
def busybox(builds):
    try:
        return harness.busybox_path()
    except harness.BuildsUnavailable as e:
        unavailable(str(e))


@pytest.fixture
def rootfs(tmp_path, busybox):
    return harness.busybox_rootfs(tmp_path / "rootfs")


def _factory(cls, tmp_path):
    made = []

    def make(build, config_path=None, **kwargs):
        tmpdir = kwargs.pop("tmpdir", None) or tmp_path / ("d%d" % len(made))
        inst = cls(build, config_path, tmpdir, **kwargs)
        made.append(inst)
        inst.start()
        return inst

    return make, made


@pytest.fixture
def daemon_factory(tmp_path):
    make, made = _factory(harness.Daemon, tmp_path)
    yield make
    for d in reversed(made):
        d.stop()


@pytest.fixture
def supervisor_factory(tmp_path):
    make, made = _factory(supervisor.Supervisor, tmp_path)
    yield make
    for s in reversed(made):
        s.stop()
