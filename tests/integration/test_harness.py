"""Tests of the harness itself: each would fail if the harness reported something the real daemon
did not do.  Run: /tmp/v/bin/pytest tests/integration/test_harness.py -q"""

from __future__ import annotations

import os
import signal
import subprocess

import grpc
import pytest
from hypothesis import given, strategies as st

import cri_client
import harness

pytestmark = pytest.mark.integration

V2_CRI = 'plugins."io.containerd.grpc.v1.cri"'
V3_CRI = 'plugins."io.containerd.cri.v1.runtime"'

NVIDIA_ONLY_V2 = """version = 2
[%(p)s.containerd.runtimes.nvidia]
  runtime_type = "io.containerd.runc.v2"
  [%(p)s.containerd.runtimes.nvidia.options]
    BinaryName = "/usr/bin/nvidia-container-runtime"
""" % {"p": V2_CRI}

FULL = """version = %(v)d
[%(p)s]
  enable_cdi = true
  [%(p)s.cni]
    conf_dir = "%(cni)s"
  [%(p)s.containerd]
    default_runtime_name = "nvidia"
    [%(p)s.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [%(p)s.containerd.runtimes.nvidia]
      runtime_type = "io.containerd.runc.v2"
      [%(p)s.containerd.runtimes.nvidia.options]
        BinaryName = "/usr/bin/nvidia-container-runtime"
        SystemdCgroup = true
"""


def write(path, text):
    path.write_text(text)
    return path


# --- cri_client wire format (no daemon) --------------------------------------------------------------

@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varint_roundtrip(n):
    enc = cri_client.encode_varint(n)
    assert cri_client.decode_varint(enc, 0) == (n, len(enc))


def test_status_request_bytes_and_decoding():
    assert cri_client.field_bool(1, True) == b"\x08\x01"
    cond = cri_client.field_string(1, "RuntimeReady") + cri_client.field_bool(2, True)
    raw = (cri_client.field_message(1, cri_client.field_message(1, cond))
           + cri_client.field_map(2, {"config": '{"enableCDI": true}', "golang": "go1.22"}))
    d = cri_client.decode_status_response(raw)
    assert d["conditions"]["RuntimeReady"]["status"] is True
    assert d["info"] == {"config": {"enableCDI": True}, "golang": "go1.22"}


# --- builds and one-shot commands --------------------------------------------------------------------

def test_builds_are_the_real_versions(builds):
    assert set(builds) == {"1.6", "1.7", "2.1"}
    for key, b in builds.items():
        assert b.version.startswith(key + ".")
        out = subprocess.run([b.containerd, "--version"], capture_output=True, text=True, check=True).stdout
        assert b.version in out, out
        for name in ("containerd", "ctr", "containerd-shim-runc-v2", "runc"):
            assert os.access(os.path.join(b.bindir, name), os.X_OK), name


def test_config_default_and_dump(build, tmp_path):
    default = harness.config_default(build)
    assert "version = %d" % build.config_version in default
    good = write(tmp_path / "good.toml", NVIDIA_ONLY_V2)
    rc, out, err = harness.config_dump(build, good)
    assert rc == 0, err
    assert "nvidia-container-runtime" in out
    bad = write(tmp_path / "bad.toml", 'version = 2\n[plugins."io.containerd.grpc.v1.cri"\n')
    rc, out, err = harness.config_dump(build, bad)
    assert rc != 0
    assert "bad.toml" in err and "TOML" in err


# --- the daemon --------------------------------------------------------------------------------------

def test_no_config_file_gives_builtin_defaults(build, daemon_factory):
    d = daemon_factory(build, None)
    assert d.version()["version"].startswith(build.version)
    assert harness.socket_owner_pid(d.socket) == d.pid      # the PID a module would signal
    assert d.cri_ok()
    cfg = d.cri_config()
    assert cfg["containerd"]["defaultRuntimeName"] == "runc"
    runc = cfg["containerd"]["runtimes"]["runc"]
    assert runc["runtimeType"] == "io.containerd.runc.v2"
    assert runc["options"]["SystemdCgroup"] is False and runc["options"]["BinaryName"] == ""
    assert cfg["cni"]["confDir"] == "/etc/cni/net.d"
    assert cfg.get("enableCDI", "absent") == {"1.6": "absent", "1.7": False, "2.1": True}[build.key]
    assert ("io.containerd.grpc.v1", "cri", "ok") in d.plugins()
    assert d.cri_error() == ""
    # isolation: the daemon sees private tmpfs mounts where containerd hard-codes host paths
    with open("/proc/%d/mountinfo" % d.pid) as f:
        mounts = {line.split(" - ")[0].split()[4]: line for line in f}
    for path in ("/run/containerd", "/run/nri", "/opt/containerd", "/etc/cni/net.d"):
        assert "gpuops-harness" in mounts.get(path, ""), path


