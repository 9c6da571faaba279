"""nvidia_crio_runtime ``state: query`` through Ansible: the handlers the role's verify step checks.

``config_source: [file]`` is judged by the tests' own model of how CRI-O merges its files
(``crio_effective``); ``[command]`` by a stand-in ``crio`` whose ``status config`` prints a known running
configuration, which differs from the files (the running CRI-O has not loaded the drop-in yet).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ansible_run import run_module_steps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit" / "plugins" / "module_utils"))
from test_crio_engine import NVIDIA, dir_fixture, snapshot  # noqa: E402
from test_crio_module import MOD, Node, stand_ins  # noqa: E402

pytestmark = pytest.mark.integration


def test_query_reports_the_merged_files_and_the_running_crio(tmp_path):
    node = Node(tmp_path / "node", dropins=dir_fixture("pkgs-1.29"))
    env = stand_ins(tmp_path, node)
    running = (tmp_path / "state" / "running.toml").read_text()
    present, files, command = run_module_steps(MOD, [
        node.args(set_as_default=True, variants=["cdi"]),
        node.args(state="query", config_source=["file"]),
        node.args(state="query", config_source=["command"], crio_path="crio"),
    ], env=env)
    for r in (present, files, command):
        assert r["failed"] is False, r.get("msg")
    assert present["changed"] is True
    written = snapshot(tmp_path / "node")

    model = node.effective()
    view = files["view"]
    assert files["changed"] is False and files["source"] == "file"
    assert set(view["runtimes"]) == set(model["runtimes"])
    for name, table in model["runtimes"].items():
        if "(built-in)" not in table:
            assert view["runtimes"][name] == (table.get("runtime_path") or None), name
    assert view["runtimes"]["nvidia"] == NVIDIA and view["runtimes"]["nvidia-cdi"] == NVIDIA + ".cdi"
    assert view["default_runtime"] == model["default"] == "nvidia"
    assert view["handlers"]["nvidia"]["runtime_path"] == NVIDIA

    # the running CRI-O (its status config) has not loaded the drop-in: the view says so
    assert command["source"] == "command"
    assert "nvidia" not in command["view"]["runtimes"] and command["view"]["default_runtime"] != "nvidia"
    assert snapshot(tmp_path / "node") == written                 # read only
    assert (tmp_path / "state" / "running.toml").read_text() == running


def test_query_of_a_crio_that_does_not_answer_names_the_command(tmp_path):
    node = Node(tmp_path, dropins=dir_fixture("pkgs-1.29"))
    (r,) = run_module_steps(MOD, [node.args(state="query", config_source=["command"])])
    assert r["failed"] is True and "crio binary" in r["msg"] and str(tmp_path / "no-crio") in r["msg"]
