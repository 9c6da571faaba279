"""gpuops.nvidia.nvidia_crio_runtime run through Ansible for real, on temp folders.

No CRI-O build exists for this machine: the files are judged with an independent model of CRI-O's
loading (tests/unit/plugins/module_utils/test_crio_engine.py), and the reload/rollback path runs against stand-ins: a
``crio`` whose ``status config`` prints what a fake ``systemctl reload`` "loaded", and a unix socket
that answers. What a real CRI-O does on SIGHUP is NOT exercised here.
"""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from ansible_run import run_module, run_module_steps
from unix_server import unix_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit" / "plugins" / "module_utils"))
from test_crio_engine import FIX, NVIDIA, dir_fixture, snapshot  # noqa: E402
from test_crio_engine import Node as EngineNode  # noqa: E402

MOD = "gpuops.nvidia.nvidia_crio_runtime"
pytestmark = pytest.mark.integration


class Node(EngineNode):
    """The engine tests' node, with the module's arguments."""

    def args(self, **kw):
        a = dict(config=str(self.main), config_dir=str(self.cdir), drop_in=str(self.drop),
                 crio_path=str(self.root / "no-crio"), socket=str(self.root / "crio.sock"), restart="none")
        a.update(kw)
        return a


def test_check_mode_apply_idempotence_and_absent(tmp_path):
    node = Node(tmp_path, dropins=dir_fixture("pkgs-1.29"))
    original = snapshot(tmp_path)
    check, apply, again = run_module_steps(MOD, [
        dict(node.args(set_as_default=True, variants=["cdi"]), _check=True, _diff=True),
        node.args(set_as_default=True, variants=["cdi"]),
        node.args(set_as_default=True, variants=["cdi"]),
    ])
    for r in (check, apply, again):
        assert r["failed"] is False, r
    # check mode: the real diff, nothing written
    assert check["changed"] is True and check["files"] == [str(node.drop)]
    (d,) = check["diff"]
    assert d["before_header"] == "%s (absent)" % node.drop and d["after_header"] == "%s (after)" % node.drop
    assert d["before"] == "" and 'default_runtime = "nvidia"' in d["after"]
    assert check["default_runtime"] == "nvidia"
    # apply: the text check mode showed
    assert apply["changed"] is True and node.drop.read_text() == d["after"]
    assert apply["source"] == "file" and apply["default_runtime"] == "nvidia"
    assert apply["runtimes"] == ["nvidia", "nvidia-cdi"] and apply["low_level_runtime"] == "/usr/libexec/crio/crun"
    assert apply["restarted"] is False and apply["restart_method"] is None and apply["backup_files"] == []
    eff = node.effective()
    assert eff["default"] == "nvidia" and eff["runtimes"]["nvidia-cdi"]["runtime_path"] == NVIDIA + ".cdi"
    # second run: nothing
    assert again["changed"] is False and again["files"] == []
    # absent: the deletion in check mode, then the original bytes
    check_absent, absent = run_module_steps(MOD, [dict(node.args(state="absent"), _check=True, _diff=True),
                                                  node.args(state="absent")])
    (d,) = check_absent["diff"]
    assert d["after_header"] == "%s (deleted)" % node.drop and d["after"] == ""
    assert absent["changed"] is True and absent["runtimes"] == [] and absent["default_runtime"] == "crun"
    assert snapshot(tmp_path) == original


@pytest.mark.parametrize("in_place", ["", None])
def test_in_place_with_backups_outside_the_drop_in_folder(tmp_path, in_place):
    original = (FIX / "crio.conf").read_text()
    node = Node(tmp_path, main=original)
    present, absent = run_module_steps(MOD, [node.args(drop_in=in_place, backup=True, set_as_default=True),
                                             node.args(drop_in=in_place, backup=True, state="absent")])
    assert present["failed"] is False and absent["failed"] is False, (present, absent)
    assert present["files"] == [str(node.main)] and not node.drop.exists()
    for r in (present, absent):
        (b,) = r["backup_files"]
        assert Path(b).parent == node.etc and not Path(b).is_relative_to(node.cdir)
    assert Path(present["backup_files"][0]).read_text() == original
    assert node.main.read_text() == original


