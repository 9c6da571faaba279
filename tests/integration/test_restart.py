"""The module's restart and rollback, through Ansible, against real containerd daemons.

Every test runs ``gpuops.nvidia.nvidia_containerd_runtime`` for real (``ansible_run.run_module``)
against a containerd kept alive by :class:`supervisor.Supervisor` (systemd ``Restart=always``
stand-in), and judges the result by what the daemon really loaded (CRI Status over gRPC), by the
supervisor's restart counter and by the bytes on disk.  Timing is by polling only (the module waits
for health itself; the harness's waits poll).
"""

from __future__ import annotations

import os
import re

import pytest

import harness
from ansible_run import run_module

pytestmark = pytest.mark.integration

MODULE = "gpuops.nvidia.nvidia_containerd_runtime"
STANDIN = str(harness.NVIDIA_STANDIN)
TIMEOUT = 20            # restart_timeout when the restart is expected to succeed (returns once healthy)
FAIL_TIMEOUT = 5        # when it is expected to fail: the module waits all of it, twice at worst


def default_config(build, path):
    """``containerd config default`` of this build with runc's SystemdCgroup = true (no nvidia)."""
    text = harness.config_default(build)
    text, n = re.subn(r"SystemdCgroup = false", "SystemdCgroup = true", text)
    assert n == 1, "expected exactly one SystemdCgroup in the default config of %s" % build
    assert "nvidia" not in text
    path.write_text(text)
    return path


def module_args(build, sup, config, **extra):
    args = dict(config=str(config), containerd_path=build.containerd, socket=sup.socket,
                runtime_path=STANDIN, restart_timeout=TIMEOUT, service="gpuops-test-no-such-unit")
    args.update(extra)
    return args


def runtimes(sup):
    return sup.cri_config()["containerd"]["runtimes"]


def assert_ok(result):
    assert not result["failed"], "%s\n%s" % (result.get("msg"), result.stdout[-3000:])


@pytest.fixture
def config(build, tmp_path):
    return default_config(build, tmp_path / "config.toml")


@pytest.fixture
def sup(build, config, supervisor_factory):
    s = supervisor_factory(build, config)
    assert s.cri_ok()
    assert "nvidia" not in runtimes(s)
    return s


def test_ctr_is_beside_containerd(build):
    """The module's health check uses the ctr found beside containerd_path: it must be there, or
    every test here would pass on 'socket answers' alone."""
    assert os.access(os.path.join(os.path.dirname(build.containerd), "ctr"), os.X_OK)


# --- 1 + 2: signal mode makes the change live; running containers survive; no change, no restart --

def test_signal_restart_makes_change_live_and_keeps_containers(build, config, sup, rootfs):
    ctr_pid = sup.run_container(rootfs, "keep", ["sleep", "3600"])
    old_pid, r0 = sup.pid, sup.restarts

    res = run_module(MODULE, module_args(build, sup, config, restart="signal"))
    assert_ok(res)
    assert res["changed"] is True
    assert res["restarted"] is True and res["restart_method"] == "signal"
    assert res["files"] == [str(config)]
    assert "rolled_back" not in res
    # exactly one respawn, caused by our SIGHUP, and the module returned only once the new one was up
    assert sup.restarts == r0 + 1
    assert (sup.exits[-1].pid, sup.exits[-1].signal) == (old_pid, "SIGHUP")
    assert sup.pid not in (None, old_pid) and harness.socket_owner_pid(sup.socket) == sup.pid

    # what the daemon really loaded now
    assert sup.cri_ok()
    rts = runtimes(sup)
    assert rts["nvidia"]["runtimeType"] == "io.containerd.runc.v2"
    assert rts["nvidia"]["options"]["BinaryName"] == STANDIN
    assert rts["nvidia"]["options"]["SystemdCgroup"] is True
    assert rts["nvidia"]["options"]["SystemdCgroup"] == rts["runc"]["options"]["SystemdCgroup"]
    assert sup.cri_config()["containerd"]["defaultRuntimeName"] == "runc"

    # 2: the container started before the restart still runs, same task, same pid
    assert harness.pid_alive(ctr_pid)
    assert sup.tasks()["keep"] == {"pid": ctr_pid, "status": "RUNNING"}

    # no change -> no restart
    written = config.read_bytes()
    pid = sup.pid
    res2 = run_module(MODULE, module_args(build, sup, config, restart="signal"))
    assert_ok(res2)
    assert res2["changed"] is False and res2["restarted"] is False and res2["restart_method"] is None
    assert sup.restarts == r0 + 1 and sup.pid == pid
    assert config.read_bytes() == written


# --- 3: the restart comes up unhealthy -> rollback, restart again, fail with a useful message -----

