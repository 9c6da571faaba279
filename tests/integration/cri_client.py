"""Minimal CRI / containerd gRPC client: grpcio with identity serializers, no generated stubs.

The wire format is encoded and decoded by hand (protobuf varints, length-delimited fields), which is
all the few messages used here need.  Everything goes through :func:`call`, so another RPC is a new
request encoder plus a decoder of its answer (see ``run_pod_sandbox_request`` for the shape).

Ground truth read by :func:`status` — ``/runtime.v1.RuntimeService/Status`` with ``verbose=true``
(request bytes ``08 01``), the same call as ``crictl info``.  ``info["config"]`` is the JSON of the CRI
plugin configuration *as loaded*.  Key names, checked against the real daemons 1.6.20, 1.7.24 and
2.1.9 (``test_harness.py::test_cri_config_keys`` pins them) — identical in all three::

    cfg = status(sock)["config"]
    cfg["containerd"]["runtimes"][NAME]["runtimeType"]            # "io.containerd.runc.v2"
    cfg["containerd"]["runtimes"][NAME]["options"]["BinaryName"]
    cfg["containerd"]["runtimes"][NAME]["options"]["SystemdCgroup"]
    cfg["containerd"]["defaultRuntimeName"]                       # "runc"
    cfg["enableCDI"]                                              # 1.7, 2.1 only
    cfg["cni"]["confDir"]                                         # "/etc/cni/net.d"

Differences that matter when reading them:

* ``enableCDI`` (and ``cdiSpecDirs``) do not exist on 1.6 (CDI came with 1.7): the key is absent, and
  ``enable_cdi`` in a 1.6 config is silently ignored.  Default: false on 1.7, **true** on 2.1.
* ``options`` is the runtime's ``options`` table as written (TOML key case kept).  On 1.6/1.7 a runtime
  written *without* an ``options`` table has ``"options": null`` — including a ``runc`` entry written
  in the file, which replaces the built-in one; only the built-in ``runc`` (no runtimes in the file)
  shows the full runc options struct (``BinaryName: ""``, ``SystemdCgroup: false`` …).  2.1 always
  fills the ``runc`` entry with the runc defaults; other runtimes keep only what was written.  So
  read ``(rt.get("options") or {}).get("SystemdCgroup", False)``.
* 1.6/1.7 also have a top-level ``cfg["systemdCgroup"]``: that is the deprecated v1-shim
  ``systemd_cgroup`` setting, NOT the runc option kubelet cares about.  2.1 has no such key.
* 1.6/1.7 keep legacy ``containerd.defaultRuntime`` / ``untrustedWorkloadRuntime`` entries (empty);
  2.1's ``containerd`` holds only ``defaultRuntimeName``, ``runtimes`` and two ``ignore*`` flags.
* 2.1's ``cni`` has ``binDirs`` (list) beside an empty ``binDir``; ``confDir`` is the same.
* Conditions: ``RuntimeReady`` true and ``NetworkReady`` false (no CNI config) on all; 1.7/2.1 add
  ``ContainerdHasNoDeprecationWarnings``.  2.1 also returns ``runtime_handlers`` (field 3):
  ``["", "runc", ...]``, one per configured runtime plus the default ``""``.
* When the CRI plugin failed to load, the service is not registered: ``UNIMPLEMENTED unknown
  service runtime.v1.RuntimeService``.  (Upstream 1.7+ code can answer "server is not initialized
  yet" right after start; never seen here once Version answers, but harness.Daemon retries it.)

``info`` has other keys too (``cniconfig``, ``golang``, ``lastCNILoadStatus`` …, each a JSON string);
:func:`status` parses every value that is valid JSON.

Pod sandboxes (used by ``test_pod_sandbox.py``, checked on 1.6.20, 1.7.24 and 2.1.9):
:func:`pod_sandbox_config` (``network=NS_NODE`` for a host-network pod: no CNI needed; no
``hostname`` then, runc refuses it without a private UTS namespace), :func:`run_pod_sandbox`,
:func:`stop_pod_sandbox`, :func:`remove_pod_sandbox`, :func:`list_pod_sandbox`,
:func:`pod_sandbox_status` (``verbose=True``: ``info["info"]`` holds ``pid``, ``image``,
``runtimeType``, ``runtimeOptions``, ``runtimeSpec``) and :func:`image_status` (does CRI know an
image).  An unknown handler fails RunPodSandbox with code UNKNOWN; 1.6/1.7: ``failed to get sandbox
runtime: no runtime for "X" is configured``, 2.1: ``unable to get OCI runtime for sandbox "<id>": no
runtime for "X" is configured``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterator, List, Optional, Tuple

import grpc

# ---------------------------------------------------------------------------------------------------
# protobuf wire helpers
# ---------------------------------------------------------------------------------------------------

VARINT, I64, LEN, I32 = 0, 1, 2, 5


def encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 negative numbers: two's complement, 10 bytes
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def decode_varint(buf: bytes, pos: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _key(field: int, wire: int) -> bytes:
    return encode_varint((field << 3) | wire)


def field_varint(field: int, value: int) -> bytes:
    """int32/int64/uint*/bool/enum. proto3 omits default values; so do we."""
    value = int(value)
    return _key(field, VARINT) + encode_varint(value) if value else b""


def field_bool(field: int, value: bool) -> bytes:
    return field_varint(field, 1 if value else 0)


def field_bytes(field: int, value: bytes) -> bytes:
    return _key(field, LEN) + encode_varint(len(value)) + value if value else b""


def field_string(field: int, value: str) -> bytes:
    return field_bytes(field, value.encode())


def field_message(field: int, encoded: bytes, always: bool = True) -> bytes:
    """An embedded message.  Present-but-empty messages matter (e.g. PodSandboxConfig.metadata),
    so they are written even when empty unless ``always`` is False."""
    if not encoded and not always:
        return b""
    return _key(field, LEN) + encode_varint(len(encoded)) + encoded


def field_map(field: int, mapping: Dict[str, str]) -> bytes:
    """map<string,string>: repeated entry messages {1: key, 2: value}."""
    return b"".join(field_message(field, field_string(1, k) + field_string(2, v)) for k, v in mapping.items())


def iter_fields(buf: bytes) -> Iterator[Tuple[int, int, Any]]:
    """Yield (field_number, wire_type, value); LEN values are raw bytes, fixed ones ints."""
    pos = 0
    while pos < len(buf):
        key, pos = decode_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = decode_varint(buf, pos)
        elif wire == LEN:
            n, pos = decode_varint(buf, pos)
            value = buf[pos:pos + n]
            if len(value) != n:
                raise ValueError("truncated field %d" % field)
            pos += n
        elif wire == I64:
            value = int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wire == I32:
            value = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
        yield field, wire, value


def decode_fields(buf: bytes) -> Dict[int, List[Any]]:
    out: Dict[int, List[Any]] = {}
    for field, _wire, value in iter_fields(buf):
        out.setdefault(field, []).append(value)
    return out


def decode_map(entries: List[bytes]) -> Dict[str, str]:
    result = {}
    for entry in entries:
        f = decode_fields(entry)
        key = f.get(1, [b""])[-1].decode()
        result[key] = f.get(2, [b""])[-1].decode()
    return result


# ---------------------------------------------------------------------------------------------------
# transport
# ---------------------------------------------------------------------------------------------------

_CHANNEL_OPTIONS = [
    ("grpc.enable_http_proxy", 0),     # never route a unix socket through $http_proxy
    ("grpc.enable_retries", 0),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
]


def _target(socket_path: str) -> str:
    if socket_path.startswith("unix:"):
        return socket_path
    return "unix:" + os.path.abspath(socket_path)


def call(socket_path: str, method: str, request: bytes = b"", timeout: float = 5.0,
         metadata: Optional[List[Tuple[str, str]]] = None) -> bytes:
    """One unary call with raw bytes in and out.  Raises ``grpc.RpcError`` (``.code()``) on failure:
    ``UNAVAILABLE`` when nothing listens, ``UNIMPLEMENTED`` when the service is not registered (e.g.
    the CRI plugin failed to load), ``DEADLINE_EXCEEDED`` on timeout."""
    with grpc.insecure_channel(_target(socket_path), options=_CHANNEL_OPTIONS) as channel:
        stub = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        return stub(request, timeout=timeout, metadata=metadata)


def containerd_call(socket_path: str, method: str, request: bytes = b"", timeout: float = 5.0,
                    namespace: str = "default") -> bytes:
    """A containerd (non-CRI) API call; those need the ``containerd-namespace`` header."""
    return call(socket_path, method, request, timeout, metadata=[("containerd-namespace", namespace)])


# ---------------------------------------------------------------------------------------------------
# RPCs
# ---------------------------------------------------------------------------------------------------

RUNTIME_SERVICE = "/runtime.v1.RuntimeService/"
IMAGE_SERVICE = "/runtime.v1.ImageService/"


def version(socket_path: str, timeout: float = 2.0) -> Dict[str, str]:
    """containerd's own Version service: {"version": "1.6.20~ds1", "revision": ...}.
    Answers as soon as the daemon serves gRPC, CRI or not: the readiness probe."""
    raw = call(socket_path, "/containerd.services.version.v1.Version/Version", b"", timeout)
    f = decode_fields(raw)
    return {"version": f.get(1, [b""])[-1].decode(), "revision": f.get(2, [b""])[-1].decode()}


def cri_version(socket_path: str, timeout: float = 2.0) -> Dict[str, str]:
    """/runtime.v1.RuntimeService/Version: runtime_name, runtime_version, runtime_api_version."""
    raw = call(socket_path, RUNTIME_SERVICE + "Version", field_string(1, "v1"), timeout)
    f = decode_fields(raw)
    names = {1: "version", 2: "runtime_name", 3: "runtime_version", 4: "runtime_api_version"}
    return {names[k]: v[-1].decode() for k, v in f.items() if k in names}


def _decode_condition(buf: bytes) -> Dict[str, Any]:
    f = decode_fields(buf)
    return {
        "type": f.get(1, [b""])[-1].decode(),
        "status": bool(f.get(2, [0])[-1]),
        "reason": f.get(3, [b""])[-1].decode(),
        "message": f.get(4, [b""])[-1].decode(),
    }


def decode_status_response(raw: bytes) -> Dict[str, Any]:
    """StatusResponse {1: RuntimeStatus{1: repeated RuntimeCondition}, 2: map<string,string> info,
    3: repeated RuntimeHandler (newer CRI; names only here)}."""
    f = decode_fields(raw)
    conditions: Dict[str, Dict[str, Any]] = {}
    for status_msg in f.get(1, []):
        for cond in decode_fields(status_msg).get(1, []):
            c = _decode_condition(cond)
            conditions[c["type"]] = c
    info_raw = decode_map(f.get(2, []))
    info: Dict[str, Any] = {}
    for k, v in info_raw.items():
        try:
            info[k] = json.loads(v)
        except ValueError:
            info[k] = v
    handlers = []
    for h in f.get(3, []):
        handlers.append(decode_fields(h).get(1, [b""])[-1].decode())
    return {"conditions": conditions, "info": info, "info_raw": info_raw, "runtime_handlers": handlers}


def status(socket_path: str, timeout: float = 5.0, full: bool = False) -> Dict[str, Any]:
    """CRI Status(verbose=true).  Returns the decoded ``info`` map with every JSON value parsed (so
    ``status(s)["config"]`` is the loaded CRI config as a dict).  With ``full=True`` returns
    ``{"info": ..., "conditions": {"RuntimeReady": {"status": True, ...}, "NetworkReady": ...},
    "runtime_handlers": [...], "info_raw": {...}}`` instead."""
    raw = call(socket_path, RUNTIME_SERVICE + "Status", field_bool(1, True), timeout)
    decoded = decode_status_response(raw)
    return decoded if full else decoded["info"]


def conditions(socket_path: str, timeout: float = 5.0) -> Dict[str, bool]:
    """{"RuntimeReady": True, "NetworkReady": False, ...}"""
    raw = call(socket_path, RUNTIME_SERVICE + "Status", b"", timeout)
    return {k: v["status"] for k, v in decode_status_response(raw)["conditions"].items()}


# --- pod sandboxes (shapes from the CRI api.proto v1; verified against 1.6.20, 1.7.24, 2.1.9) --------

# NamespaceMode (NamespaceOption.network / pid / ipc)
NS_POD, NS_CONTAINER, NS_NODE, NS_TARGET = 0, 1, 2, 3
# PodSandboxState
SANDBOX_READY, SANDBOX_NOTREADY = 0, 1
_SANDBOX_STATES = {SANDBOX_READY: "SANDBOX_READY", SANDBOX_NOTREADY: "SANDBOX_NOTREADY"}


def namespace_option(network: int = NS_POD, pid: int = NS_POD, ipc: int = NS_POD) -> bytes:
    """NamespaceOption {1: network, 2: pid, 3: ipc} (NamespaceMode; NODE = the host's)."""
    return field_varint(1, network) + field_varint(2, pid) + field_varint(3, ipc)


def pod_sandbox_config(name: str, uid: str, namespace: str = "default", attempt: int = 0,
                       log_directory: str = "", labels: Optional[Dict[str, str]] = None,
                       cgroup_parent: str = "", *, hostname: str = "",
                       annotations: Optional[Dict[str, str]] = None,
                       network: int = NS_POD, pid: int = NS_POD, ipc: int = NS_POD) -> bytes:
    """PodSandboxConfig {1: metadata{1 name, 2 uid, 3 namespace, 4 attempt}, 2 hostname,
    3 log_directory, 4 dns_config, 5 port_mappings, 6 labels, 7 annotations,
    8 linux: LinuxPodSandboxConfig{1 cgroup_parent, 2 security_context: LinuxSandboxSecurityContext{
    1 namespace_options: NamespaceOption{1 network, 2 pid, 3 ipc}}}}.

    ``network=NS_NODE`` is a host-network pod (kubelet's ``hostNetwork: true``): CRI creates no
    network namespace and calls no CNI plugin, so a node without CNI can run it."""
    meta = field_string(1, name) + field_string(2, uid) + field_string(3, namespace) + field_varint(4, attempt)
    msg = (field_message(1, meta) + field_string(2, hostname) + field_string(3, log_directory)
           + field_map(6, labels or {}) + field_map(7, annotations or {}))
    ns = namespace_option(network, pid, ipc)
    linux = field_string(1, cgroup_parent)
    if ns:
        linux += field_message(2, field_message(1, ns))
    if linux:
        msg += field_message(8, linux)
    return msg


def run_pod_sandbox_request(config: bytes, runtime_handler: str = "") -> bytes:
    """RunPodSandboxRequest {1: config, 2: runtime_handler}."""
    return field_message(1, config) + field_string(2, runtime_handler)


def run_pod_sandbox(socket_path: str, config: bytes, runtime_handler: str = "", timeout: float = 60.0) -> str:
    """RunPodSandbox -> the sandbox id.  A handler that is not configured fails with a gRPC error
    (code UNKNOWN) whose details name it, e.g. ``failed to get sandbox runtime: no runtime for
    "nvidia" is configured`` (see tests/integration/test_pod_sandbox.py for each version's text)."""
    raw = call(socket_path, RUNTIME_SERVICE + "RunPodSandbox", run_pod_sandbox_request(config, runtime_handler), timeout)
    return decode_fields(raw).get(1, [b""])[-1].decode()  # RunPodSandboxResponse {1: pod_sandbox_id}


def stop_pod_sandbox(socket_path: str, sandbox_id: str, timeout: float = 30.0) -> None:
    """StopPodSandboxRequest {1: pod_sandbox_id}; the response is empty."""
    call(socket_path, RUNTIME_SERVICE + "StopPodSandbox", field_string(1, sandbox_id), timeout)


def remove_pod_sandbox(socket_path: str, sandbox_id: str, timeout: float = 30.0) -> None:
    """RemovePodSandboxRequest {1: pod_sandbox_id}; the response is empty."""
    call(socket_path, RUNTIME_SERVICE + "RemovePodSandbox", field_string(1, sandbox_id), timeout)


def _decode_sandbox_metadata(buf: bytes) -> Dict[str, Any]:
    f = decode_fields(buf)
    return {"name": f.get(1, [b""])[-1].decode(), "uid": f.get(2, [b""])[-1].decode(),
            "namespace": f.get(3, [b""])[-1].decode(), "attempt": f.get(4, [0])[-1]}


def decode_pod_sandbox(buf: bytes) -> Dict[str, Any]:
    """PodSandbox {1 id, 2 metadata, 3 state, 4 created_at, 5 labels, 6 annotations, 7 runtime_handler}."""
    f = decode_fields(buf)
    state = f.get(3, [SANDBOX_READY])[-1]
    return {
        "id": f.get(1, [b""])[-1].decode(),
        "metadata": _decode_sandbox_metadata(f.get(2, [b""])[-1]),
        "state": _SANDBOX_STATES.get(state, str(state)),
        "created_at": f.get(4, [0])[-1],
        "labels": decode_map(f.get(5, [])),
        "annotations": decode_map(f.get(6, [])),
        "runtime_handler": f.get(7, [b""])[-1].decode(),
    }


def list_pod_sandbox(socket_path: str, sandbox_id: str = "", state: Optional[int] = None,
                     label_selector: Optional[Dict[str, str]] = None, timeout: float = 10.0) -> List[Dict[str, Any]]:
    """ListPodSandbox {1: filter: PodSandboxFilter{1 id, 2 state: PodSandboxStateValue{1 state},
    3 label_selector}} -> [decode_pod_sandbox(...), ...] (ListPodSandboxResponse {1: repeated items})."""
    flt = field_string(1, sandbox_id)
    if state is not None:
        flt += field_message(2, field_varint(1, state))
    flt += field_map(3, label_selector or {})
    raw = call(socket_path, RUNTIME_SERVICE + "ListPodSandbox", field_message(1, flt, always=False), timeout)
    return [decode_pod_sandbox(item) for item in decode_fields(raw).get(1, [])]


def pod_sandbox_status(socket_path: str, sandbox_id: str, verbose: bool = False,
                       timeout: float = 10.0) -> Dict[str, Any]:
    """PodSandboxStatus {1 pod_sandbox_id, 2 verbose} -> PodSandboxStatusResponse {1 status:
    PodSandboxStatus{1 id, 2 metadata, 3 state, 4 created_at, 5 network, 6 linux, 7 labels,
    8 annotations, 9 runtime_handler}, 2 info (verbose; values parsed as JSON when they are)}."""
    raw = call(socket_path, RUNTIME_SERVICE + "PodSandboxStatus",
               field_string(1, sandbox_id) + field_bool(2, verbose), timeout)
    f = decode_fields(raw)
    s = decode_fields(f.get(1, [b""])[-1])
    state = s.get(3, [SANDBOX_READY])[-1]
    info: Dict[str, Any] = {}
    for k, v in decode_map(f.get(2, [])).items():
        try:
            info[k] = json.loads(v)
        except ValueError:
            info[k] = v
    return {
        "id": s.get(1, [b""])[-1].decode(),
        "metadata": _decode_sandbox_metadata(s.get(2, [b""])[-1]),
        "state": _SANDBOX_STATES.get(state, str(state)),
        "created_at": s.get(4, [0])[-1],
        "labels": decode_map(s.get(7, [])),
        "annotations": decode_map(s.get(8, [])),
        "runtime_handler": s.get(9, [b""])[-1].decode(),
        "info": info,
    }


def image_status(socket_path: str, image: str, timeout: float = 10.0) -> Optional[Dict[str, Any]]:
    """/runtime.v1.ImageService/ImageStatus {1: ImageSpec{1 image}} -> None when CRI does not know
    the image, else {"id", "repo_tags", "repo_digests", "size"} (Image {1 id, 2 repo_tags,
    3 repo_digests, 4 size})."""
    raw = call(socket_path, IMAGE_SERVICE + "ImageStatus", field_message(1, field_string(1, image)), timeout)
    img = decode_fields(raw).get(1)
    if not img:
        return None
    f = decode_fields(img[-1])
    return {"id": f.get(1, [b""])[-1].decode(), "repo_tags": [t.decode() for t in f.get(2, [])],
            "repo_digests": [d.decode() for d in f.get(3, [])], "size": f.get(4, [0])[-1]}


# --- containerd introspection: plugins and why they failed ------------------------------------------

def plugins(socket_path: str, timeout: float = 5.0) -> List[Dict[str, Any]]:
    """/containerd.services.introspection.v1.Introspection/Plugins: every plugin with its init error.

    Returns dicts {"type", "id", "status" ("ok" | "skip" | "error", as ``ctr plugins ls`` derives it:
    an init error with code FailedPrecondition (9) is a skip), "error" (message or "")}."""
    raw = call(socket_path, "/containerd.services.introspection.v1.Introspection/Plugins", b"", timeout)
    result = []
    for p in decode_fields(raw).get(1, []):
        f = decode_fields(p)
        err_code, err_msg, has_err = 0, "", 7 in f
        if has_err:
            e = decode_fields(f[7][-1])
            err_code = e.get(1, [0])[-1]
            err_msg = e.get(2, [b""])[-1].decode(errors="replace")
        status_ = "ok" if not has_err else ("skip" if err_code == 9 else "error")
        result.append({
            "type": f.get(1, [b""])[-1].decode(),
            "id": f.get(2, [b""])[-1].decode(),
            "status": status_,
            "error": err_msg,
        })
    return result
