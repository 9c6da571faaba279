# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restart a container runtime after its config changed, wait until it is healthy, roll back if not.

Runtime-agnostic: the health check is a callable. ``run`` is ``(argv) -> (rc, out, err)``.

containerd does not reload on SIGHUP: it exits (status 129). "signal" mode therefore relies on a
supervisor (systemd ``Restart=always``, k0s) to start it again; it is a restart, not a reload.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import signal
import socket
import struct
import time


def socket_answers(path, timeout=1.0):
    """True when something accepts connections on the unix socket ``path``."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        return True
    except (OSError, socket.error):
        return False
    finally:
        s.close()


def socket_pid(path):
    """PID of the process that owns the listening unix socket (SO_PEERCRED), or None."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2.0)
    try:
        s.connect(path)
        creds = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, _uid, _gid = struct.unpack("3i", creds)
        return pid or None
    except (OSError, socket.error):
        return None
    finally:
        s.close()


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie is gone for our purposes
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (IOError, OSError, IndexError):
        return True


def systemd_running():
    return os.path.isdir("/run/systemd/system")


def unit_active(run, service):
    if not systemd_running():
        return False
    rc, out, _err = run(["systemctl", "is-active", service])
    return rc == 0 and out.strip() == "active"


def wait_until(predicate, timeout, interval=0.2):
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class RestartError(Exception):
    pass


class Restarter(object):
    """Restart per mode (auto, systemd, signal, none) and wait for ``healthy()``."""

    def __init__(self, run, mode, service, socket_path, timeout, healthy, warn, reload_cmd=None):
        self.run = run
        self.mode = mode
        self.service = service
        self.socket = socket_path
        self.timeout = timeout
        self.healthy = healthy
        self.warn = warn
        self.reload_cmd = reload_cmd
        self.method = None

    def decide(self):
        """Which restart this mode means on this node now: 'systemd', 'signal', 'reload' or None."""
        if self.mode == "none":
            return None
        if self.mode in ("systemd", "signal", "reload"):
            return self.mode
        if unit_active(self.run, self.service):
            return "reload" if self.reload_cmd else "systemd"
        if socket_answers(self.socket):
            self.warn("%s answers on %s but is not the active systemd unit %s: restart it yourself (or use "
                      "restart: signal) for the change to take effect" % (self.service, self.socket, self.service))
        return None

    def reload_or_restart(self, quick_timeout, why=lambda: None):
        """Reload, and restart (systemd) when the reload does not show as healthy within ``quick_timeout``
        seconds (``why()``: the health check's reason). Returns the method that made it healthy."""
        quick = Restarter(self.run, self.mode, self.service, self.socket, min(self.timeout, quick_timeout),
                          self.healthy, self.warn, reload_cmd=self.reload_cmd)
        try:
            quick.restart("reload")
            return "reload"
        except RestartError as e:
            reason = why()
            self.warn("systemctl reload %s did not take (%s%s); restarting it" % (self.service, e, "; " + reason if reason else ""))
        self.restart("systemd")
        return "systemd"

    def restart(self, method, wait_if_down=False):
        """Restart once; returns after the runtime is healthy. Raises RestartError with the reason.

        ``wait_if_down`` (the restart after a rollback): in signal mode, when nothing listens on the
        socket (its supervisor is crash-looping it on the bad config), there is nothing to signal:
        wait for the supervisor's next start, which reads the restored files.
        """
        self.method = method
        if method == "systemd":
            rc, out, err = self.run(["systemctl", "restart", self.service])
            if rc != 0:
                raise RestartError("systemctl restart %s failed (rc=%s): %s" % (self.service, rc, (err or out).strip()))
            self._wait_healthy(None)
        elif method == "reload":
            rc, out, err = self.run(self.reload_cmd)
            if rc != 0:
                raise RestartError("%s failed (rc=%s): %s" % (" ".join(self.reload_cmd), rc, (err or out).strip()))
            self._wait_healthy(None)
        elif method == "signal":
            pid = socket_pid(self.socket)
            if pid is None and wait_if_down:
                self._wait_healthy(None)
                return
            if pid is None:
                raise RestartError("restart: signal: nothing listens on %s" % self.socket)
            os.kill(pid, signal.SIGHUP)
            if not wait_until(lambda: not pid_alive(pid), self.timeout):
                raise RestartError("process %d did not exit after SIGHUP within %ss" % (pid, self.timeout))
            self._wait_healthy(pid)
        else:
            raise RestartError("unknown restart method %r" % method)

    def _wait_healthy(self, old_pid):
        def ok():
            if not socket_answers(self.socket):
                return False
            if old_pid is not None and socket_pid(self.socket) in (None, old_pid):
                return False
            return self.healthy()
        if not wait_until(ok, self.timeout):
            raise RestartError("%s did not come back healthy on %s within %ss" % (self.service, self.socket, self.timeout))

    def journal(self, lines=30):
        if not systemd_running():
            return ""
        rc, out, _err = self.run(["journalctl", "-u", self.service, "-n", str(lines), "--no-pager", "-o", "cat"])
        return out.strip() if rc == 0 else ""


