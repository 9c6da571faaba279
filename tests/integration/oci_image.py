"""A pause-like OCI image built locally, in Python, from Debian's static busybox: no network, no registry.

:func:`build_pause_image` writes an OCI image layout as a tar archive (what ``ctr images import``
reads)::

    oci-layout                      {"imageLayoutVersion": "1.0.0"}
    index.json                      one manifest, annotated with the image name
    blobs/sha256/<manifest>         application/vnd.oci.image.manifest.v1+json
    blobs/sha256/<config>           application/vnd.oci.image.config.v1+json (linux/<host arch>)
    blobs/sha256/<layer>            application/vnd.oci.image.layer.v1.tar+gzip

The single layer holds ``/bin/busybox`` (plus a ``sleep`` link and the empty ``dev proc sys etc tmp
run`` folders); the entrypoint is ``["/bin/busybox", "sleep", "infinity"]``: the sandbox ("pause")
process sleeps until it is killed.  (Unlike the real pause it ignores nothing and handles no signal:
as PID 1 of the pod's PID namespace it ignores SIGTERM, and CRI stops a sandbox with SIGKILL anyway.)

The archive is byte-for-byte deterministic for a given busybox (mtime 0, uid/gid 0, gzip without a
timestamp), so its digests are stable and can be asserted.

Naming on import: the manifest descriptor in ``index.json`` carries ``io.containerd.image.name`` (the
full reference, which ``ctr images import`` of containerd 1.6, 1.7 and 2.1 uses as the image name)
and ``org.opencontainers.image.ref.name`` (the tag, per the OCI image-layout spec).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

DEFAULT_NAME = "localhost/gpuops/pause:test"
DEFAULT_ENTRYPOINT = ("/bin/busybox", "sleep", "infinity")

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

# uname -m -> OCI architecture (the busybox fetched is the host's, so the image is the host's too)
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64"}


def host_arch() -> str:
    m = platform.machine()
    return _ARCH.get(m, m)


@dataclass(frozen=True)
class OciImage:
    path: Path                 # the .tar archive
    name: str                  # "localhost/gpuops/pause:test"
    manifest_digest: str       # "sha256:..." (the image's digest as containerd reports it)
    config_digest: str         # "sha256:..." (the image id)
    layer_digest: str          # digest of the compressed layer blob
    diff_id: str               # digest of the uncompressed layer tar (rootfs.diff_ids[0])
    entrypoint: tuple


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _tarinfo(name: str, type_: bytes, mode: int, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = type_
    ti.mode = mode
    ti.size = size
    ti.linkname = linkname
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def _layer_tar(busybox: Path, extra_links: Sequence[str]) -> bytes:
    """The uncompressed layer: a rootfs with /bin/busybox (entries sorted, no timestamps)."""
    data = Path(busybox).read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "dev", "etc", "proc", "run", "sys", "tmp"):
            tar.addfile(_tarinfo(d + "/", tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755))
            if d == "bin":
                tar.addfile(_tarinfo("bin/busybox", tarfile.REGTYPE, 0o755, len(data)), io.BytesIO(data))
                for link in sorted(extra_links):
                    tar.addfile(_tarinfo("bin/" + link, tarfile.SYMTYPE, 0o777, linkname="busybox"))
    return buf.getvalue()


def _gzip(data: bytes) -> bytes:
    out = io.BytesIO()
    # mtime=0 and no file name: the compressed blob (and so every digest above it) is reproducible
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return out.getvalue()


def build_pause_image(dest, busybox, name: str = DEFAULT_NAME,
                      entrypoint: Sequence[str] = DEFAULT_ENTRYPOINT,
                      env: Optional[Dict[str, str]] = None,
                      extra_links: Sequence[str] = ("sh", "sleep")) -> OciImage:
    """Write the OCI archive to ``dest`` (a file path; its folder is created) and describe it.
    ``busybox``: the static busybox binary (:func:`harness.busybox_path`)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"

    layer_tar = _layer_tar(Path(busybox), extra_links)
    layer = _gzip(layer_tar)
    diff_id = _sha256(layer_tar)
    env = dict({"PATH": "/bin"}, **(env or {}))
    arch = host_arch()
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {
            "Entrypoint": list(entrypoint),
            "Env": ["%s=%s" % kv for kv in env.items()],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "gpuops.nvidia tests/integration/oci_image.py (static busybox)"}],
    }
    config_blob = _canonical_json(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": _sha256(config_blob), "size": len(config_blob)},
        "layers": [{"mediaType": MT_LAYER_GZIP, "digest": _sha256(layer), "size": len(layer)}],
    }
    manifest_blob = _canonical_json(manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [{
            "mediaType": MT_MANIFEST,
            "digest": _sha256(manifest_blob),
            "size": len(manifest_blob),
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }
    files: List = [("oci-layout", _canonical_json({"imageLayoutVersion": "1.0.0"})),
                   ("index.json", _canonical_json(index))]
    for blob in (manifest_blob, config_blob, layer):
        files.append(("blobs/sha256/" + _sha256(blob).split(":", 1)[1], blob))

    tmp = dest.with_name(dest.name + ".tmp-%d" % os.getpid())
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs/", "blobs/sha256/"):
            tar.addfile(_tarinfo(d, tarfile.DIRTYPE, 0o755))
        for fname, blob in files:
            tar.addfile(_tarinfo(fname, tarfile.REGTYPE, 0o644, len(blob)), io.BytesIO(blob))
    os.replace(tmp, dest)
    return OciImage(path=dest, name=name, manifest_digest=_sha256(manifest_blob),
                    config_digest=_sha256(config_blob), layer_digest=_sha256(layer), diff_id=diff_id,
                    entrypoint=tuple(entrypoint))
