"""A real dockerd (Debian's builds, scripts/fetch-docker.sh) in a temp folder, kept alive like systemd would.

:func:`docker_builds` -> ``{"bookworm": DockerBuild (20.10), "trixie": DockerBuild (26.1)}``; each runs
with the containerd build of its suite (1.6 / 1.7, scripts/fetch-containerd.sh) and Debian's runc.

:class:`DockerDaemon` (context manager) starts ``dockerd --config-file F`` with its own data-root,
exec-root, pidfile and socket, ``--iptables=false --ip6tables=false --bridge=none
--userland-proxy=false``; dockerd starts its own containerd (found on PATH: the suite's build) under
the exec-root.  A thread respawns dockerd whenever it exits (``Restart=always``), so a restart is
"make it exit": :meth:`restart`, or the ``systemctl`` stand-in of :meth:`fake_systemctl` that a module
under test runs (``systemctl restart docker`` -> SIGTERM to the pid in the pidfile, wait for the exit).
``fail_flag``: while that path exists, each (re)start uses a config dockerd refuses (a crash loop).

Host footprint: none outside the temp folder and the cache, except what every dockerd/containerd
shares: the empty folders ``/run/docker/plugins`` (plugin discovery) and ``/run/containerd/s`` (shim
sockets, removed on exit), and the container cgroups under ``/sys/fs/cgroup/docker`` (removed with the
containers: :meth:`DockerDaemon.stop` removes every container first).
20.10 writes a trust key to ``/etc/docker/key.json`` unless ``deprecated-key-path`` is set: the test
configs for 20.10 set it into the temp folder (:meth:`DockerBuild.base_config`).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from ansible_collections.gpuops.nvidia.plugins.module_utils import docker as engine
from ansible_collections.gpuops.nvidia.plugins.module_utils.service import wait_until
from supervisor import wait_or_stop

try:  # imported both as a plain module (sys.path) and as tests.integration.docker_daemon
    from . import harness, oci_image  # type: ignore
except ImportError:  # pragma: no cover
    import harness  # type: ignore
    import oci_image  # type: ignore

FETCH_DOCKER = harness.REPO / "scripts" / "fetch-docker.sh"
# Debian suite -> the containerd build its docker.io was built against (harness.SUITES keys)
SUITE_CONTAINERD = {"bookworm": "1.6", "trixie": "1.7"}
IMAGE = "gpuops/busybox:test"


@dataclass(frozen=True)
class DockerBuild:
    suite: str
    version: str          # "26.1.5"
    deb_version: str
    dockerd: str
    docker: str
    bindir: str           # dockerd, docker, containerd, containerd-shim-runc-v2, ctr, runc

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def has_validate(self) -> bool:
        return engine.can_validate(tuple(int(x) for x in self.version.split(".")))

    def base_config(self, tmpdir) -> dict:
        """Keys a test daemon.json needs on this version (20.10: keep the trust key out of /etc/docker)."""
        return {"deprecated-key-path": str(Path(tmpdir) / "key.json")} if self.major < 23 else {}

    def __str__(self) -> str:
        return "docker-%s" % self.version


@functools.lru_cache(maxsize=None)
def docker_builds() -> Dict[str, DockerBuild]:
    """Both builds (fetched first if needed).  Raises :class:`harness.BuildsUnavailable`."""
    cache = harness._run_fetch(FETCH_DOCKER)
    containerd = harness.builds()
    out = {}
    for suite, key in SUITE_CONTAINERD.items():
        root = cache / "docker" / suite
        dockerd, docker = root / "usr" / "sbin" / "dockerd", root / "usr" / "bin" / "docker"
        if not (os.access(dockerd, os.X_OK) and os.access(docker, os.X_OK)):
            raise harness.BuildsUnavailable("docker build missing for %s under %s" % (suite, root))
        deb_version = (root / "VERSION").read_text().strip()
        c = containerd[key]
        links = {"dockerd": str(dockerd), "docker": str(docker), "containerd": c.containerd, "ctr": c.ctr,
                 "containerd-shim-runc-v2": c.shim, "runc": c.runc}
        bindir = harness._bindir(cache, "docker-" + suite, links)
        out[suite] = DockerBuild(suite=suite, version=harness._upstream(deb_version), deb_version=deb_version,
                                 dockerd=str(dockerd), docker=str(docker), bindir=str(bindir))
    return out


def _mounts_under(folder) -> List[str]:
    prefix = str(folder).rstrip("/") + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].encode().decode("unicode_escape") for line in f]
    return [m for m in points if m.startswith(prefix) or m == prefix[:-1]]


def busybox_image_tar(dest) -> Path:
    """A rootfs tarball of Debian's static busybox (``docker import`` reads it on every version)."""
    dest = Path(dest)
    dest.write_bytes(oci_image._layer_tar(harness.busybox_path(), ("sh", "echo", "cat", "sleep", "true")))
    return dest