def test_backup_of_a_foreign_drop_in_goes_to_backup_dir(tmp_path):
    node = Node(tmp_path, dropins=dir_fixture("pkgs-1.29"))
    target = node.cdir / "10-crio.conf"
    r = run_module(MOD, node.args(drop_in=str(target), backup=True, backup_dir=str(tmp_path / "bak")))
    assert r["failed"] is False, r
    (b,) = r["backup_files"]
    assert Path(b).parent == tmp_path / "bak" and sorted(os.listdir(node.cdir)) == ["10-crio.conf"]
    r = run_module(MOD, node.args(backup=True, backup_dir=str(node.cdir / "old")))
    assert r["failed"] is True and "inside config_dir" in r["msg"]


def test_errors_change_nothing(tmp_path):
    node = Node(tmp_path, dropins={**dir_fixture("pkgs-1.29"), "50-bad.conf": "[crio.runtime\n"})
    blocked = Node(tmp_path / "later", dropins=dir_fixture("later"))
    notdir = tmp_path / "plain-file"
    notdir.write_text("")
    unwritable = Node(tmp_path / "unwritable")
    before = snapshot(tmp_path)
    bad_toml, override, unwritable_r = run_module_steps(MOD, [
        node.args(),
        blocked.args(),
        unwritable.args(config_dir=str(notdir / "crio.conf.d"), drop_in=str(notdir / "crio.conf.d" / "99-nvidia.toml")),
    ])
    assert bad_toml["failed"] and "malformed TOML in %s:1" % (node.cdir / "50-bad.conf") in bad_toml["msg"]
    assert override["failed"] and "99-nvidia.toml.bak loads after" in override["msg"]
    assert unwritable_r["failed"] and "cannot write" in unwritable_r["msg"]
    assert snapshot(tmp_path) == before


def test_a_value_where_a_table_must_be(tmp_path):
    node = Node(tmp_path, main='[crio]\nruntime = "crun"\n')
    r = run_module(MOD, node.args())
    assert r["failed"] is True and "crio.runtime must be a table" in r["msg"]
    assert not node.drop.exists()


def test_gpu_operator_file_is_reported(tmp_path):
    node = Node(tmp_path, dropins={**dir_fixture("pkgs-1.29"), **dir_fixture("gpu-operator")})
    r = run_module(MOD, node.args())
    assert r["failed"] is False, r
    assert any("99-nvidia.conf also defines nvidia" in w for w in r.get("warnings", []))
    assert node.effective()["runtimes"]["nvidia"]["runtime_path"] == NVIDIA


# -- restarts, with stand-ins ------------------------------------------------------------------------
@pytest.fixture
def answering_socket(tmp_path):
    with unix_server(str(tmp_path / "crio.sock")) as path:
        yield path


def stand_ins(tmp_path: Path, node: Node) -> dict[str, str]:
    """PATH with a fake ``crio`` (status config = state/running.toml) and ``systemctl`` (reload/restart
    "load" the drop-in into running.toml when GPUOPS_FAKE_RELOAD=apply; do nothing when =ignore)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    state = tmp_path / "state"
    state.mkdir()
    (state / "running.toml").write_text((node.cdir / "10-crio.conf").read_text())
    scripts = {
        "crio": f"""#!/bin/sh
[ "$1" = "--version" ] && {{ echo "crio version 1.31.3"; exit 0; }}
[ "$1" = "status" ] && [ "$4" = "config" ] && {{ cat {state}/running.toml; exit $?; }}
exit 2
""",
        "systemctl": f"""#!/bin/sh
echo "$*" >> {state}/systemctl.log
case "$1" in
  is-active) echo inactive; exit 3;;
  reload|restart)
    if [ "$GPUOPS_FAKE_RELOAD" = apply ]; then
      if [ -f {node.drop} ]; then cat {node.drop} > {state}/running.toml
      else cat {node.cdir}/10-crio.conf > {state}/running.toml; fi
    fi
    exit 0;;
