"""Integration-test harness: judge containerd configs by what the REAL daemon loads.

Plain functions and classes; pytest fixtures live in ``conftest.py``.

Builds
    :func:`builds` -> ``{"1.6": Build, "1.7": Build, "2.1": Build}`` (Debian's containerd 1.6.20 /
    1.7.24 / 2.1.9 and runc 1.1.5, fetched and unpacked by ``scripts/fetch-containerd.sh``).
    Raises :class:`BuildsUnavailable` when they cannot be had; the fixtures turn that into a skip, or
    a failure when ``$CI`` is set (see :func:`in_ci`).

One-shot commands
    :func:`config_dump`, :func:`config_default`.

A running daemon
    :class:`Daemon` (context manager) runs ``containerd --config F --root R --state S --address SOCK``
    with everything in temp folders.  ``config_path=None`` means "no config file on this node"
    (containerd's built-in defaults): containerd is started *without* ``--config``, and the default
    path ``/etc/containerd/config.toml`` is hidden (see isolation below).  Note that an explicit
    ``--config`` naming a missing file is NOT "no config": every version refuses to start then
    (``failed to load TOML: ... no such file or directory``), whereas ``config dump`` of 2.1 accepts
    a missing file.

Isolation (why a mount namespace)
    Some paths are hard-coded in containerd and its shim whatever ``--root/--state`` say:
    ``/run/containerd/s/<hash>`` (shim sockets), ``/run/containerd/runc/<ns>`` (runc state, default
    ``Root`` of the runc shim), ``/run/containerd/fifo`` (``ctr`` stdio FIFOs, client side),
    ``/run/nri/nri.sock`` (2.x: NRI is on by default and *unlinks and re-binds* that socket — two 2.x
    daemons on one host steal it from each other and from a host containerd), ``/opt/containerd``
    (the ``opt`` plugin), ``/etc/cni/net.d`` (1.7+ create the CNI conf dir; an empty one also makes
    NetworkReady=false deterministic), ``/run/netns`` (pod network namespaces: 2.1's RunPodSandbox
    creates one before CNI setup).  Each Daemon therefore gets a private mount namespace, held
    by a small ``unshare`` holder process, with empty tmpfs mounts on all of those folders (and on
    ``/etc/containerd`` when ``config_path=None``).  containerd (and every respawn by
    :class:`supervisor.Supervisor`) is started with ``nsenter`` into that namespace, and so are the
    harness's ``ctr`` calls.  The PID is still the real one (no PID namespace): a module that finds
    the socket's owner with SO_PEERCRED and signals it hits containerd itself.  Everything else
    (``/tmp``, the config files, the socket) is the host's.  The only host footprint: missing mount
    points are created (empty dirs).  ``isolate=False`` runs without the namespace (then those paths
    are touched on the host).  Not covered (only CNI plugins write it, and none is configured):
    ``/var/lib/cni``.

Containers
    :func:`busybox_rootfs` builds a rootfs folder from Debian's static busybox
    (``scripts/fetch-busybox.sh``); :meth:`Daemon.run_container` runs it with ``ctr run --rootfs``.
    Each Daemon uses its own containerd namespace (``gpuops-<random>``), so container ids and cgroups
    (``/sys/fs/cgroup/<ctrl>/<ns>/<id>``) never clash with another test or engineer.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import grpc

from ansible_collections.gpuops.nvidia.plugins.module_utils.service import wait_until

try:  # imported both as a plain module (sys.path) and as tests.integration.harness
    from . import cri_client  # type: ignore
except ImportError:  # pragma: no cover
    import cri_client  # type: ignore

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FETCH_CONTAINERD = REPO / "scripts" / "fetch-containerd.sh"
FETCH_BUSYBOX = REPO / "scripts" / "fetch-busybox.sh"
STANDINS = HERE / "standins"
NVIDIA_STANDIN = STANDINS / "nvidia-container-runtime"

SUITES = {"1.6": "bookworm", "1.7": "trixie", "2.1": "sid"}
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes incl. NUL; containerd also binds SOCK + ".ttrpc"


def default_signals() -> None:
    """``preexec_fn`` of every daemon the tests start: SIGHUP (and SIGINT/SIGTERM) back to their default
    action. A child inherits ignored signals: under ``nohup`` (or a CI runner that ignores SIGHUP) containerd
    would ignore the SIGHUP the module's signal path sends, and the restart tests would judge the wrong thing."""
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


