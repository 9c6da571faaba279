"""A tiny systemd stand-in: keep containerd alive like ``Restart=always`` + ``KillMode=process``.

containerd does not reload on SIGHUP, it dies of it; a node's service manager respawns it.  A module
under test that "restarts containerd by signal" (find the socket's owner with SO_PEERCRED, send
SIGHUP) therefore needs something that respawns it; this is that something::

    with Supervisor(build, cfg, tmp_path) as sup:        # same command line as harness.Daemon
        pid = sup.pid
        os.kill(pid, signal.SIGHUP)                       # what the module does
        sup.wait_restarts(1)                               # restarts >= 1: respawned after restart_sec
        sup.wait_healthy()                                 # new PID answers on the same socket
        assert sup.restarts == 1 and sup.exits[-1].signal == "SIGHUP"

Everything :class:`harness.Daemon` offers works here (``socket``, ``pid`` — the *current* process,
``log()`` — all starts, with a ``--- start #n`` banner each, ``cri_config()``, ``cri_ok()``,
``plugins()``, ``run_container()``, ``tasks()`` …).  Each respawn re-reads the config file, like a
real restart.  Containers survive respawns (their shims are not ours to kill: ``KillMode=process``).

Injected failures (for rollback tests)
--------------------------------------
``fail_flag=PATH``: while PATH exists, every (re)start is a *failing* start of kind ``fail_mode``:

* ``"exit"`` (default): containerd is started with a config it cannot parse, so it exits at once
  (status 1) and is respawned every ``restart_sec`` — a crash loop, like a unit with a bad config.
  The socket does not answer.
* ``"no-cri"``: containerd starts and serves its socket, but with the CRI plugin disabled
  (``disabled_plugins``), so ``ctr version`` works and CRI Status is UNIMPLEMENTED — catches health
  checks that only look at the socket.
* ``"absent"``: nothing is started while the flag exists (a unit stuck in "activating").

Removing the flag makes the *next* start a normal one (a crash-looping ``exit`` mode picks it up
within ``restart_sec``; in ``no-cri`` mode the daemon keeps running until something restarts it,
exactly like a real node).  The flag is checked at each start, never while a daemon runs.

How a rollback test uses it: point ``fail_flag`` at a file *the module itself creates and its
rollback removes* — typically the drop-in it writes (``conf.d/99-nvidia.toml``) or the new config
file's path when none existed — so that:

1. the module writes the file and SIGHUPs containerd;
2. the respawn sees the flag → the daemon comes up broken (crash loop or no CRI);
3. the module's health check fails → rollback restores/removes the files (the flag is gone) and
   restarts again (SIGHUP, or in ``exit`` mode simply the next automatic respawn);
4. the test asserts files are byte-identical to before, ``sup.wait_healthy()`` succeeds,
   ``sup.cri_ok()`` is True, and ``sup.exits`` shows the failed start(s).

A test that wants a failure independent of the files can create the flag itself (e.g. in a separate
``tmp_path / "fail"``), run the module, and assert it reported failure; it must then remove the flag
and restart (``os.kill(sup.pid, SIGHUP)`` or ``sup.restart()``) to recover.  ``fail_when`` takes any
zero-argument callable instead of a path, for conditions like "the config contains X".
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

try:
    from . import harness  # type: ignore
except ImportError:  # pragma: no cover
    import harness  # type: ignore

FAIL_MODES = ("exit", "no-cri", "absent")


def wait_or_stop(proc: subprocess.Popen, stopping: threading.Event) -> None:
    """Wait until ``proc`` exits or ``stopping`` is set (looked at every 0.1 s); the supervisors' loop."""
    while proc.poll() is None and not stopping.is_set():
        try:
            proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            pass


@dataclass
class Exit:
    """One process the supervisor started and saw end (``pid`` None for an ``absent`` start)."""
    start_no: int
    pid: Optional[int]
    mode: str                   # "normal" or the fail mode
    returncode: Optional[int]   # Popen semantics: -1 for "killed by SIGHUP" (a shell would say 129)
    started: float
    ended: float

    @property
    def signal(self) -> Optional[str]:
        if self.returncode is not None and self.returncode < 0:
            return signal.Signals(-self.returncode).name
        return None

    @property
    def exit_status(self) -> Optional[int]:
        """As systemd/a shell reports it: 128+N for a signal (SIGHUP -> 129)."""
        if self.returncode is None:
            return None
        return 128 - self.returncode if self.returncode < 0 else self.returncode


