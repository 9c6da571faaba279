"""nvidia_runtime_facts for real: through Ansible (check mode, fake roots), without a TOML reader on the node,
and against the real containerd 1.6 / 1.7 / 2.1 builds (version, config version, a live socket).

The fake trees come from tests/fixtures/facts/faketree.py; the logic's own cases are in
tests/unit/plugins/module_utils/test_runtime_facts.py.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

import harness
from ansible_run import run_module, run_playbook
from ansible_collections.gpuops.nvidia.plugins.module_utils import facts
from fixtures.facts import faketree
from fixtures.facts.faketree import Tree

MOD = "gpuops.nvidia.nvidia_runtime_facts"


@pytest.fixture
def tree():
    root = tempfile.mkdtemp(prefix="gf", dir="/tmp")  # short: unix socket paths
    t = Tree(root)
    yield t
    t.close()
    shutil.rmtree(root, ignore_errors=True)


def gpu_k0s_node(t: Tree) -> None:
    """A GPU worker: driver loaded, toolkit installed, k0s with our drop-in, a stray containerd package."""
    t.pci_ids()
    t.gpu("0000:01:00.0", 0x20b5, 0x030200, driver="nvidia", numa=0)
    t.nvidia_loaded("550.54.14")
    t.nvidia_installed("550.54.14")
    t.toolkit()
    faketree.k0s_installed(t, "v1.30.1+k0s.0")
    faketree.stock_containerd(t, "debian-package.toml", "1.6.20~ds1-1+deb12u1")


# ---------------------------------------------------------------------------------------------- through Ansible

@pytest.mark.integration
@pytest.mark.parametrize("check", [True, False], ids=["check", "normal"])
def test_module_on_a_fake_root(tree, check):
    gpu_k0s_node(tree)
    before = sorted(str(p) for p in tree.root.rglob("*"))
    r = run_module(MOD, {"root": str(tree.root)}, check=check)
    assert not r["failed"], r.get("msg") or r.stderr
    assert r["changed"] is False
    f = r["ansible_facts"]["nvidia_runtime"]
    assert f["root"] == str(tree.root)
    assert f["gpu_count"] == 1 and f["gpus"][0]["name"] == "GA100 [A100 PCIe 80GB]"
    assert f["driver"]["version"] == "550.54.14" and f["driver"]["reboot_pending"] is False
    assert f["toolkit"]["runtime"] == "/usr/bin/nvidia-container-runtime"
    assert f["toolkit"]["runtime_version"] == "1.17.9"
    assert f["engine"] == "k0s" and f["engine_ambiguous"] is False
    assert set(f["engines"]) == {"k0s", "containerd"}
    k0s = f["engines"]["k0s"]
    assert k0s["nvidia_configured"] is True and k0s["drop_in_dir"] == "/etc/k0s/containerd.d"
    assert k0s["config_version"] == 2 and k0s["distribution_version"] == "v1.30.1+k0s.0"
    assert f["engines"]["containerd"]["version"] == "1.6.20"
    assert not r.get("warnings")
    assert sorted(str(p) for p in tree.root.rglob("*")) == before  # read-only


@pytest.mark.integration
def test_module_ambiguity_warns(tree):
    faketree.stock_containerd(tree)
    faketree.crio(tree)
    tree.listen("/run/containerd/containerd.sock")
    tree.listen("/var/run/crio/crio.sock")
    r = run_module(MOD, {"root": str(tree.root)}, check=True)
    assert not r["failed"], r.get("msg")
    f = r["ansible_facts"]["nvidia_runtime"]
    assert f["engine"] == "containerd" and f["engine_ambiguous"] is True
    assert f["engine_candidates"] == ["containerd", "crio"]
    assert any("preference order" in w for w in r["warnings"])


@pytest.mark.integration
def test_module_missing_root_fails(tmp_path):
    r = run_module(MOD, {"root": str(tmp_path / "nope")}, check=True)
    assert r["failed"] and "is not a folder" in r["msg"]


@pytest.mark.integration
def test_module_on_this_host():
    """root=/ on the test machine: runs lspci/--version/systemctl as it finds them; must not fail."""
    r = run_module(MOD, {}, check=True)
    assert not r["failed"], r.get("msg")
    f = r["ansible_facts"]["nvidia_runtime"]
    assert f["root"] == "/" and isinstance(f["engines"], dict) and f["gpu_count"] == len(f["gpus"])
    assert f["toml_reader"]["name"] == "tomllib" and f["toml_reader"]["missing"] is None   # the test venv: 3.11


def _python_without_a_toml_reader():
    """A Python 3.9 with no TOML reader at all (the cached bare node of test_node_pythons.py)."""
    import test_node_pythons
    return str(test_node_pythons.node_python(test_node_pythons.BARE[1]))


@pytest.mark.integration
def test_module_without_a_toml_reader_on_the_node(tree, tmp_path):
    py = _python_without_a_toml_reader()
    gpu_k0s_node(tree)
    faketree.docker(tree, '{"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime"}}}')
    out = tmp_path / "result.json"
    inv = tmp_path / "inventory"
    inv.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % py)
    playbook = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: facts with a node Python that has no TOML reader
      gpuops.nvidia.nvidia_runtime_facts:
        root: %s
      register: r
    - name: save
      ansible.builtin.copy:
        content: "{{ r | to_json }}"
        dest: %s
        mode: "0600"
      check_mode: false
      vars:
        ansible_python_interpreter: %s
""" % (json.dumps(str(tree.root)), json.dumps(str(out)), json.dumps(sys.executable))
    rc, stdout, stderr = run_playbook(playbook, inventory=inv, check=True)
    assert rc == 0, stdout + stderr
    r = json.loads(out.read_text())
    f = r["ansible_facts"]["nvidia_runtime"]
    k0s = f["engines"]["k0s"]
    assert k0s["runtimes"] is None and k0s["nvidia_configured"] is None
    # the drop-in version k0s merges comes from its release (the rules table, plain Python), not from TOML
    assert k0s["config_version_source"] in (None, "distribution")
    assert k0s["cri_disabled"] is None and k0s["default_runtime"] is None
    assert f["engines"]["docker"]["nvidia_runtimes"] == ["nvidia"]  # JSON needs no tomlkit
    assert f["driver"]["version"] == "550.54.14" and f["gpu_count"] == 1
    assert f["engine"] == "k0s"
    assert f["toml_reader"]["name"] is None and f["toml_reader"]["missing"].startswith("no TOML reader")
    assert any("no TOML reader in the node's Python 3.9" in w for w in r["warnings"])


