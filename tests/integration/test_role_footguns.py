"""The role's foot-guns of issue 10 (items 13, 18, 19), run FOR REAL like test_role_sandbox.py.

* A default runtime that does not exist (13): ``nvidia_runtime_set_as_default`` with a missing
  ``nvidia_runtime_binary`` is refused on every engine (containerd, k0s, CRI-O, k3s, Docker) (one check, also in check mode and in the audit),
  unless ``nvidia_runtime_allow_missing_runtime_binary`` says this is a bootstrap: then it warns and writes.
* The toolkit must run the runtime the handler wraps (18, 19): ``nvidia-container-runtime.runtimes`` is left
  alone for ``runc`` (what the toolkit's own search ``["runc", "crun"]`` picks) and is exactly the wrapped
  runtime otherwise (crun by name, a path), without fallbacks.

Judged by the bytes on disk, by the real containerd builds (``config dump``) and by the play's output. The
stand-in nvidia-container-runtime does not read the toolkit's config, so the toolkit's choice is judged by the
config it reads (``runtimes``), per the toolkit 1.20 behaviour in FIELD-NOTES.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

import harness
from ansible_run import REPO_ROOT, run_playbook
from test_role_sandbox import (STANDIN, assert_ok, base_vars, containerd_vars, crio_vars, default_config, k0s_vars,
                               recap, run_role, tree)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOOLKIT_FIXTURE = REPO_ROOT / "tests/fixtures/toolkit/config-debian.toml"
ALLOW = "nvidia_runtime_allow_missing_runtime_binary"


def toolkit_config(tmp_path: Path) -> Path:
    return tmp_path / "etc/nvidia-container-runtime/config.toml"


def install_toolkit_config(tmp_path: Path, text: str | None = None) -> Path:
    """The toolkit package's config.toml (Debian, 1.x) in the sandbox, optionally edited."""
    path = toolkit_config(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TOOLKIT_FIXTURE.read_text() if text is None else text)
    return path


