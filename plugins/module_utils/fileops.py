# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Atomic, checked file replacement shared by the runtime modules.

* temp file in the target's folder, fsync, rename (Ansible's ``atomic_move`` when a module is given:
  it keeps mode, owner and SELinux context);
* a symlink keeps being a symlink: its target is written;
* the file must still hold the bytes we planned from, else nothing is written (concurrent change);
* several files are written as one unit: a failure restores the ones already written;
* :func:`preflight` tests, writing nothing, that a write would succeed (read-only mount, immutable file or
  folder, a file where a folder must be, a symlink loop); check mode and the real run both call it, so
  they report the same error;
* backups are written like the files (temp file, rename): a full disk leaves no partial backup;
* :func:`locked` serialises runs on the same files (one ``flock`` per file, in a lock folder outside the
  config folders): a second run waits, bounded, then reads what the first one wrote.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import struct
import sys
import tempfile
import time

LOCK_DIR = "/run/lock/gpuops-nvidia"
LOCK_TIMEOUT = 120   # seconds; a holder may be restarting a runtime (restart_timeout defaults to 60)
_HELD = {}           # realpath -> lock file path, for the locks this process holds


class FileOpError(Exception):
    pass


# -- paths ---------------------------------------------------------------------------------------------
def loop_message(path):
    return "%s is a symlink loop (%s); nothing was read or written" % (path, os.strerror(errno.ELOOP).lower())


