"""Testinfra helpers shared by the gpuops.nvidia molecule scenarios.

A scenario's ``tests/conftest.py`` puts this folder on ``sys.path`` and takes the pytest hook::

    import pathlib, sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
    from checks import pytest_configure  # noqa: E402,F401 pylint: disable=unused-import

and its tests ``import checks``.  Every helper takes testinfra's ``host``.
"""
from __future__ import annotations

import shlex


def pytest_configure(config):
    """Talk to the molecule instances with ``podman exec`` instead of an Ansible run per command.

    Molecule starts testinfra with ``--connection ansible``; testinfra 10 has no native mapping for
    Ansible's ``podman`` connection, so each command becomes an ad-hoc Ansible run (about 10 s per test
    here).  When every inventory host uses the podman connection, the hosts are handed to testinfra's own
    podman backend instead (``--hosts podman://NAME,...``): the same containers, ten times faster.
    """
    opt = config.option
    if getattr(opt, "connection", None) != "ansible" or getattr(opt, "hosts", None) or not opt.ansible_inventory:
        return
    from testinfra.utils.ansible_runner import AnsibleRunner

    runner = AnsibleRunner(opt.ansible_inventory)
    names = runner.get_hosts("all")
    if names and all(runner.get_variables(n).get("ansible_connection") == "podman" for n in names):
        opt.hosts = ",".join("podman://" + n for n in names)


RUNTIME_LOG = "/var/log/nvidia-container-runtime-standin.log"
CTK_LOG = "/var/log/nvidia-ctk-standin.log"
ROOTFS = "/var/tmp/gpuops-busybox-rootfs"


def system_state(host) -> str:
    """``systemctl is-system-running`` (waits for the boot to finish)."""
    return host.run("systemctl is-system-running --wait").stdout.strip()


def failed_units(host) -> list[str]:
    out = host.run("systemctl list-units --failed --plain --no-legend").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def ctr_plugins(host, address: str = "/run/containerd/containerd.sock", ctr: str = "ctr") -> dict[str, str]:
    """``ctr plugins ls`` as {"<type>/<id>": status}, e.g. {"io.containerd.grpc.v1/cri": "ok"}."""
    res = host.run("%s --address %s plugins ls", ctr, address)
    assert res.rc == 0, res.stderr
    plugins = {}
    for line in res.stdout.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 4:
            plugins["%s/%s" % (cols[0], cols[1])] = cols[-1]
    return plugins


def cri_status(host, address: str = "/run/containerd/containerd.sock", ctr: str = "ctr") -> str | None:
    """Status of the CRI plugin ("ok" / "error"), whatever its plugin type (1.x grpc.v1, 2.x cri.v1)."""
    for key, status in ctr_plugins(host, address, ctr).items():
        if key in ("io.containerd.grpc.v1/cri", "io.containerd.cri.v1/runtime"):
            return status
    return None


def package_versions(host, names) -> dict[str, str | None]:
    """{package: installed version or None}."""
    out = {}
    for n in names:
        pkg = host.package(n)
        out[n] = pkg.version if pkg.is_installed else None
    return out


def log_lines(host, path: str = RUNTIME_LOG) -> list[list[str]]:
    """The stand-in log as rows [timestamp, name, arg...]; [] when there is no log."""
    f = host.file(path)
    if not f.exists:
        return []
    return [line.split("\t") for line in f.content_string.splitlines() if line]


def runtime_calls(host, path: str = RUNTIME_LOG) -> list[list[str]]:
    """The OCI verbs (create/start/delete...) the stand-in runtime got, as [name, verb, container-id]."""
    calls = []
    for row in log_lines(host, path):
        args = row[2:]
        for verb in ("create", "start", "delete", "kill", "run", "exec", "state"):
            if verb in args:
                i = args.index(verb)
                rest = [a for a in args[i + 1:] if not a.startswith("-")]
                calls.append([row[1], verb, rest[-1] if rest else ""])
                break
    return calls


def busybox_rootfs(host) -> str:
    """A one-binary rootfs for ``ctr run --rootfs`` (needs Debian's busybox-static installed)."""
    host.run_expect([0], "mkdir -p %s/bin && cp -f /bin/busybox %s/bin/busybox", ROOTFS, ROOTFS)
    return ROOTFS


def ctr_run_with(host, runtime_binary: str, *cmd: str, address: str = "/run/containerd/containerd.sock",
                 ctr: str = "ctr", name: str = "gpuops-probe"):
    """Run a throwaway busybox container through containerd with ``runtime_binary`` as the runc binary.

    Returns testinfra's CommandResult.  Proves that the engine inside the test node can start containers
    through the (stand-in) NVIDIA runtime, which then appear in its log.
    """
    rootfs = busybox_rootfs(host)
    argv = [ctr, "--address", address, "run", "--rm", "--runc-binary", runtime_binary,
            "--rootfs", rootfs, name, "/bin/busybox"] + list(cmd or ("true",))
    return host.run(" ".join(shlex.quote(a) for a in argv))