def containerd_config(path: Path, default: str, binary: str | None) -> Path:
    """A containerd 1.7 (version 2) config whose default runtime is ``default`` (runc shim), with BinaryName."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    text = ('version = 2\n'
            f'[{cri}.containerd]\n'
            f'  default_runtime_name = "{default}"\n'
            f'[{cri}.containerd.runtimes.{default}]\n'
            '  runtime_type = "io.containerd.runc.v2"\n'
            f'[{cri}.containerd.runtimes.{default}.options]\n'
            + (f'  BinaryName = "{binary}"\n' if binary else '')
            + '  SystemdCgroup = true\n')
    path.write_text(text)
    return path


def k3s_vars(tmp_path: Path, **extra) -> dict:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    v = base_vars(tmp_path)
    v.update({
        "nvidia_runtime_engine": "k3s",
        "nvidia_runtime_k3s_config_dir": str(tmp_path / "etc/rancher/k3s"),
        "nvidia_runtime_k3s_data_dir": str(tmp_path / "var/lib/rancher/k3s"),
        "nvidia_runtime_binary": str(bindir / "nvidia-container-runtime"),
        "nvidia_runtime_k3s_runtime_search_dirs": [str(bindir)],
    })
    v.update(extra)
    return v


# --------------------------------------------------------------------------------------------- item 13

def engine_vars(engine: str, tmp_path: Path, builds) -> dict:
    """Vars of a sandbox for ``engine`` whose default runtime would be a runtime that is not installed."""
    missing = str(tmp_path / "opt/not-installed/nvidia-container-runtime")
    if engine == "containerd":
        build = builds["1.7"]
        config = default_config(build, tmp_path / "etc/containerd/config.toml")
        ev = containerd_vars(tmp_path, build, config)
    elif engine == "k0s":
        ev = k0s_vars(tmp_path, nvidia_runtime_k0s_version="v1.36.0+k0s.0")
    elif engine == "crio":
        ev = crio_vars(tmp_path, "/usr/libexec/crio/crun")
    elif engine == "docker":   # refused before the module runs: no dockerd needed
        ev = dict(base_vars(tmp_path), nvidia_runtime_engine="docker", nvidia_runtime_restart="none",
                  nvidia_runtime_docker_config=str(tmp_path / "etc/docker/daemon.json"),
                  nvidia_runtime_docker_path=str(tmp_path / "no-dockerd-here"),
                  nvidia_runtime_docker_socket=str(tmp_path / "docker.sock"))
    else:
        ev = k3s_vars(tmp_path)
        (tmp_path / "bin/nvidia-container-runtime").unlink(missing_ok=True)
        missing = ev["nvidia_runtime_binary"]
    ev.update({"nvidia_runtime_set_as_default": True, "nvidia_runtime_binary": missing})
    return ev


@pytest.mark.parametrize("engine", ["containerd", "k0s", "crio", "k3s", "docker"])
def test_missing_default_runtime_is_refused_on_every_engine(tmp_path, builds, engine):
    """set_as_default with a runtime binary that does not exist: one rule for every engine, check mode included
    (it reports the error a real run would hit); nothing is written."""
    ev = engine_vars(engine, tmp_path, builds)
    missing = ev["nvidia_runtime_binary"]
    before = tree(tmp_path)
    for check in (True, False):
        rc, out, err, dummy = run_role(tmp_path, ev, check=check)
        assert rc != 0, "the role made a missing runtime the default (check=%s):\n%s" % (check, out[-4000:])
        text = out + err
        assert "nvidia_runtime_set_as_default=true but the runtime %s (nvidia_runtime_binary) does not exist" % missing in text
        assert ALLOW + "=true" in text
        assert "Stop before making a missing runtime the default" in out
        assert tree(tmp_path) == before


@pytest.mark.parametrize("build_key", ["1.7", "2.1"])
def test_missing_default_runtime_allowed_for_a_bootstrap_warns_and_writes(tmp_path, builds, build_key):
    """The operator says it is a bootstrap: the role goes on, says loudly what fails until the toolkit is
    installed, and containerd loads nvidia as its default runtime; the second run changes nothing."""
    build = builds[build_key]
    config = default_config(build, tmp_path / "etc/containerd/config.toml")
    missing = str(tmp_path / "opt/not-installed/nvidia-container-runtime")
    ev = containerd_vars(tmp_path, build, config, nvidia_runtime_set_as_default=True, nvidia_runtime_binary=missing,
                         **{ALLOW: True})
    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert "WARNING: %s does not exist, yet it becomes the default runtime of containerd" % missing in out
    assert "every pod without a RuntimeClass fails to start" in out
    assert result["engine_changed"] is True

    rc2, dump, derr = harness.config_dump(build, config)
    assert rc2 == 0, derr
    assert re.search(r"default_runtime_name = ['\"]nvidia['\"]", dump)
    assert re.search(r"runtimes\.nvidia\.options\]\s*\n\s*BinaryName = ['\"]%s['\"]" % re.escape(missing), dump)

    snapshot = tree(tmp_path)
    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert recap(out)["changed"] == 0
    assert tree(tmp_path) == snapshot


def test_existing_default_runtime_is_not_warned_about(tmp_path, builds):
    """The runtime exists: no warning, no note; the default is written."""
    build = builds["1.7"]
    config = default_config(build, tmp_path / "etc/containerd/config.toml")
    ev = containerd_vars(tmp_path, build, config, nvidia_runtime_set_as_default=True, nvidia_runtime_binary=STANDIN)
    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert "Stop before making a missing runtime the default" in out    # the check ran, and passed
    assert "WARNING:" not in out and "does not exist yet" not in out
    assert 'default_runtime_name = "nvidia"' in config.read_text()


def localhost_inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": {"gpu_nodes": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
    return inv


def test_audit_reports_a_missing_default_runtime_unless_the_toolkit_would_install_it(tmp_path, builds):
    """The audit asks the same check as a real run: with the toolkit packages off, the missing default runtime is
    the host's error; with them on (the real run installs them before the engine step), it is not judged yet."""
    build = builds["2.1"]
    sb = tmp_path / "sb"
    config = default_config(build, sb / "etc/containerd/config.toml")
    missing = str(sb / "opt/not-installed/nvidia-container-runtime")
    ev = containerd_vars(sb, build, config, nvidia_runtime_set_as_default=True, nvidia_runtime_binary=missing)
    ev.update({"ansible_become": False, "nvidia_runtime_audit_dir": str(tmp_path / "audit")})
    inv = localhost_inventory(tmp_path)
    audit = REPO_ROOT / "playbooks/audit.yml"
    before = tree(sb)

    rc, out, err = run_playbook(audit, extravars=ev, inventory=inv)
    assert_ok(rc, out, err)
    (row,) = json.loads((tmp_path / "audit/report.json").read_text())["hosts"]
    assert row["state"] == "error", row
    assert "(nvidia_runtime_binary) does not exist" in row["error"] and ALLOW in row["error"]

    rc, out, err = run_playbook(audit, extravars=dict(ev, nvidia_runtime_toolkit_install=True), inventory=inv)
    assert_ok(rc, out, err)
    (row,) = json.loads((tmp_path / "audit/report.json").read_text())["hosts"]
    assert row["error"] is None and row["state"] == "unconfigured", row
    assert "the toolkit packages a real run installs first should" in out
    assert tree(sb) == before


