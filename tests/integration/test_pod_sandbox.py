"""The seed failure, reproduced and fixed with the real daemon: a pod sandbox through the nvidia handler.

What operators hit is kubelet's ``RunPodSandbox`` (RuntimeClass handler ``nvidia``) failing with
``no runtime for "nvidia" is configured``.  For each real containerd (1.6.20, 1.7.24, 2.1.9) and each
way the module is used, one daemon is started:

* ``in_place``: the version's ``containerd config default`` edited in place;
* ``drop_in``: the same main file plus the module's drop-in (1.x: the module adds the import and the
  drop-in carries the main file's CRI section; 2.1: a conf.d glob import already there);
* ``k0s``: a running k0s worker's layout (``k0s_layout.py``: k0s's own command line and generated
  files, the generation that bundles this containerd), the drop-in written as the role's
  ``engine_k0s.yml`` does, then what k0s does on a change of its drop-in folder;
* ``k0s_bootstrap``: ``playbooks/k0s_bootstrap.yml``'s path: the drop-in written before k0s exists
  (no containerd binary yet: ``validate: false``), then k0s's first start (steps 2-5 only).

and:

1. before the module, CRI ``RunPodSandbox`` with ``runtime_handler: nvidia`` fails with exactly that
   error (each version's own words are pinned in ``SEED_ERROR``) and creates nothing;
2. the module runs through Ansible (``runtime_path`` = the stand-in ``nvidia-container-runtime`` in
   this repository, which logs its argv and execs runc), then containerd is restarted as its
   supervisor would (systemd / k0s);
3. ``RunPodSandbox(nvidia)`` now succeeds: the sandbox is READY and listed with handler ``nvidia``,
   its process is the image's entrypoint, and the stand-in's log shows it was the program that
   created it (``create --bundle <state>/io.containerd.runtime.v2.task/k8s.io/<id>``);
4. a sandbox with the default handler still runs (through runc, not the stand-in);
5. ``StopPodSandbox`` + ``RemovePodSandbox`` succeed for both and nothing is left listed.

Pods use the host network (NamespaceOption network = NODE): no CNI is needed.  The sandbox ("pause")
image is built locally (``oci_image.py``) and imported with ``ctr -n k8s.io images import``; the CRI
config's sandbox image points at it, so nothing is pulled.

Host constraint: CRI gives the sandbox ``oom_score_adj = -998``; lowering an OOM score needs
CAP_SYS_RESOURCE, which this kind of machine (a container) lacks, and runc then fails with ``can't
get final child's PID from pipe: EOF`` (nsexec: "failed to update /proc/self/oom_score_adj:
Permission denied").  Every node here therefore sets the CRI option ``restrict_oom_score_adj =
true`` (caps the score at containerd's own) — in the k0s layout as a user drop-in of its own, the
way a k0s user would.  It is unrelated to the runtime handler and harmless where not needed.
"""
from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest
import tomlkit

import cri_client
import harness
import k0s_layout
import oci_image
from ansible_run import run_module

MOD = "gpuops.nvidia.nvidia_containerd_runtime"
STANDIN = str(harness.NVIDIA_STANDIN)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "containerd"
HANDLER = "nvidia"

# The exact gRPC error details of RunPodSandbox(handler "nvidia") before the module (code UNKNOWN).
# 1.6/1.7 fail in the CRI service before a sandbox id exists; 2.1 has already picked an id and words
# it differently.  All three carry the phrase operators search for.
SEED_PHRASE = 'no runtime for "nvidia" is configured'
SEED_ERROR = {
    "1.6": r'failed to get sandbox runtime: no runtime for "nvidia" is configured',
    "1.7": r'failed to get sandbox runtime: no runtime for "nvidia" is configured',
    "2.1": r'unable to get OCI runtime for sandbox "[0-9a-f]{64}": no runtime for "nvidia" is configured',
}

MODES = ["in_place", "drop_in", "k0s", "k0s_bootstrap"]


# ---------------------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pause_image(tmp_path_factory, busybox):
    """The locally built pause-like OCI archive, built once per session."""
    return oci_image.build_pause_image(tmp_path_factory.mktemp("oci") / "pause.tar", busybox)