esac
exit 1
""",
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755 | stat.S_IEXEC)
    return {"PATH": "%s:%s" % (bin_dir, os.environ["PATH"])}


@pytest.mark.parametrize("method", ["reload", "systemd"])
def test_a_handler_change_restarts_and_checks_that_the_handler_is_loaded(tmp_path, answering_socket, method):
    """cri-o/cri-o#10202: a reload leaves RunPodSandbox on the old handlers, so a handler change restarts
    CRI-O (an explicit reload is upgraded, with a warning). restart: auto needs a running systemd (not
    here): its choice is engine.restart_method's, unit-tested."""
    node = Node(tmp_path / "node", dropins=dir_fixture("pkgs-1.29"))
    env = stand_ins(tmp_path, node)
    env["GPUOPS_FAKE_RELOAD"] = "apply"
    r = run_module(MOD, node.args(crio_path="crio", socket=answering_socket, restart=method, restart_timeout=5), env=env)
    assert r["failed"] is False, r
    assert r["restarted"] is True and r["restart_method"] == "systemd"
    assert r["source"] == "command" and r["crio_version"] == "1.31.3"
    calls = (tmp_path / "state" / "systemctl.log").read_text().splitlines()
    assert [c for c in calls if not c.startswith("is-active")] == ["restart crio"]
    upgraded = [w for w in r.get("warnings", []) if "restart: reload cannot apply" in w]
    assert bool(upgraded) == (method == "reload")
    assert all("cri-o/cri-o#10202" in w for w in upgraded)


def test_a_reload_stays_a_reload_for_a_change_that_leaves_the_handlers_alone(tmp_path, answering_socket):
    """In place -> drop-in: files change, CRI-O's handlers and default stay the same: a reload is enough."""
    node = Node(tmp_path / "node", main=(FIX / "crio.conf").read_text(), dropins=dir_fixture("pkgs-1.29"))
    first = run_module(MOD, node.args(drop_in=None))
    assert first["failed"] is False and first["changed"] is True, first
    env = stand_ins(tmp_path, node)
    env["GPUOPS_FAKE_RELOAD"] = "apply"
    r = run_module(MOD, node.args(crio_path="crio", socket=answering_socket, restart="reload", restart_timeout=5), env=env)
    assert r["failed"] is False, r
    assert r["changed"] is True and r["restarted"] is True and r["restart_method"] == "reload"
    assert not any("cannot apply" in w for w in r.get("warnings", []))
    calls = (tmp_path / "state" / "systemctl.log").read_text().splitlines()
    assert [c for c in calls if not c.startswith("is-active")] == ["reload crio"]


def test_a_handler_the_running_crio_left_out_is_restarted(tmp_path, answering_socket):
    """The files already define the handler, but CRI-O started before its binary existed: restart."""
    node = Node(tmp_path / "node", dropins=dir_fixture("pkgs-1.29"))
    binary = tmp_path / "nvidia-container-runtime"
    binary.write_text("")
    assert run_module(MOD, node.args(runtime_path=str(binary)))["changed"] is True
    env = stand_ins(tmp_path, node)          # running.toml: 10-crio.conf, without the handler
    env["GPUOPS_FAKE_RELOAD"] = "apply"
    log = tmp_path / "state" / "systemctl.log"
    args = node.args(crio_path="crio", socket=answering_socket, restart="reload", restart_timeout=5,
                     runtime_path=str(binary))
    check, check_auto, none = run_module_steps(MOD, [dict(args, _check=True), dict(args, _check=True, restart="auto"),
                                                     dict(args, restart="none")], env=env)
    assert check["changed"] is True and check["files"] == [] and check["restarted"] is False
    assert check_auto["changed"] is False          # no active unit (no systemd here): auto would not restart
    assert none["changed"] is False and any("does not use it" in w and "restart CRI-O" in w for w in none["warnings"])
    assert not log.exists() or "restart" not in log.read_text()
    r = run_module(MOD, args, env=env)
    assert r["failed"] is False, r
    assert r["changed"] is True and r["files"] == [] and r["restarted"] is True and r["restart_method"] == "systemd"
    assert log.read_text().splitlines()[-1] == "restart crio"
    again = run_module(MOD, args, env=env)
    assert again["changed"] is False and again["restarted"] is False


