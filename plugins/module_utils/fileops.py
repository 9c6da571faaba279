# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Atomic, checked file replacement shared by the runtime modules.

* temp file in the target's folder, fsync, rename (Ansible's ``atomic_move`` when a module is given:
  it keeps mode, owner and SELinux context);
* a symlink keeps being a symlink: its target is written;
* the file must still hold the bytes we planned from, else nothing is written (concurrent change);
* several files are written as one unit: a failure restores the ones already written.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import stat
import tempfile
import time


class FileOpError(Exception):
    pass


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except (IOError, OSError):
        if not os.path.lexists(path):
            return None
        raise


def _encode(text):
    return None if text is None else text.encode("utf-8")


def check_unchanged(path, expected):
    """Refuse when the file no longer holds what the plan was computed from."""
    current = read_bytes(os.path.realpath(path))
    if current != _encode(expected):
        raise FileOpError("%s changed since it was read (another writer?); nothing was written. Run again."
                          % path)


def backup_file(path, module=None):
    """A timestamped copy beside the file; returns its path (None when there is no file)."""
    real = os.path.realpath(path)
    if not os.path.exists(real):
        return None
    if module is not None:
        return module.backup_local(real)
    dest = "%s.%s.%s~" % (real, os.getpid(), time.strftime("%Y-%m-%d@%H:%M:%S"))
    shutil.copy2(real, dest)
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
    real = os.path.realpath(path)
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
    real = os.path.realpath(path)
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


def apply_changes(changes, module=None, backup=False, outside=None):
    """Write a list of (path, before, after) as one unit. ``after`` None deletes the file.

    ``outside``: no temp file inside this folder (write_atomic).

    Every file is checked for concurrent change before the first write. Returns (written paths,
    backup paths). On a failure, the files already written get their previous bytes back.
    """
    changes = [c for c in changes if c[1] != c[2]]
    for path, before, _after in changes:
        check_unchanged(path, before)
    for path, _before, after in changes:
        if after is not None:
            folder = os.path.dirname(os.path.realpath(path)) or "."
            probe = folder
            while not os.path.exists(probe):
                probe = os.path.dirname(probe)
            if not os.access(probe, os.W_OK):
                raise FileOpError("cannot write %s: %s is not writable; nothing was written" % (path, probe))
    backups, done = [], []
    try:
        for path, before, after in changes:
            if backup and before is not None:
                b = backup_file(path, module)
                if b:
                    backups.append(b)
            check_unchanged(path, before)
            if after is None:
                remove_file(path)
            else:
                write_atomic(path, after, module, outside=outside)
            done.append((path, before))
    except Exception as e:
        restore(done, module)
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
