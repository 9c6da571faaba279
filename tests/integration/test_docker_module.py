"""gpuops.nvidia.nvidia_docker_runtime against the REAL dockerd (Debian's 20.10 and 26.1).

Each daemon runs in a temp folder (docker_daemon.DockerDaemon: own data-root, exec-root, pidfile and
socket, no iptables, no bridge, the suite's containerd) under a respawning supervisor; the module
restarts it through a ``systemctl`` stand-in (``restart docker`` = SIGTERM, the supervisor starts it
again), like systemd's ``Restart=always`` would.  The NVIDIA runtime is the honest stand-in of
tests/integration/standins (it logs its call, then is runc).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import docker_daemon  # noqa: E402
import harness  # noqa: E402
from ansible_run import run_module, run_module_steps  # noqa: E402

from ansible_collections.gpuops.nvidia.plugins.module_utils import docker as engine  # noqa: E402
from ansible_collections.gpuops.nvidia.plugins.module_utils.common import default_runner  # noqa: E402
from ansible_collections.gpuops.nvidia.plugins.module_utils.service import wait_until  # noqa: E402

MOD = "gpuops.nvidia.nvidia_docker_runtime"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "docker"
SUITES = list(docker_daemon.SUITE_CONTAINERD)


def unavailable(reason):
    if harness.in_ci():
        pytest.fail("integration prerequisites missing in CI: " + reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def docker_builds():
    if os.geteuid() != 0:
        unavailable("needs root (dockerd, containerd, runc)")
    try:
        builds = docker_daemon.docker_builds()
        harness.busybox_path()
    except harness.BuildsUnavailable as e:
        unavailable(str(e))
    return builds


@pytest.fixture(params=SUITES)
def build(request, docker_builds):
    return docker_builds[request.param]


@pytest.fixture
def newest(docker_builds):
    """The build with ``dockerd --validate`` (trixie, 26.1)."""
    b = docker_builds["trixie"]
    assert b.has_validate, b
    return b


class Node:
    """daemon.json (and its record) in a temp /etc/docker, the stand-in runtime, a systemctl stand-in."""

    def __init__(self, tmp_path: Path, build, text=None):
        self.tmp = tmp_path
        self.build = build
        self.etc = tmp_path / "etc-docker"
        self.etc.mkdir()
        self.config = self.etc / "daemon.json"
        self.record = self.etc / "daemon.json.gpuops-nvidia"
        if text is not None:
            self.config.write_text(text)
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.standin_log = tmp_path / "nvidia-container-runtime.log"
        # the runtime docker runs: the stand-in with its log and runc set (the shim's environment is
        # containerd's, not ours)
        self.runtime = self.bin / "nvidia-container-runtime"
        self.runtime.write_text("#!/bin/sh\nNVIDIA_STANDIN_LOG=%s NVIDIA_STANDIN_RUNC=%s exec %s \"$@\"\n"
                                % (self.standin_log, Path(build.bindir) / "runc", harness.NVIDIA_STANDIN))
        self.runtime.chmod(0o755)
        for v in ("cdi", "legacy"):
            os.symlink(self.runtime.name, self.bin / ("nvidia-container-runtime." + v))

    def args(self, **kw):
        a = dict(config=str(self.config), runtime_path=str(self.runtime), dockerd_path=self.build.dockerd)
        a.update(kw)
        return a

    def snapshot(self):
        return {p.name: p.read_bytes() for p in self.etc.iterdir()}

    def standin_calls(self):
        try:
            return [line.split("\t") for line in self.standin_log.read_text().splitlines()]
        except FileNotFoundError:
            return []


def initial_config(build, tmp_path) -> str:
    """An operator's daemon.json that this dockerd starts with (layout to keep: 2 spaces, odd order)."""
    extra = build.base_config(tmp_path)
    lines = ['{', '  "log-level": "info",', '  "features": {', '    "buildkit": true', '  },',
             '  "max-concurrent-downloads": 2']
    for k, v in extra.items():
        lines[-1] += ","
        lines.append('  %s: %s' % (json.dumps(k), json.dumps(v)))
    return "\n".join(lines + ["}", ""])


