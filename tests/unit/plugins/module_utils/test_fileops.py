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


# -- symlink loops (issue 10, item 10) -------------------------------------------------------------
@pytest.fixture
def loop(tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


def test_a_symlink_loop_is_a_clear_error_everywhere(loop):
    msg = "%s is a symlink loop" % loop
    for call in (lambda: fileops.resolve(str(loop)),
                 lambda: fileops.read_bytes(str(loop)),
                 lambda: fileops.apply_changes([(str(loop), None, "x = 1\n")]),
                 lambda: fileops.apply_changes([(str(loop), None, "x = 1\n")], check_mode=True),
                 lambda: fileops.preflight([(str(loop), None, "x = 1\n")]),
                 lambda: fileops.backup_file(str(loop))):
        with pytest.raises(fileops.FileOpError, match=msg):
            call()
    assert os.readlink(loop) == str(loop.parent / "b.toml")   # the links are left alone


def test_a_folder_on_the_way_that_loops_is_a_clear_error(tmp_path):
    (tmp_path / "d").symlink_to(tmp_path / "d")
    path = tmp_path / "d" / "config.toml"
    with pytest.raises(fileops.FileOpError, match="%s is a symlink loop" % path):
        fileops.apply_changes([(str(path), None, "x = 1\n")], check_mode=True)


# -- check mode runs the real run's tests (issue 10, item 9) ----------------------------------------
def both_fail_alike(changes, **kw):
    """check_mode and the real run both raise, with the same text; returns it."""
    with pytest.raises(fileops.FileOpError) as check:
        fileops.apply_changes(changes, check_mode=True, **kw)
    with pytest.raises(fileops.FileOpError) as real:
        fileops.apply_changes(changes, **kw)
    assert str(check.value) == str(real.value)
    return str(real.value)


def chattr(flag, path):
    import subprocess
    if os.geteuid() != 0:
        pytest.skip("chattr needs root")
    if subprocess.run(["chattr", flag, str(path)], capture_output=True, check=False).returncode != 0:
        pytest.skip("chattr %s is not supported on this filesystem" % flag)


@pytest.mark.parametrize("flag, what", [("+i", "immutable"), ("+a", "append-only")])
def test_an_immutable_or_append_only_file_fails_in_check_mode_as_in_the_real_run(tmp_path, flag, what):
    f = tmp_path / "config.toml"
    f.write_text("x = 1\n")
    chattr(flag, f)
    try:
        msg = both_fail_alike([(str(f), "x = 1\n", "x = 2\n")])
        assert msg.startswith("cannot write %s: %s is not writable: it is %s" % (f, f, what)), msg
        assert f.read_text() == "x = 1\n"
        assert sorted(os.listdir(tmp_path)) == ["config.toml"]
    finally:
        chattr(flag.replace("+", "-"), f)


def test_a_read_only_mount_fails_in_check_mode_as_in_the_real_run(tmp_path):
    import subprocess
    if os.geteuid() != 0:
        pytest.skip("a bind mount needs root")
    d = tmp_path / "etc"
    d.mkdir()
    f = d / "config.toml"
    f.write_text("x = 1\n")
    if subprocess.run(["mount", "--bind", str(d), str(d)], capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(d)], check=True, capture_output=True)
        msg = both_fail_alike([(str(f), "x = 1\n", "x = 2\n")])
        assert msg == "cannot write %s: %s is not writable: it is on a read-only file system; nothing was written" % (f, d)
        msg = both_fail_alike([(str(d / "new.toml"), None, "x = 2\n")])
        assert "read-only file system" in msg
        assert f.read_text() == "x = 1\n"
    finally:
        subprocess.run(["umount", str(d)], check=True)


def test_a_folder_that_is_a_file_fails_in_check_mode_as_in_the_real_run(tmp_path):
    blocker = tmp_path / "conf.d"
    blocker.write_text("")
    path = blocker / "99-nvidia.toml"
    msg = both_fail_alike([(str(path), None, "x = 1\n")])
    assert msg == "cannot write %s: %s is not a directory; nothing was written" % (path, blocker)
    assert sorted(os.listdir(tmp_path)) == ["conf.d"]


def test_an_immutable_folder_fails_in_check_mode_as_in_the_real_run(tmp_path, unwritable_dir):
    msg = both_fail_alike([(str(unwritable_dir / "new.toml"), None, "x = 1\n")])
    assert "%s is not writable" % unwritable_dir in msg
    assert os.listdir(unwritable_dir) == ["c.toml"]


def test_check_mode_writes_nothing_when_the_write_would_succeed(tmp_path):
    f = tmp_path / "config.toml"
    f.write_text("x = 1\n")
    before = os.stat(tmp_path).st_mtime_ns, os.stat(f).st_mtime_ns
    assert fileops.apply_changes([(str(f), "x = 1\n", "x = 2\n"), (str(tmp_path / "new" / "n.toml"), None, "y\n")],
                                 backup=True, check_mode=True) == ([], [])
    assert f.read_text() == "x = 1\n" and sorted(os.listdir(tmp_path)) == ["config.toml"]
    assert (os.stat(tmp_path).st_mtime_ns, os.stat(f).st_mtime_ns) == before