class Supervisor(harness.Daemon):
    """``Restart=always`` for a :class:`harness.Daemon` (same arguments, plus the ones below).

    ``restart_sec``: delay between an exit and the respawn (systemd's RestartSec; 0.5 s by default to
    keep tests fast).  ``fail_flag`` / ``fail_when`` / ``fail_mode``: see the module docstring.
    ``wait_first``: wait for the first start to be healthy in ``__enter__`` (skipped automatically when
    the first start is a failing one).
    """

    def __init__(self, build, config_path=None, tmpdir=None, *, restart_sec: float = 0.5,
                 fail_flag=None, fail_when: Optional[Callable[[], bool]] = None, fail_mode: str = "exit",
                 wait_first: bool = True, **kwargs):
        super().__init__(build, config_path, tmpdir, **kwargs)
        if fail_mode not in FAIL_MODES:
            raise ValueError("fail_mode must be one of %s" % (FAIL_MODES,))
        self.restart_sec = restart_sec
        self.fail_flag = Path(fail_flag) if fail_flag is not None else None
        self.fail_when = fail_when
        self.fail_mode = fail_mode
        self.wait_first = wait_first
        self.starts = 0
        self.exits: List[Exit] = []
        self.current_mode: Optional[str] = None
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._kick = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._broken_config = self.tmpdir / "supervisor-broken.toml"
        self._nocri_config = self.tmpdir / "supervisor-no-cri.toml"

    # --- counters -----------------------------------------------------------------------------------

    @property
    def restarts(self) -> int:
        """Respawns so far (starts after the first one)."""
        return max(0, self.starts - 1)

    def failing(self) -> bool:
        if self.fail_when is not None and self.fail_when():
            return True
        return self.fail_flag is not None and self.fail_flag.exists()

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._ensure_namespace()
        self._broken_config.write_text("this is [not toml\n")
        self._nocri_config.write_text('version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n')
        first_fails = self.failing()
        self._thread = threading.Thread(target=self._loop, name="containerd-supervisor", daemon=True)
        self._thread.start()
        if self.wait_first and not first_fails:
            self.wait_healthy()

    def _spawn_for(self, mode: str) -> Optional[subprocess.Popen]:
        banner = "start #%d (%s)" % (self.starts, mode)
        if mode == "normal":
            return self._spawn(banner=banner)
        if mode == "exit":
            return self._spawn(str(self._broken_config), banner=banner)
        if mode == "no-cri":
            return self._spawn(str(self._nocri_config), banner=banner)
        with open(self.log_path, "a") as log:  # absent
            log.write("--- %s %s: nothing started\n" % (time.strftime("%H:%M:%S"), banner))
        return None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            mode = self.fail_mode if self.failing() else "normal"
            with self._cond:
                self.starts += 1
                start_no = self.starts
                self.current_mode = mode
                started = time.monotonic()
                try:
                    proc = self._spawn_for(mode)
                except OSError as e:  # e.g. binary vanished: log it, keep trying like systemd
                    with open(self.log_path, "a") as log:
                        log.write("--- start #%d failed: %s\n" % (start_no, e))
                    proc = None
                self.proc = proc
                self._cond.notify_all()
            if proc is not None:
                wait_or_stop(proc, self._stopping)
                if self._stopping.is_set():
                    return  # stop() terminates it
            else:
                # absent: "start" again once the flag is gone (or at stop)
                while self.failing() and not self._stopping.is_set() and not self._kick.is_set():
                    self._stopping.wait(0.05)
            with self._cond:
                self.exits.append(Exit(start_no, proc.pid if proc else None, mode,
                                       proc.returncode if proc else None, started, time.monotonic()))
                with open(self.log_path, "a") as log:
                    log.write("--- exit of start #%d (%s): %s\n" % (
                        start_no, mode, self.exits[-1].signal or self.exits[-1].returncode))
                self.proc = None
                self._cond.notify_all()
            self._kick.clear()
            if self._stopping.wait(self.restart_sec):
                return

    def restart(self, sig: int = signal.SIGTERM, timeout: float = 30) -> Optional[int]:
        """Make the current process exit (default TERM, like ``systemctl restart``; pass SIGHUP to do
        what the module does) and wait for the respawn.  Returns the new PID once it answers, or None
        when the respawn is a flagged (failing) start."""
        before = self.restarts
        p = self.proc
        if p is not None and p.poll() is None:
            p.send_signal(sig)
        else:
            self._kick.set()
        self.wait_restarts(before + 1, timeout=timeout)
        with self._cond:
            mode = self.current_mode
        return self.wait_healthy(timeout=timeout) if mode == "normal" else None

    def stop(self) -> None:
        self._stopping.set()
        t, self._thread = self._thread, None
        try:
            if self.alive() and self.current_mode in ("normal", "no-cri"):  # a crash-looping one
                self._remove_containers()                                  # never answers ctr
        finally:
            # the loop thread may be between spawn and bookkeeping: stop whatever it started
            if t is not None:
                t.join(timeout=30)
            self._stop_proc(self.proc)
            self.proc = None
            super().stop()

    # --- waiting ------------------------------------------------------------------------------------

    def wait_restarts(self, total: int, timeout: float = 30) -> int:
        """Wait until ``restarts >= total`` (absolute, so no race: read ``sup.restarts`` before you
        act, then wait for that + 1).  Returns the restart count."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.restarts >= total, timeout):
                raise harness.DaemonError("no respawn within %ss (restarts=%d, wanted %d):\n%s"
                                          % (timeout, self.restarts, total, self.log_tail()))
            return self.restarts

    def wait_healthy(self, timeout: float = 30, cri: bool = False) -> int:
        """Wait until a *normal* start is up and answers on the socket (and, with ``cri``, until CRI
        Status succeeds).  Returns its PID.  A crash loop or a flagged start keeps it waiting."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self.proc is not None and self.current_mode == "normal"
                                    and self.proc.poll() is None,
                                    max(0.0, deadline - time.monotonic()))
                proc = self.proc if self.current_mode == "normal" else None
            if proc is not None and proc.poll() is None:
                try:
                    self.wait_ready(proc, timeout=max(0.1, deadline - time.monotonic()))
                    if not cri or self.cri_ok(timeout=max(0.1, deadline - time.monotonic())):
                        return proc.pid
                except harness.DaemonError:
                    pass  # it died while we waited: the loop respawns it
            if time.monotonic() >= deadline:
                raise harness.DaemonError("no healthy containerd within %ss (starts=%d, mode=%s):\n%s"
                                          % (timeout, self.starts, self.current_mode, self.log_tail()))
            time.sleep(0.02)