class HarnessError(RuntimeError):
    pass


class BuildsUnavailable(HarnessError):
    """The containerd builds (or busybox) could not be fetched/found."""


class DaemonError(HarnessError):
    """The daemon did not come up (the message carries the log tail)."""


class CriUnavailable(HarnessError):
    """The CRI service is not served (plugin failed to load) or never became ready."""


def in_ci() -> bool:
    """True when ``$CI`` is set (to anything but empty/0/false/no): missing builds must fail, not skip."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# ---------------------------------------------------------------------------------------------------
# builds
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Build:
    key: str            # "1.6"
    suite: str          # "bookworm"
    version: str        # "1.6.20" (upstream part of the Debian version)
    deb_version: str    # "1.6.20~ds1-1+deb12u3"
    containerd: str     # absolute path of the containerd binary
    ctr: str
    shim: str           # containerd-shim-runc-v2
    runc: str
    bindir: str         # one folder with containerd, ctr, containerd-shim-runc-v2, runc: put it on PATH

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def config_version(self) -> int:
        """The config schema ``containerd config default`` prints: 2 for 1.x, 3 for 2.x."""
        return 3 if self.major >= 2 else 2

    def __str__(self) -> str:
        return "containerd-%s" % self.version


def _run_fetch(script: Path, env_extra: Optional[Dict[str, str]] = None) -> Path:
    if not script.is_file():
        raise BuildsUnavailable("%s is missing" % script)
    env = dict(os.environ, **(env_extra or {}))
    try:
        proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BuildsUnavailable("%s: %s" % (script.name, e)) from e
    if proc.returncode != 0:
        raise BuildsUnavailable("%s failed (rc=%d):\n%s" % (script.name, proc.returncode, proc.stderr[-3000:]))
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise BuildsUnavailable("%s printed no cache folder" % script.name)
    return Path(lines[-1])


def _upstream(deb_version: str) -> str:
    m = re.match(r"(?:\d+:)?(\d+\.\d+\.\d+)", deb_version)
    if not m:
        raise BuildsUnavailable("cannot read a version from %r" % deb_version)
    return m.group(1)


def _bindir(cache: Path, suite: str, links: Dict[str, str]) -> Path:
    """``$CACHE/harness-bin/<suite>``: symlinks to the binaries, created atomically, idempotent."""
    d = cache / "harness-bin" / suite
    if d.is_dir() and all(os.path.realpath(d / n) == os.path.realpath(t) for n, t in links.items()):
        return d
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".%s." % suite, dir=str(d.parent)))
    for name, target in links.items():
        os.symlink(target, tmp / name)
    os.chmod(tmp, 0o755)
    try:
        if d.exists():
            shutil.rmtree(d)
        os.rename(tmp, d)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # a concurrent caller won the race: theirs is identical
    return d


@functools.lru_cache(maxsize=None)
def builds() -> Dict[str, Build]:
    """All three builds, fetching them first if needed (a cached fetch returns instantly).
    Set ``GPUOPS_CACHE`` to move the cache.  Raises :class:`BuildsUnavailable`."""
    cache = _run_fetch(FETCH_CONTAINERD)
    runc = cache / "runc" / "usr" / "sbin" / "runc"
    if not os.access(runc, os.X_OK):
        raise BuildsUnavailable("runc missing at %s" % runc)
    result: Dict[str, Build] = {}
    missing = []
    for key, suite in SUITES.items():
        root = cache / "containerd" / suite
        bins = {n: root / "usr" / "bin" / n for n in ("containerd", "ctr", "containerd-shim-runc-v2")}
        absent = [str(p) for p in bins.values() if not os.access(p, os.X_OK)]
        if absent or not (root / "VERSION").is_file():
            missing.append("%s (%s): %s" % (key, suite, ", ".join(absent) or "VERSION file"))
            continue
        deb_version = (root / "VERSION").read_text().strip()
        version = _upstream(deb_version)
        if not version.startswith(key + "."):
            missing.append("%s: %s holds %s" % (key, suite, version))
            continue
        links = {n: str(p) for n, p in bins.items()}
        links["runc"] = str(runc)
        bindir = _bindir(cache, suite, links)
        result[key] = Build(key=key, suite=suite, version=version, deb_version=deb_version,
                            containerd=str(bins["containerd"]), ctr=str(bins["ctr"]),
                            shim=str(bins["containerd-shim-runc-v2"]), runc=str(runc), bindir=str(bindir))
    if missing:
        raise BuildsUnavailable("containerd builds missing: " + "; ".join(missing))
    return result


@functools.lru_cache(maxsize=None)
def busybox_path() -> Path:
    """The static busybox binary (``scripts/fetch-busybox.sh``).  Raises :class:`BuildsUnavailable`."""
    cache = _run_fetch(FETCH_BUSYBOX)
    bb = cache / "busybox" / "bin" / "busybox"
    if not os.access(bb, os.X_OK):
        raise BuildsUnavailable("busybox missing at %s" % bb)
    return bb


def busybox_rootfs(dest) -> Path:
    """Make ``dest`` a minimal rootfs: ``/bin/busybox`` plus a symlink per applet (sh, sleep, cat …)
    and empty ``proc dev sys tmp etc``.  About 2 MB, a few ms; usable by ``ctr run --rootfs``."""
    dest = Path(dest)
    bb = busybox_path()
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    for d in ("proc", "dev", "sys", "tmp", "etc", "run"):
        (dest / d).mkdir(exist_ok=True)
    shutil.copy2(bb, dest / "bin" / "busybox")
    applets = subprocess.run([str(bb), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for a in applets:
        link = dest / "bin" / a
        if a != "busybox" and not link.exists():
            os.symlink("busybox", link)
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
    return dest


# ---------------------------------------------------------------------------------------------------
# one-shot commands
# ---------------------------------------------------------------------------------------------------

def config_dump(build: Build, config_path, timeout: float = 60) -> Tuple[int, str, str]:
    """``containerd --config F config dump`` -> (returncode, stdout, stderr).  Validates the file as
    this version reads it; 1.x rewrites ``imports`` to the files actually loaded, 2.x migrates to
    version 3 and fills in every default.  (2.1 returns 0 for a *missing* file; 1.x returns 1.)"""
    p = subprocess.run([build.containerd, "--config", str(config_path), "config", "dump"],
                       capture_output=True, text=True, timeout=timeout, check=False,
                       env=dict(os.environ, PATH=build.bindir + ":" + SYSTEM_PATH))
    return p.returncode, p.stdout, p.stderr


def config_default(build: Build, timeout: float = 60) -> str:
    """``containerd config default`` of this build (1.x: ``version = 2``, 2.x: ``version = 3``)."""
    p = subprocess.run([build.containerd, "config", "default"], capture_output=True, text=True,
                       timeout=timeout, check=True)
    return p.stdout


def socket_owner_pid(path) -> int:
    """The PID of the process serving a unix socket (SO_PEERCRED), as a node-side module finds it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(str(path))
        creds = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, _uid, _gid = struct.unpack("3i", creds)
    return pid