# -- backups (issue 10, item 7; the full-disk case is in tests/integration/test_full_disk.py) -----------
def test_a_failed_run_leaves_no_backup(tmp_path, monkeypatch):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text("x = 1\n")
    b.write_text("y = 1\n")
    real_write = fileops.write_atomic

    def write(path, *args, **kw):   # the second file cannot be written (a full disk, say)
        if path == str(b):
            raise fileops.FileOpError("cannot write %s: [Errno 28] No space left on device" % path)
        return real_write(path, *args, **kw)

    monkeypatch.setattr(fileops, "write_atomic", write)
    with pytest.raises(fileops.FileOpError, match="cannot write %s" % b):
        fileops.apply_changes([(str(a), "x = 1\n", "x = 2\n"), (str(b), "y = 1\n", "y = 2\n")], backup=True)
    assert a.read_text() == "x = 1\n" and b.read_text() == "y = 1\n"
    assert sorted(os.listdir(tmp_path)) == ["a.toml", "b.toml"]


def test_a_directory_in_place_of_the_file_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "b.toml").mkdir()
    msg = both_fail_alike([(str(tmp_path / "b.toml"), None, "y = 1\n")])
    assert msg == "cannot write %s: it is a directory; nothing was written" % (tmp_path / "b.toml")


def test_backup_keeps_mode_and_owner_and_can_go_elsewhere(tmp_path):
    f = tmp_path / "config.toml"
    f.write_text("x = 1\n")
    os.chmod(f, 0o600)
    os.chown(f, 1234, 4321)
    b = fileops.backup_file(str(f), backup_dir=str(tmp_path / "backups"))
    assert os.path.dirname(b) == str(tmp_path / "backups") and os.path.basename(b).startswith("config.toml.")
    st = os.stat(b)
    assert open(b).read() == "x = 1\n" and stat.S_IMODE(st.st_mode) == 0o600 and (st.st_uid, st.st_gid) == (1234, 4321)
    assert os.listdir(tmp_path / "backups") == [os.path.basename(b)]   # no temp file left
    assert fileops.backup_file(str(f), backup_dir=str(tmp_path / "backups")) != b   # never overwrites one


# -- one run at a time (issue 10, item 1; the module under real concurrency: tests/integration/test_concurrency.py)
HOLDER = """
import sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.gpuops.nvidia.plugins.module_utils import fileops
with fileops.locked(sys.argv[2:]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def holder(collections_path):
    """Start a process that holds the locks of some paths until its stdin closes (or it is killed)."""
    import select
    import subprocess
    import sys
    procs = []

    def start(*paths):
        p = subprocess.Popen([sys.executable, "-c", HOLDER, str(collections_path)] + [str(x) for x in paths],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(p)
        ready, _w, _x = select.select([p.stdout], [], [], 60)
        assert ready and p.stdout.readline() == "locked\n", "the holder did not take the lock"
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=60)


def test_a_held_lock_times_out_with_the_file_and_the_holders_pid(tmp_path, holder):
    f = tmp_path / "config.toml"
    link = tmp_path / "link.toml"
    link.symlink_to(f)
    p = holder(f)
    for name in (f, link):   # a symlink shares its target's lock
        with pytest.raises(fileops.FileOpError) as e:
            with fileops.locked([str(name)], timeout=0.2):
                pytest.fail("got a lock that another process holds")
        assert str(e.value).startswith("%s is being changed by another run (pid %d, lock " % (f, p.pid)), str(e.value)
        assert "nothing was written" in str(e.value)
    assert not f.exists() and sorted(os.listdir(tmp_path)) == ["link.toml"]   # no lock file beside the config


def test_the_lock_is_free_again_when_its_holder_is_killed(tmp_path, holder):
    import signal
    f = tmp_path / "config.toml"
    p = holder(f)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    with fileops.locked([str(f)], timeout=60):
        pass


def test_locks_are_taken_in_one_order_and_are_reentrant(tmp_path, holder):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    with fileops.locked([str(b), str(a)], timeout=5):
        with fileops.locked([str(a)], timeout=5):   # already held by this process: no self-deadlock
            pass
        assert fileops.lock_file(str(a)) in fileops._HELD.values()
    assert fileops._HELD == {}
    p = holder(b, a)   # a process holding both; then released by closing its stdin
    with pytest.raises(fileops.FileOpError, match="pid %d" % p.pid):
        with fileops.locked([str(a)], timeout=0.2):
            pass
    p.stdin.close()
    p.wait(timeout=60)
    with fileops.locked([str(a), str(b)], timeout=60):
        pass


def test_the_engines_read_a_symlink_loop_as_an_error_not_as_a_missing_file(loop):
    from ansible_collections.gpuops.nvidia.plugins.module_utils import common
    with pytest.raises(common.EngineError, match="%s is a symlink loop" % loop):
        common.read_text(str(loop))
    assert common.read_text(str(loop.parent / "missing.toml")) is None


# -- scratch folders: a run killed with SIGKILL leaves nothing the next run does not remove ------------------
def test_scratch_dir_of_a_killed_run_is_removed_by_the_next_run(tmp_path):
    import signal
    import subprocess
    import sys
    import textwrap
    code = textwrap.dedent("""
        import sys, time
        sys.path.insert(0, %r)
        from ansible_collections.gpuops.nvidia.plugins.module_utils import fileops
        with fileops.scratch_dir("dump") as d:
            open(d + "/config.toml", "w").write("version = 3\\n")
            print(d, flush=True)
            time.sleep(60)
    """ % str(fileops.__file__.rsplit("/ansible_collections/", 1)[0]))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    left = p.stdout.readline().strip()
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert os.path.isfile(os.path.join(left, "config.toml"))     # the killed run could not clean up
    with fileops.scratch_dir("validate") as mine:
        assert os.path.isdir(mine) and not os.path.exists(left)
    assert not os.path.exists(mine)
