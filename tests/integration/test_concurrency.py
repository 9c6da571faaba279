"""Runs of nvidia_toolkit_config that reach one file at the same time (issue 10, item 1).

Real processes: each run is the module executed as Ansible executes it on a node (its own Python
process, arguments from a file), started together on a signal once their imports are done, so that
they read, plan and write at the same moment. Another holder of the file's lock is util-linux
``flock(1)``, killed with SIGKILL. Bounded waits only; nothing is timed.
"""
import json
import os
import select
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ansible_collections.gpuops.nvidia.plugins.module_utils import fileops
from ansible_run import run_module

pytestmark = pytest.mark.integration

MODULE = "gpuops.nvidia.nvidia_toolkit_config"
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "toolkit" / "config-debian.toml"
DEBIAN = FIXTURE.read_text()
TRIALS = 10
MODE = {"nvidia-container-runtime.mode": "cdi"}
NO_CGROUPS = {"nvidia-container-cli.no-cgroups": True}
BOTH = (DEBIAN.replace('mode = "auto"', 'mode = "cdi"')
        .replace("#no-cgroups = false\n", "#no-cgroups = false\nno-cgroups = true\n"))

# The module as AnsiballZ runs it (a fresh interpreter, the module as __main__, arguments from a file),
# held at the start line until the test says go.
RUNNER = """
import importlib, runpy, sys
sys.path.insert(0, sys.argv[1])
name = "ansible_collections.gpuops.nvidia.plugins.modules." + (sys.argv[3] if len(sys.argv) > 3 else "nvidia_toolkit_config")
importlib.import_module(name)
del sys.modules[name]
print("ready", flush=True)
sys.stdin.readline()
sys.argv = [name, sys.argv[2]]
runpy.run_module(name, run_name="__main__")
"""


def wait_for_line(proc, expected, timeout=120):
    ready, _w, _x = select.select([proc.stdout], [], [], timeout)
    assert ready, "no %r from pid %d within %ss" % (expected, proc.pid, timeout)
    line = proc.stdout.readline()
    assert line.strip() == expected, (line, proc.stderr.read() if proc.poll() is not None else "")
    return line


def start_module(collections_path, folder, name, args, module="nvidia_toolkit_config"):
    args_file = folder / ("%s.json" % name)
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(collections_path), str(args_file), module],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_line(proc, "ready")
    return proc


def result_of(proc):
    out, err = proc.communicate(timeout=300)
    lines = [x for x in out.splitlines() if x.strip()]
    assert lines, "no result (rc=%s): %s" % (proc.returncode, err)
    return json.loads(lines[-1])


def test_two_runs_at_once_on_one_file_keep_both_keys(tmp_path, collections_path):
    """Different keys, same file, same moment: both runs succeed, both report a change, both keys stay."""
    outcomes = []
    for trial in range(TRIALS):
        folder = tmp_path / ("trial%d" % trial)
        config = folder / "etc" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text(DEBIAN)
        procs = [start_module(collections_path, folder, "mode", {"path": str(config), "settings": MODE}),
                 start_module(collections_path, folder, "no_cgroups", {"path": str(config), "settings": NO_CGROUPS})]
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [result_of(p) for p in procs]
        text = config.read_text()
        outcomes.append((trial, [(r.get("failed", False), r.get("changed"), r.get("msg")) for r in results],
                         text == BOTH))
        data = tomllib.loads(text)
        assert [r.get("failed", False) for r in results] == [False, False], outcomes
        assert [r["changed"] for r in results] == [True, True], outcomes
        assert data["nvidia-container-runtime"].get("mode") == "cdi", outcomes   # a lost update loses one
        assert data["nvidia-container-cli"].get("no-cgroups") is True, outcomes
        assert text == BOTH, outcomes
        assert os.listdir(config.parent) == ["config.toml"]   # no temp or lock file left beside it


@pytest.fixture
def flock_holder():
    """util-linux flock(1) holding the lock file of a path (the shell under it writes its PID there, as the
    module does); returns (flock process, shell pid). Killed at the end if still running."""
    procs = []

    def start(path):
        lock = fileops.lock_file(str(path))
        p = subprocess.Popen(["flock", "--exclusive", lock, "sh", "-c", 'echo "$$ %s" > "$0"; echo $$; read x' % path, lock],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(p)
        ready, _w, _x = select.select([p.stdout], [], [], 60)
        assert ready, "flock did not take the lock"
        return p, int(p.stdout.readline())

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=60)


def test_a_run_that_cannot_get_the_lock_fails_naming_the_file_and_the_holder(tmp_path, flock_holder):
    config = tmp_path / "config.toml"
    config.write_text(DEBIAN)
    proc, shell_pid = flock_holder(config)
    r = run_module(MODULE, {"path": str(config), "settings": MODE, "lock_timeout": 1})
    assert r["failed"] and r["changed"] is False
    assert r["msg"].startswith("%s is being changed by another run (pid %d, lock %s)"
                               % (config, shell_pid, fileops.lock_file(str(config)))), r["msg"]
    assert "nothing was written" in r["msg"]
    assert config.read_text() == DEBIAN
    proc.stdin.close()   # the holder lets go: the next run gets the lock
    proc.wait(timeout=60)
    r = run_module(MODULE, {"path": str(config), "settings": MODE, "lock_timeout": 60})
    assert not r["failed"] and r["changed"] is True, r


def test_a_killed_holder_does_not_block_the_next_run(tmp_path, flock_holder):
    config = tmp_path / "config.toml"
    config.write_text(DEBIAN)
    proc, shell_pid = flock_holder(config)
    os.kill(shell_pid, signal.SIGKILL)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    r = run_module(MODULE, {"path": str(config), "settings": MODE, "lock_timeout": 60})
    assert not r["failed"] and r["changed"] is True, r
    assert config.read_text() == DEBIAN.replace('mode = "auto"', 'mode = "cdi"')


# A run killed in the middle of its write: fileops itself, replacing a file with 64 MiB (write and fsync
# take long enough for the test to see the temp file and kill the writer before the rename).
KILLED_WRITER = """
import sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.gpuops.nvidia.plugins.module_utils import fileops
path = sys.argv[2]
before = open(path).read()
fileops.apply_changes([(path, before, before + "#" * (64 << 20) + "\\n")])
"""


def temps_of(folder):
    return sorted(n for n in os.listdir(folder) if n.startswith(".config.toml.") and n.endswith(".tmp"))


def test_the_temp_file_of_a_killed_run_is_removed_by_the_next_run(tmp_path, collections_path):
    config = tmp_path / "etc" / "config.toml"
    config.parent.mkdir()
    config.write_text(DEBIAN)
    for _attempt in range(20):   # until a writer is caught between mkstemp and rename (bounded)
        p = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(collections_path), str(config)])
        try:
            for _poll in range(200000):
                if temps_of(config.parent) or p.poll() is not None:
                    break
            p.send_signal(signal.SIGKILL)
        finally:
            p.wait(timeout=120)
        if temps_of(config.parent) and config.read_text() == DEBIAN:
            break
        config.write_text(DEBIAN)   # the write won the race: start over
        for name in temps_of(config.parent):
            os.unlink(config.parent / name)
    else:
        pytest.skip("never caught a writer before its rename")
    assert temps_of(config.parent), "precondition: the killed run left its temp file"
    r = run_module(MODULE, {"path": str(config), "settings": MODE})
    assert not r["failed"] and r["changed"] is True, r
    assert config.read_text() == DEBIAN.replace('mode = "auto"', 'mode = "cdi"')
    assert os.listdir(config.parent) == ["config.toml"]   # the killed run's temp file is gone