def resolve(path):
    """The real path of ``path`` (which may not exist); FileOpError when it, or a folder on its way, is a
    symlink loop (os.path.realpath would silently return a path that cannot be opened)."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise FileOpError(loop_message(path))
    return os.path.realpath(path)


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except (IOError, OSError) as e:
        if getattr(e, "errno", None) == errno.ELOOP:
            raise FileOpError(loop_message(path))
        if not os.path.lexists(path):
            return None
        raise


def _encode(text):
    return None if text is None else text.encode("utf-8")


def check_unchanged(path, expected):
    """Refuse when the file no longer holds what the plan was computed from."""
    current = read_bytes(resolve(path))
    if current != _encode(expected):
        raise FileOpError("%s changed since it was read (another writer?); nothing was written. Run again."
                          % path)


def _backup_name(folder, base):
    stamp = time.strftime("%Y-%m-%d@%H:%M:%S")
    dest = os.path.join(folder, "%s.%d.%s~" % (base, os.getpid(), stamp))
    n = 1
    while os.path.lexists(dest):
        n += 1
        dest = os.path.join(folder, "%s.%d.%s.%d~" % (base, os.getpid(), stamp, n))
    return dest


def backup_file(path, module=None, backup_dir=None, outside=None):
    """A timestamped copy (``<file>.<pid>.<date>~``) beside the file, or in ``backup_dir``; returns its
    path (None when there is no file).

    Written like the files themselves: a temp file (mode, owner and SELinux context of the original),
    fsync, rename. On any failure (a full disk) the temp file is removed and FileOpError names the file:
    no partial backup is ever left. ``outside``: no temp file inside this folder (see _temp_folder).
    """
    real = resolve(path)
    if not os.path.isfile(real):
        return None
    folder = backup_dir or os.path.dirname(real) or "."
    dest = _backup_name(folder, os.path.basename(real) if backup_dir is None else os.path.basename(path))
    tmp = None
    try:
        if not os.path.isdir(folder):
            os.makedirs(folder, 0o755)
        fd, tmp = tempfile.mkstemp(dir=_temp_folder(folder, outside), prefix=".%s." % os.path.basename(dest),
                                   suffix=".tmp")
        os.close(fd)
        if module is not None:
            module.preserved_copy(real, tmp)
        else:
            shutil.copy2(real, tmp)
            st = os.stat(real)
            try:
                os.chown(tmp, st.st_uid, st.st_gid)
            except OSError:
                pass
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, dest)
        tmp = None
        _fsync_dir(folder)
    except Exception as e:   # the temp file's name would only confuse: the reason, not the OSError's paths
        raise FileOpError("cannot back up %s to %s: %s; nothing was written"
                          % (path, dest, getattr(e, "strerror", None) or e))
    finally:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)
    return dest


def _temp_folder(folder, outside):
    """Where the temp file goes: beside the target, unless that folder is (inside) ``outside`` (a folder
    whose every file a runtime loads, like crio.conf.d): then the folder above it, on the same device."""
    if not outside:
        return folder
    outside = os.path.realpath(outside)
    if folder != outside and not folder.startswith(outside + os.sep):
        return folder
    above = os.path.dirname(outside)
    try:
        if os.stat(above).st_dev == os.stat(folder).st_dev:
            return above
    except OSError:
        pass
    return folder


def write_atomic(path, text, module=None, mode=0o644, outside=None):
    """Replace ``path`` (or its symlink target) with ``text`` atomically; create folders as needed.

    ``outside``: a folder where no temp file may appear even for a moment (see _temp_folder).
    """
    real = resolve(path)
    folder = os.path.dirname(real) or "."
    try:
        if not os.path.isdir(folder):
            os.makedirs(folder, 0o755)
        fd, tmp = tempfile.mkstemp(dir=_temp_folder(folder, outside), prefix=".%s." % os.path.basename(real),
                                   suffix=".tmp")
    except (IOError, OSError) as e:
        raise FileOpError("cannot write %s: %s" % (path, e))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(real):
            st = os.stat(real)
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            try:
                os.chown(tmp, st.st_uid, st.st_gid)
            except OSError:
                pass
        else:
            os.chmod(tmp, mode)
        if module is not None:
            module.atomic_move(tmp, real, unsafe_writes=False)
        else:
            os.rename(tmp, real)
        _fsync_dir(folder)
    except (IOError, OSError) as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise FileOpError("cannot write %s: %s" % (path, e))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_file(path):
    real = resolve(path)
    try:
        if os.path.lexists(path) and os.path.islink(path):
            os.unlink(path)
            if os.path.exists(real):
                os.unlink(real)
        elif os.path.exists(real):
            os.unlink(real)
        _fsync_dir(os.path.dirname(real) or ".")
    except OSError as e:
        raise FileOpError("cannot remove %s: %s" % (path, e))


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- will the write succeed? ---------------------------------------------------------------------------
_FS_IMMUTABLE_FL, _FS_APPEND_FL = 0x10, 0x20


def _inode_flags(path):
    """The ext2-style inode flags (chattr) of ``path``; 0 when they cannot be read (no support)."""
    if not sys.platform.startswith("linux") or not os.uname()[4].startswith(
            ("x86", "i386", "i486", "i586", "i686", "aarch64", "arm")):
        return 0   # the ioctl number below is the generic Linux one
    request = 0x80000000 | (struct.calcsize("l") << 16) | (ord("f") << 8) | 1   # FS_IOC_GETFLAGS
    try:
        if not (os.path.isfile(path) or os.path.isdir(path)):   # never open a device or a FIFO
            return 0
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return 0
    try:
        buf = fcntl.ioctl(fd, request, struct.pack("l", 0))
        return struct.unpack("l", buf)[0]
    except (IOError, OSError):
        return 0
    finally:
        os.close(fd)


def _mount_points():
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except (IOError, OSError):
        return set()

    def unescape(m):
        return chr(int(m.group(1), 8))
    return set(re.sub(r"\\([0-7]{3})", unescape, line.split()[4]) for line in lines if len(line.split()) > 4)


def _why_not_writable(path):
    """Why entries of folder ``path`` (or the file ``path`` itself) cannot be replaced, else None."""
    try:
        if os.statvfs(path).f_flag & getattr(os, "ST_RDONLY", 1):
            return "%s is not writable: it is on a read-only file system" % path
    except OSError:
        pass
    flags = _inode_flags(path)
    if flags & _FS_IMMUTABLE_FL:
        return "%s is not writable: it is immutable (chattr +i)" % path
    if flags & _FS_APPEND_FL:
        return "%s is not writable: it is append-only (chattr +a)" % path
    if not os.access(path, os.W_OK | (os.X_OK if os.path.isdir(path) else 0)):
        return "%s is not writable" % path
    return None


def preflight(changes, backup=False, outside=None, backup_dir=None):
    """Test, writing nothing, that :func:`apply_changes` could write ``changes`` (same arguments).

    Raises the FileOpError the real run gives (apply_changes calls this first, so check mode and the
    real run report the same text): a symlink loop, a file where a folder must be, a folder that is not
    writable (read-only mount, immutable or append-only, permissions), a file that cannot be replaced
    (immutable, append-only, a mount point of its own), a folder where the file must be.
    """
    mounts = None
    for path, before, after in changes:
        if before == after:
            continue
        real = resolve(path)
        folder = os.path.dirname(real) or "."
        if os.path.isdir(real):
            raise FileOpError("cannot write %s: it is a directory; nothing was written" % path)
        probe = folder
        while not os.path.lexists(probe):
            probe = os.path.dirname(probe)
        if not os.path.isdir(probe):
            raise FileOpError("cannot write %s: %s is not a directory; nothing was written" % (path, probe))
        folders = [probe]
        if probe == folder:
            folders.append(_temp_folder(folder, outside))
        if backup and before is not None:
            bdir = backup_dir or folder
            while not os.path.lexists(bdir):
                bdir = os.path.dirname(bdir)
            if not os.path.isdir(bdir):
                raise FileOpError("cannot back up %s: %s is not a directory; nothing was written" % (path, bdir))
            folders.append(bdir)
        for d in folders:
            why = _why_not_writable(d)
            if why:
                raise FileOpError("cannot write %s: %s; nothing was written" % (path, why))
        if os.path.exists(real):
            flags = _inode_flags(real)
            if flags & (_FS_IMMUTABLE_FL | _FS_APPEND_FL):
                raise FileOpError("cannot write %s: %s; nothing was written" % (path, _why_not_writable(real)))
            if mounts is None:
                mounts = _mount_points()
            if real in mounts:
                raise FileOpError("cannot write %s: %s is a mount point of its own (bind mount), it cannot be "
                                  "replaced; nothing was written" % (path, real))


# -- one run at a time -----------------------------------------------------------------------------------
def _lock_dir(create=True):
    """LOCK_DIR (root), else a private folder in the temp dir: never beside a config (CRI-O loads every
    file of its conf.d). ``create`` False (a reader that writes nothing, e.g. check mode): the first of
    them that exists already, else None."""
    for d in (LOCK_DIR, os.path.join(tempfile.gettempdir(), "gpuops-nvidia-locks-%d" % os.geteuid())):
        if create:
            try:
                os.mkdir(d, 0o700)   # not makedirs: a missing /run/lock is not ours to create
            except OSError:
                pass
        try:
            st = os.lstat(d)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and os.access(d, os.W_OK | os.X_OK):
            return d
    if not create:
        return None
    raise FileOpError("no folder for lock files: neither %s nor the temp dir can be used" % LOCK_DIR)


def lock_file(path):
    """The lock file of ``path``: named after its real path (a symlink and its target share one)."""
    real = resolve(path)
    base = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(real))[:64]
    return os.path.join(_lock_dir(), "%s.%s.lock" % (base, hashlib.sha256(real.encode("utf-8")).hexdigest()[:16]))


def _holder(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        pid = int(os.read(fd, 64).decode("ascii", "replace").split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


def _acquire(real, lock, deadline, timeout):
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0),
                     0o600)
    except OSError as e:
        raise FileOpError("cannot lock %s: %s" % (real, e))
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except (IOError, OSError) as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                os.close(fd)
                raise FileOpError("cannot lock %s: %s" % (real, e))
        if time.monotonic() >= deadline:
            pid = _holder(fd)
            os.close(fd)
            raise FileOpError("%s is being changed by another run (%s, lock %s); gave up after waiting %ss; "
                              "nothing was written. Run again when it is done."
                              % (real, "pid %d" % pid if pid else "pid unknown", lock, timeout))
        time.sleep(0.05)
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, ("%d %s\n" % (os.getpid(), real)).encode("utf-8"))
    except OSError:
        pass   # the PID is only for the message of a waiting run
    return fd


@contextlib.contextmanager
def locked(paths, timeout=LOCK_TIMEOUT):
    """Hold an exclusive lock on each file of ``paths`` (existing or not) for the ``with`` block.

    One ``flock`` per real path, on a file in LOCK_DIR, taken in sorted order (no deadlock between runs
    locking overlapping sets). A run that finds a lock held waits up to ``timeout`` seconds (all locks
    together), then raises FileOpError naming the file and the holder's PID. The kernel drops the lock
    when the holder exits, killed or not. Re-entrant for paths this process already holds; take every
    lock a run needs in one call (nested calls for new paths could deadlock against another run).
    """
    deadline = time.monotonic() + timeout
    wanted = {}
    for p in paths:
        real = resolve(p)
        if real not in _HELD:
            wanted[lock_file(p)] = real
    held = []
    try:
        for lock in sorted(wanted):
            held.append((wanted[lock], _acquire(wanted[lock], lock, deadline, timeout)))
            _HELD[wanted[lock]] = lock
        yield
    finally:
        for real, fd in reversed(held):
            _HELD.pop(real, None)
            os.close(fd)


# -- what only a new binary changes ----------------------------------------------------------------------
def binary_key(path):
    """The identity of a program for :func:`cached_get` / :func:`cached_put`: its real path and the stat
    fields a replaced or rewritten binary changes (device, inode, size, mtime and ctime in ns); None when it
    cannot be stat'ed (then nothing is cached)."""
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except (OSError, TypeError, ValueError):
        return None
    ns = [getattr(st, "st_%s_ns" % f, None) for f in ("mtime", "ctime")]
    ns = [int(getattr(st, "st_%s" % f) * 1e9) if v is None else v for f, v in zip(("mtime", "ctime"), ns)]
    return real, [st.st_dev, st.st_ino, st.st_size] + ns