def node_config(build, image_name: str) -> str:
    """What an operator has: this version's ``containerd config default`` (the fixture, verbatim),
    with the sandbox image pointed at the local image and ``restrict_oom_score_adj = true`` (see the
    module docstring).  1.x: ``sandbox_image``; 2.x: ``[...cri.v1.images.pinned_images] sandbox``."""
    text = (FIXTURES / ("default-%s.toml" % build.key)).read_text()
    text, n = re.subn(r"registry\.k8s\.io/pause:[0-9.]+", image_name, text)
    assert n == 1, "the default config of %s names one pause image" % build.key
    text, n = re.subn(r"restrict_oom_score_adj = false", "restrict_oom_score_adj = true", text)
    assert n == 1
    return text


def host_dropin(build) -> str:
    """The k0s user's own drop-in with the host constraint (a CRI section: merged by k0s on 1.x)."""
    if build.major >= 2:
        return 'version = 3\n\n[plugins."io.containerd.cri.v1.runtime"]\n  restrict_oom_score_adj = true\n'
    return 'version = 2\n\n[plugins."io.containerd.grpc.v1.cri"]\n  restrict_oom_score_adj = true\n'


def ok(result):
    assert not result["failed"], result.get("msg")
    return result


def import_image(d, image) -> None:
    """``ctr -n k8s.io images import`` (no flags needed on 1.6, 1.7 or 2.1 for a single-manifest
    linux/amd64 archive; it unpacks into the default snapshotter, overlayfs, which CRI uses), then
    wait until CRI's own image store knows it."""
    d.ctr("images", "import", str(image.path), namespace="k8s.io", timeout=60)
    st = harness._poll(lambda: cri_client.image_status(d.socket, image.name), 10, 0.05)
    assert st and st["id"] == image.config_digest, st


def sandbox_config(d, name: str) -> bytes:
    """A host-network pod (no hostname: it would need a UTS namespace of its own, which a host-network
    pod shares with the node -- runc: "unable to set hostname without a private UTS namespace"); its
    cgroup parent is the harness namespace's, so that the harness's hard
    cleanup finds whatever a failed test leaves behind."""
    return cri_client.pod_sandbox_config(name, "uid-" + name, "default", network=cri_client.NS_NODE,
                                         cgroup_parent="/" + d.namespace)


def standin_calls(log: Path):
    """The stand-in's log as argv lists: [timestamp, called-as, arg1, ...]."""
    if not log.exists():
        return []
    return [line.split("\t") for line in log.read_text().splitlines()]


def calls_for(log: Path, sid: str):
    return [c for c in standin_calls(log) if any(sid in a for a in c[2:])]


def proc_cmdline(pid: int):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


def remove_all_sandboxes(d) -> None:
    """Best effort, for teardown: stop and remove every sandbox this daemon lists."""
    try:
        for sb in cri_client.list_pod_sandbox(d.socket):
            for rpc in (cri_client.stop_pod_sandbox, cri_client.remove_pod_sandbox):
                try:
                    rpc(d.socket, sb["id"], timeout=20)
                except grpc.RpcError:
                    pass
    except grpc.RpcError:
        pass


# ---------------------------------------------------------------------------------------------------
# the three ways to run the module
# ---------------------------------------------------------------------------------------------------

class Node:
    """One node prepared for a mode: a daemon (not started), the module's args, and what the module
    must have written."""

    def __init__(self, daemon, args, expect_files, main_before=None, layout=None, bootstrap=False):
        self.bootstrap = bootstrap      # the module runs before containerd ever started
        self.daemon = daemon
        self.args = args
        self.expect_files = expect_files
        self.main_before = main_before
        self.layout = layout

    def after_module(self, result) -> None:
        """What the node's supervisor does after the module wrote its files: restart containerd
        (systemd ``restart``; k0s regenerates its files from the drop-in folder first), or, on a
        node prepared before k0s runs, k0s's first start."""
        if self.layout is not None:
            lay = self.layout
            assert lay.preflight() == {}, "k0s would reject our drop-in"
            gen = lay.setup_config()
            drop = str(lay.dropin_dir / "nvidia.toml")
            if lay.generation == k0s_layout.GEN_V2:
                assert gen["merged"] == [str(lay.dropin_dir / "00-host.toml"), drop]   # merged as CRI patches
                cri = tomlkit.parse(lay.cri_config.read_text()).unwrap()["plugins"][k0s_layout.V2_CRI]
                assert cri["containerd"]["runtimes"][HANDLER]["options"]["BinaryName"] == STANDIN
                assert cri["sandbox_image"] == lay.pause_image                    # k0s's own setting kept
            else:
                assert gen["imports"] == [str(lay.dropin_dir / "*.toml")]         # containerd loads it
        if self.bootstrap:
            self.daemon.start()
        else:
            self.daemon.restart()


