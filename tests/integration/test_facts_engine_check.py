"""The facts module's engine check (check_engine: the plan of playbooks/site.yml in one module run per node) against
the engine module's own check mode, on the same node, with the real containerd 1.6 / 1.7 / 2.1 builds: the same
verdict, files, diff, return values, warnings and errors; and the arguments the facts complete from the node
(module_args: the binary the facts found, inside the root). The role-level side (the plan skips the engine task when
the facts answered, runs it when they cannot) is in test_role_lean.py."""
from __future__ import annotations

import shutil
import tempfile

import pytest

from ansible_run import run_module
from fixtures.facts.faketree import Tree
from test_facts_module import _default_config, _place

pytestmark = pytest.mark.integration

FACTS = "gpuops.nvidia.nvidia_runtime_facts"
CONTAINERD = "gpuops.nvidia.nvidia_containerd_runtime"
# what both return (the facts module's engine_check is the engine module's result)
SAME = ("changed", "failed", "msg", "files", "diff", "low_level_runtime", "runtimes", "default_runtime",
        "config_version", "layout", "restarted", "restart_method", "backup_files")


@pytest.fixture
def tree():
    root = tempfile.mkdtemp(prefix="gfc", dir="/tmp")
    t = Tree(root)
    yield t
    t.close()
    shutil.rmtree(root, ignore_errors=True)


def _stated(t: Tree) -> dict:
    """The role's way: per engine, what it states ('' and [] are not stated: the facts complete containerd_path)."""
    return {"containerd": {"config": str(t.p("/etc/containerd/config.toml")),
                           "drop_in": str(t.p("/etc/containerd/conf.d/99-nvidia.toml")),
                           "containerd_path": "", "cdi_spec_dirs": [], "variants": ["cdi"],
                           "runtime_path": "/usr/bin/nvidia-container-runtime", "restart": "none"},
            "docker": {"config": str(t.p("/etc/docker/daemon.json"))}}


def _both(t: Tree):
    """The facts module's check, then the engine module in check mode with the arguments the facts completed."""
    facts = run_module(FACTS, {"root": str(t.root), "engine_args": _stated(t), "check_engine": True}, diff=True)
    assert not facts["failed"], facts.get("msg") or facts.stderr
    args = facts["ansible_facts"]["nvidia_runtime"]["module_args"]
    module = run_module(CONTAINERD, args, check=True, diff=True)
    return facts, args, module


def _same(facts, module):
    check = facts["engine_check"]
    for key in SAME:
        assert check.get(key) == module.get(key), key
    assert facts.get("diff") == module.get("diff")            # the facts task shows the engine's diff
    assert set(facts.get("warnings", [])) >= set(module.get("warnings", []))


def test_engine_check_is_the_module_check_mode(build, tree):
    binary = _place(build, tree, "/usr/bin/containerd")
    config = tree.file("/etc/containerd/config.toml", "# the node's own comment\n" + _default_config(build))

    facts, args, module = _both(tree)
    # completed from the node: the binary the facts found, inside the root (not run under a fake root: no version)
    assert args["containerd_path"] == str(binary) and "containerd_version" not in args
    assert "cdi_spec_dirs" not in args and args["variants"] == ["cdi"]
    assert facts["changed"] is False and module["changed"] is True and not module["failed"]
    _same(facts, module)
    assert facts["engine_check"]["files"] and facts["engine_check"]["low_level_runtime"] == "runc"

    applied = run_module(CONTAINERD, args)          # the real run writes what both announced
    assert applied["changed"] is True and sorted(applied["files"]) == sorted(facts["engine_check"]["files"])
    written = config.read_bytes()
    facts, args, module = _both(tree)
    assert module["changed"] is False
    _same(facts, module)
    assert config.read_bytes() == written


def test_engine_check_reports_the_modules_error(build, tree):
    _place(build, tree, "/usr/bin/containerd")
    tree.file("/etc/containerd/config.toml", 'version = 2\n[plugins\n')    # not TOML
    facts, args, module = _both(tree)
    assert module["failed"] is True and "config.toml" in module["msg"]
    assert facts["failed"] is False and facts["engine_check"]["failed"] is True   # the facts are still given
    _same(facts, module)


def test_engine_check_only_with_the_engines_arguments(build, tree):
    """No arguments stated for the engine (k3s, MicroK8s... or a role without them): no module_args, no check."""
    _place(build, tree, "/usr/bin/containerd")
    tree.file("/etc/containerd/config.toml", _default_config(build))
    r = run_module(FACTS, {"root": str(tree.root), "engine_args": {"docker": {}}, "check_engine": True})
    assert not r["failed"] and "engine_check" not in r
    assert "module_args" not in r["ansible_facts"]["nvidia_runtime"]
    r = run_module(FACTS, {"root": str(tree.root), "engine": "docker", "engine_args": _stated(tree)})
    assert r["ansible_facts"]["nvidia_runtime"]["module_args"] == {"config": str(tree.p("/etc/docker/daemon.json"))}
    assert "engine_check" not in r                   # asked only with check_engine