# --------------------------------------------------------------------------- the whole life cycle

def test_present_restart_run_absent(tmp_path, build):
    """present -> restarted once, docker info shows the runtimes and the default, a container runs
    through the stand-in; a second run changes nothing; absent gives back the original bytes."""
    original = initial_config(build, tmp_path)
    node = Node(tmp_path, build, original)
    with docker_daemon.DockerDaemon(build, node.config) as d:
        d.fake_systemctl(node.bin)
        env = {"PATH": "%s:%s:%s" % (node.bin, build.bindir, harness.SYSTEM_PATH)}
        image = d.load_busybox()
        args = node.args(set_as_default=True, variants=["cdi"], enable_cdi=True, restart="systemd",
                         socket=d.socket, restart_timeout=60)

        r, again = run_module_steps(MOD, [args, args], env=env)
        assert r["failed"] is False, r
        assert r["changed"] is True and r["restarted"] is True and r["restart_method"] == "systemd"
        assert r["validated"] is build.has_validate
        if not build.has_validate:
            assert any("has no --validate" in w for w in r["warnings"])
        assert again["failed"] is False and again["changed"] is False and again["restarted"] is False, again
        assert d.restarts == 1
        info = d.docker_info()
        assert {"nvidia", "nvidia-cdi", "runc"} <= set(info["Runtimes"]), info["Runtimes"]
        assert info["Runtimes"]["nvidia"]["path"] == str(node.runtime)
        assert info["DefaultRuntime"] == "nvidia"
        if build.major >= 26:   # CDI device injection is on (verified on 26.1; 20.10 has no CDI)
            assert info["CDISpecDirs"], info
        written = node.config.read_text()
        assert written.startswith(original[:original.index('"buildkit": true')])
        assert json.loads(written)["features"] == {"buildkit": True, "cdi": True}

        out = d.docker("run", "--rm", "--runtime", "nvidia", "--network", "none", image, "echo", "hello").stdout
        assert out.strip() == "hello"
        calls = node.standin_calls()
        assert any(c[1] == "nvidia-container-runtime" and "create" in c for c in calls), calls
        n = len(calls)
        d.docker("run", "--rm", "--network", "none", image, "true")          # the default is nvidia now
        assert len(node.standin_calls()) > n

        gone = run_module(MOD, node.args(state="absent", variants=["cdi"], restart="systemd", socket=d.socket),
                          env=env)
        assert gone["failed"] is False and gone["changed"] is True and gone["restarted"] is True, gone
        assert node.config.read_text() == original and not node.record.exists()
        info = d.docker_info()
        assert "nvidia" not in info["Runtimes"] and info["DefaultRuntime"] == "runc"
        assert (node.bin / "systemctl.log").read_text().split("\n").count("restart docker") == 2


# --------------------------------------------------------------------------- dockerd --validate

@pytest.mark.parametrize("options", [
    {}, {"set_as_default": True, "enable_cdi": True, "variants": ["cdi", "legacy"], "runtime_args": ["--debug"]},
])
def test_dockerd_validate_accepts_every_file_the_module_writes(newest, options):
    for sample in sorted(FIXTURES.glob("*.json")):
        original = sample.read_text()
        files = {"/etc/docker/daemon.json": original}
        for state in ("present", "absent"):
            p = engine.plan(dict(options, state=state), read=files.get)
            engine.validate(p, newest.dockerd, default_runner)          # raises on a rejection
            for f in p.files:
                if f.after is None:
                    files.pop(f.path, None)
                else:
                    files[f.path] = f.after


BAD_FILES = [
    ('{\n  "debug": true,\n  "runtimes": {"crun": {"path": "/usr/bin/crun"}\n}\n', ["not valid JSON at line 5 column 1"]),
    ('[]\n', ["JSON object at the top level, not an array"]),
    ('{"runtimes": "nvidia"}\n', ["runtimes must be an object, but it is a string (line 1 column 14)"]),
    ('{\n  "bogus-key": 1\n}\n', ["dockerd --validate rejects", "don't match any configuration option: bogus-key"]),
]