# ---------------------------------------------------------------------------------------------------
# mount namespace holder
# ---------------------------------------------------------------------------------------------------

_HOLDER_SCRIPT = r"""
set -e
for d in /run/containerd /run/nri /run/netns /opt/containerd /etc/cni/net.d; do
  mkdir -p "$d"
  mount -t tmpfs -o mode=0711,size=64m gpuops-harness "$d"
done
if [ "$HIDE_ETC" = 1 ] && [ -d /etc/containerd ]; then
  mount -t tmpfs -o mode=0755,size=1m gpuops-harness /etc/containerd
fi
echo ready
# Live while the harness holds our stdin open; a dead harness closes it and we exit.
read -r _ || true
"""


class MountNamespace:
    """A private mount namespace kept alive by a holder process (see module docstring)."""

    def __init__(self, hide_etc_containerd: bool = False):
        self.hide_etc_containerd = hide_etc_containerd
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 10) -> "MountNamespace":
        env = dict(os.environ, HIDE_ETC="1" if self.hide_etc_containerd else "0", PATH=SYSTEM_PATH)
        try:
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", _HOLDER_SCRIPT],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                start_new_session=True)
        except OSError as e:
            raise HarnessError("cannot run unshare (util-linux): %s" % e) from e
        line = self.proc.stdout.readline()  # blocks until "ready" or the holder dies (EOF)
        if line.strip() != b"ready":
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
            self.stop()
            raise HarnessError("cannot create a private mount namespace (need root/CAP_SYS_ADMIN; "
                               "or use isolate=False): %s" % err.strip())
        return self

    def wrap(self, argv: Sequence[str]) -> List[str]:
        """argv run inside the namespace (nsenter execs it: same PID as the command itself)."""
        assert self.proc is not None
        return ["nsenter", "--mount=/proc/%d/ns/mnt" % self.proc.pid, "--", *argv]

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None:
            return
        try:
            p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        for f in (p.stdout, p.stderr):
            if f:
                f.close()