ROLLBACK_CASES = [
    # (build, fail mode, layout).  Each case waits restart_timeout in full: two cases keep CI short.
    # 1.7 drop-in: the intended fail_flag use (the file the module creates and its rollback deletes);
    # crash loop, nothing listens until the rollback; main file gets an imports line, restored exactly.
    ("1.7", "exit", "drop-in"),
    # 2.1 in place: the socket answers, io.containerd.cri.v1/runtime still loads "ok", but the CRI
    # gRPC service (io.containerd.grpc.v1/cri) is gone: a health check must not call that healthy.
    ("2.1", "no-cri", "in-place"),
]


@pytest.mark.parametrize("key,mode,layout", ROLLBACK_CASES, ids=["-".join(c) for c in ROLLBACK_CASES])
def test_unhealthy_restart_is_rolled_back(builds, key, mode, layout, tmp_path, supervisor_factory):
    build = builds[key]
    config = default_config(build, tmp_path / "config.toml")
    original = config.read_bytes()
    if layout == "drop-in":
        # the intended use of fail_flag: the file the module creates and its rollback deletes
        dropin = tmp_path / "conf.d" / "99-nvidia.toml"
        sup = supervisor_factory(build, config, fail_flag=dropin, fail_mode=mode)
        args = module_args(build, sup, config, restart="signal", restart_timeout=FAIL_TIMEOUT,
                           drop_in=str(dropin))
    else:
        # in place: the config file exists before and after, so fail while it holds our handler
        dropin = None
        sup = supervisor_factory(build, config, fail_mode=mode,
                                 fail_when=lambda: b"runtimes.nvidia" in config.read_bytes())
        args = module_args(build, sup, config, restart="signal", restart_timeout=FAIL_TIMEOUT)
    assert sup.cri_ok()
    old_pid, r0 = sup.pid, sup.restarts

    res = run_module(MODULE, args)

    assert res["failed"] is True, res
    assert res["rolled_back"] is True
    assert res["restarted"] is True and res["restart_method"] == "signal"
    written = {str(config)} | ({str(dropin)} if dropin is not None else set())
    assert set(res["files"]) == written                 # drop-in: the main file got an imports line
    msg = res["msg"]
    assert "did not come back healthy" in msg and sup.socket in msg, msg
    assert "restored" in msg and str(config) in msg, msg
    assert "still not healthy" not in msg, msg          # the rollback's restart succeeded
    # files: byte-identical to before; the drop-in is gone again
    assert config.read_bytes() == original
    if dropin is not None:
        assert not dropin.exists()
    # the broken start really happened, then the daemon came back healthy on the old config
    assert sup.exits[0].pid == old_pid and sup.exits[0].signal == "SIGHUP"
    assert any(e.mode == mode for e in sup.exits), sup.exits
    assert sup.restarts >= r0 + 2
    sup.wait_healthy(cri=True, timeout=TIMEOUT)
    assert sup.current_mode == "normal"
    assert sup.cri_ok()
    assert "nvidia" not in runtimes(sup)


# --- 4, 5, 6: auto without an active unit, none, check mode: nothing restarted --------------------
# The decision not to restart does not depend on the version: one build each (every build is used),
# an Ansible run costs ~3 s.

@pytest.mark.parametrize("build", ["1.6"], indirect=True)
def test_auto_without_unit_warns_and_does_not_restart(build, config, sup):
    pid, r0 = sup.pid, sup.restarts
    res = run_module(MODULE, module_args(build, sup, config, restart="auto"))
    assert_ok(res)
    assert res["changed"] is True and res["restarted"] is False and res["restart_method"] is None
    assert b"runtimes.nvidia" in config.read_bytes()
    warnings = " ".join(res.get("warnings", []))
    assert "restart it yourself" in warnings and sup.socket in warnings, res.get("warnings")
    assert sup.restarts == r0 and sup.pid == pid
    assert "nvidia" not in runtimes(sup)                  # not live until someone restarts it


@pytest.mark.parametrize("build", ["1.7"], indirect=True)
def test_none_writes_but_does_not_restart(build, config, sup):
    pid, r0 = sup.pid, sup.restarts
    res = run_module(MODULE, module_args(build, sup, config, restart="none"))
    assert_ok(res)
    assert res["changed"] is True and res["restarted"] is False and res["restart_method"] is None
    assert b"runtimes.nvidia" in config.read_bytes()
    assert not res.get("warnings"), res.get("warnings")
    assert sup.restarts == r0 and sup.pid == pid


@pytest.mark.parametrize("build", ["2.1"], indirect=True)
def test_check_mode_writes_and_restarts_nothing(build, config, sup):
    before = config.read_bytes()
    pid, r0 = sup.pid, sup.restarts
    res = run_module(MODULE, module_args(build, sup, config, restart="signal"), check=True)
    assert_ok(res)
    assert res["changed"] is True and res["restarted"] is False and res["restart_method"] is None
    assert res["files"] == [str(config)]
    assert config.read_bytes() == before
    assert sup.restarts == r0 and sup.pid == pid