def test_bad_files_are_errors_and_nothing_changes(tmp_path, newest):
    """Malformed JSON, a non-object top level, runtimes not an object, a key dockerd rejects: a clear
    error naming the file, in check mode too, and zero bytes changed."""
    nodes, steps = [], []
    for i, (text, _words) in enumerate(BAD_FILES):
        (tmp_path / str(i)).mkdir()
        node = Node(tmp_path / str(i), newest, text)
        nodes.append((node, node.snapshot()))
        steps.append(node.args(restart="none"))
    # check mode reports the same errors (dockerd --validate runs in check mode too)
    steps.append(dict(nodes[-1][0].args(restart="none"), _check=True))
    results = run_module_steps(MOD, steps)
    for i, (_text, words) in enumerate(BAD_FILES):
        node, before = nodes[i]
        for r in [results[i]] + (results[-1:] if i == len(BAD_FILES) - 1 else []):
            assert r["failed"] is True, r
            for w in words:
                assert w in r["msg"], r["msg"]
            assert str(node.config) in r["msg"]
        assert node.snapshot() == before


def test_check_mode_and_diff_write_nothing(tmp_path, newest):
    original = (FIXTURES / "handwritten.json").read_text()
    node = Node(tmp_path, newest, original)
    args = node.args(restart="none", enable_cdi=True)
    r, r2, real = run_module_steps(MOD, [dict(args, _check=True, _diff=True), dict(args, _check=True), args])
    assert r["failed"] is False and r["changed"] is True and r["validated"] is True, r
    assert r2["changed"] is True        # check mode wrote nothing: the second check still sees the change
    diffs = {d["after_header"]: d for d in r["diff"]}
    main = diffs["%s (after)" % node.config]
    assert main["before"] == original and '"cdi": true' in main["after"]
    assert "edits" in json.loads(diffs["%s (after)" % node.record]["after"])
    assert node.config.read_text() == main["after"] and real["changed"] is True


def test_symlink_mode_and_backup(tmp_path, newest):
    node = Node(tmp_path, newest)
    target = tmp_path / "real-daemon.json"
    target.write_text('{"debug": false}\n')
    target.chmod(0o600)
    node.config.symlink_to(target)
    r, check_after = run_module_steps(MOD, [node.args(restart="none", backup=True),
                                            dict(node.args(restart="none"), _check=True)])
    assert r["failed"] is False and r["changed"] is True, r
    assert check_after["changed"] is False
    assert node.config.is_symlink() and os.readlink(node.config) == str(target)
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert '"nvidia"' in target.read_text()
    assert len(r["backup_files"]) == 1 and Path(r["backup_files"][0]).read_text() == '{"debug": false}\n'
    run_module(MOD, node.args(state="absent", restart="none"))
    assert target.read_text() == '{"debug": false}\n' and node.config.is_symlink()
    assert oct(target.stat().st_mode & 0o777) == "0o600"


# --------------------------------------------------------------------------- restarts

def test_auto_restart_warns_when_docker_runs_outside_systemd(tmp_path, newest):
    node = Node(tmp_path, newest, initial_config(newest, tmp_path))
    with docker_daemon.DockerDaemon(newest, node.config) as d:
        r = run_module(MOD, node.args(socket=d.socket))        # restart: auto, no systemd here
        assert r["failed"] is False and r["changed"] is True and r["restarted"] is False, r
        assert any("is not the active systemd unit docker" in w for w in r["warnings"])
        assert d.restarts == 0


def test_a_daemon_that_does_not_come_back_is_rolled_back(tmp_path, newest):
    """The respawn crash-loops while the record file exists (the module creates it, rollback removes
    it): the module must put daemon.json back, restart again and fail."""
    original = initial_config(newest, tmp_path)
    node = Node(tmp_path, newest, original)
    with docker_daemon.DockerDaemon(newest, node.config, fail_flag=node.record) as d:
        d.fake_systemctl(node.bin)
        env = {"PATH": "%s:%s:%s" % (node.bin, newest.bindir, harness.SYSTEM_PATH)}
        r = run_module(MOD, node.args(restart="systemd", socket=d.socket, restart_timeout=5), env=env)
        assert r["failed"] is True and r["rolled_back"] is True, r
        assert "did not come back healthy" in r["msg"] and "previous files were restored" in r["msg"]
        assert node.config.read_text() == original and not node.record.exists()
        info = d.wait_healthy(30)
        assert "nvidia" not in info["Runtimes"]
        assert d.restarts >= 2 and "(failing)" in d.log()


