# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only discovery of the NVIDIA GPU stack and of the container runtimes of a node.

Plain Python, no Ansible: ``gather(root, runner)`` returns the ``nvidia_runtime`` facts (a dict of
plain JSON values) and a list of warnings. Nothing is ever written.

Everything is looked up under ``root`` (``/`` on a real node; a fake tree of /sys, /proc, /etc,
/var/lib, /usr/bin... in tests, or a mounted image). Paths in the result are paths *inside* the root;
symlinks are resolved inside it, as in a chroot.

Programs are run (``--version``, ``lspci``) and systemd is asked (``systemctl is-active``) only when
``root`` is ``/``; under another root versions come from files only (dpkg database, the release string
embedded in the k0s/k3s/rke2 binary, RKE2's data folder name, MicroK8s' snap.yaml) or stay ``None``.
``run_binaries`` / ``query_units`` override that (the tests run the real containerd builds inside a
fake root that way); the module does not expose them.

Engine selection (``select_engine``), first tier that has an engine wins:

1. Kubernetes distributions: k0s, k3s, rke2, microk8s (they bring their own containerd; a stray
   ``/usr/bin/containerd`` beside them is not what the kubelet uses);
2. CRI runtimes: containerd (CRI plugin enabled), crio;
3. Docker: docker, and containerd whose CRI plugin is disabled (Docker's ``containerd.io``), which
   only counts when dockerd is absent (otherwise it is Docker's backend).

Inside the tier the active engines (unit active or socket answering) are the candidates, else all of
the tier. One candidate: it is the engine. Several: ``engine_ambiguous`` is true, a warning is given and
the first one in the preference order ``ENGINE_ORDER`` is picked.

No TOML reader on the node (see ``tomledit.READERS``): the TOML configs cannot be read, their fields are
``None`` and a warning (``tomledit.reader_missing_message``) says so;
everything else (devices, driver, binaries, versions, sockets, Docker's JSON) still works.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import json
import mmap
import os
import re
import shlex

from ansible_collections.gpuops.nvidia.plugins.module_utils.common import EngineError, default_runner, get_in, render_placeholders
from ansible_collections.gpuops.nvidia.plugins.module_utils.service import (
    socket_answers, systemd_running, unit_active,
)
from ansible_collections.gpuops.nvidia.plugins.module_utils import tomledit
from ansible_collections.gpuops.nvidia.plugins.module_utils.tomledit import (
    HAS_TOML_READER, TomlEditError, load as toml_load,
)

from ansible_collections.gpuops.nvidia.plugins.module_utils import versions
from ansible_collections.gpuops.nvidia.plugins.module_utils.containerd import file_version, import_patterns, read_binary_version
from ansible_collections.gpuops.nvidia.plugins.module_utils.versions import CRI_PATHS, CRI_PLUGIN_IDS

NVIDIA_VENDOR = 0x10de
DISTRIBUTIONS = ("k0s", "k3s", "rke2", "microk8s")
ENGINE_ORDER = ("k0s", "k3s", "rke2", "microk8s", "containerd", "crio", "docker")
CONTAINERD_KINDS = ("containerd", "k0s", "k3s", "rke2", "microk8s")

# the PATH of systemd services, in lookup order
PATH_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
SYSTEMD_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
                "/usr/lib/systemd/system", "/lib/systemd/system")
# k3s/RKE2 add these handlers at start when the binary is found; releases differ in where they look
# (the GPU Operator's folder, /usr/bin, or $PATH): the union is searched
K3S_NVIDIA_RUNTIMES = (("nvidia", "nvidia-container-runtime"),
                       ("nvidia-experimental", "nvidia-container-runtime-experimental"),
                       ("nvidia-cdi", "nvidia-container-runtime.cdi"))
K3S_NVIDIA_DIRS = ("/usr/local/nvidia/toolkit",) + PATH_DIRS
# the template k3s/RKE2 render containerd's config from, per config version (config-v3 from containerd 2.0)
K3S_TEMPLATES = ((2, "config.toml.tmpl"), (3, "config-v3.toml.tmpl"))
TOOLKIT_DIRS = PATH_DIRS + ("/usr/local/nvidia/toolkit",)
PCI_IDS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids")
MODULE_DIRS = ("/lib/modules", "/usr/lib/modules")
# where distributions put nvidia.ko (DKMS, Ubuntu's prebuilt packages, RHEL kmods, the .run installer)
MODULE_GLOBS = ("updates/dkms/nvidia.ko*", "updates/nvidia.ko*", "updates/nvidia/nvidia.ko*", "extra/nvidia.ko*",
                "extra/nvidia/nvidia.ko*", "kernel/drivers/video/nvidia.ko*", "kernel/nvidia*/nvidia.ko*")
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")
DPKG_PACKAGES = {
    "containerd": ("containerd", "containerd.io"),
    "crio": ("cri-o",),
    "docker": ("docker-ce", "docker.io", "moby-engine"),
    "toolkit": ("nvidia-container-toolkit-base", "nvidia-container-toolkit"),
}

_VERSION_RE = re.compile(r"(?<![\w.])v?(\d+\.\d+(?:\.\d+)?)")
_FULL_VERSION_RE = re.compile(r"(?<![\w.])(v?\d+\.\d+\.\d+[\w.+~-]*)")
_NVRM_RE = re.compile(r"Module\b[^\n]*?\s(\d+\.\d+(?:\.\d+)?)\s")
_K3S_DEFAULT_RE = re.compile(r"""^default-runtime\s*:\s*["']?([^"'\s#]+)""", re.M)
# --default-runtime=X, --default-runtime X, and the install script's quoted '--default-runtime' \ 'X'
_K3S_FLAG_RE = re.compile(r"""--default-runtime["']?(?:[=\s\\]|["'])+([^"'\s\\=]+)""")
_TEMPLATE_NVIDIA_RE = re.compile(r"""runtimes\.["']?(nvidia[A-Za-z0-9_.-]*)""")


def core_version(text):
    """'Docker version 24.0.7, build x' -> '24.0.7' (first dotted number; None when there is none)."""
    m = _VERSION_RE.search(text or "")
    return m.group(1) if m else None


def full_version(text):
    """'k3s version v1.30.2+k3s1 (aadec445)' -> 'v1.30.2+k3s1' (suffixes kept)."""
    m = _FULL_VERSION_RE.search(text or "")
    return m.group(1) if m else None


def _version_key(v):
    return tuple(int(x) for x in re.findall(r"\d+", v))


class Node(object):
    """File system access relative to ``root``; paths given and returned are paths inside the root."""

    def __init__(self, root="/", runner=None, run_binaries=None, query_units=None):
        self.root = os.path.abspath(root)
        self.is_host = self.root == "/"
        self.runner = runner or default_runner
        self.run_binaries = self.is_host if run_binaries is None else run_binaries
        self.query_units = self.is_host if query_units is None else query_units
        self.warnings = []
        self._dpkg = None
        self._pci_ids = None

    def p(self, path, follow_last=True):
        """The real path of ``path`` (a path inside the root). Under a root other than ``/`` symlinks are
        resolved inside the root, as in a chroot (an absolute target starts again at the root)."""
        if self.is_host:
            return path
        parts = [x for x in path.split("/") if x and x != "."]
        done = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            real = os.path.join(self.root, *(done + [part]))
            if (parts or follow_last) and hops < 40 and os.path.islink(real):
                hops += 1
                target = os.readlink(real)
                if target.startswith("/"):
                    done = []
                parts = [x for x in target.split("/") if x and x != "."] + parts
                continue
            done.append(part)
        return os.path.join(self.root, *done)

    def exists(self, path):
        return os.path.lexists(self.p(path, follow_last=False))

    def islink(self, path):
        return os.path.islink(self.p(path, follow_last=False))

    def readlink(self, path):
        try:
            return os.readlink(self.p(path, follow_last=False))
        except (IOError, OSError):
            return None

    def isdir(self, path):
        return os.path.isdir(self.p(path))

    def isfile(self, path):
        return os.path.isfile(self.p(path))

    def executable(self, path):
        real = self.p(path)
        return os.path.isfile(real) and os.access(real, os.X_OK)

    def read(self, path, limit=4 * 1024 * 1024):
        try:
            with open(self.p(path), "rb") as f:
                return f.read(limit).decode("utf-8", "replace")
        except (IOError, OSError):
            return None

    def glob(self, pattern):
        """Paths inside the root matching ``pattern`` (magic allowed after the last plain folder)."""
        parts = pattern.rstrip("/").split("/")
        i = 0
        while i < len(parts) - 1 and not glob.has_magic(parts[i]):
            i += 1
        prefix = "/".join(parts[:i]) or "/"
        rest = "/".join(parts[i:])
        real_prefix = self.p(prefix)
        out = []
        for x in glob.glob(os.path.join(real_prefix, rest)):
            out.append(prefix.rstrip("/") + "/" + os.path.relpath(x, real_prefix))
        return sorted(out)

    def listdir(self, path):
        try:
            return sorted(os.listdir(self.p(path)))
        except (IOError, OSError):
            return []

    def walk_files(self, path):
        """Every file under ``path``, recursively, in lexical order (CRI-O's drop-in order)."""
        out = []
        for name in self.listdir(path):
            sub = path.rstrip("/") + "/" + name
            if self.isdir(sub):
                out.extend(self.walk_files(sub))
            elif self.isfile(sub):
                out.append(sub)
        return out

    def find(self, names, dirs):
        """First executable ``dir/name`` (dirs outer, names inner), or None."""
        if isinstance(names, str):
            names = (names,)
        for d in dirs:
            for n in names:
                cand = d.rstrip("/") + "/" + n
                if self.executable(cand):
                    return cand
        return None

    def run(self, argv):
        """(rc, out, err), or None when this node's programs may not be run."""
        if not self.run_binaries:
            return None
        argv = [self.p(argv[0])] + list(argv[1:])
        try:
            return self.runner(argv)
        except Exception as e:  # a facts module must not die on one odd binary
            self.warnings.append("%s failed: %s" % (" ".join(argv), e))
            return None

    # ------------------------------------------------------------------ dpkg (versions from files)
    def dpkg_status(self):
        """{package: version} of the installed packages in /var/lib/dpkg/status."""
        if self._dpkg is None:
            self._dpkg = {}
            text = self.read("/var/lib/dpkg/status", limit=64 * 1024 * 1024) or ""
            for stanza in text.split("\n\n"):
                fields = {}
                for line in stanza.splitlines():
                    if line[:1] not in (" ", "\t") and ":" in line:
                        k, v = line.split(":", 1)
                        fields[k.strip().lower()] = v.strip()
                if fields.get("package") and fields.get("status", "").endswith(" installed") and fields.get("version"):
                    self._dpkg[fields["package"]] = fields["version"]
        return self._dpkg

    def dpkg_owner_version(self, path, packages):
        """(package, upstream version) of the installed package among ``packages`` that owns ``path``."""
        status = self.dpkg_status()
        alt = {path}
        if path.startswith("/usr/"):
            alt.add(path[4:])
        else:
            alt.add("/usr" + path)
        for pkg in packages:
            if pkg not in status:
                continue
            for listing in self.glob("/var/lib/dpkg/info/%s.list" % pkg) + self.glob("/var/lib/dpkg/info/%s:*.list" % pkg):
                lines = set((self.read(listing) or "").splitlines())
                if lines & alt:
                    return pkg, core_version(re.sub(r"^\d+:", "", status[pkg]))
        return None, None

    # ------------------------------------------------------------------ pci.ids
    def pci_name(self, vendor, device):
        """Device name from pci.ids (``<root>/usr/share/misc/pci.ids`` and friends), or None."""
        if self._pci_ids is None:
            self._pci_ids = {}
            for f in PCI_IDS:
                text = self.read(f, limit=16 * 1024 * 1024)
                if text is None:
                    continue
                in_vendor = False
                for line in text.splitlines():
                    if not line or line.startswith("#"):
                        continue
                    if not line.startswith("\t"):
                        in_vendor = line[:4].lower() == "%04x" % NVIDIA_VENDOR
                    elif in_vendor and not line.startswith("\t\t"):
                        parts = line.strip().split(None, 1)
                        if len(parts) == 2:
                            self._pci_ids[parts[0].lower()] = parts[1].strip()
                break
        if vendor != NVIDIA_VENDOR:
            return None
        return self._pci_ids.get("%04x" % device)


# ---------------------------------------------------------------------------------------------- GPUs

def _read_hex(node, path):
    text = (node.read(path) or "").strip()
    try:
        return int(text, 16)
    except ValueError:
        return None


def _lspci_name(node, address):
    lspci = node.find("lspci", PATH_DIRS)
    if not lspci:
        return None
    res = node.run([lspci, "-mm", "-s", address])
    if not res or res[0] != 0 or not res[1].strip():
        return None
    try:
        fields = shlex.split(res[1].strip().splitlines()[0])
    except ValueError:
        return None
    # slot, class, vendor, device, ...; lspci says "Device 2204" when pci.ids does not know it
    if len(fields) >= 4 and fields[3] and not re.match(r"^Device [0-9a-fA-F]{4}$", fields[3]):
        return fields[3]
    return None


def gather_gpus(node):
    gpus = []
    for dev in node.glob("/sys/bus/pci/devices/*"):
        vendor = _read_hex(node, dev + "/vendor")
        cls = _read_hex(node, dev + "/class")
        if vendor != NVIDIA_VENDOR or cls is None or (cls >> 16) != 0x03:
            continue
        device = _read_hex(node, dev + "/device")
        address = os.path.basename(dev)
        drv = node.readlink(dev + "/driver")
        drv = os.path.basename(drv) if drv else None
        numa = (node.read(dev + "/numa_node") or "").strip()
        subsystem = _read_hex(node, dev + "/subsystem_device")
        name = _lspci_name(node, address) or (node.pci_name(vendor, device) if device is not None else None)
        gpus.append({
            "pci_address": address,
            "vendor_id": "0x%04x" % vendor,
            "device_id": "0x%04x" % device if device is not None else None,
            "class": "0x%06x" % cls,
            "subsystem_device_id": "0x%04x" % subsystem if subsystem is not None else None,
            "name": name,
            "driver": drv,
            "numa_node": int(numa) if re.match(r"^-?\d+$", numa) else None,
        })
    return gpus


# ---------------------------------------------------------------------------------------------- driver

def gather_driver(node, gpu_count):
    loaded = node.isdir("/sys/module/nvidia")
    version = source = None
    text = (node.read("/sys/module/nvidia/version") or "").strip()
    if text:
        version, source = core_version(text), "/sys/module/nvidia/version"
    proc = node.read("/proc/driver/nvidia/version")
    open_module = None
    if proc:
        open_module = "Open Kernel Module" in proc
        if version is None:
            m = _NVRM_RE.search(proc)
            if m:
                version, source = m.group(1), "/proc/driver/nvidia/version"
        loaded = True
    module_files = []
    seen = set()
    for base in MODULE_DIRS:
        for kdir in node.glob(base + "/*"):
            for pat in MODULE_GLOBS:
                for f in node.glob(kdir + "/" + pat):
                    real = os.path.realpath(node.p(f))
                    if real not in seen:
                        seen.add(real)
                        module_files.append(f)
    libs = []
    for d in LIB_DIRS:
        for f in node.glob(d + "/libnvidia-ml.so.*"):
            m = re.match(r"^libnvidia-ml\.so\.(\d+\.\d+(?:\.\d+)?)$", os.path.basename(f))
            if m:
                libs.append(m.group(1))
    library_version = max(libs, key=_version_key) if libs else None
    nouveau = node.isdir("/sys/module/nouveau")
    installed = bool(loaded or module_files or library_version)
    reason = None
    if gpu_count:
        if not loaded and nouveau and (module_files or library_version):
            reason = ("the NVIDIA driver is installed but nouveau is loaded: blacklist nouveau and reboot")
        elif not loaded and module_files:
            reason = "an nvidia kernel module is installed (%s) but not loaded" % module_files[0]
        elif loaded and version and library_version and version != library_version:
            reason = ("the loaded kernel module is %s but the user-space driver (libnvidia-ml) is %s"
                      % (version, library_version))
    return {
        "loaded": loaded,
        "version": version,
        "version_source": source,
        "open_kernel_module": open_module,
        "library_version": library_version,
        "module_files": module_files,
        "installed": installed,
        "nvidia_smi": node.find("nvidia-smi", PATH_DIRS),
        "nouveau_loaded": nouveau,
        "reboot_pending": reason is not None,
        "reboot_reason": reason,
    }


# ---------------------------------------------------------------------------------------------- toolkit

def _binary_version(node, path, args=("--version",), dpkg=None, parse=core_version):
    """(version, source): ``path --version`` when programs may run, else the owning dpkg package."""
    if not path:
        return None, None
    res = node.run([path] + list(args))
    if res and res[0] == 0:
        v = parse(res[1] + "\n" + res[2])
        if v:
            return v, "binary"
    if dpkg:
        pkg, v = node.dpkg_owner_version(path, dpkg)
        if v:
            return v, "dpkg:%s" % pkg
    return None, None


def gather_toolkit(node):
    ctk = node.find("nvidia-ctk", TOOLKIT_DIRS)
    runtime = node.find("nvidia-container-runtime", TOOLKIT_DIRS)
    ctk_v, ctk_s = _binary_version(node, ctk, dpkg=DPKG_PACKAGES["toolkit"])
    rt_v, rt_s = _binary_version(node, runtime, dpkg=DPKG_PACKAGES["toolkit"])
    rt_dir = os.path.dirname(runtime) if runtime else None
    variant = {}
    for v in ("cdi", "legacy"):
        name = "nvidia-container-runtime." + v
        variant[v] = (rt_dir + "/" + name) if rt_dir and node.executable(rt_dir + "/" + name) else node.find(name, TOOLKIT_DIRS)
    config = "/etc/nvidia-container-runtime/config.toml"
    specs = []
    for d in ("/etc/cdi", "/var/run/cdi", "/run/cdi"):
        specs.extend(f for f in node.glob(d + "/*") if "nvidia" in os.path.basename(f)
                     and f.endswith((".yaml", ".yml", ".json")))
    return {
        "installed": bool(runtime or ctk),
        "nvidia_ctk": ctk,
        "nvidia_ctk_version": ctk_v,
        "nvidia_ctk_version_source": ctk_s,
        "runtime": runtime,
        "runtime_version": rt_v,
        "runtime_version_source": rt_s,
        "runtime_cdi": variant["cdi"],
        "runtime_legacy": variant["legacy"],
        "config": config if node.isfile(config) else None,
        "cdi_specs": specs,
    }


# ---------------------------------------------------------------------------------------------- engines

def _unit_file(node, units):
    for u in units:
        for d in SYSTEMD_DIRS:
            f = "%s/%s.service" % (d, u)
            if node.isfile(f):
                return u, f
    return None, None


def _unit_exec(node, unit_file):
    """The program of a unit's ExecStart (or None)."""
    text = node.read(unit_file) if unit_file else None
    for line in (text or "").splitlines():
        m = re.match(r"^\s*ExecStart\s*=\s*[-@:+!]*(\S+)", line)
        if m and m.group(1).startswith("/"):
            return m.group(1)
    return None


def _new_engine(kind):
    return {
        "kind": kind,
        "binary": None,
        "version": None,
        "version_source": None,
        "distribution_binary": None,
        "distribution_version": None,
        "distribution_version_source": None,
        "config": None,
        "config_exists": False,
        "config_managed": False,
        "config_error": None,
        "templates": [],
        "drop_in_dir": None,
        "drop_in_dir_loaded": None,
        "drop_ins": [],
        "drop_in_problems": [],
        "imports": None,
        "socket": None,
        "socket_answers": False,
        "units": [],
        "unit": None,
        "unit_file": None,
        "unit_active": None,
        "active": False,
        "config_version": None,
        "config_version_source": None,
        "cri_disabled": None,
        "runtimes": None,
        "nvidia_runtimes": None,
        "nvidia_binaries": None,
        "auto_nvidia_runtimes": None,
        "nvidia_configured": None,
        "default_runtime": None,
    }


def _activity(node, e, sockets):
    """Fill socket/unit/unit_file/unit_active/active."""
    unit, unit_file = _unit_file(node, e["units"])
    e["unit"], e["unit_file"] = unit, unit_file
    if node.query_units and unit_file and systemd_running():
        states = {}
        for u in e["units"]:
            try:
                states[u] = unit_active(node.runner, u)
            except Exception:  # noqa: BLE001 - a facts module reports, it does not fail
                states[u] = False
        e["unit_active"] = any(states.values())
        for u in e["units"]:
            if states.get(u):
                e["unit"] = u
                break
    e["socket"] = sockets[0]
    for s in sockets:
        if node.exists(s) and socket_answers(node.p(s), timeout=0.5):
            e["socket"], e["socket_answers"] = s, True
            break
    # systemd's word when it was asked (k3s and RKE2 share a socket path), else the socket's
    e["active"] = e["unit_active"] if e["unit_active"] is not None else e["socket_answers"]
    if e["unit"] is None and e["units"]:
        e["unit"] = e["units"][0]


def _load_toml(node, path, e):
    """Plain data of a TOML file; None when missing, unreadable, malformed (config_error) or no TOML reader."""
    text = node.read(path)
    if text is None or not HAS_TOML_READER:
        return None
    try:
        return toml_load(text, path)
    except TomlEditError as err:
        e["config_error"] = e["config_error"] or str(err)
        node.warnings.append("%s: %s" % (e["kind"], err))
        return None


def _file_config_version(data, name):
    """containerd.file_version, lenient: a version that is not an integer is unknown (None); the module names it."""
    try:
        return file_version(data, name)
    except EngineError:
        return None


def _containerd_config(node, e, main, extra_files=(), subst=None, tmpl_regex_files=()):
    """Read a containerd main config + drop-ins into the engine dict ``e``."""
    e["config"] = main
    e["config_exists"] = node.isfile(main)
    runtimes = {}
    default = None
    disabled = None
    files = []
    data = _load_toml(node, main, e) if e["config_exists"] else None
    if data is not None:
        files.append((data, _file_config_version(data, main), True))
        imports = data.get("imports")
        if isinstance(imports, list):
            e["imports"] = [x for x in imports if isinstance(x, str)]
            for pattern in import_patterns(e["imports"], main, subst):
                found = node.glob(pattern) if glob.has_magic(pattern) else ([pattern] if node.isfile(pattern) else [])
                for f in found:
                    if f not in e["drop_ins"]:
                        e["drop_ins"].append(f)
                if e["drop_in_dir"] and os.path.dirname(os.path.normpath(pattern)) == e["drop_in_dir"]:
                    e["drop_in_dir_loaded"] = True
            if e["drop_in_dir"] and e["drop_in_dir_loaded"] is None:
                e["drop_in_dir_loaded"] = False
        elif e["drop_in_dir"] and e["drop_in_dir_loaded"] is None:
            e["drop_in_dir_loaded"] = False
        v = _file_config_version(data, main)
        if v is not None:
            e["config_version"], e["config_version_source"] = v, "file"
    for f in list(extra_files):
        if f not in e["drop_ins"]:
            e["drop_ins"].append(f)
    for f in e["drop_ins"]:
        d = _load_toml(node, f, e)
        if d is None:
            continue
        v = d.get("version")
        files.append((d, v if isinstance(v, int) and not isinstance(v, bool) else None, False))
    for d, v, _is_main in files:
        # a drop-in without a version key: look at every CRI path (lenient: it is only reported)
        paths = [CRI_PATHS[v]] if v in CRI_PATHS else list(CRI_PATHS.values())
        for path in paths:
            cri = get_in(d, path) or {}
            tables = get_in(cri, ("containerd", "runtimes"))
            if isinstance(tables, dict):
                for name, table in tables.items():
                    binary = get_in(table, ("options", "BinaryName")) if isinstance(table, dict) else None
                    runtimes[name] = binary if isinstance(binary, str) else None
            name = get_in(cri, ("containerd", "default_runtime_name"))
            if isinstance(name, str) and name:
                default = name
        if isinstance(d.get("disabled_plugins"), list):
            disabled = d["disabled_plugins"]
    nvidia = sorted(n for n in runtimes if n.startswith("nvidia"))
    for f in tmpl_regex_files:  # k3s/RKE2 templates are Go templates, not TOML: look for table names
        for m in _TEMPLATE_NVIDIA_RE.finditer(node.read(f) or ""):
            if m.group(1) not in nvidia:
                nvidia.append(m.group(1))
    if HAS_TOML_READER and not e["config_error"]:
        e["runtimes"] = sorted(runtimes)
        e["nvidia_runtimes"] = sorted(nvidia)
        e["nvidia_binaries"] = dict((n, runtimes.get(n)) for n in nvidia)
        e["default_runtime"] = default or "runc"
        e["cri_disabled"] = any(p in CRI_PLUGIN_IDS for p in (disabled or []) if isinstance(p, str))
        e["nvidia_configured"] = bool(nvidia)
    elif nvidia:
        e["nvidia_runtimes"] = sorted(nvidia)
        e["nvidia_configured"] = True
    empty = not e["config_exists"] or data == {}  # missing, or parsed and empty
    if e["config_version"] is None and e["version"] and empty and not e["config_error"]:
        e["config_version"] = versions.containerd(e["version"]).empty_file_version()
        e["config_version_source"] = "binary"


def _containerd_version(node, e, path, dpkg=None):
    """containerd's version: ``containerd --version`` read by the shared parser
    (``containerd.read_binary_version``) when programs may run, else the owning dpkg package."""
    if not path:
        return
    if node.run_binaries:
        try:
            v = read_binary_version(node.p(path), node.runner)
        except Exception:  # noqa: BLE001 - EngineError or an odd runner failure: fall back to files
            v = None
        if v:
            e["version"], e["version_source"] = versions.vstr(v), "binary"
            return
    if dpkg:
        pkg, v = node.dpkg_owner_version(path, dpkg)
        if v:
            e["version"], e["version_source"] = v, "dpkg:%s" % pkg


def _daemon_binary(node, unit_file, name):
    """The unit's ExecStart program when it is ``name`` and executable, else ``name`` in the usual folders."""
    binary = _unit_exec(node, unit_file)
    if binary and binary.endswith("/" + name) and node.executable(binary):
        return binary
    return node.find(name, ("/usr/local/bin", "/usr/bin"))


def engine_containerd(node):
    e = _new_engine("containerd")
    e["units"] = ["containerd"]
    unit, unit_file = _unit_file(node, e["units"])
    binary = _daemon_binary(node, unit_file, "containerd")
    if not binary and not unit_file:
        return None
    e["binary"] = binary
    _containerd_version(node, e, binary, DPKG_PACKAGES["containerd"])
    e["drop_in_dir"] = "/etc/containerd/conf.d"
    _containerd_config(node, e, "/etc/containerd/config.toml")
    _activity(node, e, ["/run/containerd/containerd.sock"])
    return e


def engine_k0s(node):
    e = _new_engine("k0s")
    e["units"] = ["k0sworker", "k0scontroller"]
    e["distribution_binary"] = node.find("k0s", ("/usr/local/bin", "/usr/bin"))
    binary = "/var/lib/k0s/bin/containerd"
    e["binary"] = binary if node.executable(binary) else None
    _unit, unit_file = _unit_file(node, e["units"])
    if not (e["distribution_binary"] or e["binary"] or unit_file or node.exists("/run/k0s/containerd.sock")):
        return None
    _distribution_version(node, e, ["version"])
    _containerd_version(node, e, e["binary"])
    config = "/etc/k0s/containerd.toml"
    e["drop_in_dir"] = "/etc/k0s/containerd.d"
    e["drop_in_dir_loaded"] = True  # k0s merges the folder itself (which releases can: versions.K0S_RELEASES)
    rules = versions.k0s(e["distribution_version"])
    # k0s writes (and keeps rewriting) its config while the marker is there, as this release reads it
    e["config_managed"] = rules.is_managed(node.read(config) if node.isfile(config) else None)
    _containerd_config(node, e, config, node.glob(e["drop_in_dir"] + "/*.toml"))
    if rules.known:
        # the drop-in version this k0s merges, whatever a hand-written main file says
        if e["config_version"] != rules.drop_in_version:
            e["config_version"], e["config_version_source"] = rules.drop_in_version, "distribution"
        e["drop_in_problems"] = _k0s_drop_in_problems(node, e, rules)
    _activity(node, e, ["/run/k0s/containerd.sock"])
    return e


def _k0s_drop_in_problems(node, e, rules):
    """Why this k0s release would refuse (or not load) a file in its drop-in folder: it cannot load drop-ins
    at all, or a drop-in does not fit (e.g. a drop-in of the previous release's config version after an upgrade)."""
    why = rules.refusal()
    problems = [why] if why else []
    for f in e["drop_ins"]:
        if not f.startswith(e["drop_in_dir"] + "/"):
            continue
        d = _load_toml(node, f, e)
        problem = rules.drop_in_problem(d, f) if isinstance(d, dict) else None
        if problem:
            problems.append(problem)
    return problems


def _k3s_like(node, kind, base, units, bin_names, containerd_bin, config_yaml_dir):
    e = _new_engine(kind)
    e["units"] = list(units)
    e["distribution_binary"] = node.find(bin_names, ("/usr/local/bin", "/usr/bin", "/opt/rke2/bin"))
    e["binary"] = containerd_bin if node.executable(containerd_bin) else None
    _unit, unit_file = _unit_file(node, e["units"])
    sock = "/run/k3s/containerd/containerd.sock"
    if not (e["distribution_binary"] or e["binary"] or unit_file or node.isdir(base + "/data")
            or (node.exists(sock) and node.isdir(base))):
        return None
    _distribution_version(node, e, ["--version"])
    if e["distribution_version"] is None and kind == "rke2":
        e["distribution_version"] = _rke2_version_from_data(node, base)
        e["distribution_version_source"] = "path" if e["distribution_version"] else None
    _containerd_version(node, e, e["binary"])
    cdir = base + "/agent/etc/containerd"
    e["templates"] = [cdir + "/" + name for version, name in K3S_TEMPLATES if node.isfile(cdir + "/" + name)]
    e["config_managed"] = True  # regenerated from the template at every start
    _containerd_config(node, e, cdir + "/config.toml", tmpl_regex_files=e["templates"])
    if e["config_version"] is None and e["templates"] and not e["config_exists"]:
        e["config_version"] = [version for version, name in K3S_TEMPLATES if e["templates"][-1].endswith("/" + name)][0]
        e["config_version_source"] = "template"
    # the template this release renders (the newest that fits its config version)
    e["template_name"] = [name for version, name in K3S_TEMPLATES if version <= max(e["config_version"] or 2, 2)][-1]
    # what k3s/RKE2 add by themselves at the next start
    auto = {}
    for name, prog in K3S_NVIDIA_RUNTIMES:
        found = node.find(prog, K3S_NVIDIA_DIRS)
        if found:
            auto[name] = found
    e["auto_nvidia_runtimes"] = auto
    if auto:
        e["nvidia_configured"] = True
    # default-runtime: unit flags, then config.yaml, then config.yaml.d/*.yaml (later wins)
    wanted = None
    m = _K3S_FLAG_RE.search(node.read(unit_file) or "") if unit_file else None
    if m:
        wanted = m.group(1)
    for f in [config_yaml_dir + "/config.yaml"] + node.glob(config_yaml_dir + "/config.yaml.d/*.yaml"):
        found = _K3S_DEFAULT_RE.findall(node.read(f) or "")
        if found:
            wanted = found[-1]
    if wanted:
        e["default_runtime"] = wanted
    _activity(node, e, [sock])
    return e


# the version the release build embeds (Go ldflags), e.g. "v1.30.1+k0s.0", "v1.30.2+k3s1", "v1.30.2+rke2r1"
DISTRIBUTION_MARKERS = {"k0s": b"+k0s.", "k3s": b"+k3s", "rke2": b"+rke2r"}
_EMBEDDED_RE = re.compile(br"v\d{1,3}\.\d{1,3}\.\d{1,3}\+(?:k0s\.\d+|k3s\d+|rke2r\d+)")


def scan_embedded_version(node, path, kind):
    """The release version string embedded in a k0s/k3s/rke2 binary, read from the file (never run)."""
    marker = DISTRIBUTION_MARKERS.get(kind)
    if not path or not marker:
        return None
    try:
        with open(node.p(path), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return None
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                pos = mm.find(marker)
                for _i in range(1000):
                    if pos < 0:
                        break
                    m = _EMBEDDED_RE.search(mm[max(0, pos - 20):pos + len(marker) + 6])
                    if m:
                        return m.group(0).decode("ascii")
                    pos = mm.find(marker, pos + 1)
            finally:
                mm.close()
    except (IOError, OSError, ValueError):
        return None
    return None


def _distribution_version(node, e, args):
    """``<k0s|k3s|rke2> version`` when programs may run, else the version embedded in the binary."""
    path = e["distribution_binary"]
    if not path:
        return
    res = node.run([path] + list(args))
    if res and res[0] == 0 and full_version(res[1]):
        e["distribution_version"], e["distribution_version_source"] = full_version(res[1]), "binary"
        return
    v = scan_embedded_version(node, path, e["kind"])
    if v:
        e["distribution_version"], e["distribution_version_source"] = v, "embedded"


def _rke2_version_from_data(node, base):
    """RKE2 unpacks into ``data/v1.30.2-rke2r1-<hash>``; ``bin`` links to the current one."""
    target = node.readlink(base + "/bin")
    candidates = [target] if target else node.glob(base + "/data/v*")
    names = set()
    for c in candidates:
        parts = c.rstrip("/").split("/")
        for part in parts:
            m = re.match(r"^(v\d+\.\d+\.\d+)-(rke2r\d+)", part)
            if m:
                names.add("%s+%s" % m.groups())
    return names.pop() if len(names) == 1 else None


def engine_k3s(node):
    return _k3s_like(node, "k3s", "/var/lib/rancher/k3s", ("k3s", "k3s-agent"), "k3s",
                     "/var/lib/rancher/k3s/data/current/bin/containerd", "/etc/rancher/k3s")


def engine_rke2(node):
    return _k3s_like(node, "rke2", "/var/lib/rancher/rke2", ("rke2-server", "rke2-agent"), "rke2",
                     "/var/lib/rancher/rke2/bin/containerd", "/etc/rancher/rke2")


MICROK8S_SNAP = "/snap/microk8s/current"
MICROK8S_DATA = "/var/snap/microk8s/current"
MICROK8S_COMMON = "/var/snap/microk8s/common"
MICROK8S_PLACEHOLDER_RE = re.compile(r"\$\{[A-Z_][A-Z0-9_]*\}")
NVIDIA_RUNTIME_BINARY = "nvidia-container-runtime"


def microk8s_values(node=None):
    """What MicroK8s' containerd wrapper (run-containerd-with-args) substitutes in containerd-template.toml
    before containerd starts: plain string replacement of each ``${NAME}``, strings included. ``${RUNTIME}``
    is nvidia-container-runtime while the old GPU addon's lock file exists, else runc."""
    gpu_lock = node is not None and node.exists(MICROK8S_DATA + "/var/lock/gpu")
    return {
        "${SNAP}": MICROK8S_SNAP,
        "${SNAP_DATA}": MICROK8S_DATA,
        "${SNAP_COMMON}": MICROK8S_COMMON,
        "${RUNTIME}": NVIDIA_RUNTIME_BINARY if gpu_lock else "runc",
        "${RUNTIME_TYPE}": "io.containerd.runc.v2",
        "${SNAPSHOTTER}": "overlayfs",
    }


def render_microk8s(text, values):
    """The template as the snap renders it: plain replacement of each placeholder (the containerd module's rule,
    which also reads, decides and validates with ``placeholders``)."""
    return render_placeholders(text, values)


def reuse_handler(nvidia_binaries):
    """The handler an engine already has for the NVIDIA runtime (BinaryName ``nvidia-container-runtime``, bare or
    as a path; not its .cdi/.legacy modes), which the role reuses instead of adding a second; None if none."""
    found = sorted(n for n, b in (nvidia_binaries or {}).items()
                   if isinstance(b, str) and b.rsplit("/", 1)[-1] == NVIDIA_RUNTIME_BINARY)
    if NVIDIA_RUNTIME_BINARY in found:   # MicroK8s' own name first
        return NVIDIA_RUNTIME_BINARY
    return found[0] if found else None


def _microk8s_copy_from(e, values):
    """``runc`` when ``default_runtime_name``, as the snap renders it, is an nvidia handler (the old GPU addon's
    ``${RUNTIME}``, or the handler made default by an earlier run): a new handler never wraps another nvidia
    handler. None otherwise: the containerd module resolves the placeholders itself (the role passes it
    ``placeholder_values``) and copies the runtime the default renders to."""
    default = e["default_runtime"]
    if default and render_microk8s(default, values) in set(e["nvidia_runtimes"] or []) | {NVIDIA_RUNTIME_BINARY}:
        return "runc"
    return None


def engine_microk8s(node):
    e = _new_engine("microk8s")
    snap, data = MICROK8S_SNAP, MICROK8S_DATA
    template = data + "/args/containerd-template.toml"
    sock = MICROK8S_COMMON + "/run/containerd.sock"
    e["units"] = ["snap.microk8s.daemon-containerd"]
    e["distribution_binary"] = "/snap/bin/microk8s" if node.exists("/snap/bin/microk8s") else None
    e["binary"] = snap + "/bin/containerd" if node.executable(snap + "/bin/containerd") else None
    if not (e["distribution_binary"] or e["binary"] or node.isfile(template) or node.isdir(snap)):
        return None
    m = re.search(r"^version:\s*['\"]?([^'\"\s]+)", node.read(snap + "/meta/snap.yaml") or "", re.M)
    if m:
        e["distribution_version"], e["distribution_version_source"] = m.group(1), "snap.yaml"
    _containerd_version(node, e, e["binary"])
    values = microk8s_values(node)
    _containerd_config(node, e, template, subst=values)
    _activity(node, e, [sock])
    e["placeholders"] = sorted(set(MICROK8S_PLACEHOLDER_RE.findall(node.read(template) or "")))
    e["placeholder_values"] = values
    e["reuse_handler"] = reuse_handler(e["nvidia_binaries"])
    e["copy_options_from"] = _microk8s_copy_from(e, values)
    return e


def _daemon_engine(node, kind, program, config):
    """The engine dict of a runtime daemon with a systemd unit named ``kind``: its binary (the unit's ExecStart
    ``program``, else found), version and main ``config``; None when there is neither binary nor unit."""
    e = _new_engine(kind)
    e["units"] = [kind]
    _unit, unit_file = _unit_file(node, e["units"])
    e["binary"] = _daemon_binary(node, unit_file, program)
    if not e["binary"] and not unit_file:
        return None
    e["version"], e["version_source"] = _binary_version(node, e["binary"], dpkg=DPKG_PACKAGES[kind])
    e["config"] = config
    e["config_exists"] = node.isfile(config)
    return e


def engine_crio(node):
    e = _daemon_engine(node, "crio", "crio", "/etc/crio/crio.conf")
    if e is None:
        return None
    # imported here: most nodes have no CRI-O, and the facts module runs on every run of the role
    from ansible_collections.gpuops.nvidia.plugins.module_utils import crio as crio_rules
    e["drop_in_dir"] = "/etc/crio/crio.conf.d"
    e["drop_in_dir_loaded"] = True
    e["drop_ins"] = node.walk_files(e["drop_in_dir"])
    docs = []
    for f in ([e["config"]] if e["config_exists"] else []) + e["drop_ins"]:
        d = _load_toml(node, f, e)
        if d is not None:
            docs.append((f, d))
    if HAS_TOML_READER and not e["config_error"]:
        # the module's merge rules (crio.py), over the files as found under the facts' root
        try:
            m = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", e["version"] or "")
            version = tuple(int(x) for x in m.groups()) if m else None
            view = crio_rules.merge_view(docs, crio_rules.builtin_default(version), version)
        except crio_rules.EngineError as err:
            e["config_error"] = str(err)
            node.warnings.append("crio: %s" % err)
            view = None
    if HAS_TOML_READER and not e["config_error"]:
        runtimes = dict((name, table.get("runtime_path") if isinstance(table.get("runtime_path"), str) else None)
                        for name, table in view.runtimes.items() if view.origin.get(name) != crio_rules.BUILTIN)
        nvidia = sorted(n for n in runtimes if n.startswith("nvidia"))
        e["runtimes"] = sorted(runtimes)
        e["nvidia_runtimes"] = nvidia
        e["nvidia_binaries"] = dict((n, runtimes[n]) for n in nvidia)
        e["nvidia_configured"] = bool(nvidia)
        # None: no file sets it, CRI-O's built-in default applies
        e["default_runtime"] = view.default if view.default_origin != crio_rules.BUILTIN and view.default else None
    _activity(node, e, ["/var/run/crio/crio.sock", "/run/crio/crio.sock"])
    return e


def engine_docker(node):
    e = _daemon_engine(node, "docker", "dockerd", "/etc/docker/daemon.json")
    if e is None:
        return None
    data = {}
    if e["config_exists"]:
        text = node.read(e["config"]) or ""
        try:
            data = json.loads(text) if text.strip() else {}
            if not isinstance(data, dict):
                raise ValueError("the top level is not an object")
        except ValueError as err:
            e["config_error"] = "malformed JSON in %s: %s" % (e["config"], err)
            node.warnings.append("docker: " + e["config_error"])
            data = None
    if data is not None:
        runtimes = data.get("runtimes") if isinstance(data.get("runtimes"), dict) else {}
        nvidia = sorted(n for n in runtimes if n.startswith("nvidia"))
        e["runtimes"] = sorted(runtimes)
        e["nvidia_runtimes"] = nvidia
        e["nvidia_binaries"] = dict((n, runtimes[n].get("path") if isinstance(runtimes[n], dict) else None)
                                    for n in nvidia)
        e["nvidia_configured"] = bool(nvidia)
        e["default_runtime"] = data.get("default-runtime") or "runc"
    _activity(node, e, ["/run/docker.sock", "/var/run/docker.sock"])
    return e


ENGINE_FINDERS = (engine_k0s, engine_k3s, engine_rke2, engine_microk8s, engine_containerd, engine_crio, engine_docker)


def _tier(e, engines):
    if e["kind"] in DISTRIBUTIONS:
        return 0
    if e["kind"] == "crio" or (e["kind"] == "containerd" and not e["cri_disabled"]):
        return 1
    if e["kind"] == "containerd" and "docker" in engines:
        return None  # Docker's backend, not an engine of its own
    return 2


def select_engine(engines):
    """(kind or None, ambiguous, candidates, reason) for ``engines`` ({kind: engine})."""
    tiers = {}
    for kind, e in engines.items():
        t = _tier(e, engines)
        if t is not None:
            tiers.setdefault(t, []).append(kind)
    if not tiers:
        return None, False, [], "no container runtime found"
    best = min(tiers)
    tier = sorted(tiers[best], key=ENGINE_ORDER.index)
    active = [k for k in tier if engines[k]["active"]]
    candidates = active or tier
    kind = candidates[0]
    why = {0: "Kubernetes distributions come first", 1: "CRI runtimes come before Docker",
           2: "only Docker (or a containerd with its CRI plugin disabled) is present"}[best]
    if len(candidates) > 1:
        reason = "%s; several qualify (%s)%s; %s picked by the preference order %s" % (
            why, ", ".join(candidates), " and are active" if active else ", none is active", kind,
            ", ".join(ENGINE_ORDER))
    else:
        reason = "%s; %s is the %s" % (why, kind, "only active one" if active and len(tier) > 1 else "only candidate")
    return kind, len(candidates) > 1, candidates, reason


def gather_toml_reader():
    """The TOML reader the modules use in this Python ({name, version}, both None without one), the node's
    distribution words (the real /etc/os-release's ID and ID_LIKE: the Python that runs is the node's, whatever
    the facts' root) and the packages that give it one (tomledit's table); ``missing``: the modules' message
    when there is no reader (else None)."""
    info = tomledit.reader_info() or dict(name=None, version=None)
    family = tomledit.os_release_words()
    info.update(family=family, packages=list(tomledit.reader_packages(family)),
                missing=None if HAS_TOML_READER else tomledit.reader_missing_message(family=family))
    return info


def gather(root="/", runner=None, run_binaries=None, query_units=None):
    """The ``nvidia_runtime`` facts for the node under ``root`` and a list of warnings."""
    node = Node(root, runner=runner, run_binaries=run_binaries, query_units=query_units)
    reader = gather_toml_reader()
    if not HAS_TOML_READER:
        node.warnings.append("TOML configs are not read (config_version, runtimes, nvidia_runtimes, default_runtime, "
                             "cri_disabled are null): " + reader["missing"])
    gpus = gather_gpus(node)
    engines = {}
    for finder in ENGINE_FINDERS:
        e = finder(node)
        if e is not None:
            engines[e["kind"]] = e
    kind, ambiguous, candidates, reason = select_engine(engines)
    if ambiguous:
        node.warnings.append("several container runtimes could be the one to configure (%s); picked %s by the "
                             "preference order %s: check engines and set the engine explicitly"
                             % (", ".join(candidates), kind, ", ".join(ENGINE_ORDER)))
    facts = {
        "root": node.root,
        "gpus": gpus,
        "gpu_count": len(gpus),
        "driver": gather_driver(node, len(gpus)),
        "toolkit": gather_toolkit(node),
        "engines": engines,
        "engine": kind,
        "engine_ambiguous": ambiguous,
        "engine_candidates": candidates,
        "engine_reason": reason,
        "toml_reader": reader,
    }
    return facts, node.warnings


# ---------------------------------------------------------------------------------------------- what the role asks
# The few things the role needs from the node besides the facts above, so that a run needs no other probe:
# the modules' Python (what it can read TOML with, whether it may install into it), the version installed
# of each package the role manages, and the state of the files the role writes. Read-only, like the rest.

def python_probe():
    """What the Python running this code offers the modules besides its TOML reader (``toml_reader``): whether it is
    a virtualenv, its prefix, whether it is externally managed (PEP 668) and whether pip is importable."""
    import sys
    import sysconfig
    try:  # found, not imported (importing pip is slow)
        from importlib.util import find_spec
        has_pip = find_spec("pip") is not None
    except Exception:  # noqa: BLE001 - Python 2, or a broken path entry
        has_pip = False
    stdlib = sysconfig.get_path("stdlib") or ""
    return {
        "executable": sys.executable,
        "venv": sys.prefix != getattr(sys, "base_prefix", sys.prefix),
        "prefix": sys.prefix,
        "externally_managed": os.path.exists(os.path.join(stdlib, "EXTERNALLY-MANAGED")),
        "pip": has_pip,
    }


def installed_packages(node, names):
    """{name: version} of ``names`` as the package database says (dpkg status under the root; ``rpm -q`` when
    programs may run); None for a package that is not installed or when there is no database to ask."""
    names = list(names or [])
    if node.isfile("/var/lib/dpkg/status"):
        status = node.dpkg_status()
        return dict((n, status.get(n)) for n in names)
    out = dict((n, None) for n in names)
    rpm = node.find("rpm", PATH_DIRS)
    if names and rpm:
        res = node.run([rpm, "-q", "--qf", "%{NAME} %{VERSION}-%{RELEASE}\\n"] + names)
        for line in (res[1] if res else "").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in out:
                out[parts[0]] = parts[1]
    return out


def path_states(node, paths):
    """{path: state} of ``paths`` (inside the root): exists, isdir, mode (``0644``), uid, gid and the SHA-1 of a
    regular file's bytes (the checksum Ansible's file modules compare), without following a last symlink."""
    import hashlib
    out = {}
    for path in paths or []:
        real = node.p(path, follow_last=False)
        try:
            st = os.lstat(real)
        except (IOError, OSError):
            out[path] = {"exists": False, "isdir": False, "mode": None, "uid": None, "gid": None, "checksum": None}
            continue
        checksum = None
        if os.path.isfile(real) and not os.path.islink(real):
            h = hashlib.sha1()
            try:
                with open(real, "rb") as f:
                    for chunk in iter(lambda: f.read(65536), b""):
                        h.update(chunk)
                checksum = h.hexdigest()
            except (IOError, OSError):
                checksum = None
        out[path] = {"exists": True, "isdir": os.path.isdir(real) and not os.path.islink(real),
                     "mode": "%04o" % (st.st_mode & 0o7777), "uid": st.st_uid, "gid": st.st_gid, "checksum": checksum}
    return out


def gather_role_inputs(root="/", packages=(), paths=(), runner=None, run_binaries=None):
    """The ``probe``, ``packages`` and ``paths`` keys the role asks for (see the module's options)."""
    node = Node(root, runner=runner, run_binaries=run_binaries)
    return {
        "probe": python_probe(),
        "packages": installed_packages(node, packages),
        "paths": path_states(node, paths),
    }


# ------------------------------------------------------------------------------- the engine module's arguments
# The role states the engine module's arguments per engine (roles/nvidia_runtime/vars/main.yml,
# __nvidia_runtime_engine_args); the ones that depend on the node are completed here, the one home of these rules:
# - containerd: the binary the module validates with is the stated one, else the one the facts found (the unit's
#   ExecStart, inside the facts' root: a sandbox's own binary validates its config), else ``containerd`` on PATH;
# - containerd and k0s: the version the facts read from that same binary is passed on (not run again);
# - k0s: the release the drop-in is written for is the stated one (bootstrap, or the release an upgrade brings),
#   else the installed one; it is validated with k0s's bundled containerd when that is there (not at bootstrap).
ENGINE_MODULES = {"containerd": "containerd", "k0s": "containerd", "crio": "crio", "docker": "docker"}


def module_args(engine, stated, facts, root="/"):
    """The arguments of ``engine``'s module (``ENGINE_MODULES``): the role's ``stated`` ones (None, '' or []: not
    stated, the module's default) completed from the ``facts`` (``gather``) of the node under ``root``."""
    args = dict((k, v) for k, v in (stated or {}).items() if v is not None and v != "" and v != [])
    e = (facts.get("engines") or {}).get(engine) or {}
    found = root.rstrip("/") + e["binary"] if e.get("binary") else None    # the engine's containerd, as the facts saw it
    if engine == "containerd" and "containerd_path" not in args:
        args["containerd_path"] = found or "containerd"
    if (ENGINE_MODULES.get(engine) == "containerd" and found and args.get("containerd_path") == found
            and e.get("version_source") == "binary" and e.get("version") and "containerd_version" not in args):
        args["containerd_version"] = e["version"]
    if engine == "k0s":
        if "k0s_version" not in args and e.get("distribution_version"):
            args["k0s_version"] = e["distribution_version"]
        if "validate" not in args:
            args["validate"] = "containerd_path" in args and os.path.exists(args["containerd_path"])
    return args


def engine_adapter(engine):
    """The ``service.RuntimeAdapter`` class of ``engine``'s module, imported on demand (None: no module)."""
    name = ENGINE_MODULES.get(engine)
    if name == "containerd":
        from ansible_collections.gpuops.nvidia.plugins.module_utils.containerd import Adapter
    elif name == "crio":
        from ansible_collections.gpuops.nvidia.plugins.module_utils.crio import Adapter
    elif name == "docker":
        from ansible_collections.gpuops.nvidia.plugins.module_utils.docker import Adapter
    else:
        return None
    return Adapter
