"""A no-change containerd run asks the real binary each thing once (issue 11), judged with the real builds.

* the engine: the plan from the per-binary cache of the built-in runtimes equals the plan without it (same
  files, same diff) on 1.6, 1.7 and 2.1, and a second real run dumps only the main file;
* the module through Ansible, with a wrapper around the real binary that logs each call: check mode creates
  no cache entry, a real run does, the next run issues one ``config dump`` and, given ``containerd_version``,
  no ``--version``; a touched binary is dumped again.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ansible_collections.gpuops.nvidia.plugins.module_utils import containerd as engine
from ansible_collections.gpuops.nvidia.plugins.module_utils import fileops
from ansible_run import run_module

MOD = "gpuops.nvidia.nvidia_containerd_runtime"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "containerd"


class CountingRunner:
    """Runs the real binary and records every argv."""

    def __init__(self):
        self.calls = []

    def __call__(self, argv):
        self.calls.append(list(argv))
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        return p.returncode, p.stdout, p.stderr

    def dumps(self):
        return sum(1 for a in self.calls if a[-2:] == ["config", "dump"])

    def versions(self):
        return sum(1 for a in self.calls if a[1:] == ["--version"])


def fixture_for(build):
    return (FIXTURES / ("default-%s.toml" % build.key)).read_text()


def files(p):
    return [(f.path, f.before, f.after) for f in p.files]


@pytest.mark.parametrize("layout", ["in_place", "drop_in"])
def test_plan_from_the_cache_equals_the_plan_without(build, tmp_path, monkeypatch, layout):
    monkeypatch.setattr(fileops, "LOCK_DIR", str(tmp_path / "run-lock"))
    cfg = tmp_path / "etc" / "config.toml"
    cfg.parent.mkdir()
    cfg.write_text(fixture_for(build))
    o = dict(config=str(cfg), containerd_path=build.containerd, config_source=["command"], layout=layout,
             drop_in=str(tmp_path / "etc" / "conf.d" / "99-nvidia.toml"), variants=["cdi"])
    plain = engine.plan(o)
    r = CountingRunner()
    first = engine.plan(o, runner=r, cache="write")
    assert r.dumps() == 2
    assert len(list((tmp_path / "run-lock").glob("*.json"))) == 1
    r = CountingRunner()
    second = engine.plan(dict(o, containerd_version=build.version), runner=r, cache="write")
    assert (r.dumps(), r.versions()) == (1, 0)
    r = CountingRunner()
    checked = engine.plan(o, runner=r, cache="read")
    assert r.dumps() == 1
    for p in (first, second, checked):
        assert files(p) == files(plain)
        assert p.diff() == plain.diff()
        assert (p.default_runtime, p.low_level_runtime, p.containerd_version) == \
            (plain.default_runtime, plain.low_level_runtime, plain.containerd_version)
    assert plain.changed


def test_the_cached_runtimes_are_the_dump_of_an_empty_config(build, tmp_path, monkeypatch):
    monkeypatch.setattr(fileops, "LOCK_DIR", str(tmp_path / "run-lock"))
    assert not list((tmp_path / "run-lock").glob("*.json"))
    got = engine.builtin_runtimes(build.containerd, CountingRunner(), "/nonexistent.toml", cache="write")
    key = fileops.binary_key(build.containerd)
    assert fileops.cached_get(key, engine.BUILTIN_CACHE_KIND) == got
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    dumped = engine.Effective(*engine._dump(build.containerd, CountingRunner(), str(empty)) + ("command",)).runtimes
    assert got == dumped and "runc" in got


# -- the module through Ansible ---------------------------------------------------------------------------------
@pytest.fixture
def wrapped(build, tmp_path):
    """A containerd that logs each call (one line of arguments) to ``calls.log`` and runs the real binary."""
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "bin" / "containerd"
    wrapper.parent.mkdir()
    wrapper.write_text('#!/bin/sh\nprintf "%%s\\n" "$*" >> %s\nexec %s "$@"\n' % (log, build.containerd))
    wrapper.chmod(0o755)
    yield wrapper, log
    for entry in cache_entries(wrapper):
        os.unlink(entry)


def cache_entries(binary):
    """The files in which the module (root: fileops.LOCK_DIR under /run/lock) keeps what it learnt of ``binary``."""
    found = []
    for path in Path(fileops.LOCK_DIR).glob("*.json"):
        try:
            if json.loads(path.read_text()).get("binary") == str(binary):
                found.append(str(path))
        except (OSError, ValueError, AttributeError):
            continue
    return found


def calls(log):
    lines = log.read_text().splitlines() if log.exists() else []
    log.write_text("")
    return {"dump": sum(1 for x in lines if x.endswith("config dump")),
            "version": sum(1 for x in lines if x == "--version")}


def test_module_check_mode_reads_real_runs_write_one_dump_per_no_change_run(build, tmp_path, wrapped):
    wrapper, log = wrapped
    cfg = tmp_path / "config.toml"
    cfg.write_text(fixture_for(build))
    args = dict(config=str(cfg), containerd_path=str(wrapper), restart="none", config_source=["command"])

    r = run_module(MOD, args, check=True, diff=True)
    assert not r["failed"], r.get("msg")
    assert r["changed"] and calls(log) == {"dump": 3, "version": 1}   # main file, empty config, candidate
    assert cache_entries(wrapper) == []                          # check mode wrote nothing

    r = run_module(MOD, args)
    assert not r["failed"] and r["changed"], r.get("msg")
    (entry,) = cache_entries(wrapper)
    assert oct(os.stat(entry).st_mode & 0o777) == "0o600"
    assert oct(os.stat(os.path.dirname(entry)).st_mode & 0o777) == "0o700"
    calls(log)

    r = run_module(MOD, dict(args, containerd_version=build.version))
    assert not r["failed"] and not r["changed"], r.get("msg")
    assert calls(log) == {"dump": 1, "version": 0}
    assert r["containerd_version"] == build.version

    r = run_module(MOD, dict(args, containerd_version=build.version), check=True)
    assert not r["changed"] and calls(log) == {"dump": 1, "version": 0}

    st = wrapper.stat()
    os.utime(wrapper, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))   # the binary changed
    r = run_module(MOD, dict(args, containerd_version=build.version))
    assert not r["failed"] and not r["changed"]
    assert calls(log) == {"dump": 2, "version": 0}


def test_module_refuses_a_containerd_version_that_is_not_one(build, tmp_path, wrapped):
    wrapper, log = wrapped
    cfg = tmp_path / "config.toml"
    cfg.write_text(fixture_for(build))
    before = cfg.read_bytes()
    r = run_module(MOD, dict(config=str(cfg), containerd_path=str(wrapper), restart="none", containerd_version="latest"))
    assert r["failed"] and "containerd_version must be a version" in r["msg"]
    assert cfg.read_bytes() == before and calls(log) == {"dump": 0, "version": 0}