def test_a_restart_that_does_not_take_is_rolled_back(tmp_path, answering_socket):
    node = Node(tmp_path / "node", dropins=dir_fixture("pkgs-1.29"))
    before = snapshot(node.root)
    env = stand_ins(tmp_path, node)
    env["GPUOPS_FAKE_RELOAD"] = "ignore"
    r = run_module(MOD, node.args(crio_path="crio", socket=answering_socket, restart="reload", restart_timeout=2),
                   env=env)
    assert r["failed"] is True and r["rolled_back"] is True
    assert "did not come back healthy" in r["msg"] and "runtime_path None for the nvidia handler" in r["msg"]
    assert "previous files were restored" in r["msg"]
    assert snapshot(node.root) == before
    assert (tmp_path / "state" / "systemctl.log").read_text().count("restart crio") == 2


def test_an_existing_handler_is_kept_and_restored(tmp_path):
    """Issue 9 item 3 through Ansible: the owner's tuned table keeps its keys; absent gives its bytes back."""
    from test_crio_engine import TUNED
    original = (FIX / "crio.conf").read_text().replace("[crio.image]", TUNED + "[crio.image]", 1)
    node = Node(tmp_path, main=original)
    present, again, absent = run_module_steps(MOD, [node.args(drop_in=None), node.args(drop_in=None),
                                                    node.args(drop_in=None, state="absent")])
    assert present["failed"] is False and present["changed"] is True, present
    assert again["changed"] is False and absent["changed"] is True
    assert node.main.read_text() == original


def test_auto_without_an_active_unit(tmp_path, answering_socket):
    node = Node(tmp_path / "node", dropins=dir_fixture("pkgs-1.29"))
    binary = tmp_path / "nvidia-container-runtime"
    binary.write_text("")
    quiet, warned = run_module_steps(MOD, [
        node.args(restart="auto", drop_in=str(node.cdir / "98-a.toml"), runtime_path=str(binary)),
        node.args(restart="auto", socket=answering_socket, runtime_path=str(binary)),
    ])
    assert quiet["failed"] is False and quiet["restarted"] is False and not quiet.get("warnings")
    assert warned["failed"] is False and warned["restarted"] is False
    assert any("answers on %s but the systemd unit crio is not active" % answering_socket in w
               for w in warned["warnings"])


# --------------------------------------------------------------------------- inside the facts module (the plan)

def test_the_facts_module_answers_as_the_module_check_mode(tmp_path):
    """The role's plan asks the facts module (check_engine) instead of this module in check mode: the same verdict,
    diff and return values, and nothing written; then, applied, both see nothing to do."""
    node = Node(tmp_path, dropins=dir_fixture("pkgs-1.29"))
    original = snapshot(tmp_path)
    args = node.args(set_as_default=True, variants=["cdi"])
    (tmp_path / "facts-root").mkdir()
    ask = dict(root=str(tmp_path / "facts-root"), engine="crio", engine_args={"crio": args}, check_engine=True, _diff=True)
    facts, module, applied, facts_after = run_module_steps("gpuops.nvidia.nvidia_runtime_facts", [ask]) + \
        run_module_steps(MOD, [dict(args, _check=True, _diff=True), args]) + \
        run_module_steps("gpuops.nvidia.nvidia_runtime_facts", [ask])
    assert facts["failed"] is False and facts["ansible_facts"]["nvidia_runtime"]["module_args"] == args
    for key in ("changed", "failed", "diff", "files", "runtimes", "default_runtime", "low_level_runtime", "source"):
        assert facts["engine_check"].get(key) == module.get(key), key
    assert module["changed"] is True and applied["changed"] is True and snapshot(tmp_path) != original
    assert facts_after["engine_check"]["changed"] is False and facts_after["engine_check"]["files"] == []