# --------------------------------------------------------------------------------------------- items 18 and 19

@pytest.mark.parametrize("default, binary, expected", [
    ("crun", "crun", ["crun"]),                                  # crun by name: the toolkit would pick runc
    ("crun", "/usr/local/bin/crun", ["/usr/local/bin/crun"]),    # a path: exactly it, no fallbacks
    ("runc", "/opt/runc/bin/runc", ["/opt/runc/bin/runc"]),
    ("runc", None, None),                                        # runc: the toolkit's own search picks it
])
def test_toolkit_runs_exactly_the_runtime_the_handler_wraps(tmp_path, builds, default, binary, expected):
    build = builds["1.7"]
    config = containerd_config(tmp_path / "etc/containerd/config.toml", default, binary)
    package = TOOLKIT_FIXTURE.read_text()
    tk = install_toolkit_config(tmp_path)
    ev = containerd_vars(tmp_path, build, config)
    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert result["low_level_runtime"] == (binary or "runc")
    text = tk.read_text()
    if expected is None:
        assert text == package and result["toolkit_config_changed"] is False
    else:
        line = "runtimes = %s" % json.dumps(expected)
        assert text == package.replace('runtimes = ["docker-runc", "runc", "crun"]', line)
        assert result["toolkit_config_changed"] is True

    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert recap(out)["changed"] == 0 and tk.read_text() == text


def test_toolkit_fallbacks_written_earlier_are_dropped(tmp_path, builds):
    """A node the role aligned before (path first, then docker-runc, runc, crun): the list becomes the path only."""
    build = builds["1.7"]
    config = containerd_config(tmp_path / "etc/containerd/config.toml", "crun", "/usr/local/bin/crun")
    old = TOOLKIT_FIXTURE.read_text().replace('runtimes = ["docker-runc", "runc", "crun"]',
                                              'runtimes = ["/usr/local/bin/crun", "docker-runc", "runc", "crun"]')
    tk = install_toolkit_config(tmp_path, old)
    rc, out, err, result = run_role(tmp_path, containerd_vars(tmp_path, build, config))
    assert_ok(rc, out, err)
    assert 'runtimes = ["/usr/local/bin/crun"]\n' in tk.read_text()
    assert "docker-runc" not in tk.read_text()


def test_operator_runtimes_list_wins(tmp_path, builds):
    build = builds["1.7"]
    config = containerd_config(tmp_path / "etc/containerd/config.toml", "crun", "crun")
    tk = install_toolkit_config(tmp_path)
    ev = containerd_vars(tmp_path, build, config,
                         nvidia_runtime_toolkit_settings={"nvidia-container-runtime.runtimes": ["crun", "runc"]})
    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert 'runtimes = ["crun", "runc"]\n' in tk.read_text()


@pytest.mark.parametrize("runtime_path, expected", [("", "crun"), ("/usr/libexec/crio/crun", "/usr/libexec/crio/crun")])
def test_crio_toolkit_runtimes_exactly_the_wrapped_runtime(tmp_path, runtime_path, expected):
    """CRI-O's crun (by name: CRI-O finds it on PATH, so must the toolkit; or at its path): exactly that runtime."""
    tk = install_toolkit_config(tmp_path)
    rc, out, err, result = run_role(tmp_path, crio_vars(tmp_path, runtime_path))
    assert_ok(rc, out, err)
    assert result["low_level_runtime"] == expected
    assert "runtimes = %s\n" % json.dumps([expected]) in tk.read_text()


def test_removed_fallback_variable_is_refused(tmp_path):
    ev = base_vars(tmp_path)
    ev.update({"nvidia_runtime_engine": "none", "nvidia_runtime_toolkit_runtimes_fallback": ["runc"]})
    rc, out, err, dummy = run_role(tmp_path, ev)
    assert rc != 0 and "nvidia_runtime_toolkit_runtimes_fallback is gone" in out + err