class DockerDaemon:
    def __init__(self, build: DockerBuild, config_path, *, restart_sec: float = 0.2, fail_flag=None,
                 start_timeout: float = 60):
        self.build = build
        self.config_path = Path(config_path)
        # short: unix socket paths are limited to 108 bytes, and containerd's go under the exec-root
        self.tmp = Path(tempfile.mkdtemp(prefix="gd", dir="/tmp"))
        self.socket = str(self.tmp / "docker.sock")
        self.pidfile = self.tmp / "docker.pid"
        self.log_path = self.tmp / "dockerd.log"
        self.restart_sec = restart_sec
        self.fail_flag = Path(fail_flag) if fail_flag else None
        self.start_timeout = start_timeout
        self.starts = 0
        self.exits: List[int] = []
        self.proc: Optional[subprocess.Popen] = None
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._broken = self.tmp / "broken.json"
        self._broken.write_text("{ this is not json\n")

    # --- lifecycle ----------------------------------------------------------------------------------

    def environ(self) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "CONTAINERD_", "NOTIFY_"))}
        env["PATH"] = ":".join([self.build.bindir, harness.SYSTEM_PATH])
        env["DOCKER_CONFIG"] = str(self.tmp / "cli")
        return env

    def command(self, config=None) -> List[str]:
        return [self.build.dockerd, "--config-file", str(config or self.config_path),
                "--data-root", str(self.tmp / "root"), "--exec-root", str(self.tmp / "exec"),
                "--pidfile", str(self.pidfile), "--host", "unix://" + self.socket,
                "--iptables=false", "--ip6tables=false", "--bridge=none", "--userland-proxy=false"]

    def _spawn(self) -> subprocess.Popen:
        failing = self.fail_flag is not None and self.fail_flag.exists()
        argv = self.command(self._broken if failing else None)
        with open(self.log_path, "ab") as log:
            log.write(("--- %s start #%d%s: %s\n" % (time.strftime("%H:%M:%S"), self.starts,
                                                     " (failing)" if failing else "", " ".join(argv))).encode())
            log.flush()
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=self.environ(), cwd=str(self.tmp), start_new_session=True,
                                    preexec_fn=harness.default_signals)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            with self._cond:
                self.starts += 1
                self.proc = self._spawn()
                self._cond.notify_all()
            proc = self.proc
            wait_or_stop(proc, self._stopping)
            if self._stopping.is_set():
                return
            with self._cond:
                self.exits.append(proc.returncode)
                self._cond.notify_all()
            if self._stopping.wait(self.restart_sec):
                return

    def start(self) -> "DockerDaemon":
        self._thread = threading.Thread(target=self._loop, name="dockerd-supervisor", daemon=True)
        self._thread.start()
        self.wait_healthy(self.start_timeout)
        return self

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        """Remove every container, stop dockerd (TERM, then KILL), unmount what it left mounted under
        the temp folder (with live-restore it leaves its data-root mount on purpose), remove the folder."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        p = self.proc
        if p is not None and p.poll() is None:
            try:
                ids = self.docker("ps", "-aq", check=False, timeout=30).stdout.split()
                if ids:
                    self.docker("rm", "-f", *ids, check=False, timeout=60)
            except subprocess.TimeoutExpired:
                pass
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.proc = None
        for mnt in sorted(_mounts_under(self.tmp), reverse=True):
            subprocess.run(["umount", "-l", mnt], capture_output=True, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def restarts(self) -> int:
        return max(0, self.starts - 1)

    @property
    def pid(self) -> Optional[int]:
        p = self.proc
        return p.pid if p is not None and p.poll() is None else None

    def info(self) -> Optional[dict]:
        return engine.daemon_info(self.socket, timeout=2)

    def wait_healthy(self, timeout: float = 60) -> dict:
        info = wait_until(lambda: self.pid is not None and self.info(), timeout, 0.1)
        if not info:
            raise harness.DaemonError("dockerd did not answer on %s within %ss:\n%s" % (self.socket, timeout, self.log_tail()))
        return info

    def wait_starts(self, total: int, timeout: float = 30) -> int:
        with self._cond:
            if not self._cond.wait_for(lambda: self.starts >= total, timeout):
                raise harness.DaemonError("no respawn within %ss (starts=%d):\n%s" % (timeout, self.starts, self.log_tail()))
            return self.starts

    def restart(self, timeout: float = 60) -> dict:
        """SIGTERM (like ``systemctl restart``), wait for the respawn to answer."""
        before = self.starts
        if self.pid:
            os.kill(self.pid, signal.SIGTERM)
        self.wait_starts(before + 1, timeout)
        return self.wait_healthy(timeout)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    # --- the CLI ------------------------------------------------------------------------------------

    def docker(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        argv = [self.build.docker, "--host", "unix://" + self.socket, *args]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.environ(),
                           stdin=subprocess.DEVNULL, check=False)
        if check and p.returncode != 0:
            raise harness.HarnessError("docker %s failed (rc=%d): %s\n%s" % (" ".join(args), p.returncode,
                                                                             p.stderr.strip(), self.log_tail()))
        return p

    def docker_info(self) -> dict:
        return json.loads(self.docker("info", "--format", "{{json .}}").stdout)

    def load_busybox(self) -> str:
        tar = busybox_image_tar(self.tmp / "busybox.tar")
        self.docker("import", str(tar), IMAGE)
        return IMAGE

    # --- a systemctl for the module under test -----------------------------------------------------

    def fake_systemctl(self, bindir) -> Path:
        """``systemctl`` stand-in: ``is-active docker`` says active, ``restart docker`` makes this
        daemon exit (the supervisor starts it again); every call is logged to ``systemctl.log``."""
        bindir = Path(bindir)
        bindir.mkdir(parents=True, exist_ok=True)
        script = bindir / "systemctl"
        script.write_text("""#!/bin/sh
echo "$*" >> {log}
case "$1" in
  is-active) echo active; exit 0;;
  restart)
    pid=$(cat {pidfile} 2>/dev/null) || exit 0   # crash-looping: nothing to stop
    kill -TERM "$pid" 2>/dev/null || exit 0
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
    exit 0;;
esac
exit 1
""".format(log=bindir / "systemctl.log", pidfile=self.pidfile))
        script.chmod(0o755)
        return script