# --- containerd under systemd: effective config, restarts, a container through the stand-in ------------

CONTAINERD_CONFIG = "/etc/containerd/config.toml"
CONTAINERD_BEFORE = "/var/lib/gpuops-test/containerd-before"


def config_dump(host, config: str = CONTAINERD_CONFIG) -> dict:
    """``containerd --config CONFIG config dump``, parsed: the configuration the daemon would run."""
    import tomllib

    return tomllib.loads(host.check_output("containerd --config %s config dump", config))


def containerd_starts(host) -> int:
    """How often containerd booted on this node (its "successfully booted" lines in the journal)."""
    out = host.check_output("journalctl -u containerd -o cat --no-pager")
    return sum("containerd successfully booted" in line for line in out.splitlines())


def assert_restarted_exactly_once(host, before_path: str = CONTAINERD_BEFORE) -> None:
    """containerd was restarted once since prepare recorded ``before_path`` (MainPID, InvocationID and
    the journal's start count): the converge restarted it, idempotence and check mode did not."""
    before = dict(line.split("=", 1) for line in host.file(before_path).content_string.splitlines() if "=" in line)
    now = dict(line.split("=", 1) for line in
               host.check_output("systemctl show containerd -p MainPID -p InvocationID").splitlines())
    assert now["MainPID"] != before["MainPID"]
    assert now["InvocationID"] != before["InvocationID"]
    assert containerd_starts(host) == int(before["Starts"]) + 1


def assert_container_runs_through_standin(host, name: str) -> None:
    """A busybox container started by the live containerd with the stand-in runtime as its runc binary:
    its output comes back and the stand-in logged create/start for it.  Empties the log afterwards."""
    res = ctr_run_with(host, "/usr/bin/nvidia-container-runtime", "echo", "hello", name=name)
    assert res.rc == 0, res.stderr
    assert res.stdout.strip() == "hello"
    verbs = [c[1] for c in runtime_calls(host) if c[2] == name]
    assert "create" in verbs and "start" in verbs
    host.run("truncate -s 0 %s", RUNTIME_LOG)


# --- kubelet's RunPodSandbox through the nvidia handler (molecule/shared/cri_probe.py) -------------------

SEED_PHRASE = 'no runtime for "nvidia" is configured'


def cri_before(host) -> dict:
    """What prepare's probe got before the role ran (``cri-before-<node>.json`` in the ephemeral dir)."""
    import json
    import os
    import pathlib

    path = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / ("cri-before-%s.json" % host.backend.name)
    return json.loads(path.read_text())


def cri_probe_now(host, handler: str = "nvidia") -> dict:
    """RunPodSandbox(handler) against the node's containerd now, then stop and remove it."""
    import cri_probe  # beside this file; needs grpcio (the project venv)

    return cri_probe.probe(host.backend.name, handler)


def assert_seed_failure(before: dict, exact: str) -> None:
    """The error kubelet gets before the role: gRPC UNKNOWN whose details match ``exact`` (a regex)."""
    import re

    assert before["ok"] is False, before
    assert before["code"] == "UNKNOWN", before
    assert SEED_PHRASE in before["details"] and re.fullmatch(exact, before["details"]), before["details"]
    assert before["left"] == [], before


def assert_sandbox_through_standin(after: dict) -> None:
    """A READY sandbox with handler nvidia, whose process is the local pause image's entrypoint, created
    and started by the stand-in nvidia-container-runtime, then stopped and removed (nothing left)."""
    assert after["ok"] is True, after
    sid = after["sandbox_id"]
    assert after["listed"]["state"] == "SANDBOX_READY" and after["listed"]["runtime_handler"] == "nvidia"
    assert after["status"]["state"] == "SANDBOX_READY" and after["status"]["runtime_handler"] == "nvidia"
    assert after["status"]["image"] == after["image"]["name"]
    assert after["cmdline"] == ["/bin/busybox", "sleep", "infinity"], after["cmdline"]
    calls = after["standin_calls"]
    creates = [c for c in calls if "create" in c]
    assert creates and creates[0][1] == "nvidia-container-runtime" and creates[0][-1] == sid, calls
    assert any("start" in c and c[-1] == sid for c in calls), calls
    assert after["stopped_state"] == "SANDBOX_NOTREADY", after["stopped_state"]
    assert after["left"] == [], after["left"]