def prepare(mode, build, tmp_path, image, env) -> Node:
    common = dict(containerd_path=build.containerd, restart="none", runtime_path=STANDIN)
    if mode == "in_place":
        cfg = tmp_path / "config.toml"
        cfg.write_text(node_config(build, image.name))
        d = harness.Daemon(build, cfg, tmp_path / "d", env=env)
        return Node(d, dict(common, config=str(cfg)), [str(cfg)])

    if mode == "drop_in":
        cfg = tmp_path / "config.toml"
        confd = tmp_path / "conf.d"
        drop = confd / "99-nvidia.toml"
        text = node_config(build, image.name)
        if build.major >= 2:
            # 2.x: the usual conf.d glob import is already in the main file; the module leaves it alone
            text, n = re.subn(r"(?m)^imports = \[\]$", "imports = ['%s/*.toml']" % confd, text)
            assert n == 1
            confd.mkdir()
            expect = [str(drop)]
        else:
            # 1.x: the module adds the import, and its drop-in carries the main file's CRI section
            expect = [str(cfg), str(drop)]
        cfg.write_text(text)
        d = harness.Daemon(build, cfg, tmp_path / "d", env=env)
        return Node(d, dict(common, config=str(cfg), drop_in=str(drop)), expect, main_before=text)

    assert mode in ("k0s", "k0s_bootstrap")
    lay = k0s_layout.K0sLayout(build, image.name)
    lay.dropin_dir.mkdir(parents=True)
    (lay.dropin_dir / "00-host.toml").write_text(host_dropin(build))
    d = lay.daemon(env=env)
    drop = lay.dropin_dir / "nvidia.toml"
    # the role's k0s task (roles/nvidia_runtime/tasks/engine_k0s.yml): drop-in in the folder k0s
    # loads, k0s manages imports itself, the config version of k0s's containerd, no restart
    args = dict(common, config=str(lay.config), drop_in=str(drop), manage_imports=False,
                config_version=str(build.config_version), socket=str(lay.socket))
    if mode == "k0s_bootstrap":
        # playbooks/k0s_bootstrap.yml: before k0s is installed there is no containerd.toml and no
        # /var/lib/k0s/bin/containerd, so the role passes that (absent) path and validate: false
        args.update(containerd_path=str(lay.data_dir / "bin" / "containerd"), validate=False)
        return Node(d, args, [str(drop)], layout=lay, bootstrap=True)
    lay.setup_config()                                   # k0s starting on this node
    return Node(d, args, [str(drop)], main_before=lay.config.read_text(), layout=lay)


