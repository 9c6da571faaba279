"""gpuops.nvidia.nvidia_toolkit_config run through Ansible for real (ansible-playbook, connection local)."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_run import ansible_env, run_module, run_module_steps

pytestmark = pytest.mark.integration

MODULE = "gpuops.nvidia.nvidia_toolkit_config"
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "toolkit" / "config-debian.toml"
DEBIAN = FIXTURE.read_text()
SETTINGS = {
    "nvidia-container-runtime.runtimes": ["/usr/bin/crun", "runc"],
    "nvidia-container-runtime.mode": "cdi",
    "nvidia-container-cli.no-cgroups": True,
}
EXPECTED = (DEBIAN
            .replace('runtimes = ["docker-runc", "runc", "crun"]', 'runtimes = ["/usr/bin/crun", "runc"]')
            .replace('mode = "auto"', 'mode = "cdi"')
            .replace("#no-cgroups = false\n", "#no-cgroups = false\nno-cgroups = true\n"))


@pytest.fixture
def config(tmp_path):
    p = tmp_path / "nvidia-container-runtime" / "config.toml"
    p.parent.mkdir()
    p.write_bytes(FIXTURE.read_bytes())
    return p


def test_check_mode_writes_nothing_and_returns_the_diff(config):
    before = config.stat()
    r = run_module(MODULE, {"path": str(config), "settings": SETTINGS}, check=True, diff=True)
    assert not r["failed"], r
    assert r["changed"] is True
    assert r["diff"] == [dict(before=DEBIAN, after=EXPECTED, before_header="%s (before)" % config,
                              after_header="%s (after)" % config)]   # the runtime modules' list form
    assert r["settings"] == SETTINGS
    assert config.read_text() == DEBIAN
    assert config.stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(os.listdir(config.parent)) == ["config.toml"]   # no temporary or backup file either


def test_apply_then_second_run_is_unchanged(config):
    config.chmod(0o640)
    r = run_module(MODULE, {"path": str(config), "settings": SETTINGS})
    assert not r["failed"], r
    assert r["changed"] is True and r["path"] == str(config) and r["backup_file"] is None
    assert r["settings"] == SETTINGS
    assert config.read_text() == EXPECTED
    assert stat.S_IMODE(config.stat().st_mode) == 0o640           # an existing file keeps its mode
    mtime = config.stat().st_mtime_ns

    again = run_module(MODULE, {"path": str(config), "settings": SETTINGS}, diff=True)
    assert not again["failed"], again
    assert again["changed"] is False
    assert again["diff"] == []
    assert config.read_text() == EXPECTED
    assert config.stat().st_mtime_ns == mtime

    back = run_module(MODULE, {"path": str(config), "unset": ["nvidia-container-cli.no-cgroups"],
                               "settings": {"nvidia-container-runtime.runtimes": ["docker-runc", "runc", "crun"],
                                            "nvidia-container-runtime.mode": "auto"}})
    assert not back["failed"], back
    assert back["changed"] is True
    assert config.read_bytes() == FIXTURE.read_bytes()


def test_backup(config):
    r = run_module(MODULE, {"path": str(config), "settings": {"nvidia-container-runtime.log-level": "debug"},
                            "backup": True})
    assert not r["failed"], r
    assert r["changed"] and r["backup_file"]
    assert Path(r["backup_file"]).read_text() == DEBIAN
    assert config.read_text() == DEBIAN.replace('log-level = "info"', 'log-level = "debug"')


def test_missing_file_is_created_0644_with_its_folders(tmp_path):
    path = tmp_path / "etc" / "nvidia-container-runtime" / "config.toml"
    old = os.umask(0o077)   # ansible-playbook (and so the module) inherits it
    try:
        r = run_module(MODULE, {"path": str(path), "settings": {"nvidia-container-runtime.runtimes": ["crun"]}},
                       diff=True)
    finally:
        os.umask(old)
    assert not r["failed"], r
    assert r["changed"] is True
    assert [(d["before_header"], d["before"]) for d in r["diff"]] == [("%s (absent)" % path, "")]
    assert path.read_text() == '[nvidia-container-runtime]  # gpuops.nvidia: added\nruntimes = ["crun"]\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_nothing_to_do_on_a_missing_file_creates_nothing(tmp_path):
    path = tmp_path / "config.toml"
    r = run_module(MODULE, {"path": str(path), "unset": ["nvidia-container-cli.no-cgroups"]})
    assert not r["failed"], r
    assert r["changed"] is False
    assert not path.exists()


def test_malformed_toml_fails_with_file_and_line(config):
    bad = DEBIAN.replace('mode = "auto"', 'mode = "auto')
    config.write_text(bad)
    line = bad.splitlines().index('mode = "auto') + 1
    r = run_module(MODULE, {"path": str(config), "settings": SETTINGS})
    assert r["failed"] and r["changed"] is False
    assert "malformed TOML in %s:%d" % (config, line) in r["msg"]
    assert config.read_text() == bad


def test_crossing_a_non_table_fails(config):
    r = run_module(MODULE, {"path": str(config), "settings": {"nvidia-container-runtime.mode.cdi": True}})
    assert r["failed"] and r["changed"] is False
    assert "nvidia-container-runtime.mode is a string" in r["msg"]
    assert config.read_text() == DEBIAN


def test_unwritable_path_fails_and_changes_nothing(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    path = blocker / "config.toml"
    r = run_module(MODULE, {"path": str(path), "settings": {"nvidia-container-runtime.mode": "cdi"}})
    assert r["failed"] and r["changed"] is False
    assert "cannot write %s" % path in r["msg"]
    assert blocker.read_text() == "x"
    assert sorted(os.listdir(tmp_path)) == ["not-a-folder"]


def check_then_real(path, args):
    """The same task in check mode, then for real (one playbook); both results."""
    step = dict(path=str(path), **args)
    return run_module_steps(MODULE, [dict(step, _check=True), step])


def assert_both_fail_alike(check, real, msg):
    assert check["failed"] and real["failed"], (check, real)
    assert check["msg"] == real["msg"], (check["msg"], real["msg"])
    assert msg in real["msg"], real["msg"]
    assert check["changed"] is False and real["changed"] is False


@pytest.fixture
def chattr():
    done = []

    def run(flag, path):
        if os.geteuid() != 0:
            pytest.skip("chattr needs root")
        if subprocess.run(["chattr", flag, str(path)], capture_output=True, check=False).returncode != 0:
            pytest.skip("chattr %s is not supported on this filesystem" % flag)
        done.append(path)

    yield run
    for path in done:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_check_mode_on_an_immutable_file_fails_as_the_real_run(config, chattr):
    chattr("+i", config)
    check, real = check_then_real(config, {"settings": SETTINGS})
    assert_both_fail_alike(check, real, "cannot write %s: %s is not writable: it is immutable (chattr +i)"
                           % (config, config))
    assert config.read_text() == DEBIAN
    assert sorted(os.listdir(config.parent)) == ["config.toml"]


def test_check_mode_on_a_read_only_mount_fails_as_the_real_run(config):
    if os.geteuid() != 0:
        pytest.skip("a bind mount needs root")
    d = config.parent
    if subprocess.run(["mount", "--bind", str(d), str(d)], capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(d)], check=True, capture_output=True)
        check, real = check_then_real(config, {"settings": SETTINGS})
        assert_both_fail_alike(check, real, "%s is not writable: it is on a read-only file system" % d)
    finally:
        subprocess.run(["umount", str(d)], check=True)
    assert config.read_text() == DEBIAN


def test_check_mode_below_a_file_fails_as_the_real_run(tmp_path):
    blocker = tmp_path / "nvidia-container-runtime"
    blocker.write_text("x")
    path = blocker / "config.toml"
    check, real = check_then_real(path, {"settings": {"nvidia-container-runtime.mode": "cdi"}})
    assert_both_fail_alike(check, real, "cannot write %s: %s is not a directory" % (path, blocker))
    assert blocker.read_text() == "x" and sorted(os.listdir(tmp_path)) == ["nvidia-container-runtime"]


def test_a_symlink_loop_fails_clearly_in_check_mode_and_for_real(tmp_path):
    a, b = tmp_path / "config.toml", tmp_path / "other.toml"
    a.symlink_to(b)
    b.symlink_to(a)
    check, real = check_then_real(a, {"settings": SETTINGS})
    assert_both_fail_alike(check, real, "%s is a symlink loop" % a)
    assert "Traceback" not in real.get("module_stderr", "") + real.get("exception", "")
    assert os.readlink(a) == str(b) and os.readlink(b) == str(a)


def test_bad_values_fail_before_touching_the_file(config):
    r = run_module(MODULE, {"path": str(config), "settings": {"nvidia-container-runtime": {"mode": "cdi"}}})
    assert r["failed"] and "a mapping is not a value" in r["msg"]
    r = run_module(MODULE, {"path": str(config), "settings": {"a.b": 1}, "unset": ["a.b"]})
    assert r["failed"] and "name the same key" in r["msg"]
    assert config.read_text() == DEBIAN


def test_documentation_renders():
    p = subprocess.run([sys.executable, "-m", "ansible", "doc", MODULE], env=ansible_env(),
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr
    assert "nvidia-container-runtime.runtimes" in p.stdout and "check_mode" in p.stdout
