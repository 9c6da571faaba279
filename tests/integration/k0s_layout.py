"""What k0s does with ``/etc/k0s/containerd.d/*.toml``, emulated in a temp folder, so that the REAL
containerd can be started on exactly the files a k0s worker would give it.

Source (k0s, Apache-2.0; read in the k0sproject/k0s repository, ``pkg/component/worker/containerd``):

``component.go`` ``Component.setupConfig`` (k0s >= 1.27.1) runs on every start of containerd and on
every change in the drop-in folder (fsnotify, 3 s debounce, then SIGHUP/restart of its containerd),
and only while ``/etc/k0s/containerd.toml`` is *k0s managed*: absent, or its first non-empty line is
``# k0s_managed=true`` (older k0s also: the md5 of the pre-1.27 default file).  What it writes
depends on the k0s generation:

``GEN_V2`` -- k0s 1.27.1 ... 1.35, bundling containerd 1.7 (config version 2)
    ``configurer.go`` ``handleImports``: start from ``version = 2`` plus
    ``[plugins."io.containerd.grpc.v1.cri"]`` = containerd's own ``criconfig.DefaultConfig()`` with
    ``sandbox_image`` set to k0s's pause image.  Then for each ``containerd.d/*.toml`` in
    ``filepath.Glob`` (lexical) order: a file that has the path ``plugins."io.containerd.grpc.v1.cri"``
    is applied to that document as a *merge patch* (mesosphere/toml-merge ``patch.TOMLString``:
    TOML -> JSON, RFC 7396 ``jsonpatch.MergePatch`` of the whole file, JSON -> TOML), any other file
    is kept as an import.  The result goes to ``/run/k0s/containerd-cri.toml``; ``containerd.toml``
    becomes the header plus ``version = 2`` and ``imports = [<non-CRI drop-ins>..., <that file>]``.
    (containerd < 2.1 replaces whole plugin sections from imports, hence k0s merges CRI files itself.)

``GEN_V3`` -- k0s 1.36+, bundling containerd 2.x (config version 3)
    ``marshalContainerdConfig``: ``containerd.toml`` = the header plus ``version = 3``,
    ``imports = ["/etc/k0s/containerd.d/*.toml"]``,
    ``[plugins."io.containerd.cri.v1.images".pinned_images] sandbox = <pause image>`` and an empty
    ``[plugins."io.containerd.cri.v1.runtime"]``: containerd (>= 2.1 deep-merges imports) loads the
    drop-ins itself.  k0s's preflight (``ValidateConfigFile``) rejects a drop-in whose ``version`` is
    not 3 or that has a ``plugins."io.containerd.grpc.v1.cri"`` section: :meth:`K0sLayout.preflight`.

containerd is started as k0s's supervisor starts it (``--root=<data>/containerd
--state=<run>/containerd --address=<run>/containerd.sock --log-level=... --config=<containerd.toml>``),
with ``/var/lib/k0s`` and ``/run/k0s`` inside the temp folder: :class:`K0sDaemon`.

Not emulated: the file watcher (the test calls :meth:`K0sLayout.setup_config` and restarts the daemon
where k0s would, which is also what a k0s restart does), Windows paths, and the transitional k0s
builds that wrote a version 3 ``containerd.toml`` importing ``containerd-cri.toml``.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import tomlkit

from ansible_collections.gpuops.nvidia.plugins.module_utils import versions

try:  # imported both as a plain module (sys.path) and as tests.integration.k0s_layout
    from . import harness  # type: ignore
except ImportError:  # pragma: no cover
    import harness  # type: ignore

GEN_V2 = "k0s-1.27.1..1.35 (containerd 1.7, config v2, CRI drop-ins merged by k0s)"
GEN_V3 = "k0s-1.36+ (containerd 2.x, config v3, drop-ins imported by containerd)"
GEN_CONCAT = "k0s-1.27.1..1.27.4 (containerd 1.7, CRI drop-ins appended to the default CRI config, not merged)"
# a real release of each generation (the marker rule is asked of the rules table per release)
RELEASE = {GEN_V2: "v1.35.2+k0s.0", GEN_V3: "v1.36.3+k0s.0", GEN_CONCAT: "v1.27.3+k0s.0"}

HEADER = ("# k0s_managed=true\n"
          "# This is a placeholder configuration for k0s managed containerd.\n"
          "# If you wish to override the config, remove the first line and replace this file with your "
          "custom configuration.\n"
          "# For reference see https://github.com/containerd/containerd/blob/main/docs/man/"
          "containerd-config.toml.5.md\n")
V2_CRI = "io.containerd.grpc.v1.cri"


def generation_for(build: "harness.Build") -> str:
    """The k0s generation that bundles a containerd of this major version."""
    return GEN_V3 if build.major >= 2 else GEN_V2


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch (what ``jsonpatch.MergePatch`` does; TOML has no null, so nothing
    is ever deleted): tables merge key by key, every other value (arrays too) replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        result[key] = merge_patch(result.get(key), value)
    return result


def _plain(doc) -> Dict[str, Any]:
    return tomlkit.parse(doc).unwrap() if isinstance(doc, str) else doc


class K0sLayout:
    """A k0s worker's containerd files under ``base`` (which stands for ``/``).

    ``pause_image``: k0s's pause image (``spec.images.pause`` of the k0s config); the tests point it
    at a locally imported image.  ``build``: the containerd k0s would bundle (its defaults seed the
    version 2 CRI config)."""

    def __init__(self, build: "harness.Build", pause_image: str, base=None, generation: Optional[str] = None,
                 release: Optional[str] = None):
        self.build = build
        self.generation = generation or generation_for(build)
        self.release = release or RELEASE[self.generation]
        self.pause_image = pause_image
        self._own_base = base is None
        # short by default: the socket path must fit sun_path (see harness.MAX_SOCKET_PATH)
        self.base = Path(base) if base is not None else Path(tempfile.mkdtemp(prefix="k0s-", dir="/tmp"))
        self.etc = self.base / "etc" / "k0s"
        self.config = self.etc / "containerd.toml"
        self.dropin_dir = self.etc / "containerd.d"
        self.run_dir = self.base / "run" / "k0s"
        self.data_dir = self.base / "var" / "lib" / "k0s"
        self.cri_config = self.run_dir / "containerd-cri.toml"
        self.root = self.data_dir / "containerd"
        self.state = self.run_dir / "containerd"
        self.socket = self.run_dir / "containerd.sock"
        if len(str(self.socket)) + len(".ttrpc") > harness.MAX_SOCKET_PATH:
            raise harness.HarnessError("k0s layout base %s is too long for a unix socket path" % self.base)

    # --- what k0s writes ------------------------------------------------------------------------

    def k0s_managed(self) -> bool:
        """``isK0sManagedConfig`` as this release reads the marker (one rule per release, in the collection's
        rules table: 1.27-1.29 any line containing it, 1.30-1.35 any line equal to it, 1.36 the first line)."""
        return versions.k0s(self.release).is_managed(self.config.read_text() if self.config.exists() else None)

    def dropins(self) -> List[Path]:
        return [Path(p) for p in sorted(glob.glob(str(self.dropin_dir / "*.toml")))]

    def default_cri_config(self) -> Dict[str, Any]:
        """``generateDefaultCRIConfig``: version 2 + containerd's default CRI plugin config (taken
        from this build's ``containerd config default``, the same ``DefaultConfig()`` k0s links)
        with ``sandbox_image`` = the pause image."""
        default = tomlkit.parse(harness.config_default(self.build)).unwrap()
        cri = default["plugins"][V2_CRI]
        cri["sandbox_image"] = self.pause_image
        return {"version": 2, "plugins": {V2_CRI: cri}}

    def setup_config(self) -> Dict[str, Any]:
        """``Component.setupConfig``: (re)write containerd.toml (and containerd-cri.toml for
        GEN_V2) from the drop-in folder.  Returns {"managed", "imports", "merged"} (merged: the
        drop-ins applied as CRI merge patches)."""
        if not self.k0s_managed():
            return {"managed": False, "imports": [], "merged": []}
        self.etc.mkdir(parents=True, exist_ok=True)
        self.dropin_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.generation == GEN_V3:
            doc = {
                "version": 3,
                "imports": [str(self.dropin_dir / "*.toml")],
                "plugins": {
                    "io.containerd.cri.v1.images": {"pinned_images": {"sandbox": self.pause_image}},
                    "io.containerd.cri.v1.runtime": {},
                },
            }
            _atomic_write(self.config, HEADER + tomlkit.dumps(doc))
            return {"managed": True, "imports": doc["imports"], "merged": []}

        if self.generation == GEN_CONCAT:
            # 1.27.1-1.27.4: the default CRI config as text, then each CRI drop-in appended after a comment
            # (fixed by the merge patch of 1.27.5 / 1.28.2)
            text = tomlkit.dumps(self.default_cri_config())
            imports, merged = [], []
            for path in self.dropins():
                if V2_CRI in (_plain(path.read_text()).get("plugins") or {}):
                    text += "\n# appended from %s\n%s" % (path, path.read_text())
                    merged.append(str(path))
                else:
                    imports.append(str(path))
            _atomic_write(self.cri_config, text)
            imports.append(str(self.cri_config))
            _atomic_write(self.config, HEADER + tomlkit.dumps({"version": 2, "imports": imports}))
            return {"managed": True, "imports": imports, "merged": merged}

        merged_doc: Dict[str, Any] = self.default_cri_config()
        imports: List[str] = []
        merged: List[str] = []
        for path in self.dropins():
            data = _plain(path.read_text())
            if V2_CRI in (data.get("plugins") or {}):       # tree.HasPath(["plugins", CRI])
                merged_doc = merge_patch(merged_doc, data)
                merged.append(str(path))
            else:
                imports.append(str(path))
        _atomic_write(self.cri_config, tomlkit.dumps(merged_doc))
        imports.append(str(self.cri_config))
        _atomic_write(self.config, HEADER + tomlkit.dumps({"version": 2, "imports": imports}))
        return {"managed": True, "imports": imports, "merged": merged}

    def preflight(self) -> Dict[str, str]:
        """k0s 1.36+ ``ValidateConfigFile`` on every drop-in: {path: why rejected} (empty: all pass).
        GEN_V2 k0s has no such check."""
        if self.generation != GEN_V3:
            return {}
        rejected = {}
        for path in self.dropins():
            data = _plain(path.read_text())
            why = []
            if "version" in data and data["version"] != 3:
                why.append("unsupported configuration version: expected 3, got %s" % data["version"])
            if V2_CRI in (data.get("plugins") or {}):
                why.append('configuration contains a [plugins."io.containerd.grpc.v1.cri"] section')
            if why:
                rejected[str(path)] = "; ".join(why)
        return rejected

    # --- how k0s runs containerd -----------------------------------------------------------------

    def daemon(self, env: Optional[Dict[str, str]] = None, **kwargs) -> "K0sDaemon":
        """A (not yet started) :class:`K0sDaemon` on this layout."""
        return K0sDaemon(self, env=env, **kwargs)

    def cleanup(self) -> None:
        if self._own_base:
            shutil.rmtree(self.base, ignore_errors=True)


class K0sDaemon(harness.Daemon):
    """:class:`harness.Daemon` with k0s's command line: ``containerd --root=<data>/containerd
    --state=<run>/containerd --address=<run>/containerd.sock --log-level=info --config=<containerd.toml>``
    (k0s's ``supervisor.Supervisor`` args, paths inside the layout).  Mount-namespace isolation,
    ``ctr`` and cleanup are the harness's."""

    def __init__(self, layout: K0sLayout, log_level: str = "info", **kwargs):
        super().__init__(layout.build, str(layout.config), layout.base / "harness", **kwargs)
        self.layout = layout
        self.log_level = log_level
        self.root = layout.root
        self.state = layout.state
        self.socket = str(layout.socket)

    def command(self, config_path: Optional[str] = "__default__") -> List[str]:
        cfg = self.config_path if config_path == "__default__" else config_path
        return [self.build.containerd,
                "--root=%s" % self.root,
                "--state=%s" % self.state,
                "--address=%s" % self.socket,
                "--log-level=%s" % self.log_level,
                "--config=%s" % cfg]


def _atomic_write(path: Path, text: str) -> None:
    """k0s's ``file.AtomicWithTarget(...).WithPermissions(0644)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".%s.tmp-%d" % (path.name, os.getpid()))
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


CONTAINERD_23_EMULATOR = """#!/bin/sh
# containerd 2.3 emulated for the k0s 1.36 tests (no 2.3 build can be had here; see
# tests/fixtures/containerd/*2.3.4*): the real %(real)s (containerd %(real_version)s) loads the files -- v3
# and v4 keep the CRI runtime tables at the same path -- while this wrapper answers as 2.3.4 does:
# `--version` says 2.3.4 and `config dump` prints `version = 4` (2.3 migrates every file to v4).
if [ "$1" = "--version" ]; then
  echo "containerd github.com/containerd/containerd/v2 v2.3.4 emulated-by-gpuops-tests"
  exit 0
fi
out=$("%(real)s" "$@") || exit $?
printf '%%s\\n' "$out" | sed '1s/^version = 3$/version = 4/'
"""


def write_containerd_23_emulator(build: "harness.Build", dest: Path) -> Path:
    """A ``containerd`` at ``dest`` that reports 2.3.4 and dumps as 2.3 does, over a real 2.x ``build``."""
    assert build.major >= 2, "the 2.3 emulation needs a real 2.x build (v3 files)"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(CONTAINERD_23_EMULATOR % {"real": build.containerd, "real_version": build.version})
    dest.chmod(0o755)
    return dest
