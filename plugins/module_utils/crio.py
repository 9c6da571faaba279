# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The CRI-O engine: compute the exact file changes that add (or remove) NVIDIA runtime handlers to CRI-O.

Plain Python, no Ansible: ``plan(opts, runner)`` reads the files CRI-O loads, emulates how CRI-O merges
them, and returns a ``Plan`` (common.py's) with the before/after text of every file to write. The
shared flow (``_runtime_flow``) does the writing, backups, restart and rollback. The generic pieces
(``Plan``, ``FileChange``, ``read_text``, ``get_in``, handler names, source picking) come from
``common`` and TOML editing from ``tomledit``; only the CRI-O rules live here:

* What CRI-O loads (cri-o ``pkg/config``: ``UpdateFromFile`` then ``UpdateFromPath``): the main file
  (skipped when missing), then every file under the drop-in folder as Go's ``filepath.Walk`` visits it:
  the entries of each folder sorted by name, sub-folders walked where they sort, every file whatever
  its name (hidden files and editor/package backups too). ``Walk`` does not follow symlinks to folders:
  CRI-O then tries to read the folder as a file and fails.
* How it merges (BurntSushi/toml decoding into the same struct): tables merge key by key; a runtime
  table ``[crio.runtime.runtimes.NAME]`` is decoded into a *fresh* handler, so a later file that
  defines NAME replaces the whole earlier definition (keys it does not repeat are gone). The built-in
  default handler (``runc``, ``crun`` from CRI-O 1.31) always exists.
* A new handler copies the whole table of the runtime it wraps (``default_runtime`` unless it is one of
  ours, else ``crun``, else ``runc``; CRI-O's built-in one per BUILTIN_HANDLERS when no file defines
  it), then sets ``runtime_path``, ``runtime_type`` (only when empty) and its own ``runtime_root``;
  ``inherit_default_runtime`` and ``platform_runtime_paths`` are not copied (CRI-O would replace our
  ``runtime_path`` with them).
* An existing handler table (the operator's, another tool's) keeps what its owner set: we own
  ``runtime_path``; ``runtime_type``/``runtime_root`` are set only when missing, the other missing keys
  come from the wrapped runtime. In a file we edit, that is done key by key with tomledit's records, so
  ``absent`` gives the owner's bytes back.
* Reload or restart: RESTART_FOR (cri-o/cri-o#10202) — a change of handler tables or
  ``default_runtime`` needs a restart; SIGHUP only updates what ``crio status config`` reports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import os
import re
import stat

from ansible_collections.gpuops.nvidia.plugins.module_utils.common import (
    EngineError, FileChange, Plan, check_names, default_runner, get_in, handler_binaries, handler_names,
    is_variant, layout_for, pick_source, prune_zero, read_binary_version, read_text, require_tables, runtime_headers,
    runtime_view, which,
)
from ansible_collections.gpuops.nvidia.plugins.module_utils.versions import vstr
from ansible_collections.gpuops.nvidia.plugins.module_utils import service
from ansible_collections.gpuops.nvidia.plugins.module_utils.tomledit import (
    Editor, TomlEditError, TomlText, detect_step, load,
)

RUNTIME = ("crio", "runtime")
RT = RUNTIME + ("runtimes",)
# map-typed tables whose entries CRI-O decodes into fresh values: a later file replaces an entry whole
REPLACED_ENTRIES = (RT, RUNTIME + ("workloads",))
MANAGED = "# Managed by Ansible (gpuops.nvidia.nvidia_crio_runtime)"
DROP_IN_HEADER = (MANAGED + ": NVIDIA runtime handlers for CRI-O.\n"
                  "# state=absent deletes this file. Local edits are overwritten.\n")
# keys of the copied table that would make CRI-O ignore our runtime_path
NOT_COPIED = ("inherit_default_runtime", "platform_runtime_paths")
RELOAD_SINCE = (1, 26, 0)        # SIGHUP reloads runtime handlers and default_runtime (but see RESTART_FOR)
RELOAD_WAIT = 15    # seconds for a reload to show in `crio status config` before restart: auto restarts
# The restart rule. cri-o/cri-o#10202 (open; seen on a live 1.36.3): SIGHUP updates the configuration that
# `Status` and `crio status config` report, not the runtime map RunPodSandbox uses. After a reload a new
# or changed handler is listed but pods get "failed to find runtime handler", and pods without a handler
# keep the old default_runtime. Only a restart applies a change of these settings (also a handler whose
# binary appeared after CRI-O started). Other settings may still be reloaded. Drop an entry when a CRI-O
# release fixes the bug (and key it by version then).
RESTART_FOR = (RT, RUNTIME + ("default_runtime",))
RESTART_BUG = "cri-o/cri-o#10202"
# CRI-O's built-in default handler by version, newest first: (since, name, table). ``table`` is the
# built-in handler as `crio config` prints it with no config file, zero values left out, for versions
# whose output was seen; None where it was not: only what every version has is then known
# (builtin_table). A guess is worse than nothing: CRI-O ignores a handler whose allowed_annotations name
# one it does not know (the Devices annotation was renamed to devices.crio.io).
#   1.36: tests/fixtures/crio/1.36.3-crio-config-default.toml ([crio.runtime.runtimes.crun], commented
#   out). Left out: its zero values, and monitor_cgroup ("system.slice" with the systemd cgroup manager,
#   "" with cgroupfs): CRI-O fills an empty one itself for the cgroup manager in use.
BUILTIN_HANDLERS = (
    ((1, 36, 0), "crun", {
        "runtime_type": "oci",
        "runtime_root": "/run/crun",
        "container_min_memory": "500KiB",
        "monitor_env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "allowed_annotations": ["io.containers.trace-syscall", "devices.crio.io"],
    }),
    ((1, 31, 0), "crun", None),   # the default handler is crun from 1.31 (cri-o#8626)
    ((0,), "runc", None),         # runc before
)
BUILTIN = "(built-in)"
# names that editors and package managers leave behind; CRI-O loads them like any other file
BACKUP_RE = re.compile(r"(~|\.(bak|orig|old|save|swp|tmp|rpmnew|rpmsave|rpmorig|dpkg-old|dpkg-new|dpkg-dist|"
                       r"dpkg-bak|ucf-old|ucf-new|ucf-dist))$|^\.#")

DEFAULTS = {
    "state": "present",
    "config": "/etc/crio/crio.conf",
    "drop_in": "/etc/crio/crio.conf.d/99-nvidia.toml",
    "config_dir": "/etc/crio/crio.conf.d",
    "config_source": ["command", "file"],
    "crio_path": "crio",
    "socket": "/var/run/crio/crio.sock",
    "runtime_name": "nvidia",
    "runtime_path": "/usr/bin/nvidia-container-runtime",
    "runtime_type": "oci",
    "runtime_root": None,
    "variants": [],
    "set_as_default": False,
    "copy_options_from": None,
    "backup": False,
    "backup_dir": None,
}
NULLABLE = ("drop_in", "copy_options_from", "runtime_root", "backup_dir")


class CrioPlan(Plan):
    """Plan plus what the CRI-O module needs after writing."""

    def __init__(self):
        super(CrioPlan, self).__init__()
        self.crio_version = None
        self.copied_from = None
        self.expected = {}            # handler name -> runtime_path CRI-O should report (None: absent)
        self.expect_default = None    # default_runtime CRI-O should report (None: not checked)
        self.after = None             # the merged View after the change
        self.backup_dir = None
        self.restart_reason = None    # why a reload is not enough (the restart rule), None: it is
        self.restart_pending = False  # no file changes, but the running CRI-O needs a restart to use them


# -- what CRI-O loads, and how it merges it ------------------------------------------------------------
def load_order(config_dir):
    """Paths CRI-O loads from ``config_dir``, in its order (see the module docstring)."""
    out = []

    def walk(path):
        try:
            st = os.lstat(path)
        except OSError as e:
            raise EngineError("cannot read %s: %s" % (path, e))
        if not stat.S_ISDIR(st.st_mode):
            out.append(path)
            return
        try:
            names = sorted(os.listdir(path))
        except OSError as e:
            raise EngineError("cannot list %s: %s" % (path, e))
        for name in names:
            walk(os.path.join(path, name))

    if os.path.lexists(config_dir):
        walk(config_dir)
    return out


def order_key(config_dir, path):
    """Sort key equal to the walk order: the path's components below ``config_dir``."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(config_dir))
    return tuple(rel.split(os.sep))


def read_loaded(path):
    """Text of a file CRI-O loads; anything CRI-O could not read is an error."""
    if os.path.isdir(path):
        raise EngineError("%s is a symlink to a folder: CRI-O does not follow it, tries to read it as a config "
                          "file and fails to start; remove it" % path)
    text = read_text(path)
    if text is None:
        raise EngineError("%s is a dangling symlink: CRI-O fails to read it and does not start; remove it" % path)
    return text


def check_shape(data, name):
    """The keys we read must have the types CRI-O decodes them into."""
    require_tables(data, RT, name)
    for rname, table in (get_in(data, RT) or {}).items():
        if not isinstance(table, dict):
            raise EngineError("%s: %s must be a table, but it is set to a value (%r)" % (name, ".".join(RT + (rname,)), table))
    default = get_in(data, RUNTIME + ("default_runtime",))
    if default is not None and not isinstance(default, str):
        raise EngineError("%s: crio.runtime.default_runtime must be a string, found %r" % (name, default))


class View(object):
    """The configuration CRI-O ends up with: merged data plus which file defined what."""

    def __init__(self):
        self.data = {}
        self.origin = {}              # runtime name -> file that defined it last
        self.default_origin = None
        self.docs = []                # [(file, data)] in load order

    @property
    def runtimes(self):
        return get_in(self.data, RT) or {}

    @property
    def default(self):
        return get_in(self.data, RUNTIME + ("default_runtime",))


def _builtin_entry(version):
    """The BUILTIN_HANDLERS entry of ``version`` (unknown: the newest name, no table)."""
    if version is None:
        return BUILTIN_HANDLERS[0][0], BUILTIN_HANDLERS[0][1], None
    for entry in BUILTIN_HANDLERS:
        if version >= entry[0]:
            return entry
    return BUILTIN_HANDLERS[-1]


def builtin_default(version):
    """Name of CRI-O's built-in default handler (crun from 1.31, runc before; crun when unknown)."""
    return _builtin_entry(version)[1]


def builtin_table(name, version=None):
    """CRI-O's built-in handler ``name`` of ``version``: BUILTIN_HANDLERS' table where it is known, else
    what every version has (an OCI runtime found on PATH, state in /run/NAME)."""
    _since, bname, table = _builtin_entry(version)
    if name == bname and table is not None:
        return copy.deepcopy(table)
    return {"runtime_type": "oci", "runtime_root": "/run/%s" % name}


def builtin_known(name, version):
    """Whether builtin_table(name, version) is the whole built-in table (not just its type and root)."""
    _since, bname, table = _builtin_entry(version)
    return version is not None and name == bname and table is not None


def reload_is_not_enough(before, after):
    """Why SIGHUP would not apply the change from merged data ``before`` to ``after`` (None: it would).
    The one home of the restart rule (RESTART_FOR, cri-o/cri-o#10202)."""
    changed = [".".join(path) for path in RESTART_FOR if get_in(before, path) != get_in(after, path)]
    if not changed:
        return None
    return ("%s changed: CRI-O applies that only on a restart, a reload (SIGHUP) leaves pods on the old handlers "
            "(%s)" % (" and ".join(changed), RESTART_BUG))


def restart_method(requested, p, can_reload):
    """(method, warning) for ``restart`` = ``requested`` (auto, reload, systemd): restart where the restart
    rule says a reload is not enough; an explicit reload is then upgraded to a restart, with a warning."""
    if requested == "systemd":
        return "systemd", None
    if p.restart_reason:
        if requested == "reload":
            return "systemd", "restart: reload cannot apply this change (%s); restarting CRI-O instead" % p.restart_reason
        return "systemd", None
    if requested == "reload":
        version = p.crio_version
        if version is not None and version < RELOAD_SINCE:
            return "reload", ("CRI-O %s does not reload runtime handlers on SIGHUP (1.26 does); use restart: systemd"
                              % vstr(p.crio_version))
        return "reload", None
    return ("reload" if can_reload else "systemd"), None


def _merge(dst, src, path=()):
    for k, v in src.items():
        here = path + (k,)
        if isinstance(v, dict) and isinstance(dst.get(k), dict) and path not in REPLACED_ENTRIES:
            _merge(dst[k], v, here)
        else:
            dst[k] = copy.deepcopy(v)


def merge_view(docs, builtin, version=None):
    """Merge ``[(name, data)]`` (in load order) over the built-in defaults, the way CRI-O does."""
    v = View()
    v.data = {"crio": {"runtime": {"default_runtime": builtin, "runtimes": {builtin: builtin_table(builtin, version)}}}}
    v.origin[builtin] = BUILTIN
    v.default_origin = BUILTIN
    for name, data in docs:
        check_shape(data, name)
        _merge(v.data, data)
        for rname in get_in(data, RT) or {}:
            v.origin[rname] = name
        if "default_runtime" in (get_in(data, RUNTIME) or {}):
            v.default_origin = name
        v.docs.append((name, data))
    return v


def files_view(config, config_dir, builtin, override=None, extra=(), version=None, parsed=None):
    """The view of the files on disk; ``override`` maps path -> text (None: the file is gone); ``parsed``
    maps path -> (text, data) already read: a file still holding that text is not parsed again."""
    override = override or {}
    parsed = parsed or {}

    def data_of(path, text):
        seen = parsed.get(path)
        return seen[1] if seen is not None and seen[0] == text else load(text, path)
    docs = []
    text = override[config] if config in override else read_text(config)
    if text is not None:
        docs.append((config, data_of(config, text)))
    paths = load_order(config_dir)
    for p in extra:
        if p not in paths:
            paths.append(p)
    paths.sort(key=lambda p: order_key(config_dir, p))
    for path in paths:
        text = override[path] if path in override else read_loaded(path)
        if text is not None:
            docs.append((path, data_of(path, text)))
    return merge_view(docs, builtin, version)


def is_managed(text):
    return text is not None and text.startswith(MANAGED)


# -- the running daemon ----------------------------------------------------------------------------------
def status_argv(binpath, socket_path):
    return [binpath, "status", "--socket", socket_path, "config"]


def read_running(binpath, opts, runner):
    """``crio status --socket S config``: the configuration the running daemon uses (TOML)."""
    if not binpath:
        raise EngineError("crio binary %r not found" % opts["crio_path"])
    argv = status_argv(binpath, opts["socket"])
    rc, out, err = runner(argv)
    if rc != 0:
        raise EngineError("'%s' failed (rc=%s): %s" % (" ".join(argv), rc, (err or out).strip()))
    data = load(out, "crio status config")
    check_shape(data, "crio status config")
    return data


def loaded_mismatch(p, running):
    """Why the running CRI-O does not show the planned handlers (None when it does)."""
    runtimes = get_in(running, RT) or {}
    for name, path in sorted(p.expected.items()):
        if path is None:
            if name in runtimes:
                return "crio still reports the %s handler" % name
            continue
        got = get_in(runtimes, (name, "runtime_path"))
        if got != path:
            return "crio reports runtime_path %r for the %s handler, %r expected" % (got, name, path)
    if p.expect_default is not None:
        got = get_in(running, RUNTIME + ("default_runtime",))
        if got != p.expect_default:
            return "crio reports default_runtime %r, %r expected" % (got, p.expect_default)
    return None


# -- edits -----------------------------------------------------------------------------------------------
def _key_step(ed, h):
    """Indentation step of a table's keys ('' when it has none to learn from)."""
    table = ed.tt.get(h.path)
    if isinstance(table, dict) and any(not isinstance(v, dict) for v in table.values()):
        return detect_step(ed.tt, h)
    return ""


def _add_handler(ed, name, table, prev):
    """A new handler table: after the previous handler (else the last runtime table), indented like its
    neighbours; in a file without runtime tables, like the keys of [crio.runtime] (CRI-O's own files
    use no indentation at all)."""
    if runtime_headers(ed, RT):
        after, indent, step = layout_for(ed, RT, prev)
    else:
        after = None
        h = ed.tt.header(RUNTIME)
        step = _key_step(ed, h) if h is not None else ""
        indent = h.indent + step if h is not None and h.indent else ""
    ed.add_table(RT + (name,), table, after=after, indent=indent, step=step)


def patch(ed, opts, tables):
    """Our edits in a file we share (the main file, or a foreign drop-in): marked and reversible."""
    ours = handler_names(opts)
    data = ed.tt.data
    check_shape(data, ed.name)
    for h in list(runtime_headers(ed, RT)):        # variants no longer wanted that we wrote (or edited) earlier
        name = h.path[-1]
        if name not in ours and is_variant(name, opts):
            if h.marker is not None:
                ed.remove_table(h.path)
            else:
                undo_keys(ed, h.path)
    if opts["set_as_default"]:
        ed.set_value(RUNTIME, "default_runtime", opts["runtime_name"])
    else:
        ed.undo_value(RUNTIME, "default_runtime")
        if get_in(ed.tt.data, RUNTIME + ("default_runtime",)) in ours:
            ed.delete_key(RUNTIME, "default_runtime")
    prev = None
    for name in ours:
        path = RT + (name,)
        cur = get_in(ed.tt.data, path)
        h = ed.tt.header(path)
        if cur is None:
            _add_handler(ed, name, tables[name], prev)
        elif h is not None and h.marker is None:
            edit_keys(ed, path, tables[name])
        elif cur != tables[name]:
            ed.write_table(path, tables[name])
        prev = name


def undo_keys(ed, path):
    """Undo our marked key edits in table ``path`` (the owner's bytes come back). True when it had some."""
    table = ed.tt.get(path)
    done = False
    for key in list(table or {}):
        if not isinstance(table[key], dict) and ed.marker_of(path, key) is not None:
            done = ed.undo_value(path, key) or done
    return done


def edit_keys(ed, path, want):
    """A handler table that is not ours (no marker on its header): made equal to ``want`` key by key, every
    edit recorded (``# gpuops.nvidia: replaced ...`` / ``added``), so that undo_keys restores it byte for
    byte. Starts from the owner's bytes, so the result depends on ``want`` only (a second run is a no-op)."""
    undo_keys(ed, path)
    cur = ed.tt.get(path)
    for key, value in want.items():
        if key not in cur or cur[key] != value:
            ed.set_value(path, key, value)
            cur = ed.tt.get(path)


def unpatch(ed, opts, only_marked=False):
    """Undo our edits in a shared file; ``only_marked`` leaves tables and values we did not write alone."""
    ours = handler_names(opts)
    check_shape(ed.tt.data, ed.name)
    ed.undo_value(RUNTIME, "default_runtime")
    if not only_marked and get_in(ed.tt.data, RUNTIME + ("default_runtime",)) in ours:
        ed.delete_key(RUNTIME, "default_runtime")
    for h in list(runtime_headers(ed, RT)):
        name = h.path[-1]
        if h.marker is None and (name in ours or is_variant(name, opts)) and undo_keys(ed, h.path):
            continue            # a table we did not write, only edited: its owner's bytes are back
        if (name in ours and (h.marker is not None or not only_marked)) or (is_variant(name, opts) and h.marker is not None):
            ed.remove_table(h.path)
    for h in list(runtime_headers(ed, RT)):
        if h.marker == "added":
            ed.remove_table(h.path)
    return ed.text


def render_drop_in(opts, tables):
    """Our own drop-in: the header, the default (when asked) and the handler tables, unmarked."""
    ed = Editor("", opts["drop_in"])
    blocks = []
    if opts["set_as_default"]:
        blocks.append("".join(ed.render_table(RUNTIME, {"default_runtime": opts["runtime_name"]}, "", "", mark=None)))
    for name in handler_names(opts):
        blocks.append("".join(ed.render_table(RT + (name,), tables[name], "", "", mark=None)))
    text = DROP_IN_HEADER + "".join("\n" + b for b in blocks)
    TomlText(text, opts["drop_in"])
    return text


def handler_table(source, binary, runtime_type, root, existing=None):
    """The table of a handler. The module owns ``runtime_path`` only.

    New (``existing`` None): a copy of ``source`` (order kept, NOT_COPIED left out), then runtime_path,
    runtime_type when empty and runtime_root ``root``. An ``existing`` table (the operator's, or another
    tool's) keeps every key as its owner set it, in its order; runtime_path becomes ours, runtime_type
    and runtime_root are set only when missing (``root`` None: keep it), and the keys it lacks come from
    ``source`` (never its runtime_root: two runtimes must not share a state folder).
    """
    if existing is None:
        items = [(k, copy.deepcopy(v)) for k, v in source.items() if k not in NOT_COPIED]
    else:
        items = [(k, copy.deepcopy(v)) for k, v in existing.items()]

    def put(key, value, after):
        for i, (k, _v) in enumerate(items):
            if k == key:
                items[i] = (key, value)
                return
        at = 0
        for i, (k, _v) in enumerate(items):
            if k in after:
                at = i + 1
        items.insert(at, (key, value))

    put("runtime_path", binary, ())
    if existing is None:
        if not source.get("runtime_type"):
            put("runtime_type", runtime_type, ("runtime_path",))
        put("runtime_root", root, ("runtime_path", "runtime_type"))
        return dict(items)
    have = set(k for k, _v in items)
    if "runtime_type" not in have:
        put("runtime_type", source.get("runtime_type") or runtime_type, ("runtime_path",))
    if root is not None:
        put("runtime_root", root, ("runtime_path", "runtime_type"))
    for k, v in source.items():
        if k not in have and k not in NOT_COPIED and k not in ("runtime_path", "runtime_type", "runtime_root"):
            items.append((k, copy.deepcopy(v)))
    return dict(items)


def derived_root(opts, name, source_name, source):
    """runtime_root of a handler: ``runtime_root`` (+ the variant suffix), else a sibling of the source's
    root named after the handler (``/run/crun`` -> ``/run/crun-nvidia``): never the source's own folder
    (two low-level runtimes' state must not mix: nvidia-container-runtime may exec runc where crun
    keeps its state) and never ``/run/nvidia`` (the GPU Operator's folder)."""
    if opts["runtime_root"]:
        return opts["runtime_root"].rstrip("/") + name[len(opts["runtime_name"]):]
    base = (source.get("runtime_root") or "/run/%s" % source_name).rstrip("/") or "/run"
    return os.path.join(os.path.dirname(base), os.path.basename(base) + "-" + name)


# -- paths -----------------------------------------------------------------------------------------------
def _inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def backup_dir_for(opts):
    return opts.get("backup_dir") or os.path.dirname(os.path.abspath(opts["config"]))


def check_paths(opts):
    config, cdir, drop = opts["config"], opts["config_dir"], opts["drop_in"]
    if os.path.isdir(config):
        raise EngineError("config %s is a directory" % config)
    if _inside(config, cdir):
        raise EngineError("config %s is inside config_dir %s: CRI-O would load it twice" % (config, cdir))
    if drop:
        if os.path.isdir(drop):
            raise EngineError("drop_in %s is a directory" % drop)
        if not _inside(drop, cdir) or os.path.realpath(drop) == os.path.realpath(cdir):
            raise EngineError("drop_in %s is not inside config_dir %s: CRI-O would not load it" % (drop, cdir))
    if opts.get("backup"):
        bdir = backup_dir_for(opts)
        if _inside(bdir, cdir):
            raise EngineError("backups cannot go to %s: it is inside config_dir %s, where CRI-O loads every file "
                              "(a backup there would be read as configuration); set backup_dir elsewhere" % (bdir, cdir))


# -- the plan --------------------------------------------------------------------------------------------
def _options(opts):
    o = dict(DEFAULTS)
    o.update({k: v for k, v in opts.items() if v is not None or k in NULLABLE})
    if not o["drop_in"]:
        o["drop_in"] = None
    for k in ("config", "config_dir", "drop_in", "backup_dir"):
        if o.get(k):
            o[k] = os.path.abspath(o[k])
    check_names(o, ("config", "config_dir", "drop_in", "backup_dir", "runtime_path", "runtime_root"),
                absolute=("runtime_path", "runtime_root"))
    return o


class _Read(object):
    """Everything CRI-O reads, and the configuration without us (our marked edits undone, our drop-ins out)."""

    def __init__(self):
        self.main_text = None
        self.main_tt = None       # main_text read once (a TomlText); its Editors start from it
        self.parsed = {}          # path -> (text, data) of every file read: files_view does not parse them again
        self.dir_paths = []
        self.dir_texts = {}
        self.managed = []         # our drop-ins in config_dir (any name)
        self.drop_text = None
        self.foreign_drop = False  # drop_in exists without our header: edited like a shared file
        self.cleaned = {}         # path -> text without us (None: left out)
        self.base = None          # files_view of the configuration without us


def plan(opts, runner=default_runner, crio_version=None):
    """Compute the changes for ``opts`` (see DEFAULTS). Raises EngineError/TomlEditError on bad input.

    ``crio_version`` (a tuple) stands in for the version of an absent binary.
    """
    opts = _options(opts)
    check_paths(opts)
    present = opts["state"] == "present"
    ours = handler_names(opts)
    p = CrioPlan()
    p.main_path = opts["config"]
    p.backup_dir = backup_dir_for(opts)
    binpath = which(opts["crio_path"])
    _plan_version(p, binpath, runner, crio_version)
    builtin = builtin_default(p.crio_version)
    r = _plan_read(p, opts, builtin)
    running, eff_default, eff_runtimes = _plan_effective(p, opts, r.base, binpath, runner, ours, builtin)
    src_name, source = _plan_copied(p, opts, r.base, running, eff_default, eff_runtimes, ours, builtin, present)
    tables = _plan_tables(p, opts, r.base, src_name, source, ours, present)
    p.files = _plan_edits(opts, r, tables, present)
    after = _plan_after(p, opts, builtin, tables, ours, present, r.parsed)
    p.runtimes = ours if present else []
    p.default_runtime = after.default
    p.low_level_runtime = (source.get("runtime_path") or src_name) if present else None
    p.expected = dict((n, get_in(after.runtimes, (n, "runtime_path")) if n in after.runtimes else None) for n in ours)
    p.expect_default = after.default if present and opts["set_as_default"] else None
    _plan_restart_rule(p, opts, builtin, after, running, ours, present, r.parsed)
    return p


def _plan_version(p, binpath, runner, crio_version):
    """The CRI-O version: the binary's, else ``crio_version``."""
    version = crio_version
    if binpath:
        try:
            version = read_binary_version(binpath, runner)
        except EngineError as e:
            p.warnings.append("cannot tell the CRI-O version: %s" % e)
    p.crio_version = version


def _plan_read(p, opts, builtin):
    """Everything CRI-O reads (parse errors name the file and line), and the configuration without us."""
    config, cdir, drop = opts["config"], opts["config_dir"], opts["drop_in"]
    r = _Read()
    r.main_text = read_text(config)
    r.main_tt = TomlText(r.main_text or "", config)
    r.parsed[config] = (r.main_text, r.main_tt.data)
    r.dir_paths = load_order(cdir)
    for path in r.dir_paths:
        r.dir_texts[path] = read_loaded(path)
        r.parsed[path] = (r.dir_texts[path], load(r.dir_texts[path], path))
    r.managed = [path for path in r.dir_paths if is_managed(r.dir_texts[path])]
    r.drop_text = read_text(drop) if drop else None
    r.foreign_drop = r.drop_text is not None and not is_managed(r.drop_text)
    for path in r.dir_paths:
        if BACKUP_RE.search(os.path.basename(path)):
            p.warnings.append("%s looks like a backup, but CRI-O loads every file in %s as configuration; move it "
                              "elsewhere" % (path, cdir))

    # the configuration without us: our marked edits undone, our own drop-ins left out
    if r.main_text is not None:
        r.cleaned[config] = unpatch(Editor.from_tomltext(r.main_tt), opts, only_marked=True)
    if r.foreign_drop:
        r.cleaned[drop] = unpatch(Editor(r.drop_text, drop), opts, only_marked=True)
    for path in r.managed:
        r.cleaned[path] = None
    r.base = files_view(config, cdir, builtin, r.cleaned, version=p.crio_version, parsed=r.parsed)
    return r


def _plan_effective(p, opts, base, binpath, runner, ours, builtin):
    """The effective configuration, from the first source that works: (running config or None, its
    default runtime, its runtimes)."""
    # "file": no running config, the merged files (``base``) are the effective configuration
    p.source, running = pick_source(opts["config_source"], {
        "command": lambda: read_running(binpath, opts, runner),
        "file": lambda: None,
    })
    if running is None:
        return None, base.default, base.runtimes
    eff_default = get_in(running, RUNTIME + ("default_runtime",)) or builtin
    eff_runtimes = get_in(running, RT) or {}
    if base.default not in ours and eff_default not in ours and eff_default != base.default:
        p.warnings.append("the running CRI-O uses default_runtime %r but its files say %r (set by %s): flags, or "
                          "files changed without a reload; the handler copies %r"
                          % (eff_default, base.default, base.default_origin, eff_default))
    return running, eff_default, eff_runtimes


def _plan_copied(p, opts, base, running, eff_default, eff_runtimes, ours, builtin, present):
    """The runtime the handlers copy: (its name, its table)."""
    version = p.crio_version
    known = set(base.runtimes) | set(eff_runtimes)
    want = opts["copy_options_from"]
    if want:
        if want in ours:
            raise EngineError("copy_options_from must name a runtime other than ours (%s)" % ", ".join(ours))
        if want not in known:
            raise EngineError("copy_options_from: runtime %r is not configured (known: %s)"
                              % (want, ", ".join(sorted(known - set(ours))) or "none"))
        src_name = want
    else:
        src_name = next((d for d in (eff_default, base.default) if d and d not in ours), None)
        if src_name is not None and src_name not in known:
            raise EngineError("default_runtime = %r (set by %s) names no configured runtime (known: %s): CRI-O cannot "
                              "load this configuration; fix it first"
                              % (src_name, base.default_origin, ", ".join(sorted(known)) or "none"))
        if src_name is None:
            src_name = next((n for n in ("crun", "runc") if n in known), builtin)
    if src_name in base.runtimes and base.origin.get(src_name) != BUILTIN:
        source = copy.deepcopy(base.runtimes[src_name])
    elif src_name in eff_runtimes and running is not None:
        source = prune_zero(eff_runtimes[src_name])
    else:
        source = builtin_table(src_name, version)
        if p.source == "file" and version is None and base.default_origin == BUILTIN:
            p.warnings.append("no file sets default_runtime and the CRI-O version is unknown: assuming the built-in "
                              "default handler is %s (CRI-O >= 1.31; runc before)" % builtin)
        if present and not builtin_known(src_name, version):
            p.warnings.append("the handlers copy CRI-O's built-in %s handler, whose table is known here only for CRI-O "
                              ">= %s (this is %s): they get its runtime_type and runtime_root only, not its "
                              "allowed_annotations, monitor_env, container_min_memory... Run the module while CRI-O "
                              "runs (config_source: command reads the table from it), or write the %s table in a file"
                              % (src_name, ".".join(str(x) for x in BUILTIN_HANDLERS[0][0]),
                                 vstr(p.crio_version) or "an unknown version", src_name))
    if source.get("runtime_type") == "vm":
        raise EngineError("the handlers would copy %s, a VM runtime (runtime_type = \"vm\"); the NVIDIA runtime is an "
                          "OCI runtime: set copy_options_from to an OCI runtime such as crun or runc" % src_name)
    p.copied_from = src_name
    return src_name, source


def _plan_tables(p, opts, base, src_name, source, ours, present):
    """The handler tables: an existing one (as its owner set it, in the files without us) is kept, else a copy."""
    binaries = handler_binaries(opts)
    others = {}                                          # runtime_root -> the other runtimes keeping state there
    for rname, t in sorted(base.runtimes.items()):
        if rname not in ours and isinstance(t, dict) and t.get("runtime_root"):
            others.setdefault(t["runtime_root"], []).append(rname)
    tables = {}
    roots = {}
    for name in ours:
        existing = base.runtimes.get(name) if present and base.origin.get(name) not in (None, BUILTIN) else None
        root = derived_root(opts, name, src_name, source)
        if existing is not None:
            where = "%s: crio.runtime.runtimes.%s" % (base.origin[name], name)
            if existing.get("inherit_default_runtime") is True:
                raise EngineError("%s has inherit_default_runtime = true: CRI-O would replace its runtime_path with "
                                  "the default runtime's, so the handler would not run %s. Remove that key (or set "
                                  "it to false) first" % (where, binaries[name]))
            platform = existing.get("platform_runtime_paths")
            if isinstance(platform, dict) and any(v != binaries[name] for v in platform.values()):
                p.warnings.append("%s sets platform_runtime_paths (kept): on a listed platform CRI-O runs that "
                                  "binary instead of runtime_path %s" % (where, binaries[name]))
            own = existing.get("runtime_root")
            if own and not opts["runtime_root"]:
                if own in others:
                    p.warnings.append("%s has runtime_root %s, the state folder of %s too: the handler gets %s "
                                      "instead (two runtimes must not share one)" % (where, own, ", ".join(others[own]), root))
                else:
                    root = None          # theirs, kept
        roots[name] = root if root is not None else existing.get("runtime_root")
        tables[name] = handler_table(source, binaries[name], opts["runtime_type"], root, existing)
    if present:
        for root, name in sorted((r, n) for n, r in roots.items()):
            if root in others:
                raise EngineError("runtime_root %s of the %s handler is already the state folder of the %s runtime "
                                  "(%s); set runtime_root" % (root, name, others[root][0], base.origin.get(others[root][0])))
    return tables


def _plan_edits(opts, r, tables, present):
    """The file changes, in write order."""
    config, drop = opts["config"], opts["drop_in"]
    files = []
    if drop:
        if r.main_text is not None and r.cleaned[config] != r.main_text:      # an earlier in-place run
            files.append(FileChange(config, r.main_text, r.cleaned[config]))
        if r.foreign_drop:
            ed = Editor(r.drop_text, drop)
            if present:
                patch(ed, opts, tables)
            else:
                unpatch(ed, opts)
            files.insert(0, FileChange(drop, r.drop_text, ed.text))
        else:
            change = FileChange(drop, r.drop_text, render_drop_in(opts, tables) if present else None)
            files.insert(0 if present else len(files), change)
    else:
        ed = Editor.from_tomltext(r.main_tt)
        if present:
            patch(ed, opts, tables)
        else:
            unpatch(ed, opts)
        after = ed.text
        if not after.strip() and (r.main_text is None or r.main_text.strip() != after.strip()):
            after = None        # nothing left of a file we created: remove it again
        files.append(FileChange(config, r.main_text, after))
    for path in r.managed:                                # our drop-ins under other names (drop_in renamed)
        if path != drop:
            files.append(FileChange(path, r.dir_texts[path], None))
    return files


def _plan_after(p, opts, builtin, tables, ours, present, parsed=None):
    """What CRI-O will load after the change, and whether we win (else an error naming the file)."""
    config, cdir, drop = opts["config"], opts["config_dir"], opts["drop_in"]
    override = dict((f.path, f.after) for f in p.files)
    extra = [drop] if drop and override.get(drop) is not None else []
    after = files_view(config, cdir, builtin, override, extra, p.crio_version, parsed)
    p.after = after
    target = drop or config
    if present:
        for name in ours:
            got = after.runtimes.get(name)
            if got != tables[name]:
                raise EngineError(
                    "%s loads after %s and defines the %s handler too (runtime_path %r): CRI-O replaces whole runtime "
                    "tables from later files, so it would override ours. Remove or rename it%s"
                    % (after.origin.get(name), target, name, (got or {}).get("runtime_path"),
                       ", or use a drop_in that sorts after it" if drop else "; or use drop_in"))
        if opts["set_as_default"] and after.default != opts["runtime_name"]:
            raise EngineError("%s loads after %s and sets default_runtime = %r: CRI-O would not use %s as the default. "
                              "Remove the setting there%s" % (after.default_origin, target, after.default,
                                                              opts["runtime_name"],
                                                              ", or use a drop_in that sorts after it" if drop else
                                                              "; or use drop_in"))
    if after.default not in after.runtimes:
        raise EngineError("after this change default_runtime = %r (set by %s) would name no runtime: CRI-O would refuse "
                          "the configuration%s" % (after.default, after.default_origin,
                                                   "; set_as_default: false leaves the default to the other files"
                                                   if not present else ""))
    loaded = [name for name, _d in after.docs]
    for path, data in after.docs:
        names = [n for n in ours if n in (get_in(data, RT) or {})]
        if not names or path == target:
            continue
        if not present:
            p.warnings.append("%s still defines %s: the handler stays configured" % (path, ", ".join(names)))
        elif target in loaded and loaded.index(path) < loaded.index(target):
            p.warnings.append(
                "%s also defines %s (as the GPU Operator / nvidia-ctk writes it): CRI-O loads it before %s, whose "
                "definition replaces it; let one tool own the handler (e.g. the GPU Operator with toolkit.enabled=false)"
                % (path, ", ".join(names), target))
    if present:
        binaries = handler_binaries(opts)
        for name in ours:
            if not os.path.exists(binaries[name]):
                p.warnings.append("%s does not exist on this node: CRI-O checks runtime_path when it starts or reloads "
                                  "and refuses a handler whose binary is missing" % binaries[name])
    return after


def _plan_restart_rule(p, opts, builtin, after, running, ours, present, parsed=None):
    """Reload or restart (the restart rule); a handler the running CRI-O left out although nothing changes."""
    if p.changed:
        current = files_view(opts["config"], opts["config_dir"], builtin, version=p.crio_version, parsed=parsed)
        p.restart_reason = reload_is_not_enough(current.data, after.data)
    elif present and running is not None:
        binaries = handler_binaries(opts)
        missing = [n for n in ours if os.path.exists(binaries[n])
                   and get_in(running, RT + (n, "runtime_path")) != p.expected.get(n)]
        if missing:
            p.restart_pending = True
            p.restart_reason = ("the files define %s but the running CRI-O does not use %s (its binary was missing when "
                                "CRI-O started?): only a restart applies it, a reload is not enough (%s)"
                                % (", ".join(missing), "it" if len(missing) == 1 else "them", RESTART_BUG))


__all__ = ["plan", "CrioPlan", "EngineError", "DEFAULTS", "DROP_IN_HEADER", "load_order", "merge_view", "files_view",
           "loaded_mismatch", "read_running", "status_argv", "backup_dir_for", "RELOAD_SINCE",
           "RESTART_FOR", "BUILTIN_HANDLERS", "reload_is_not_enough", "restart_method", "Adapter"]


# -- state: query ---------------------------------------------------------------------------------------
def query(opts, runner=default_runner):
    """``state: query``, read only: the handlers of the configuration the first ``config_source`` that works
    reads -- ``command``: what the running CRI-O reports (``crio status --socket S config``); ``file``: the
    main file and config_dir merged the way CRI-O merges them -- as common.runtime_view reports them
    (``runtimes``: handler -> its ``runtime_path``). Raises EngineError."""
    opts = _options(opts)
    binpath = which(opts["crio_path"])
    p = CrioPlan()

    def from_files():   # the built-in handlers depend on the version
        _plan_version(p, binpath, runner, None)
        return files_view(opts["config"], opts["config_dir"], builtin_default(p.crio_version), version=p.crio_version).data

    source, data = pick_source(opts["config_source"], {"command": lambda: read_running(binpath, opts, runner),
                                                       "file": from_files})
    default = get_in(data, RUNTIME + ("default_runtime",)) or builtin_default(p.crio_version)
    return dict(source=source, crio_version=vstr(p.crio_version), view=runtime_view(get_in(data, RT), ("runtime_path",), default))


# -- the module's part of the shared flow (_runtime_flow) -----------------------------------------------
class CrioHealth(service.Health):
    """The socket answers (the Restarter checks it) and ``crio status config`` reports what was planned
    (after a rollback: only that it answers); without the binary only the socket counts."""

    def __init__(self, p, binpath, socket_path, runner):
        super(CrioHealth, self).__init__()
        self.p, self.binpath, self.socket, self.runner = p, binpath, socket_path, runner

    def check(self, expect):
        if not self.binpath:
            return True
        rc, out, err = self.runner(status_argv(self.binpath, self.socket))
        if rc != 0:
            self.why = "crio status failed (rc=%s): %s" % (rc, (err or out).strip())
            return False
        if not expect:
            return True
        try:
            running = load(out, "crio status config")
        except TomlEditError as e:
            self.why = str(e)
            return False
        self.why = loaded_mismatch(self.p, running)
        return self.why is None


class Adapter(service.RuntimeAdapter):
    """nvidia_crio_runtime: backups and temp files outside config_dir, a restart a handler left out needs,
    reload or restart (the restart rule, RESTART_FOR)."""

    errors = (EngineError, TomlEditError)
    reads_toml = True
    outside = "config_dir"      # CRI-O loads every file in config_dir, hidden temp files and backups too
    states = ("present", "absent", "query")
    options = dict(   # the module's own options (its DOCUMENTATION); _runtime_flow.argument_spec adds the shared ones
        config=dict(type="path", default="/etc/crio/crio.conf"),
        drop_in=dict(type="path", default="/etc/crio/crio.conf.d/99-nvidia.toml"),
        config_dir=dict(type="path", default="/etc/crio/crio.conf.d"),
        config_source=dict(type="list", elements="str", default=["command", "file"], choices=["command", "file"]),
        crio_path=dict(type="str", default="crio"),
        runtime_type=dict(type="str", default="oci"),
        runtime_root=dict(type="path"),
        copy_options_from=dict(type="str"),
        backup_dir=dict(type="path"),
        restart=dict(type="str", default="auto", choices=["auto", "reload", "systemd", "none"]),
        service=dict(type="str", default="crio"),
        socket=dict(type="path", default="/var/run/crio/crio.sock"),
    )

    def plan(self, job):
        return plan(dict((k, job.params[k]) for k in DEFAULTS), runner=job.run)

    def query(self, job):
        return query(dict((k, job.params[k]) for k in DEFAULTS), runner=job.run)

    def result_fields(self, job):
        p = job.plan
        fields = dict(crio_version=vstr(p.crio_version), source=p.source, runtimes=p.runtimes,
                      default_runtime=p.default_runtime)
        if p.low_level_runtime is not None:
            fields["low_level_runtime"] = p.low_level_runtime
        return fields

    def pending(self, job):
        # nothing to write, but the running CRI-O left out a handler its files define (the restart rule)
        p, mode = job.plan, job.params["restart"]
        pending = p.restart_pending and mode != "none"
        if p.restart_pending and not pending:
            job.warn("%s; restart CRI-O (restart: none)" % p.restart_reason)
        if pending and job.check_mode:       # what the real run does: restart (auto: only an active unit)
            job.result["changed"] = mode != "auto" or service.unit_active(job.run, job.params["service"])
        return pending

    def backup_dir(self, job):
        return job.plan.backup_dir

    def reload_cmd(self, params):
        return ["systemctl", "reload", params["service"]]

    def health(self, job):
        return CrioHealth(job.plan, which(job.params["crio_path"]), job.params["socket"], job.run)

    def decide(self, job, restarter, health):
        mode, sock, svc, p = job.params["restart"], job.params["socket"], job.params["service"], job.plan
        if mode == "none":
            return None
        if mode == "auto" and not service.unit_active(job.run, svc):
            if service.socket_answers(sock):
                job.warn("CRI-O answers on %s but the systemd unit %s is not active: %s it yourself for the "
                         "change to take effect%s" % (sock, svc, "restart" if p.restart_reason else "reload (SIGHUP) or restart",
                                                      " (%s)" % p.restart_reason if p.restart_reason else ""))
            return None
        version = p.crio_version
        can_reload = bool(health.binpath) and version is not None and version >= RELOAD_SINCE
        method, warning = restart_method(mode, p, can_reload)
        if warning:
            job.warn(warning)
        if not health.binpath:
            job.warn("crio not found at %r: health after the %s is judged by the socket only" % (job.params["crio_path"], method))
        return method

    def restart(self, job, restarter, method, health):
        if method == "reload" and job.params["restart"] == "auto":
            return restarter.reload_or_restart(RELOAD_WAIT, lambda: health.why)
        restarter.restart(method)
        return method