def _cached_name(key, kind):
    base = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(key[0]))[:64]
    digest = hashlib.sha256(("%s\0%s" % (key[0], kind)).encode("utf-8")).hexdigest()[:16]
    return "%s.%s.%s.json" % (base, digest, kind)


def cached_get(key, kind):
    """What :func:`cached_put` stored as ``kind`` for the binary ``key`` (see binary_key), or None when
    nothing is stored, the entry is of another binary or of this path before the binary changed (any stat
    field differs), or it cannot be read (corrupt, a symlink, not JSON): the caller then asks the binary.

    The one home of the node-side cache of what a binary prints that only a new binary changes (e.g. the
    containerd engine's dump of an empty config): it lives here because it shares the lock folder's
    rules -- root-private (0700, owned by this user), under /run (tmpfs: gone at reboot), never beside a
    config -- and this module's atomic writes. Reading writes nothing (check mode reads)."""
    if key is None:
        return None
    folder = _lock_dir(create=False)
    if folder is None:
        return None
    try:
        fd = os.open(os.path.join(folder, _cached_name(key, kind)), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            entry = json.loads(f.read(1 << 20).decode("utf-8"))
    except (IOError, OSError, ValueError, UnicodeError):
        return None
    if not isinstance(entry, dict) or "value" not in entry:
        return None
    if entry.get("binary") != key[0] or entry.get("stat") != list(key[1]) or entry.get("kind") != kind:
        return None
    return entry["value"]


def cached_put(key, kind, value):
    """Store ``value`` (plain JSON data) as ``kind`` for the binary ``key`` (see cached_get): one file per
    binary and kind, mode 0600, written to a temp file and renamed over the old entry. Best effort: a
    failure leaves the old entry or none (the next run asks the binary again). Real runs only."""
    if key is None:
        return
    tmp = None
    try:
        folder = _lock_dir()
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".cache.", suffix=".tmp")   # mode 0600
        with os.fdopen(fd, "w") as f:
            json.dump(dict(binary=key[0], stat=list(key[1]), kind=kind, value=value), f, sort_keys=True)
        os.chmod(tmp, 0o600)
        os.rename(tmp, os.path.join(folder, _cached_name(key, kind)))
        tmp = None
    except (FileOpError, IOError, OSError, TypeError, ValueError):
        pass
    finally:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)


