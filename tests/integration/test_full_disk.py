"""A full disk (issue 10, item 7): a failed run leaves no partial file anywhere and the config unchanged.

A small tmpfs is mounted by the test (root only), a config put on it and the rest filled, leaving room
for part of a backup, or for the backup but not for the new file. Then the module runs for real.
"""
import errno
import os
import subprocess
from pathlib import Path

import pytest

from ansible_collections.gpuops.nvidia.plugins.module_utils import fileops
from ansible_run import run_module

pytestmark = pytest.mark.integration

MODULE = "gpuops.nvidia.nvidia_toolkit_config"
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "toolkit" / "config-debian.toml"
# a config big enough that a backup of it can be cut short: the packaged file and 128 KiB of comments
BIG = FIXTURE.read_text() + "".join("# padding line %06d, kept as is by every edit ..................\n" % i
                                    for i in range(2048))
SETTINGS = {"nvidia-container-runtime.mode": "cdi"}
KIB = 1024


@pytest.fixture
def disk(tmp_path):
    """A 1 MiB tmpfs mounted for the test, unmounted after it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mnt)],
                       capture_output=True, text=True, check=False)
    if p.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % p.stderr.strip())
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def fill(disk, leave):
    """Fill ``disk`` with a file, then free ``leave`` bytes of it."""
    filler = disk / "filler"
    chunk = b"\0" * (64 * KIB)
    with open(filler, "wb") as f:
        for _chunk in range(10000):   # bounded: 1 MiB fills in 16
            try:
                f.write(chunk)
                f.flush()
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
        else:
            pytest.fail("the tmpfs never filled up")
    with open(filler, "r+b") as f:
        f.truncate(max(0, os.path.getsize(filler) - leave))
    st = os.statvfs(disk)
    return st.f_bavail * st.f_frsize


@pytest.fixture
def config(disk):
    path = disk / "etc" / "config.toml"
    path.parent.mkdir()
    path.write_text(BIG)
    return path


def test_no_partial_backup_when_the_disk_is_full(disk, config):
    free = fill(disk, 32 * KIB)
    assert 0 < free < len(BIG)   # room for a part of the backup only
    r = run_module(MODULE, {"path": str(config), "settings": SETTINGS, "backup": True})
    assert r["failed"] and r["changed"] is False
    assert os.listdir(config.parent) == ["config.toml"]   # no truncated backup, no temp file
    assert config.read_text() == BIG
    assert r["msg"].startswith("cannot back up %s to %s." % (config, config)), r["msg"]
    assert r["msg"].endswith("~: No space left on device; nothing was written"), r["msg"]
    assert r["backup_file"] is None


def test_no_backup_left_when_the_new_file_does_not_fit(disk, config):
    free = fill(disk, len(BIG) + 32 * KIB)
    assert len(BIG) < free < 2 * len(BIG)   # room for the backup, not for the new file as well
    r = run_module(MODULE, {"path": str(config), "settings": SETTINGS, "backup": True})
    assert r["failed"] and r["changed"] is False
    assert r["msg"].startswith("cannot write %s" % config) and "No space left on device" in r["msg"], r["msg"]
    assert config.read_text() == BIG
    assert os.listdir(config.parent) == ["config.toml"]   # the backup of a run that changed nothing goes too


def test_no_partial_backup_without_ansible_either(disk, config):
    """fileops' own copy (used without a module, and by the engines' tests) behaves the same."""
    fill(disk, 32 * KIB)
    with pytest.raises(fileops.FileOpError) as e:
        fileops.apply_changes([(str(config), BIG, BIG.replace('mode = "auto"', 'mode = "cdi"'))], backup=True)
    assert os.listdir(config.parent) == ["config.toml"]
    assert config.read_text() == BIG
    assert str(e.value).startswith("cannot back up %s" % config), str(e.value)