def test_explicit_missing_config_refuses_to_start(build, tmp_path):
    with pytest.raises(harness.DaemonError, match="no such file or directory"):
        with harness.Daemon(build, tmp_path / "missing.toml", tmp_path / "d"):
            pass


def test_nvidia_only_runtimes_table(build, daemon_factory, tmp_path):
    """Field notes: a runtimes table holding only `nvidia` replaces the built-in map on 1.6/1.7, so the
    default `runc` is gone and CRI does not load; 2.1 merges it and loads."""
    d = daemon_factory(build, write(tmp_path / "config.toml", NVIDIA_ONLY_V2))
    assert d.alive()
    if build.key in ("1.6", "1.7"):
        assert not d.cri_ok()
        assert "no corresponding runtime configured" in d.log()
        assert "no corresponding runtime configured" in d.cri_error()
        assert ("io.containerd.grpc.v1", "cri", "error") in d.plugins()
        with pytest.raises(harness.CriUnavailable):
            d.cri_config()
    else:
        assert d.cri_ok()
        runtimes = d.cri_config()["containerd"]["runtimes"]
        assert set(runtimes) == {"runc", "nvidia"}
        assert runtimes["nvidia"]["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
        assert d.cri_status()["runtime_handlers"] == ["", "nvidia", "runc"]


@pytest.mark.parametrize("key,schema", [("1.6", 2), ("1.7", 2), ("2.1", 2), ("2.1", 3)])
def test_cri_config_keys(builds, key, schema, daemon_factory, tmp_path):
    """Pins the CRI JSON key names documented in cri_client (version 3 files exist on 2.x only; a
    version 2 file is migrated in memory there)."""
    build = builds[key]
    cni = tmp_path / "cni"                                   # the CRI plugin creates it: keep it ours
    text = FULL % {"v": schema, "p": V2_CRI if schema == 2 else V3_CRI, "cni": cni}
    d = daemon_factory(build, write(tmp_path / "config.toml", text))
    cfg = d.cri_config()
    assert cfg["containerd"]["defaultRuntimeName"] == "nvidia"
    nv = cfg["containerd"]["runtimes"]["nvidia"]
    assert nv["runtimeType"] == "io.containerd.runc.v2"
    assert nv["options"] == {"BinaryName": "/usr/bin/nvidia-container-runtime", "SystemdCgroup": True}
    assert cfg["cni"]["confDir"] == str(cni)
    runc_opts = cfg["containerd"]["runtimes"]["runc"]["options"]
    if build.key == "1.6":
        assert "enableCDI" not in cfg                        # enable_cdi ignored: no CDI in 1.6
    else:
        assert cfg["enableCDI"] is True
    if build.major < 2:
        assert runc_opts is None                             # written without options: null
    else:
        assert runc_opts["SystemdCgroup"] is False           # 2.x fills runc defaults


def test_container_survives_daemon_restart_and_uses_standin(builds, daemon_factory, rootfs, tmp_path):
    """ctr run --rootfs works here, through the NVIDIA stand-in; the container outlives containerd."""
    b = builds["1.7"]
    standin_log = tmp_path / "standin.log"
    d = daemon_factory(b, write(tmp_path / "config.toml", ""), env={"NVIDIA_STANDIN_LOG": str(standin_log)})
    pid = d.run_container(rootfs, "c1", ["sh", "-c", "echo hello-from-busybox; exec sleep 3600"],
                          runc_binary=str(harness.STANDINS / "nvidia-container-runtime.cdi"))
    assert harness.pid_alive(pid)
    assert harness._poll(lambda: "hello-from-busybox" in (d.tmpdir / "c1.out").read_text(), 10)
    calls = [line.split("\t") for line in standin_log.read_text().splitlines()]
    assert any(c[1] == "nvidia-container-runtime.cdi" and "create" in c for c in calls), calls
    old = d.pid
    new = d.restart()                                        # TERM containerd, start it again
    assert new != old and not harness.pid_alive(old)
    assert harness.pid_alive(pid)
    assert d.tasks()["c1"] == {"pid": pid, "status": "RUNNING"}


def test_pod_sandbox_encoders_are_understood(builds, daemon_factory):
    """The hand-written RunPodSandbox encoding reaches the CRI logic (no network needed: 2.1 checks
    the runtime handler before pulling the pause image)."""
    d = daemon_factory(builds["2.1"], None)
    cfg = cri_client.pod_sandbox_config("p1", "uid-1", "default")
    with pytest.raises(grpc.RpcError) as e:
        cri_client.run_pod_sandbox(d.socket, cfg, runtime_handler="nope", timeout=20)
    assert 'no runtime for "nope" is configured' in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        cri_client.call(d.socket, cri_client.RUNTIME_SERVICE + "RunPodSandbox", b"\xff\xff")
    assert e.value.code() == grpc.StatusCode.INTERNAL     # what a wrong encoding would look like


# --- the supervisor ----------------------------------------------------------------------------------

def test_supervisor_respawns_after_sighup(build, supervisor_factory, rootfs, tmp_path):
    sup = supervisor_factory(build, write(tmp_path / "config.toml", ""))
    assert sup.cri_ok()
    ctr_pid = sup.run_container(rootfs, "keep", ["sleep", "3600"])
    old = harness.socket_owner_pid(sup.socket)
    assert old == sup.pid
    r0 = sup.restarts
    os.kill(old, signal.SIGHUP)                               # what the module does
    sup.wait_restarts(r0 + 1)
    new = sup.wait_healthy(cri=True)
    assert new != old and harness.socket_owner_pid(sup.socket) == new
    assert sup.restarts == r0 + 1
    last = sup.exits[-1]
    assert (last.pid, last.signal, last.exit_status) == (old, "SIGHUP", 129)
    assert sup.cri_ok()
    assert sup.tasks()["keep"] == {"pid": ctr_pid, "status": "RUNNING"}
    assert harness.pid_alive(ctr_pid)


@pytest.mark.parametrize("mode", ["exit", "no-cri", "absent"])
def test_supervisor_injected_failure_and_recovery(builds, supervisor_factory, tmp_path, mode):
    """The rollback pattern: the flag is a file the 'module' creates (its drop-in) and its rollback
    removes.  While it exists the respawned daemon is broken; once removed, it recovers."""
    b = builds["2.1"]
    dropin = tmp_path / "conf.d" / "99-nvidia.toml"
    sup = supervisor_factory(b, write(tmp_path / "config.toml", ""), fail_flag=dropin, fail_mode=mode)
    assert sup.cri_ok()
    dropin.parent.mkdir()
    write(dropin, "# written by the module\n")               # module: change + restart
    r0 = sup.restarts
    os.kill(sup.pid, signal.SIGHUP)
    if mode == "exit":
        sup.wait_restarts(r0 + 2)                            # crash loop: several failing starts
        assert all(e.mode == "exit" and e.returncode == 1 for e in sup.exits[1:])
        assert "failed to unmarshal TOML" in sup.log()       # 2.1's own words about the bad file
    elif mode == "absent":
        sup.wait_restarts(r0 + 1)
        assert sup.pid is None and sup.current_mode == "absent"
    else:
        sup.wait_restarts(r0 + 1)
        sup.wait_ready(timeout=10)                           # the socket answers ...
        assert sup.version()["version"].startswith(b.version)
        assert not sup.cri_ok()                              # ... but CRI is gone
        assert not [p for p in sup.plugins() if p[:2] == ("io.containerd.grpc.v1", "cri")]
    if mode != "no-cri":
        with pytest.raises(harness.DaemonError):
            sup.wait_healthy(timeout=0.3)
    dropin.unlink()                                          # module: rollback ...
    if mode == "no-cri":
        assert sup.restart(signal.SIGHUP)                    # ... and restart again
    sup.wait_healthy(cri=True)                               # exit/absent: next start is normal
    assert sup.cri_ok()
    assert sup.current_mode == "normal"
    assert sup.exits[0].signal == "SIGHUP"