# ---------------------------------------------------------------------------------------------- real containerd

def _place(build, tree: Tree, path: str) -> Path:
    """The real containerd binary at ``path`` in the fake root (a hard link, else a copy: a symlink to
    the cache would point outside the root, and symlinks are resolved inside it)."""
    dest = tree.p(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(build.containerd, dest)
    except OSError:
        shutil.copy2(build.containerd, dest)
    return dest


def _default_config(build) -> str:
    # clear the fixed metrics port so that daemons can run side by side
    return harness.config_default(build).replace('"127.0.0.1:1338"', '""')


@pytest.mark.integration
def test_real_containerd_version_and_config_version(build, tree):
    _place(build, tree, "/usr/bin/containerd")
    tree.file("/etc/containerd/config.toml", _default_config(build))
    f, w = facts.gather(str(tree.root), run_binaries=True)
    e = f["engines"]["containerd"]
    assert (e["version"], e["version_source"]) == (build.version, "binary")
    assert (e["config_version"], e["config_version_source"]) == (build.config_version, "file")
    assert "runc" in e["runtimes"] and e["default_runtime"] == "runc"
    assert e["cri_disabled"] is False and e["nvidia_configured"] is False
    assert f["engine"] == "containerd" and w == []


@pytest.mark.integration
@pytest.mark.parametrize("content", [None, ""], ids=["missing", "empty"])
def test_real_containerd_without_config(build, tree, content):
    """No (or an empty) config: the version follows the binary, 2 for 1.x, 3 for 2.x."""
    _place(build, tree, "/usr/bin/containerd")
    if content is not None:
        tree.file("/etc/containerd/config.toml", content)
    e = facts.gather(str(tree.root), run_binaries=True)[0]["engines"]["containerd"]
    assert (e["config_version"], e["config_version_source"]) == (build.config_version, "binary")


@pytest.mark.integration
def test_real_containerd_in_the_k0s_layout(build, tree):
    faketree.k0s_installed(tree)
    os.unlink(tree.p("/var/lib/k0s/bin/containerd"))
    _place(build, tree, "/var/lib/k0s/bin/containerd")
    f, dummy = facts.gather(str(tree.root), run_binaries=True)
    e = f["engines"]["k0s"]
    assert (e["version"], e["version_source"]) == (build.version, "binary")
    assert e["distribution_version"] == "v1.30.1+k0s.0"  # the fake k0s prints it
    assert f["engine"] == "k0s"


@pytest.mark.integration
def test_real_containerd_not_run_under_a_fake_root(build, tree):
    """The module's default under a root other than /: the binary is never run, so no version."""
    _place(build, tree, "/usr/bin/containerd")
    e = facts.gather(str(tree.root))[0]["engines"]["containerd"]
    assert e["binary"] == "/usr/bin/containerd" and e["version"] is None and e["version_source"] is None


@pytest.mark.integration
def test_real_daemon_socket_makes_it_active(build, tree, daemon_factory):
    """A live containerd whose socket sits at the layout's path in the fake root; the module through
    Ansible sees it active; the config it loaded is the fake root's config (with the nvidia handler)."""
    config = tree.file("/etc/containerd/config.toml", _default_config(build))
    faketree.stock_containerd(tree, None, None)
    os.unlink(tree.p("/usr/bin/containerd"))
    _place(build, tree, "/usr/bin/containerd")
    d = daemon_factory(build, config, tmpdir=tree.p("/run/containerd"))
    # the daemon names its socket c.sock: a hard link gives it the layout's name (same socket inode)
    os.link(d.socket, tree.p("/run/containerd/containerd.sock"))
    r = run_module(MOD, {"root": str(tree.root)}, check=True)
    assert not r["failed"], r.get("msg")
    e = r["ansible_facts"]["nvidia_runtime"]["engines"]["containerd"]
    assert e["socket_answers"] is True and e["active"] is True and e["unit_active"] is None
    assert e["version"] is None  # not run under a fake root
    assert e["config_version"] == build.config_version
    d.stop()
    e = facts.gather(str(tree.root))[0]["engines"]["containerd"]
    assert e["socket_answers"] is False and e["active"] is False