# ---------------------------------------------------------------------------------------------------
# the test
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_pod_sandbox_through_nvidia_handler(build, mode, pause_image, tmp_path):
    log = tmp_path / "nvidia-container-runtime.log"
    node = prepare(mode, build, tmp_path, pause_image, {"NVIDIA_STANDIN_LOG": str(log)})
    d = node.daemon
    try:
        if node.layout is not None:
            argv = d.command()
            assert argv[1:] == ["--root=%s" % node.layout.root, "--state=%s" % node.layout.state,
                                "--address=%s" % node.layout.socket, "--log-level=info",
                                "--config=%s" % node.layout.config]
        if not node.bootstrap:
            d.start()
            assert d.cri_ok(), d.log_tail(20)
            import_image(d, pause_image)

            # -- 1. the seed failure, exactly ---------------------------------------------------------
            assert HANDLER not in d.cri_config()["containerd"]["runtimes"]
            with pytest.raises(grpc.RpcError) as err:
                cri_client.run_pod_sandbox(d.socket, sandbox_config(d, "gpu-before"), HANDLER, timeout=30)
            assert err.value.code() == grpc.StatusCode.UNKNOWN
            details = err.value.details()
            assert SEED_PHRASE in details and re.fullmatch(SEED_ERROR[build.key], details), details
            assert cri_client.list_pod_sandbox(d.socket) == []        # nothing half-made
            assert not log.exists()                                   # the stand-in never ran

        # -- 2. the module, as the role runs it; the supervisor restarts (or first starts) containerd ---
        r = ok(run_module(MOD, node.args))
        assert r["changed"] and sorted(r["files"]) == sorted(node.expect_files), r["files"]
        if node.main_before is not None and (mode != "drop_in" or build.major >= 2):
            assert Path(node.args["config"]).read_text() == node.main_before   # main file untouched
        if node.bootstrap:
            assert not node.layout.config.exists()                    # left for k0s to write
        if mode == "drop_in" and build.major < 2:
            # containerd < 2.1 replaces whole plugin sections from an import: the drop-in must carry
            # the main file's CRI settings, here the local sandbox image and the host's OOM setting
            dcri = tomlkit.parse(Path(node.args["drop_in"]).read_text()).unwrap()["plugins"][k0s_layout.V2_CRI]
            assert dcri["sandbox_image"] == pause_image.name and dcri["restrict_oom_score_adj"] is True
        node.after_module(r)
        if node.bootstrap:
            assert d.cri_ok(), d.log_tail(20)
            import_image(d, pause_image)
        cri = d.cri_config()
        assert cri["containerd"]["runtimes"][HANDLER]["options"]["BinaryName"] == STANDIN
        assert cri["containerd"]["defaultRuntimeName"] == "runc"

        # -- 3. a sandbox through the nvidia handler -----------------------------------------------------
        sid = cri_client.run_pod_sandbox(d.socket, sandbox_config(d, "gpu-pod"), HANDLER, timeout=60)
        [listed] = cri_client.list_pod_sandbox(d.socket, sandbox_id=sid)
        assert listed["state"] == "SANDBOX_READY" and listed["runtime_handler"] == HANDLER
        assert listed["metadata"]["name"] == "gpu-pod"
        st = cri_client.pod_sandbox_status(d.socket, sid, verbose=True)
        assert st["state"] == "SANDBOX_READY" and st["runtime_handler"] == HANDLER
        info = st["info"]["info"]
        assert info["image"] == pause_image.name
        # RunPodSandbox returns once runc started the task; "runc init" execs the entrypoint just after
        assert harness._poll(lambda: proc_cmdline(info["pid"]) == list(pause_image.entrypoint), 5), \
            proc_cmdline(info["pid"])
        bundle = str(Path(d.state) / "io.containerd.runtime.v2.task" / "k8s.io" / sid)
        creates = [c for c in calls_for(log, sid) if "create" in c]
        assert creates, standin_calls(log)
        c = creates[0]
        assert c[1] == "nvidia-container-runtime"
        assert c[c.index("--bundle") + 1] == bundle and c[-1] == sid
        assert any("start" in c and c[-1] == sid for c in calls_for(log, sid))

        # -- 4. the default handler still works, and does not go through the stand-in ---------------
        sid_runc = cri_client.run_pod_sandbox(d.socket, sandbox_config(d, "plain-pod"), "", timeout=60)
        [plain] = cri_client.list_pod_sandbox(d.socket, sandbox_id=sid_runc)
        assert plain["state"] == "SANDBOX_READY" and plain["runtime_handler"] == ""
        assert calls_for(log, sid_runc) == []

        # -- 5. stop and remove both -------------------------------------------------------------------
        for s in (sid, sid_runc):
            cri_client.stop_pod_sandbox(d.socket, s)
            # 2.x updates the listed state from the task-exit event, after StopPodSandbox returned:
            # poll (as kubelet does), with a deadline
            harness._poll(lambda: cri_client.list_pod_sandbox(d.socket, sandbox_id=s)[0]["state"] == "SANDBOX_NOTREADY",
                          30, 0.05)
            [stopped] = cri_client.list_pod_sandbox(d.socket, sandbox_id=s)
            assert stopped["state"] == "SANDBOX_NOTREADY"
            cri_client.remove_pod_sandbox(d.socket, s)
            assert cri_client.list_pod_sandbox(d.socket, sandbox_id=s) == []
        assert cri_client.list_pod_sandbox(d.socket) == []
        assert not harness.pid_alive(info["pid"])
        # the whole life cycle went through the stand-in: (2.1 first asks it for its "features")
        # create, start, kill (stop), delete (the shim's cleanup and the remove)
        verbs = [a for c in calls_for(log, sid) for a in c[2:] if a in ("create", "start", "kill", "delete")]
        assert verbs[:2] == ["create", "start"] and "kill" in verbs and verbs[-1] == "delete", verbs
        assert calls_for(log, sid_runc) == []
    finally:
        if d.alive():
            remove_all_sandboxes(d)
        d.stop()
        if node.layout is not None:
            node.layout.cleanup()