@pytest.mark.parametrize("live_restore", [True, False], ids=["live-restore", "no-live-restore"])
def test_what_a_restart_means_for_running_containers(tmp_path, newest, live_restore):
    """What the module's documentation says: with live-restore a running container survives the
    restart the module does (same process); without it the container is stopped."""
    text = initial_config(newest, tmp_path)
    if live_restore:
        text = text.replace('"log-level": "info",', '"log-level": "info",\n  "live-restore": true,')
    node = Node(tmp_path, newest, text)
    with docker_daemon.DockerDaemon(newest, node.config) as d:
        d.fake_systemctl(node.bin)
        env = {"PATH": "%s:%s:%s" % (node.bin, newest.bindir, harness.SYSTEM_PATH)}
        image = d.load_busybox()
        cid = d.docker("run", "-d", "--network", "none", image, "sleep", "600").stdout.strip()
        pid = int(d.docker("inspect", "--format", "{{.State.Pid}}", cid).stdout)
        always = d.docker("run", "-d", "--restart", "always", "--network", "none", image, "sleep", "600").stdout.strip()
        always_pid = int(d.docker("inspect", "--format", "{{.State.Pid}}", always).stdout)
        r = run_module(MOD, node.args(restart="systemd", socket=d.socket), env=env)
        assert r["failed"] is False and r["restarted"] is True, r
        state = json.loads(d.docker("inspect", "--format", "{{json .State}}", cid).stdout)
        if live_restore:
            assert state["Running"] is True and state["Pid"] == pid and harness.pid_alive(pid)
        else:
            assert state["Running"] is False and not harness.pid_alive(pid)
            # a container with a restart policy is started again (a new process) by the new daemon
            assert not harness.pid_alive(always_pid)
            new = wait_until(lambda: json.loads(d.docker("inspect", "--format", "{{json .State}}", always).stdout)
                             .get("Pid") or None, 30)
            assert new and new != always_pid
        d.docker("rm", "-f", cid, always)
    # live-restore leaves dockerd's data-root mounted on purpose: the harness still leaves nothing behind
    assert not d.tmp.exists() and str(d.tmp) not in Path("/proc/self/mounts").read_text()


# --------------------------------------------------------------------------- inside the facts module (the plan)

@pytest.mark.parametrize("text", ["handwritten", BAD_FILES[-1][0]], ids=["change", "rejected"])
def test_the_facts_module_answers_as_the_module_check_mode(tmp_path, newest, text):
    """The role's plan asks the facts module (check_engine) instead of this module in check mode: the same verdict,
    diff, return values and errors, dockerd --validate included; nothing written."""
    original = (FIXTURES / "handwritten.json").read_text() if text == "handwritten" else text
    node = Node(tmp_path, newest, original)
    args = node.args(restart="none", enable_cdi=True)
    (tmp_path / "root").mkdir()
    facts, module = run_module_steps("gpuops.nvidia.nvidia_runtime_facts", [dict(
        root=str(tmp_path / "root"), engine="docker", engine_args={"docker": args}, check_engine=True, _diff=True)])[0], \
        run_module(MOD, args, check=True, diff=True)
    assert facts["failed"] is False and facts["ansible_facts"]["nvidia_runtime"]["module_args"] == args
    check = facts["engine_check"]
    for key in ("changed", "failed", "msg", "diff", "validated", "files", "runtimes", "default_runtime", "record"):
        assert check.get(key) == module.get(key), key
    assert module["failed"] is (text != "handwritten") and module["changed"] is True
    if module["failed"]:
        assert "dockerd --validate rejects" in check["msg"] and str(node.config) in check["msg"]
    assert node.config.read_text() == original and not node.record.exists()