def _remove_stale_temps(changes, outside, backup_dir):
    """Remove the temp files that a run of ours killed between mkstemp and rename (SIGKILL, OOM, power)
    left for these files: ``.<name>.XXXXXXXX.tmp`` and ``.<name>.<pid>.<date>~.XXXXXXXX.tmp`` (backups).
    Only for files whose lock this process holds: then no run of ours can be writing them."""
    for path, _before, _after in changes:
        real = resolve(path)
        if real not in _HELD:
            continue
        folder = os.path.dirname(real) or "."
        names = "|".join(re.escape(n) for n in sorted(set([os.path.basename(real), os.path.basename(path)])))
        stale = re.compile(r"^\.(?:%s)\.(?:\d+\.\d{4}-\d\d-\d\d@\d\d:\d\d:\d\d(?:\.\d+)?~\.)?[a-z0-9_]{8}\.tmp$" % names)
        for d in set([folder, _temp_folder(folder, outside), backup_dir or folder]):
            try:
                entries = os.listdir(d)
            except OSError:
                continue
            for name in entries:
                if stale.match(name) and os.path.isfile(os.path.join(d, name)):
                    try:
                        os.unlink(os.path.join(d, name))
                    except OSError:
                        pass


def apply_changes(changes, module=None, backup=False, outside=None, check_mode=False, backup_dir=None):
    """Write a list of (path, before, after) as one unit. ``after`` None deletes the file.

    ``outside``: no temp file inside this folder (write_atomic). ``backup_dir``: where backups go
    (default beside each file). ``check_mode``: run :func:`preflight` (and the concurrent-change check)
    only, write nothing, and return ([], []); the real run raises the same errors.

    Every file is checked for concurrent change and by :func:`preflight` before the first write. For
    the files this process holds the lock of (:func:`locked`), temp files left by a killed run are removed.
    Returns (written paths, backup paths). On a failure, the files already written get their previous
    bytes back and the backups of this run are removed.
    """
    changes = [c for c in changes if c[1] != c[2]]
    preflight(changes, backup=backup, outside=outside, backup_dir=backup_dir)
    for path, before, _after in changes:
        check_unchanged(path, before)
    if check_mode:
        return [], []
    _remove_stale_temps(changes, outside, backup_dir)
    backups, done = [], []
    try:
        for path, before, after in changes:
            if backup and before is not None:
                b = backup_file(path, module, backup_dir=backup_dir, outside=outside)
                if b:
                    backups.append(b)
            check_unchanged(path, before)
            if after is None:
                remove_file(path)
            else:
                write_atomic(path, after, module, outside=outside)
            done.append((path, before))
    except Exception as e:
        if not restore(done, module, outside=outside):
            for b in backups:   # every file holds its old bytes again: the backups are of no use
                try:
                    os.unlink(b)
                except OSError:
                    pass
        if isinstance(e, FileOpError):
            raise
        raise FileOpError("writing %s failed: %s" % (changes[len(done)][0], e))
    return [p for p, _b in done], backups