# ---------------------------------------------------------------------------------------------------
# the daemon
# ---------------------------------------------------------------------------------------------------

def _poll(predicate, timeout: float, interval: float = 0.02):
    """Call ``predicate()`` until it returns a truthy value or the deadline passes (then a falsy value):
    the module's own wait (``service.wait_until``), polled finer for the tests."""
    return wait_until(predicate, timeout, interval)


def _rpc_code(e: Exception) -> Optional[grpc.StatusCode]:
    return e.code() if isinstance(e, grpc.RpcError) else None


class Daemon:
    """A real containerd in temp folders.  Use as a context manager::

        with Daemon(build, cfg, tmp_path) as d:
            d.cri_ok(); d.cri_config()["containerd"]["runtimes"]; d.plugins(); d.log()

    ``config_path``: the file passed with ``--config`` (it need not exist yet at construction; it must
    exist at start or containerd exits).  ``None``: no ``--config``, no file (built-in defaults).
    ``tmpdir``: where root/state/log go (a new temp dir if None; removed on exit only if created here).
    ``extra_path``: folders put on PATH before the build's bindir (e.g. ``harness.STANDINS``).
    ``env``: extra environment for containerd and hence its shims/runtimes (e.g. NVIDIA_STANDIN_LOG).
    """

    def __init__(self, build: Build, config_path=None, tmpdir=None, *, extra_path: Iterable = (),
                 env: Optional[Dict[str, str]] = None, isolate: bool = True, start_timeout: float = 30,
                 namespace: Optional[str] = None):
        self.build = build
        self.config_path = None if config_path is None else str(config_path)
        self._own_tmp = tmpdir is None
        self.tmpdir = Path(tmpdir) if tmpdir is not None else Path(tempfile.mkdtemp(prefix="gpuops-ctd-"))
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        self.root = self.tmpdir / "root"
        self.state = self.tmpdir / "state"
        self.log_path = self.tmpdir / "containerd.log"
        self._sockdir: Optional[Path] = None
        candidate = self.tmpdir / "c.sock"
        if len(str(candidate)) + len(".ttrpc") > MAX_SOCKET_PATH:
            self._sockdir = Path(tempfile.mkdtemp(prefix="gpo-", dir="/tmp"))
            candidate = self._sockdir / "c.sock"
        self.socket = str(candidate)
        self.extra_path = [str(p) for p in extra_path]
        self.env_extra = dict(env or {})
        self.isolate = isolate
        self.start_timeout = start_timeout
        self.namespace = namespace or "gpuops-" + uuid.uuid4().hex[:8]
        self.ns: Optional[MountNamespace] = None
        self.proc: Optional[subprocess.Popen] = None
        self._containers: List[str] = []

    # --- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> "Daemon":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def pid(self) -> Optional[int]:
        p = self.proc
        return p.pid if p is not None and p.poll() is None else None

    def alive(self) -> bool:
        return self.pid is not None

    def environ(self) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE")}
        env["PATH"] = ":".join(self.extra_path + [self.build.bindir, SYSTEM_PATH])
        env.update(self.env_extra)
        return env

    def command(self, config_path: Optional[str] = "__default__") -> List[str]:
        """The containerd argv (without the nsenter wrapper)."""
        cfg = self.config_path if config_path == "__default__" else config_path
        argv = [self.build.containerd]
        if cfg is not None:
            argv += ["--config", str(cfg)]
        argv += ["--root", str(self.root), "--state", str(self.state), "--address", self.socket]
        return argv

    def _wrap(self, argv: Sequence[str]) -> List[str]:
        return self.ns.wrap(argv) if self.ns is not None else list(argv)

    def _ensure_namespace(self) -> None:
        if self.isolate and self.ns is None:
            self.ns = MountNamespace(hide_etc_containerd=self.config_path is None).start()
        if not self.isolate and self.config_path is None and os.path.exists("/etc/containerd/config.toml"):
            raise HarnessError("config_path=None needs isolate=True: /etc/containerd/config.toml exists")

    def _spawn(self, config_path: Optional[str] = "__default__", banner: str = "") -> subprocess.Popen:
        """Start one containerd process (output appended to the log)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(("--- %s %s: %s\n" % (time.strftime("%H:%M:%S"), banner or "start",
                                            " ".join(self.command(config_path)))).encode())
            log.flush()
            return subprocess.Popen(self._wrap(self.command(config_path)), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, env=self.environ(),
                                    cwd=str(self.tmpdir), start_new_session=True, preexec_fn=default_signals)

    def start(self) -> None:
        self._ensure_namespace()
        self.proc = self._spawn()
        self.wait_ready(self.proc)

    def wait_ready(self, proc: Optional[subprocess.Popen] = None, timeout: Optional[float] = None) -> Dict[str, str]:
        """Poll until the socket answers containerd's Version RPC (any version serves it as soon as
        the plugins are loaded, CRI or not).  Raises :class:`DaemonError` if ``proc`` exits first."""
        proc = proc or self.proc
        result: Dict[str, Any] = {}

        def ready():
            if proc is not None and proc.poll() is not None:
                return True
            if not os.path.exists(self.socket):
                return False
            try:
                result.update(cri_client.version(self.socket, timeout=1))
                return True
            except grpc.RpcError:
                return False

        ok = _poll(ready, timeout or self.start_timeout)
        if proc is not None and proc.poll() is not None:
            raise DaemonError("containerd exited with %s before serving %s:\n%s"
                              % (proc.returncode, self.socket, self.log_tail()))
        if not ok:
            raise DaemonError("containerd did not answer on %s within %ss:\n%s"
                              % (self.socket, timeout or self.start_timeout, self.log_tail()))
        return result

    def _stop_proc(self, proc: Optional[subprocess.Popen], timeout: float = 10,
                   sig: int = signal.SIGTERM) -> Optional[int]:
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.send_signal(sig)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def restart(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Stop containerd only (``sig``, then KILL after ``timeout``) and start it again with the same
        command line — like ``systemctl restart`` with ``KillMode=process``: containers keep running
        (their shims are not touched).  Returns the new PID once it answers."""
        self._stop_proc(self.proc, timeout=timeout, sig=sig)
        self.proc = self._spawn(banner="restart")
        self.wait_ready(self.proc, timeout=timeout)
        return self.proc.pid

    def stop(self) -> None:
        """Remove our containers, stop containerd (TERM, then KILL), drop the namespace and temp dirs."""
        try:
            if self.alive():
                self._remove_containers()
            self._stop_proc(self.proc)
        finally:
            self._hard_cleanup()
            if self.ns is not None:
                self.ns.stop()
                self.ns = None
            if self._sockdir is not None:
                shutil.rmtree(self._sockdir, ignore_errors=True)
            if self._own_tmp:
                shutil.rmtree(self.tmpdir, ignore_errors=True)

    def _remove_containers(self) -> None:
        try:
            tasks = self.tasks()
        except HarnessError:
            tasks = {}
        for cid in tasks:
            self.ctr("task", "kill", "-s", "KILL", cid, check=False, timeout=10)
        for cid in tasks:
            _poll(lambda: self.tasks().get(cid, {}).get("status") != "RUNNING", 10, 0.05)
            self.ctr("task", "delete", cid, check=False, timeout=10)
        try:
            out = self.ctr("containers", "ls", "-q", timeout=10).stdout.split()
        except HarnessError:
            out = []
        for cid in out:
            self.ctr("containers", "rm", cid, check=False, timeout=10)

    def _hard_cleanup(self) -> None:
        """Whatever survived (daemon already dead, test killed it...): kill the container processes by
        their cgroup, then the shims serving our socket, and remove our cgroups."""
        cg_dirs = [Path(p) for p in _glob_cgroups(self.namespace)]
        for d in cg_dirs:
            for procs in d.rglob("cgroup.procs"):
                for pid in _read_pids(procs):
                    _kill(pid)
        for pid in _pids_with_arg(self.socket):
            if pid != os.getpid():
                _kill(pid)
        for d in cg_dirs:
            for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [d]:
                _poll(lambda: _try_rmdir(sub), 2, 0.02)

    # --- observation --------------------------------------------------------------------------------

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def version(self) -> Dict[str, str]:
        return cri_client.version(self.socket)

    def cri_status(self, timeout: float = 15, full: bool = True) -> Dict[str, Any]:
        """CRI Status(verbose) once the CRI service is initialized.  Raises :class:`CriUnavailable`
        at once when the service is not registered (the CRI plugin failed to load)."""
        last: List[Exception] = []

        def attempt():
            try:
                return cri_client.status(self.socket, timeout=2, full=True)
            except grpc.RpcError as e:
                last[:] = [e]
                if _rpc_code(e) == grpc.StatusCode.UNIMPLEMENTED:
                    raise CriUnavailable("CRI not served on %s: %s\n%s" % (
                        self.socket, self.cri_error() or e.details(), self.log_tail(15))) from e
                return None  # e.g. 1.7 "server is not initialized yet": retry

        st = _poll(attempt, timeout, 0.05)
        if st is None:
            raise CriUnavailable("CRI Status did not succeed within %ss: %s" % (timeout, last and last[0]))
        return st if full else st["info"]

    def cri_config(self, timeout: float = 15) -> Dict[str, Any]:
        """``info["config"]`` of CRI Status: the CRI config as loaded (see cri_client docstring)."""
        return self.cri_status(timeout)["info"]["config"]

    def cri_ok(self, timeout: float = 15) -> bool:
        """CRI service served and RuntimeReady.  False at once if the CRI plugin failed to load."""
        try:
            st = self.cri_status(timeout)
        except CriUnavailable:
            return False
        return bool(st["conditions"].get("RuntimeReady", {}).get("status"))

    def plugins(self) -> List[Tuple[str, str, str]]:
        """``ctr plugins ls`` parsed into (type, id, status) rows; status is ok / skip / error."""
        out = self.ctr("plugins", "ls", timeout=15).stdout
        rows = []
        for line in out.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 4:
                rows.append((parts[0], parts[1], parts[-1]))
        return rows

    def plugin_errors(self) -> Dict[str, str]:
        """{"<type>.<id>": init error message} for every plugin in status ``error`` (introspection API)."""
        return {"%s.%s" % (p["type"], p["id"]): p["error"]
                for p in cri_client.plugins(self.socket) if p["status"] == "error"}

    def cri_error(self) -> str:
        """Why the CRI plugin(s) failed to load ("" if they did not)."""
        try:
            errs = self.plugin_errors()
        except grpc.RpcError:
            return ""
        keys = ("io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images")
        return "; ".join("%s: %s" % (k, errs[k]) for k in keys if k in errs)

    # --- ctr and containers -------------------------------------------------------------------------

    def ctr(self, *args: str, check: bool = True, timeout: float = 30,
            namespace: Optional[str] = None) -> subprocess.CompletedProcess:
        """Run ``ctr --address SOCK -n NS ARGS`` inside the daemon's mount namespace."""
        argv = [self.build.ctr, "--address", self.socket, "--connect-timeout", "5s",
                "--namespace", namespace or self.namespace, *args]
        try:
            p = subprocess.run(self._wrap(argv), capture_output=True, text=True, timeout=timeout,
                               env=self.environ(), stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired as e:
            raise HarnessError("ctr %s timed out after %ss" % (" ".join(args), timeout)) from e
        if check and p.returncode != 0:
            raise HarnessError("ctr %s failed (rc=%d): %s" % (" ".join(args), p.returncode, p.stderr.strip()))
        return p

    def run_container(self, rootfs, cid: str, args: Sequence[str] = ("sleep", "3600"), *,
                      runtime: str = "io.containerd.runc.v2", runc_binary: Optional[str] = None,
                      log_path=None, env: Optional[Dict[str, str]] = None) -> int:
        """``ctr run -d --rootfs ROOTFS ID ARGS``: start a detached container, return its PID.
        Output goes to ``log_path`` (default ``<tmpdir>/<id>.out``) via ``--log-uri file://``.
        ``runc_binary``: the runc-compatible binary the shim runs (e.g. the NVIDIA stand-in)."""
        log_path = Path(log_path) if log_path else self.tmpdir / ("%s.out" % cid)
        argv = ["run", "-d", "--rootfs", "--runtime", runtime, "--log-uri", "file://%s" % log_path]
        if runc_binary:
            argv += ["--runc-binary", str(runc_binary)]
        # no image config with --rootfs: the spec has no PATH, so a bare "sh" would not be found
        for k, v in dict({"PATH": "/bin:/sbin:/usr/bin:/usr/sbin"}, **(env or {})).items():
            argv += ["--env", "%s=%s" % (k, v)]
        argv += [str(Path(rootfs).resolve()), cid, *args]
        self.ctr(*argv, timeout=60)
        self._containers.append(cid)
        pid = _poll(lambda: self.task_pid(cid), 10)
        if not pid:
            raise HarnessError("container %s has no running task:\n%s" % (cid, self.log_tail()))
        return pid

    def tasks(self) -> Dict[str, Dict[str, Any]]:
        """``ctr task ls`` -> {id: {"pid": int, "status": "RUNNING" | "STOPPED" | ...}}."""
        out = self.ctr("task", "ls", timeout=15).stdout
        result = {}
        for line in out.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 3:
                result[parts[0]] = {"pid": int(parts[1]), "status": parts[2]}
        return result

    def task_pid(self, cid: str) -> Optional[int]:
        """PID of a RUNNING task, else None."""
        t = self.tasks().get(cid)
        return t["pid"] if t and t["status"] == "RUNNING" else None


# ---------------------------------------------------------------------------------------------------
# process helpers
# ---------------------------------------------------------------------------------------------------

def pid_alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _read_pids(path: Path) -> List[int]:
    try:
        return [int(x) for x in path.read_text().split()]
    except (OSError, ValueError):
        return []


def _try_rmdir(path: Path) -> bool:
    try:
        path.rmdir()
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _glob_cgroups(namespace: str) -> List[str]:
    root = Path("/sys/fs/cgroup")
    found = []
    if (root / namespace).is_dir():          # cgroup v2
        found.append(str(root / namespace))
    for ctrl in root.iterdir() if root.is_dir() else []:
        if ctrl.is_dir() and (ctrl / namespace).is_dir():
            found.append(str(ctrl / namespace))
    return found


def _pids_with_arg(arg: str) -> List[int]:
    """PIDs whose argv contains ``arg`` exactly (our shims: ``-address SOCK``)."""
    pids = []
    needle = arg.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if needle in argv and b"containerd-shim" in os.path.basename(argv[0]):
            pids.append(int(entry))
    return pids
