"""Atomic, checked writes (the module uses the same code with Ansible's atomic_move)."""
import os
import stat

import pytest

from ansible_collections.gpuops.nvidia.plugins.module_utils import fileops


def test_write_keeps_mode_and_owner(tmp_path):
    f = tmp_path / "config.toml"
    f.write_text("a = 1\n")
    os.chmod(f, 0o640)
    os.chown(f, 1234, 4321)
    written, dummy = fileops.apply_changes([(str(f), "a = 1\n", "a = 2\n")])
    assert written == [str(f)]
    st = os.stat(f)
    assert f.read_text() == "a = 2\n"
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (1234, 4321)
    assert sorted(os.listdir(tmp_path)) == ["config.toml"]   # no temp file left behind


def test_symlink_stays_a_symlink_and_its_target_is_written(tmp_path):
    real = tmp_path / "real" / "config.toml"
    real.parent.mkdir()
    real.write_text("a = 1\n")
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    fileops.apply_changes([(str(link), "a = 1\n", "a = 2\n")])
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "a = 2\n"


def test_concurrent_change_is_refused_and_nothing_written(tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text("x = 1\n")
    b.write_text("y = 1\n")
    with pytest.raises(fileops.FileOpError, match="changed since it was read"):
        fileops.apply_changes([(str(a), "x = 1\n", "x = 2\n"), (str(b), "y = 0\n", "y = 2\n")])
    assert a.read_text() == "x = 1\n" and b.read_text() == "y = 1\n"


def test_file_that_appeared_since_planning_is_refused(tmp_path):
    f = tmp_path / "new.toml"
    f.write_text("someone = 'else'\n")
    with pytest.raises(fileops.FileOpError, match="changed since it was read"):
        fileops.apply_changes([(str(f), None, "x = 1\n")])
    assert f.read_text() == "someone = 'else'\n"


@pytest.fixture
def unwritable_dir(tmp_path):
    """A folder nobody may write to: immutable for root (chattr +i), mode 0555 for others."""
    import subprocess
    d = tmp_path / "ro"
    d.mkdir()
    (d / "c.toml").write_text("x = 1\n")
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(d)], capture_output=True, check=False).returncode != 0:
            pytest.skip("chattr +i is not supported on this filesystem")
        yield d
        subprocess.run(["chattr", "-i", str(d)], check=True)
    else:  # pragma: no cover - CI runs as root
        os.chmod(d, 0o555)
        yield d
        os.chmod(d, 0o755)


def test_unwritable_folder_is_refused_before_anything_is_written(tmp_path, unwritable_dir):
    a = tmp_path / "a.toml"
    a.write_text("x = 1\n")
    with pytest.raises(fileops.FileOpError, match="not writable"):
        fileops.apply_changes([(str(a), "x = 1\n", "x = 2\n"),
                               (str(unwritable_dir / "c.toml"), "x = 1\n", "x = 2\n")])
    assert a.read_text() == "x = 1\n"
    assert (unwritable_dir / "c.toml").read_text() == "x = 1\n"
    assert os.listdir(unwritable_dir) == ["c.toml"]


def test_unwritable_path_as_root_fails_cleanly(tmp_path):
    """A path below a regular file cannot be created, even by root: clear error, nothing written."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    a = tmp_path / "a.toml"
    a.write_text("x = 1\n")
    with pytest.raises(fileops.FileOpError, match="cannot write"):
        fileops.apply_changes([(str(a), "x = 1\n", "x = 2\n"), (str(blocker / "sub" / "c.toml"), None, "y = 1\n")])
    assert a.read_text() == "x = 1\n"   # the first write was rolled back
    assert sorted(os.listdir(tmp_path)) == ["a.toml", "file"]


def test_delete_and_restore(tmp_path):
    f = tmp_path / "drop.toml"
    f.write_text("x = 1\n")
    written, dummy = fileops.apply_changes([(str(f), "x = 1\n", None)])
    assert not f.exists()
    assert fileops.restore([(written[0], "x = 1\n")]) == []
    assert f.read_text() == "x = 1\n"


def test_backup_is_written_beside_the_file(tmp_path):
    f = tmp_path / "config.toml"
    f.write_text("x = 1\n")
    dummy, backups = fileops.apply_changes([(str(f), "x = 1\n", "x = 2\n")], backup=True)
    assert len(backups) == 1 and os.path.dirname(backups[0]) == str(tmp_path)
    assert open(backups[0]).read() == "x = 1\n"
    assert f.read_text() == "x = 2\n"


def test_creates_missing_folders(tmp_path):
    f = tmp_path / "conf.d" / "99-nvidia.toml"
    fileops.apply_changes([(str(f), None, "version = 2\n")])
    assert f.read_text() == "version = 2\n"
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o644


def test_no_temp_file_ever_appears_in_a_folder_a_runtime_loads(tmp_path, monkeypatch):
    """CRI-O loads every file in crio.conf.d, hidden ones too: the temp file is made one folder up."""
    confd = tmp_path / "crio.conf.d"
    confd.mkdir()
    seen = []
    real_mkstemp = fileops.tempfile.mkstemp

    def spy(*a, **kw):
        fd, path = real_mkstemp(*a, **kw)
        seen.append(os.path.dirname(path))
        return fd, path

    monkeypatch.setattr(fileops.tempfile, "mkstemp", spy)
    fileops.apply_changes([(str(confd / "99-nvidia.toml"), None, "x = 1\n")], outside=str(confd))
    assert seen == [str(tmp_path)]
    assert os.listdir(confd) == ["99-nvidia.toml"] and (confd / "99-nvidia.toml").read_text() == "x = 1\n"
    fileops.apply_changes([(str(tmp_path / "crio.conf"), None, "y = 1\n")], outside=str(confd))
    assert seen[-1] == str(tmp_path)   # files outside the folder keep their temp file beside them
