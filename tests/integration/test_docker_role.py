"""The role with ``nvidia_runtime_engine: docker`` run for real against Debian's dockerd 26.1 in a temp folder.

Same sandbox as test_role_sandbox.py (no driver, no packages, the toolkit config in tmp_path); Docker is the
supervised daemon of docker_daemon.py, restarted by the module through the ``systemctl`` stand-in. Judged by
``docker info`` of the live daemon, the role's own verify step, and the play recap of a second run.
"""
from __future__ import annotations

import json
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import docker_daemon  # noqa: E402
import harness  # noqa: E402
from test_docker_module import Node, initial_config, unavailable  # noqa: E402
from ansible_run import REPO_ROOT, run_playbook  # noqa: E402
from test_role_sandbox import assert_ok, base_vars, localhost_inventory, recap, run_role  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def newest():
    if os.geteuid() != 0:
        unavailable("needs root (dockerd, containerd, runc)")
    try:
        return docker_daemon.docker_builds()["trixie"]
    except harness.BuildsUnavailable as e:
        unavailable(str(e))


def test_role_configures_a_running_docker(tmp_path, newest, monkeypatch):
    original = initial_config(newest, tmp_path)
    node = Node(tmp_path, newest, original)
    with docker_daemon.DockerDaemon(newest, node.config) as d:
        d.fake_systemctl(node.bin)
        monkeypatch.setenv("PATH", "%s:%s:%s" % (node.bin, newest.bindir, os.environ["PATH"]))
        extravars = dict(base_vars(tmp_path), nvidia_runtime_engine="docker", nvidia_runtime_restart="systemd",
                         nvidia_runtime_binary=str(node.runtime), nvidia_runtime_set_as_default=True,
                         nvidia_runtime_enable_cdi=True, nvidia_runtime_docker_config=str(node.config),
                         nvidia_runtime_docker_path=newest.dockerd, nvidia_runtime_docker_socket=d.socket)
        rc, out, err, _result = run_role(tmp_path, extravars)
        assert rc == 0, out[-4000:] + err[-2000:]
        assert "Docker has nvidia (default runtime nvidia)" in out
        info = d.docker_info()
        assert info["DefaultRuntime"] == "nvidia" and info["CDISpecDirs"]
        assert d.restarts == 1
        written = node.config.read_text()
        assert json.loads(written)["features"] == {"buildkit": True, "cdi": True}

        rc, out, err, _result = run_role(tmp_path, extravars)
        assert rc == 0, out[-4000:] + err[-2000:]
        assert recap(out)["changed"] == 0 and d.restarts == 1
        assert node.config.read_text() == written


def test_site_and_audit_playbooks_with_a_running_docker(tmp_path, newest, monkeypatch):
    """The two playbooks operators run, engine docker, against the live dockerd: the fleet audit (check mode)
    predicts the change of daemon.json and writes and restarts nothing; site.yml applies it (docker info shows the
    handler as default, one restart); the audit then reports the host configured, and a second site.yml run
    changes nothing."""
    original = initial_config(newest, tmp_path)
    node = Node(tmp_path, newest, original)
    with docker_daemon.DockerDaemon(newest, node.config) as d:
        d.fake_systemctl(node.bin)
        monkeypatch.setenv("PATH", "%s:%s:%s" % (node.bin, newest.bindir, os.environ["PATH"]))
        ev = dict(base_vars(tmp_path), nvidia_runtime_engine="docker", nvidia_runtime_restart="systemd",
                  nvidia_runtime_binary=str(node.runtime), nvidia_runtime_set_as_default=True,
                  nvidia_runtime_docker_config=str(node.config), nvidia_runtime_docker_path=newest.dockerd,
                  nvidia_runtime_docker_socket=d.socket, ansible_become=False,
                  nvidia_runtime_audit_dir=str(tmp_path / "audit"))
        inv = localhost_inventory(tmp_path)
        audit, site = REPO_ROOT / "playbooks/audit.yml", REPO_ROOT / "playbooks/site.yml"

        rc, out, err = run_playbook(audit, extravars=ev, inventory=inv)
        assert_ok(rc, out, err)
        assert re.search(r"localhost: engine=docker .*would_change=True", out), out[-4000:]
        assert node.config.read_text() == original and d.restarts == 0
        (row,) = json.loads((tmp_path / "audit/report.json").read_text())["hosts"]
        assert (row["host"], row["engine"], row["drift"]) == ("localhost", "docker", True)
        assert row["state"] in ("unconfigured", "drift")
        assert {c["file"]: c["change"] for c in row["changes"]} == {   # daemon.json and the record of what absent restores
            str(node.config): "modify", str(node.record): "create"}

        rc, out, err = run_playbook(site, extravars=ev, inventory=inv)
        assert_ok(rc, out, err)
        assert "Docker has nvidia (default runtime nvidia)" in out
        info = d.docker_info()
        assert info["DefaultRuntime"] == "nvidia" and "nvidia" in info["Runtimes"]
        assert d.restarts == 1
        written = node.config.read_text()

        rc, out, err = run_playbook(audit, extravars=ev, inventory=inv)
        assert_ok(rc, out, err)
        assert "would_change=False" in out and "ERROR=" not in out
        (row,) = json.loads((tmp_path / "audit/report.json").read_text())["hosts"]
        assert (row["state"], row["engine"], row["drift"], row["changes"]) == ("configured", "docker", False, [])
        assert row["default_runtime"] == "nvidia"
        assert "| localhost | configured | docker" in (tmp_path / "audit/report.md").read_text()

        rc, out, err = run_playbook(site, extravars=ev, inventory=inv)
        assert_ok(rc, out, err)
        assert recap(out)["changed"] == 0 and d.restarts == 1 and node.config.read_text() == written