def restore(written, module=None, outside=None):
    """Put back the previous bytes (None: the file did not exist) of files written by apply_changes."""
    errors = []
    for path, before in reversed(written):
        try:
            if before is None:
                remove_file(path)
            else:
                write_atomic(path, before, module, outside=outside)
        except FileOpError as e:
            errors.append(str(e))
    return errors


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True


_SCRATCH_RE = re.compile(r"^[a-z]+-(\d+)-")


@contextlib.contextmanager
def scratch_dir(purpose):
    """A private folder for files a run hands to a runtime binary (candidate configs for ``config dump`` or
    ``dockerd --validate``), removed when the run ends.

    It lives in ``<tmp>/gpuops-nvidia-scratch-<uid>`` (mode 0700) and is named ``<purpose>-<pid>-...``, so a
    run killed before it could clean up (SIGKILL, OOM) is cleaned up by the next run: folders whose PID is
    no longer alive are removed first.
    """
    base = os.path.join(tempfile.gettempdir(), "gpuops-nvidia-scratch-%d" % os.geteuid())
    try:
        os.mkdir(base, 0o700)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise
    st = os.lstat(base)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise FileOpError("%s is not a private folder of this user; remove it" % base)
    for name in os.listdir(base):
        m = _SCRATCH_RE.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    path = tempfile.mkdtemp(prefix="%s-%d-" % (purpose, os.getpid()), dir=base)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
