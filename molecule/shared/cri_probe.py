"""Kubelet's first call for a GPU pod, made against the containerd inside a molecule node.

Runs on the controller (the host), with the project venv (grpcio) and the CRI client of the integration
tests (``tests/integration/cri_client.py``), talking to the node's socket through
``/proc/<container pid>/root/run/containerd/containerd.sock``.  What it does, like kubelet for a pod with
``runtimeClassName`` whose handler is ``nvidia`` and ``hostNetwork: true`` (no CNI needed):

1. the sandbox ("pause") image the node's containerd is configured with (``containerd config dump``) is
   imported with ``ctr -n k8s.io images import`` when CRI does not know it yet: a pause-like OCI image
   built locally from the node's own static busybox (``tests/integration/oci_image.py``), so nothing is
   pulled from a registry;
2. ``RunPodSandbox`` with ``runtime_handler``;
3. on success: the sandbox as listed and its verbose status, the stand-in runtime's log lines for it,
   then ``StopPodSandbox`` + ``RemovePodSandbox`` and what is left listed.

Used by the scenarios' prepare (before the role: the seed failure) and verify (after it: the fix)::

    python molecule/shared/cri_probe.py --container NAME [--handler nvidia] [--out FILE.json]

The result is one JSON object (see :func:`probe`).  Exit status 0 whenever the probe itself worked,
whatever RunPodSandbox answered: the caller asserts.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / ".build"))     # the checkout as ansible_collections/gpuops/nvidia
import cri_client  # noqa: E402  pylint: disable=wrong-import-position
import grpc  # noqa: E402  pylint: disable=wrong-import-position
import oci_image  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.gpuops.nvidia.plugins.module_utils.service import (  # noqa: E402  pylint: disable=wrong-import-position
    wait_until,
)

SOCKET = "/run/containerd/containerd.sock"
RUNTIME_LOG = "/var/log/nvidia-container-runtime-standin.log"
IMAGE_IN_NODE = "/var/tmp/gpuops-pause.tar"


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], check=check, capture_output=True, text=True, timeout=120)


def node_socket(container: str) -> str:
    pid = podman("inspect", "--format", "{{.State.Pid}}", container).stdout.strip()
    if not pid or pid == "0":
        raise SystemExit("cri_probe: container %s is not running" % container)
    return "/proc/%s/root%s" % (pid, SOCKET)


def sandbox_image(container: str) -> str:
    """The sandbox image of the running configuration (1.x ``sandbox_image``, 2.x pinned ``sandbox``)."""
    dump = tomllib.loads(podman("exec", container, "containerd", "config", "dump").stdout)
    plugins = dump.get("plugins", {})
    if "io.containerd.cri.v1.images" in plugins:
        return plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"]
    return plugins["io.containerd.grpc.v1.cri"]["sandbox_image"]


def ensure_image(container: str, sock: str, name: str) -> dict:
    """Import the locally built pause image under ``name`` unless CRI already has it."""
    status = cri_client.image_status(sock, name)
    if status:
        return {"name": name, "imported": False, "id": status["id"]}
    with tempfile.TemporaryDirectory() as tmp:
        busybox = pathlib.Path(tmp) / "busybox"
        podman("cp", "%s:/bin/busybox" % container, str(busybox))
        image = oci_image.build_pause_image(pathlib.Path(tmp) / "pause.tar", busybox, name=name)
        podman("cp", str(image.path), "%s:%s" % (container, IMAGE_IN_NODE))
    podman("exec", container, "ctr", "-n", "k8s.io", "images", "import", IMAGE_IN_NODE)
    status = wait_until(lambda: cri_client.image_status(sock, name), 10, 0.05)
    if not status or status["id"] != image.config_digest:
        raise SystemExit("cri_probe: CRI does not list the imported image %s: %r" % (name, status))
    return {"name": name, "imported": True, "id": status["id"], "entrypoint": list(image.entrypoint)}


def standin_lines(container: str, sid: str) -> list[list[str]]:
    res = podman("exec", container, "cat", RUNTIME_LOG, check=False)
    rows = [line.split("\t") for line in res.stdout.splitlines() if line]
    return [r for r in rows if any(sid in a for a in r[2:])]


def probe(container: str, handler: str = "nvidia", name: str = "gpu-pod") -> dict:
    """``{"handler", "image", "ok", "code", "details", "sandbox_id", "listed", "status", "cmdline",
    "standin_calls", "stopped_state", "left"}`` (keys after ``details`` only when ``ok``)."""
    sock = node_socket(container)
    out: dict = {"container": container, "handler": handler}
    out["image"] = ensure_image(container, sock, sandbox_image(container))
    out["sandboxes_before"] = len(cri_client.list_pod_sandbox(sock))
    config = cri_client.pod_sandbox_config(name, "uid-" + name, "default", network=cri_client.NS_NODE)
    try:
        sid = cri_client.run_pod_sandbox(sock, config, handler, timeout=60)
    except grpc.RpcError as err:
        out.update(ok=False, code=err.code().name, details=err.details(),
                   left=cri_client.list_pod_sandbox(sock))
        return out
    out.update(ok=True, code="OK", details="", sandbox_id=sid)
    [out["listed"]] = cri_client.list_pod_sandbox(sock, sandbox_id=sid)
    status = cri_client.pod_sandbox_status(sock, sid, verbose=True)
    out["status"] = {"state": status["state"], "runtime_handler": status["runtime_handler"],
                     "image": status["info"].get("info", {}).get("image")}
    pid = status["info"].get("info", {}).get("pid")
    cmdline = podman("exec", container, "cat", "/proc/%s/cmdline" % pid, check=False).stdout
    out["cmdline"] = [a for a in cmdline.split("\0") if a]
    cri_client.stop_pod_sandbox(sock, sid)
    # 2.x updates the listed state from the task-exit event, after StopPodSandbox returned: poll, as kubelet does
    wait_until(lambda: (cri_client.list_pod_sandbox(sock, sandbox_id=sid) or [{}])[0].get("state")
               == "SANDBOX_NOTREADY", 30, 0.05)
    out["stopped_state"] = (cri_client.list_pod_sandbox(sock, sandbox_id=sid) or [{}])[0].get("state")
    cri_client.remove_pod_sandbox(sock, sid)
    out["left"] = cri_client.list_pod_sandbox(sock)
    out["standin_calls"] = standin_lines(container, sid)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--container", required=True)
    ap.add_argument("--handler", default="nvidia")
    ap.add_argument("--name", default="gpu-pod")
    ap.add_argument("--out", help="write the JSON result here too")
    args = ap.parse_args(argv)
    result = probe(args.container, args.handler, args.name)
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.out:
        pathlib.Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