class Health(object):
    """What healthy means after a restart, per engine (each engine subclasses it beside its engine).

    ``check(expect)``: the runtime answers and, while ``expect``, runs what was planned; after a rollback
    (``relax()``) only the runtime's own health counts. ``why``: the last reason it was not healthy.
    """

    def __init__(self):
        self.expect = True
        self.why = None

    def __call__(self):
        return self.check(self.expect)

    def check(self, expect):
        return True

    def relax(self):
        self.expect = False


class RuntimeAdapter(object):
    """What one runtime module (containerd, CRI-O, Docker) gives the shared flow (``_runtime_flow``).

    Each engine subclasses it beside its engine. ``job`` has ``params``, ``run`` (argv) -> (rc, out,
    err), ``warn``, ``result`` (the module's return values so far), ``check_mode`` and ``plan``.
    """

    errors = ()               # the engine's bad-input errors: the module fails with their text
    reads_toml = False        # without a TOML reader on the node the module fails with tomledit.reader_missing_message()
    outside = None            # params key of a folder no temp file or backup may go into (CRI-O)
    states = ("present", "absent")   # the module's V(state) choices (V(query) where query() answers)
    options = {}              # the module's own argument spec (_runtime_flow.argument_spec adds the shared options)

    def lock_paths(self, params):
        """The files whose locks are held from reading them to the end of the restart."""
        return [p for p in (params["config"], params.get("drop_in")) if p]

    def initial_result(self, params):
        return {}

    def plan(self, job):
        raise NotImplementedError

    def query(self, job):
        """``state: query`` (read only, no lock): the return values (raise one of ``errors``)."""
        raise NotImplementedError

    def result_fields(self, job):
        """Return values of the plan (besides ``changed`` and ``files``)."""
        return {}

    def validate(self, job):
        """Check the candidate files (raise one of ``errors``), or warn why that cannot be done."""

    def pending(self, job):
        """True when nothing is written but the runtime still needs a restart."""
        return False

    def before_write(self, job):
        """Last check of the real run before anything is written (raise one of ``errors``)."""

    def backup_dir(self, job):
        return None

    def reload_cmd(self, params):
        return None

    def health(self, job):
        return Health()

    def decide(self, job, restarter, health):
        """The restart (or reload) to run now, or None."""
        return restarter.decide()

    def restart(self, job, restarter, method, health):
        """Restart; return the method that made the runtime healthy (raises RestartError)."""
        restarter.restart(method)
        return method


def rollback(error, restarter, method, restore, paths, why=None):
    """After a failed restart: put the files back (``restore()`` returns a list of errors), restart
    again, and return the message the module fails with (reason, restored files, journal lines)."""
    errors = list(restore() or [])
    recovered = True
    try:
        restarter.restart(method, wait_if_down=True)
    except RestartError as e2:
        recovered = False
        errors.append("%s after rollback: %s" % (method, e2))
    msg = "%s%s; the previous files were restored (%s)%s" % (
        error, " (%s)" % why if why else "", ", ".join(paths),
        "" if recovered else " but the runtime is still not healthy: " + "; ".join(errors))
    logs = restarter.journal()
    if logs:
        msg += ". Last log lines:\n" + logs
    return msg
