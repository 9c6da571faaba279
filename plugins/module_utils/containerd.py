# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The containerd engine: compute the exact file changes that add (or remove) NVIDIA runtime handlers.

Plain Python, no Ansible: ``plan(opts, runner)`` reads the current files and the effective config and
returns a ``Plan`` with the before/after text of every file to write. The module does the writing,
validation, restart and rollback. What differs per containerd (and k0s) release -- which config versions
load, where the CRI tables live, how imports merge -- is asked of ``versions.py``, never decided here.

* A new handler copies the wrapped runtime's table, sets ``runtime_type`` if empty and
  ``options.BinaryName``. An existing handler table keeps what its owner set: we own ``BinaryName``,
  ``runtime_type`` (only when empty) and keep ``options.SystemdCgroup`` equal to the wrapped runtime's;
  keys it lacks are filled from the wrapped runtime; every edit is recorded so ``absent`` restores it.
* Where a file's ``runtimes`` table replaces the built-in map, the default runtime (and the copy
  source) are written too when the file lacks them.
* Where imports replace whole plugin sections, a drop-in that containerd imports carries the main
  file's whole CRI section; where they deep-merge, the drop-in holds only our tables. k0s
  (``manage_imports=False``) merges drop-ins itself: there the drop-in holds only our tables.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import fnmatch
import glob
import os

from ansible_collections.gpuops.nvidia.plugins.module_utils.common import (  # noqa: F401 (re-exported)
    EngineError, FileChange, Plan, check_names, deep_merge, default_runner, get_in, handler_binaries,
    handler_names, is_variant, is_zero, layout_for, parse_version, pick_source, prune_zero, read_binary_version, read_text,
    render_placeholders, require_tables, runtime_headers, runtime_view, which,
)
from ansible_collections.gpuops.nvidia.plugins.module_utils.tomledit import (
    REPLACED, Editor, TomlEditError, TomlText, detect_step, load, render_tables,
)
from ansible_collections.gpuops.nvidia.plugins.module_utils import fileops, service, versions
from ansible_collections.gpuops.nvidia.plugins.module_utils.versions import CRI_PATHS, CRI_PLUGIN_IDS
DROP_IN_HEADER = ("# Managed by Ansible (gpuops.nvidia.nvidia_containerd_runtime): NVIDIA runtime handlers.\n"
                  "# state=absent deletes this file. Local edits are overwritten.\n")
# A main config this module had to create (none existed): state=absent deletes it again once only our
# edits are undone (nothing else was added to it).
CREATED_HEADER = "# Created by Ansible (gpuops.nvidia.nvidia_containerd_runtime); state=absent deletes it if nothing else is added.\n"
BUILTIN_RUNC = {"runtime_type": "io.containerd.runc.v2"}

DEFAULTS = {
    "state": "present",
    "config": "/etc/containerd/config.toml",
    "drop_in": None,
    "manage_imports": True,
    "config_source": ["command", "file"],
    "containerd_path": "containerd",
    "config_version": "auto",
    "runtime_name": "nvidia",
    "runtime_path": "/usr/bin/nvidia-container-runtime",
    "runtime_type": "io.containerd.runc.v2",
    "variants": [],
    "set_as_default": False,
    "enable_cdi": False,
    "cdi_spec_dirs": None,
    "copy_options_from": None,
    "enable_cri": False,
    "layout": None,
    "k0s_version": None,
    "placeholders": None,
    "containerd_version": None,
}
LAYOUTS = ("auto", "in_place", "drop_in")


def check_placeholders(placeholders):
    """The ``placeholders`` option: a dict of non-empty names to string values (EngineError otherwise)."""
    if placeholders is None:
        return
    if not isinstance(placeholders, dict):
        raise EngineError("placeholders must be a dict of placeholder -> value, not %r" % (placeholders,))
    for name, value in placeholders.items():
        if not isinstance(name, type(u"")) and not isinstance(name, str) or not name:
            raise EngineError("placeholders: %r is not a placeholder name (a non-empty string)" % (name,))
        if not isinstance(value, type(u"")) and not isinstance(value, str):
            raise EngineError("placeholders: the value of %s must be a string, not %r" % (name, value))


class ContainerdPlan(Plan):
    """Plan plus the containerd facts the module returns."""

    def __init__(self):
        super(ContainerdPlan, self).__init__()
        self.config_version = None
        self.containerd_version = None
        self.rules = versions.containerd(None)
        self.copies_cri_section = None
        self.layout = None
        self.validate_with_binary = True


def resolve_version(opts, data, rules, name):
    """Config version from the option, the file's key, or (empty file) what the binary's ``config default``
    writes; refused (naming the file and the binary) when this containerd does not load it."""
    want = opts["config_version"]
    if want not in (None, "auto"):
        try:
            v = int(want)
        except (TypeError, ValueError):
            v = None
        if v not in CRI_PATHS:
            raise EngineError("config_version must be auto or one of %s, not %r"
                              % (", ".join(str(x) for x in versions.CONFIG_VERSIONS), want))
    else:
        v = file_version(data, name)
        if v is None:
            v = rules.empty_file_version()
    why = rules.check_config_version(v, name)
    if why:
        raise EngineError(why)
    return v


def file_version(data, name):
    """A config file's own version: its ``version`` key, 1 for a non-empty file without one (containerd reads
    it as version 1), None for an empty file (it gets the binary's default, see resolve_version)."""
    if "version" in data:
        v = data["version"]
        if isinstance(v, bool) or not isinstance(v, int):
            raise EngineError("%s: version must be an integer, found %r" % (name, v))
        return v
    return 1 if data else None


def check_imports(data, config_path):
    imports = data.get("imports")
    if imports is not None and not (isinstance(imports, list) and all(isinstance(x, str) for x in imports)):
        raise EngineError("%s: imports must be a list of paths, found %r" % (config_path, imports))


def import_patterns(entries, config_path, subst=None):
    """``imports`` entries as absolute paths or globs: a relative one is relative to the config's folder
    (``subst`` maps placeholders, e.g. MicroK8s' ${SNAP_DATA}, to their values first)."""
    base = os.path.dirname(os.path.abspath(config_path))
    out = []
    for entry in entries or []:
        if not isinstance(entry, str):
            continue
        for k, v in (subst or {}).items():
            entry = entry.replace(k, v)
        out.append(entry if os.path.isabs(entry) else os.path.join(base, entry))
    return out


def import_paths(data, config_path):
    """Files listed in ``imports`` (globs expanded, relative to the config's folder), in load order."""
    check_imports(data, config_path)
    out = []
    for pattern in import_patterns(data.get("imports"), config_path):
        if glob.has_magic(pattern):
            out.extend(sorted(glob.glob(pattern)))
        elif os.path.exists(pattern):
            out.append(pattern)
    return out


def import_covers(data, config_path, target):
    """True when an ``imports`` entry (path or glob) of the main config already loads ``target``."""
    target = os.path.abspath(target)
    for pattern in import_patterns(data.get("imports"), config_path):
        pattern = os.path.normpath(pattern)
        if pattern == target or (glob.has_magic(pattern) and fnmatch.fnmatchcase(target, pattern)
                                 and os.path.dirname(pattern) == os.path.dirname(target)):
            return True
    return False


def rewrite_imports(text, config_path, exclude=None, append=None):
    """``text`` with ``imports`` made explicit and absolute (globs expanded now), ``exclude`` left out and
    ``append`` added: a main file that can be loaded from another folder (validation, dumps)."""
    ed = Editor(text, config_path)
    data = ed.tt.data
    entries = import_paths(data, config_path)
    for full in import_patterns(data.get("imports"), config_path):   # explicit paths that do not exist yet stay listed
        full = os.path.normpath(full)
        if not glob.has_magic(full) and full not in entries:
            entries.append(full)
    if exclude:
        entries = [e for e in entries if os.path.abspath(e) != os.path.abspath(exclude)]
    if append:
        entries.append(append)
    if entries != data.get("imports") and (entries or "imports" in data):
        ed.set_value((), "imports", entries)
    return ed.text


class Effective(object):
    """The effective CRI runtime settings: (version, runtimes dict, default name, disabled plugins)."""

    def __init__(self, version, data, source):
        self.version = version
        self.data = data
        self.source = source
        cri = get_in(data, CRI_PATHS[version], {}) or {}
        self.runtimes = get_in(cri, ("containerd", "runtimes"), {}) or {}
        self.default = get_in(cri, ("containerd", "default_runtime_name")) or "runc"
        self.disabled = [p for p in (data.get("disabled_plugins") or []) if isinstance(p, str)]
        self.builtin_runtimes = {}


def _dump(binpath, runner, config_path, text=None):
    """``containerd --config F config dump`` (of ``text`` in a temp file when given) -> (version, data)."""
    with fileops.scratch_dir("dump") as scratch:
        if text is not None:
            config_path = os.path.join(scratch, "config.toml")
            with open(config_path, "w") as f:
                f.write(text)
        rc, out, err = runner([binpath, "--config", config_path, "config", "dump"])
    if rc != 0:
        raise EngineError("'%s --config %s config dump' failed (rc=%s): %s" % (binpath, config_path, rc, (err or out).strip()))
    data = load(out, "containerd config dump")
    version = data.get("version", 1)
    if version not in CRI_PATHS:
        raise EngineError("'%s config dump' reports config version %r, which this module does not know (it knows %s)"
                          % (binpath, version, ", ".join(str(x) for x in versions.CONFIG_VERSIONS)))
    return version, data


def effective_from_command(opts, binpath, runner, config_path, main_text, exclude=None, cache=None):
    """``containerd --config F config dump``; without our own drop-in (``exclude``), which a run rewrites.

    Also the build's built-in runtimes (see builtin_runtimes), so that a runtime copied from the dump
    carries only what differs from them (see Context.source_table).
    """
    if not binpath:
        raise EngineError("containerd binary %r not found" % opts["containerd_path"])
    text = None
    if main_text is None or (exclude and os.path.exists(exclude)) or opts.get("placeholders"):
        # containerd 1.x refuses a missing --config (an empty file gives the built-in defaults); our
        # drop-in is left out of a temp copy of the main file (with placeholders: the rendered text)
        text = rewrite_imports(main_text, config_path, exclude) if main_text else ""
    key = fileops.binary_key(binpath) if cache else None    # taken before the dumps: a binary replaced meanwhile misses
    version, data = _dump(binpath, runner, config_path, text)
    eff = Effective(version, data, "command")
    if text == "":
        eff.builtin_runtimes = eff.runtimes
        if cache == "write":
            fileops.cached_put(key, BUILTIN_CACHE_KIND, eff.runtimes)
    else:
        eff.builtin_runtimes = builtin_runtimes(binpath, runner, config_path, cache, key)
    return eff


BUILTIN_CACHE_KIND = "containerd-builtin-runtimes"


def builtin_runtimes(binpath, runner, config_path, cache=None, key=None):
    """The runtimes of ``<binary> --config <empty file> config dump``: the build's built-in ones, which only
    a new binary changes. ``cache`` "read" (check mode) takes them from the node's per-binary cache when it
    holds them for this binary as it is now (fileops.cached_get, ``key`` from fileops.binary_key); "write" (a
    real run) also stores a fresh dump there; None (the default): always dumped, nothing read or stored."""
    if cache:
        if key is None:
            key = fileops.binary_key(binpath)
        hit = fileops.cached_get(key, BUILTIN_CACHE_KIND)
        if isinstance(hit, dict):
            return hit
    runtimes = Effective(*_dump(binpath, runner, config_path, "") + ("command",)).runtimes
    if cache == "write":
        fileops.cached_put(key, BUILTIN_CACHE_KIND, runtimes)
    return runtimes


def effective_from_files(opts, version, main_data, config_path, rules, exclude=None):
    """Main file plus its imports (without our own drop-in), merged the way this containerd merges them."""
    merged = copy.deepcopy(main_data)
    rules = rules.guess_for_file(version)
    replace = version == 1 or not rules.imports_deep_merge
    for path in import_paths(main_data, config_path):
        if exclude and os.path.abspath(path) == os.path.abspath(exclude):
            continue
        text = read_text(path)
        if text is None:
            continue
        data = load(text, path)
        for k, v in data.items():
            if k == "plugins" and isinstance(v, dict):
                plugins = merged.setdefault("plugins", {})
                for pk, pv in v.items():
                    if replace or not isinstance(plugins.get(pk), dict) or not isinstance(pv, dict):
                        plugins[pk] = copy.deepcopy(pv)
                    else:
                        deep_merge(plugins[pk], pv)
            elif k not in ("version", "imports"):
                merged[k] = copy.deepcopy(v)
    eff = Effective(version, merged, "file")
    cri_runtimes = get_in(merged, CRI_PATHS[version] + ("containerd", "runtimes"))
    builtin = {"runc": dict(BUILTIN_RUNC)}
    if cri_runtimes is None:
        eff.runtimes = builtin
    elif not rules.file_runtimes_replace_builtin:
        eff.runtimes = deep_merge(builtin, cri_runtimes)
    return eff


class Context(object):
    """Everything the patch of one target file needs to know."""

    def __init__(self, opts, version, eff, rules, file_tables):
        self.opts = opts
        self.version = version
        self.cri = CRI_PATHS[version]
        self.rt = self.cri + ("containerd", "runtimes")
        self.eff = eff
        self.rules = rules.guess_for_file(version)   # unknown binary: what loads a file of this version
        self.file_tables = file_tables    # runtime tables as written in the main file (+imports)
        self.ours = handler_names(opts)
        self.replaces_builtin = self.rules.file_runtimes_replace_builtin
        self.foreign = []                 # handler tables named ours that absent leaves (not written by us)

    def resolve(self, value):
        """A value read from a file we write, as the reader sees it once the ``placeholders`` are rendered."""
        return render_placeholders(value, self.opts["placeholders"])

    def owner_table(self, name):
        """The handler table as defined in a file we do not write, when containerd merges ours over it key by
        key; None otherwise. Not for k0s (manage_imports=False): the files it generates hold our own drop-in."""
        merges = self.rules.imports_deep_merge and self.opts["manage_imports"]
        table = self.file_tables.get(name)
        return copy.deepcopy(table) if merges and isinstance(table, dict) else None

    def source_name(self, default_name):
        want = self.opts["copy_options_from"]
        known = set(self.eff.runtimes) | set(self.file_tables)
        if want:
            if want in self.ours:
                raise EngineError("copy_options_from must name a runtime other than ours (%s)" % ", ".join(self.ours))
            if want not in known:
                raise EngineError("copy_options_from: runtime %r is not configured (known: %s)"
                                  % (want, ", ".join(sorted(known)) or "none"))
            return want
        if default_name not in self.ours:
            if default_name in known or default_name == "runc":   # runc: containerd's built-in
                return default_name
            raise EngineError("default_runtime_name = %r names no configured runtime (known: %s): the CRI plugin "
                              "cannot load this config; fix it first" % (default_name, ", ".join(sorted(known)) or "none"))
        for name in ("runc", "crun"):
            if name in known:
                return name
        return "runc"

    def source_table(self, name, target_data):
        """The source runtime's table: as written in the target file (verbatim), else from the main file,
        its imports or the effective config (only what is not a default, see _essential), else
        containerd's built-in runc."""
        t = get_in(target_data, self.rt + (name,))
        if isinstance(t, dict):
            return copy.deepcopy(t), True
        if name in self.file_tables:
            return self._essential(name, self.file_tables[name]), False
        if name in self.eff.runtimes:
            return self._essential(name, self.eff.runtimes[name]), False
        return dict(BUILTIN_RUNC), False

    def _essential(self, name, table):
        """A table copied into another file carries what differs from this build's built-in runtime.

        A dump (or a generated file such as k0s's containerd-cri.toml) lists every field; keeping only
        what is not a default makes a copy taken before the runtime existed (bootstrap: the built-in runc)
        and one taken after it was installed agree. Without the build's defaults: the table as it is.
        """
        builtin = self.eff.builtin_runtimes
        if not builtin:
            return copy.deepcopy(table)
        out = strip_defaults(prune_zero(table), builtin.get(name) or builtin.get("runc") or {})
        out["runtime_type"] = table.get("runtime_type") or BUILTIN_RUNC["runtime_type"]
        return out


def strip_defaults(table, base):
    """``table`` without the keys whose value equals ``base``'s (recursively; emptied sub-tables go)."""
    out = {}
    for k, v in table.items():
        b = base.get(k) if isinstance(base, dict) else None
        if isinstance(v, dict):
            v = strip_defaults(v, b if isinstance(b, dict) else {})
            if v:
                out[k] = v
        elif v != b:
            out[k] = v
    return out


def owned_handler(cur, source, binary, runtime_type):
    """What an existing handler table becomes: the owner's keys stay; we own ``options.BinaryName``,
    ``runtime_type`` (only when empty) and ``options.SystemdCgroup`` (equal to the wrapped runtime's: a
    mismatch with the kubelet's cgroup driver kills pods); keys it lacks come from the wrapped runtime."""
    want = copy.deepcopy(cur)
    for k, v in prune_zero(source).items():     # a Go zero value is what an unset key means anyway
        if k not in want:
            want[k] = copy.deepcopy(v)
        elif isinstance(v, dict) and isinstance(want[k], dict):
            for sk, sv in v.items():
                want[k].setdefault(sk, copy.deepcopy(sv))
    if not want.get("runtime_type"):
        want["runtime_type"] = source.get("runtime_type") or runtime_type
    options = want.get("options")
    if not isinstance(options, dict):
        options = want["options"] = {}
    options["BinaryName"] = binary
    src_options = source.get("options") if isinstance(source.get("options"), dict) else {}
    if options.get("SystemdCgroup", False) != src_options.get("SystemdCgroup", False):
        options["SystemdCgroup"] = src_options.get("SystemdCgroup", False)
    return want


def _patch_owned(ed, path, cur, want):
    """Edit the operator's handler table key by key towards ``want`` (every edit recorded for absent);
    a missing sub-table is added as ours after the table's family."""
    for k, v in want.items():
        if isinstance(v, dict):
            if isinstance(cur.get(k), dict):
                for sk, sv in v.items():
                    if cur[k].get(sk, _MISSING) != sv:
                        ed.set_value(path + (k,), sk, sv)
            else:
                h = ed.tt.header(path)
                step = detect_step(ed.tt, h) if h is not None else "  "
                ed.add_table(path + (k,), v, after=path, indent=(h.indent + step) if h is not None and h.indent else "",
                             step=step)
        elif cur.get(k, _MISSING) != v:
            ed.set_value(path, k, v)


_MISSING = object()


def _restore_owned(ed, path):
    """Undo our recorded edits inside the operator's table ``path`` (and its sub-tables). True when it held any."""
    found = False
    for h in list(ed.tt.headers_under(path)):
        if h.path != tuple(path) and h.marker == "added":
            ed.remove_table(h.path)
            found = True
    for sub in [tuple(path)] + [h.path for h in ed.tt.headers_under(path) if h.path != tuple(path)]:
        table = ed.tt.get(sub)
        for key in list(table) if isinstance(table, dict) else []:
            if not isinstance(table[key], dict) and ed.marker_of(sub, key) is not None:
                ed.undo_value(sub, key)
                found = True
    return found


def handler_table(source, binary, runtime_type):
    t = copy.deepcopy(source)
    if not t.get("runtime_type"):
        t["runtime_type"] = runtime_type
    opts = t.get("options")
    if not isinstance(opts, dict):
        opts = {}
    opts["BinaryName"] = binary
    t["options"] = opts
    return t


def patch(ed, ctx):
    """Apply our edits on one target file. Returns (default runtime after, low-level runtime)."""
    opts = ctx.opts
    data = ed.tt.data
    require_tables(data, ctx.rt, ed.name)
    for name in ctx.ours:
        require_tables(data, ctx.rt + (name, "options"), ed.name)
    current_default = ctx.resolve(get_in(data, ctx.cri + ("containerd", "default_runtime_name"))) or ctx.eff.default
    binaries = handler_binaries(opts)

    # which runtime the handlers copy: the default unless it is ours (then runc, then crun)
    base_default = current_default
    if base_default in ctx.ours:
        base_default = ctx.resolve(_original_default(ed, ctx)) or "runc"
    src_name = ctx.source_name(base_default)
    src_table, src_in_target = ctx.source_table(src_name, data)
    if src_name in ctx.ours:
        raise EngineError("cannot copy runtime options from %s: it is one of ours" % src_name)

    # handlers no longer wanted (a variant dropped from the options) that we wrote earlier
    for h in runtime_headers(ed, ctx.rt):
        name = h.path[-1]
        if name not in ctx.ours and is_variant(name, opts) and h.marker is not None:
            ed.remove_table(h.path)

    # where a file's runtimes map replaces the built-in one (rules.file_runtimes_replace_builtin): keep the copy source in it
    need_in_file = []
    if ctx.replaces_builtin:
        need_in_file.append(src_name)

    if ctx.replaces_builtin and get_in(ed.tt.data, ctx.rt + (src_name,)) is None:
        after, indent, step = layout_for(ed, ctx.rt, None)
        ed.add_table(ctx.rt + (src_name,), src_table, after=after, indent=indent, step=step)
        src_in_target = True
    prev = src_name if src_in_target else None
    for name in ctx.ours:
        want = handler_table(src_table, binaries[name], opts["runtime_type"])
        path = ctx.rt + (name,)
        cur = get_in(ed.tt.data, path)
        h = ed.tt.header(path)
        if cur is None:
            owner = ctx.owner_table(name)
            if owner is not None:   # defined in a file we do not write, merged with ours: only the difference
                want = strip_defaults(owned_handler(owner, src_table, binaries[name], opts["runtime_type"]), owner)
            after, indent, step = layout_for(ed, ctx.rt, prev)
            ed.add_table(path, want, after=after, indent=indent, step=step)
        elif not isinstance(cur, dict):
            raise EngineError("%s: %s must be a table, found a value" % (ed.name, ".".join(path)))
        elif h is not None and h.marker is not None:   # a table of ours: it follows the wrapped runtime
            if cur != want:
                ed.write_table(path, want)
        else:                                           # the operator's table: keep what they set
            _patch_owned(ed, path, cur, owned_handler(cur, src_table, binaries[name], opts["runtime_type"]))
        prev = name

    # default runtime
    cpath = ctx.cri + ("containerd",)
    if opts["set_as_default"]:
        ed.set_value(cpath, "default_runtime_name", opts["runtime_name"])
        final_default = opts["runtime_name"]
    else:
        marker = ed.marker_of(cpath, "default_runtime_name")
        if marker is not None:
            ed.undo_value(cpath, "default_runtime_name")
        cur = get_in(ed.tt.data, cpath + ("default_runtime_name",))
        if cur in ctx.ours:
            ed.delete_key(cpath, "default_runtime_name")
            cur = None
        final_default = ctx.resolve(cur) or (ctx.eff.default if ctx.eff.default not in ctx.ours else "runc")
    if ctx.replaces_builtin and final_default not in ctx.ours:
        need_in_file.append(final_default)

    # where the file's runtimes map replaces the built-in one, it must hold the default (and source)
    for name in need_in_file:
        if get_in(ed.tt.data, ctx.rt + (name,)) is None:
            table = ctx.source_table(name, ed.tt.data)[0]
            after, indent, step = layout_for(ed, ctx.rt, None)
            ed.add_table(ctx.rt + (name,), table, after=after, indent=indent, step=step)

    # CDI (not written where the effective config already enables it, e.g. containerd 2.x's default)
    eff_cdi = get_in(ctx.eff.data, CRI_PATHS[ctx.eff.version] + ("enable_cdi",))
    if opts["enable_cdi"] and not (eff_cdi is True and get_in(ed.tt.data, ctx.cri + ("enable_cdi",)) is None
                                   and ed.marker_of(ctx.cri, "enable_cdi") is None):
        ed.set_value(ctx.cri, "enable_cdi", True)
        if opts.get("cdi_spec_dirs"):
            ed.set_value(ctx.cri, "cdi_spec_dirs", list(opts["cdi_spec_dirs"]))
        elif ed.marker_of(ctx.cri, "cdi_spec_dirs"):
            ed.undo_value(ctx.cri, "cdi_spec_dirs")
    else:
        ed.undo_value(ctx.cri, "cdi_spec_dirs")
        ed.undo_value(ctx.cri, "enable_cdi")

    low = src_table.get("options", {}).get("BinaryName") if isinstance(src_table.get("options"), dict) else None
    return final_default, (low or _shim_default_binary(src_table) or src_name)


# containerd's runc shims run `runc` (found on PATH) when options.BinaryName is empty, whatever the runtime's name
RUNC_SHIMS = ("io.containerd.runc.v2", "io.containerd.runc.v1", "io.containerd.runtime.v1.linux")


def _shim_default_binary(table):
    """The program a runtime table runs when it names none: runc for the runc shims, else unknown (None)."""
    return "runc" if (table.get("runtime_type") or BUILTIN_RUNC["runtime_type"]) in RUNC_SHIMS else None


def _original_default(ed, ctx):
    """The default runtime before we replaced it (from our record), if any."""
    cpath = ctx.cri + ("containerd",)
    if ed.marker_of(cpath, "default_runtime_name") != "replaced":
        return None
    idx = ed.tt.key_line(cpath, "default_runtime_name")
    comment = ed.tt.split_key_line(idx)[3]
    try:
        return load("k = " + comment[len(REPLACED):]).get("k")
    except TomlEditError:
        return None


def unpatch(ed, ctx, only_marked=False):
    """Undo every edit of ours in one file: tables we added go, tables we patched get their original bytes back.

    A handler table named like ours that this module never wrote nor edited is someone else's: it stays (absent
    restores the bytes the module found, and a second absent changes nothing), and ``ctx.foreign`` names it so
    the caller can warn that containerd still loads it. One written as dotted keys or an inline table is an
    error (``present`` refuses such a file too). ``only_marked``: the main file in drop-in mode (no warning).
    """
    cpath = ctx.cri + ("containerd",)
    ed.undo_value(cpath, "default_runtime_name")
    names = set(ctx.ours)
    for h in list(runtime_headers(ed, ctx.rt)):
        name = h.path[-1]
        variant = is_variant(name, ctx.opts)
        if h.marker is None:
            if name in names and not _restore_owned(ed, h.path) and not only_marked:
                ctx.foreign.append("%s (%s, line %d)" % (name, ed.name, h.index + 1))
        elif name in names or variant:
            ed.remove_table(h.path)
    for h in list(runtime_headers(ed, ctx.rt)):
        if h.marker == "added":
            ed.remove_table(h.path)
    cur = get_in(ed.tt.data, cpath + ("default_runtime_name",))
    if cur in ctx.ours and get_in(ed.tt.data, ctx.rt + (cur,)) is None and not only_marked:
        ed.delete_key(cpath, "default_runtime_name")   # never a default naming a handler that is gone
    if not only_marked:
        left = [n for n in ctx.ours if get_in(ed.tt.data, ctx.rt + (n,)) is not None and ed.tt.header(ctx.rt + (n,)) is None]
        if left:
            raise EngineError("%s: the %s handler is written as dotted keys or an inline table under [%s], which this "
                              "module cannot remove safely; remove it by hand (or write it as a [table])"
                              % (ed.name, ", ".join(left), ".".join(ctx.rt)))
    ed.undo_value(ctx.cri, "cdi_spec_dirs")
    ed.undo_value(ctx.cri, "enable_cdi")
    final = ctx.resolve(get_in(ed.tt.data, cpath + ("default_runtime_name",))) or ctx.eff.default
    return (final if final not in ctx.ours or get_in(ed.tt.data, ctx.rt + (final,)) is not None else "runc"), None


def _file_runtime_tables(version, main_data, imports_data):
    rt = CRI_PATHS[version] + ("containerd", "runtimes")
    out = {}
    for data in [main_data] + imports_data:
        tables = get_in(data, rt)
        if isinstance(tables, dict):
            for k, v in tables.items():
                if isinstance(v, dict):
                    out[k] = v
    return out


def _patch_enable_cri(ed, opts, present, plan, name):
    """disabled_plugins: drop the CRI plugin ids when asked; undo on absent / enable_cri false."""
    cur = ed.tt.data.get("disabled_plugins")
    if present and opts["enable_cri"]:
        if isinstance(cur, list):
            keep = [p for p in cur if p not in CRI_PLUGIN_IDS]
            if keep != cur:
                ed.set_value((), "disabled_plugins", keep)
        return
    ed.undo_value((), "disabled_plugins")
    cur = ed.tt.data.get("disabled_plugins")
    if present and isinstance(cur, list) and any(p in CRI_PLUGIN_IDS for p in cur):
        plan.warnings.append(
            "%s disables the CRI plugin (disabled_plugins = %s, as Docker's containerd.io ships it): the "
            "nvidia handler will not be used by Kubernetes until CRI is enabled. Set enable_cri: true to "
            "remove it." % (name, cur))


def _options(opts):
    o = dict(DEFAULTS)
    o.update({k: v for k, v in opts.items() if v is not None or k in ("drop_in", "copy_options_from")})
    if o["layout"] not in (None,) + LAYOUTS:
        raise EngineError("layout must be one of %s, not %r" % (", ".join(LAYOUTS), o["layout"]))
    if o["layout"] in ("auto", "drop_in") and not o["drop_in"]:
        raise EngineError("layout: %s needs drop_in (the file to write our tables to)" % o["layout"])
    check_names(o)
    check_placeholders(o["placeholders"])
    o["containerd_version"] = given_version(o["containerd_version"])
    if o["drop_in"] and os.path.realpath(o["drop_in"]) == os.path.realpath(o["config"]):
        raise EngineError("drop_in (%s) and config (%s) are the same file: leave drop_in unset to edit config in place, "
                          "or name another file" % (o["drop_in"], o["config"]))
    return o


def given_version(value):
    """The ``containerd_version`` option (the version of ``containerd_path`` read earlier in this run, e.g. by
    the facts module) as a tuple, read by the parser of ``containerd --version`` (common.parse_version);
    None when not given. EngineError naming the option for anything else."""
    if value is None or isinstance(value, tuple):
        return value
    v = parse_version("containerd %s" % value) if isinstance(value, (str, type(u""))) and len(value.split()) == 1 else None
    if v is None:
        raise EngineError("containerd_version must be a version such as 1.7.24 (what containerd --version prints, "
                          "e.g. the fact nvidia_runtime.engines[engine].version), not %r; nothing was changed" % (value,))
    return v


def version_of(opts, binpath, runner):
    """The version of the containerd binary found at ``binpath``: ``containerd_version`` when given (read once
    per run), else ``containerd --version``."""
    return opts["containerd_version"] or read_binary_version(binpath, runner)


def _rules(opts, p, binpath, runner, binary_version):
    """The version rules of the containerd that will load the files (and of k0s, when it merges them)."""
    binver = version_of(opts, binpath, runner) if binpath else binary_version
    p.containerd_version = binver
    k0s = versions.k0s(opts["k0s_version"]) if opts["k0s_version"] else None
    if k0s is not None:
        why = k0s.refusal()
        if why:
            raise EngineError(why)
        if k0s.known and binver is None:
            binver = k0s.containerd       # bootstrap: the containerd this k0s will bring
        elif k0s.known and not k0s.bundles(binver):
            # an upgrade (or a bootstrap): write for the containerd the stated k0s bundles
            p.warnings.append(
                "%s is containerd %s, but %s bundles containerd %s: the drop-in is written for %s; it is checked by k0s "
                "and its containerd when they start" % (binpath or opts["containerd_path"], versions.vstr(binver),
                                                        k0s.describe(), versions.vstr(k0s.containerd[:2]), k0s.describe()))
            binver = k0s.containerd
            p.validate_with_binary = False
    return versions.containerd(binver), k0s


def plan(opts, runner=default_runner, binary_version=None, cache=None):
    """Compute the changes for ``opts`` (see DEFAULTS). Raises EngineError/TomlEditError on bad input.

    ``binary_version`` (a tuple) stands in for the version of an absent binary, e.g. the containerd a
    node will run once installed. ``cache``: the node's per-binary cache of the built-in runtimes (see
    builtin_runtimes): None (default) neither reads nor writes it, "read" (check mode), "write" (a real run).
    """
    opts = _options(opts)
    present = opts["state"] == "present"
    p = ContainerdPlan()
    p.main_path = opts["config"]

    binpath = which(opts["containerd_path"])
    rules, k0s = _rules(opts, p, binpath, runner, binary_version)
    p.rules = rules

    config = opts["config"]
    if os.path.isdir(config):
        raise EngineError("config %s is a directory" % config)
    main_text = read_text(config)
    main_tt = TomlText(main_text or "", config)
    main_data = main_tt.data
    if k0s is not None and k0s.known and opts["config_version"] in (None, "auto"):
        opts["config_version"] = str(k0s.drop_in_version)   # k0s merges drop-ins of its own version
    version = resolve_version(opts, main_data, rules, config)
    if k0s is not None and k0s.known and version != k0s.drop_in_version:
        raise EngineError("config_version %s does not fit %s, which takes version %d drop-ins"
                          % (version, k0s.describe(), k0s.drop_in_version))
    check_imports(main_data, config)
    require_tables(main_data, CRI_PATHS[version] + ("containerd", "runtimes"), config)
    p.config_version = version
    layout = opts["layout"] or ("drop_in" if opts["drop_in"] else "in_place")
    if layout == "auto":
        layout = rules.guess_for_file(version).auto_layout() if opts["manage_imports"] else "drop_in"
    p.layout = layout
    if layout == "in_place":
        opts["drop_in"] = None
    elif opts["placeholders"]:
        raise EngineError("placeholders need layout in_place: %s is rendered before containerd reads it, a drop-in "
                          "beside it would not be" % config)

    eff = _effective(opts, binpath, runner, config, main_text, main_data, version, rules, cache)
    p.source = eff.source
    # (the effective config is read with the paths of the dump's own version; we write the file's version)
    imports_data = []
    for path in import_paths(main_data, config):
        t = read_text(path)
        if t is not None and (not opts["drop_in"] or os.path.abspath(path) != os.path.abspath(opts["drop_in"])):
            imports_data.append(load(t, path))
    ctx = Context(opts, version, eff, rules, _file_runtime_tables(version, main_data, imports_data))
    p.runtimes = ctx.ours if present else []

    main_ed = Editor.from_tomltext(main_tt)      # the text read above, not parsed again
    if opts["drop_in"]:
        _plan_drop_in(p, ctx, opts, present, main_ed, main_text)
    else:
        if main_text is None:
            if not present:
                p.default_runtime = ctx.eff.default if ctx.eff.default not in ctx.ours else "runc"
                return p
            main_ed = _created(version, config)
        elif not main_data and present:
            main_ed.set_value((), "version", version)     # an empty file: say which version we write
        if present:
            p.default_runtime, p.low_level_runtime = patch(main_ed, ctx)
        else:
            p.default_runtime = unpatch(main_ed, ctx)[0]
        _patch_enable_cri(main_ed, opts, present, p, config)
        p.files.append(FileChange(config, main_text, _uncreated(main_ed, present)))
    if present and p.low_level_runtime is None:
        p.low_level_runtime = "runc"
    if ctx.foreign:
        p.warnings.append("state=absent left the handler table %s: this module did not write it (or restored it to "
                          "what it was), so containerd still loads it; remove it by hand if it should go"
                          % ", ".join(ctx.foreign))
    return p


def _created(version, config):
    ed = Editor(CREATED_HEADER, config)
    ed.set_value((), "version", version)
    return ed


def _uncreated(ed, present):
    """The main file's text after the edits; None (delete it) on absent when this module created it and
    nothing but our own edits is in it."""
    if not present and ed.marker_of((), "version") == "added" and list(ed.tt.data) == ["version"]:
        ed.undo_value((), "version")
    if not present and ed.text.startswith(CREATED_HEADER) and not ed.text[len(CREATED_HEADER):].strip():
        return None
    return ed.text


def _effective(opts, binpath, runner, config, main_text, main_data, version, rules, cache=None):
    """The effective config, from the first source in ``config_source`` that works (without our drop-in);
    of the main file as rendered when it has placeholders."""
    if opts["placeholders"] and main_text:
        main_text = render_placeholders(main_text, opts["placeholders"])
        main_data = load(main_text, "%s (placeholders rendered)" % config)
    own_drop = None
    if opts["drop_in"]:
        drop_text = read_text(opts["drop_in"])
        if drop_text is None or drop_text.startswith(DROP_IN_HEADER):
            own_drop = opts["drop_in"]
    _src, eff = pick_source(opts["config_source"], {
        "command": lambda: effective_from_command(opts, binpath, runner, config, main_text, own_drop, cache),
        "file": lambda: effective_from_files(opts, version, main_data, config, rules, own_drop),
    })
    return eff


def _plan_drop_in(p, ctx, opts, present, main_ed, main_text):
    """Drop-in mode: our tables go to ``drop_in``; the main file gets the imports entry (if managed)."""
    config, drop = opts["config"], opts["drop_in"]
    version = ctx.rules.drop_in_version(ctx.version)
    # containerd itself imports the file and (before deep merge, and for v1 files) replaces whole plugin
    # sections: then the drop-in carries the main file's whole CRI section
    copy_cri = opts["manage_imports"] and (ctx.version == 1 or not ctx.rules.drop_in_layout())
    p.copies_cri_section = copy_cri

    # main file: undo in-place edits of an earlier run without drop_in, manage imports and CRI enablement
    if main_text is not None:
        unpatch(main_ed, ctx, only_marked=True)
    elif present and opts["manage_imports"]:
        main_ed = _created(ctx.version, config)
    main_change = None
    if main_text is not None or (present and opts["manage_imports"]):
        if opts["manage_imports"]:
            _patch_imports(main_ed, opts, present, config, drop)
        _patch_enable_cri(main_ed, opts, present, p, config)
        main_change = FileChange(config, main_text, _uncreated(main_ed, present))
        # order of writes: the drop-in exists before the main file imports it, and is deleted after
        if not present:
            p.files.append(main_change)

    drop_text = read_text(drop)
    ours_file = drop_text is None or drop_text.startswith(DROP_IN_HEADER)
    if not ours_file:
        if copy_cri:
            raise EngineError(
                "drop_in %s exists and is not managed by this module; %s replaces whole plugin sections from "
                "imported files, so the drop-in must carry the main file's whole CRI section and cannot be merged "
                "into a foreign file" % (drop, ctx.rules.describe()))
        ed = Editor(drop_text, drop)
        if present:
            p.default_runtime, p.low_level_runtime = patch(ed, ctx)
        else:
            p.default_runtime = unpatch(ed, ctx)[0]
        p.files.insert(0 if present else len(p.files), FileChange(drop, drop_text, ed.text))
        return
    if not present:
        p.files.append(FileChange(drop, drop_text, None))
        p.default_runtime = unpatch(Editor(main_ed.text, config), ctx)[0]
        return
    if main_change is not None:
        p.files.append(main_change)
    base = DROP_IN_HEADER + "version = %d\n" % version
    cri_section = get_in(main_ed.tt.data, ctx.cri)
    if copy_cri and cri_section:
        base += "\n" + _render_section(ctx.cri, cri_section)
        p.warnings.append(
            "%s replaces whole plugin sections from imported files: %s carries a copy of the CRI "
            "section of %s; later edits of that section in %s are shadowed until this module runs again"
            % (ctx.rules.describe(), drop, config, config))
    ed = Editor(base, drop)
    p.default_runtime, p.low_level_runtime = patch(ed, ctx)
    p.files.insert(len(p.files) - (1 if main_change is not None else 0), FileChange(drop, drop_text, ed.text))


def _patch_imports(ed, opts, present, config, drop):
    """Add (present) or remove (absent) our drop-in in the main file's ``imports``."""
    data = ed.tt.data
    if not present:
        ed.undo_value((), "imports")
        return
    if import_covers(data, config, drop):
        return
    cur = data.get("imports")
    if cur is not None and not isinstance(cur, list):
        raise EngineError("%s: imports must be a list, found %r" % (config, cur))
    ed.set_value((), "imports", list(cur or []) + [drop])


def _render_section(path, section):
    """A copy of a table (plain data) as TOML text under its full path."""
    return render_tables(path, section)


__all__ = ["plan", "validate", "ContainerdPlan", "Plan", "FileChange", "EngineError", "DEFAULTS", "CRI_PATHS",
           "is_zero", "parse_version", "Adapter"]


def validate(p, opts, binpath, runner=default_runner):
    """Load the candidate files with the real containerd (``config dump``) before anything is replaced.

    The candidates are written to a temp folder; the main file's imports are pointed at the candidate
    drop-in. The dump must show every handler of ours with its BinaryName and a default runtime that
    exists (unless k0s merges the drop-in: ``manage_imports=False``). Raises EngineError.
    """
    if not p.validate_with_binary:
        return
    present = opts.get("state", "present") == "present"
    config = opts["config"]
    drop = opts.get("drop_in") if p.layout != "in_place" else None
    after = {os.path.abspath(f.path): f.after for f in p.files}
    with fileops.scratch_dir("validate") as tmpdir:
        if drop and not opts.get("manage_imports", True):
            if not present:
                return
            cand_text = after.get(os.path.abspath(drop)) or ""   # k0s merges it into its own config
        else:
            if os.path.abspath(config) in after:
                main_text = after[os.path.abspath(config)] or ""    # None: the file is deleted
            else:
                main_text = read_text(config) or ""
            main_text = render_placeholders(main_text, opts.get("placeholders"))   # bytes written keep them
            cand_drop = None
            if drop and after.get(os.path.abspath(drop)) is not None:
                cand_drop = os.path.join(tmpdir, "drop-in.toml")
                with open(cand_drop, "w") as f:
                    f.write(after[os.path.abspath(drop)])
            cand_text = rewrite_imports(main_text, config, exclude=drop, append=cand_drop)
        cand_main = os.path.join(tmpdir, "config.toml")
        with open(cand_main, "w") as f:
            f.write(cand_text)
        rc, out, err = runner([binpath, "--config", cand_main, "config", "dump"])
    if rc != 0:
        bom = [path for path, text in after.items() if text and text.startswith(u"\ufeff")]
        raise EngineError("containerd rejected the new config (%s --config <candidate> config dump, rc=%s): %s%s"
                          % (binpath, rc, (err or out).strip(),
                             "; %s starts with a UTF-8 byte order mark (BOM), which %s refuses (1.x reads it): remove it"
                             % (", ".join(bom), p.rules.describe()) if bom else ""))
    dump = load(out, "containerd config dump")
    if any(x in CRI_PLUGIN_IDS for x in dump.get("disabled_plugins") or []):
        return   # the CRI plugin is disabled: containerd loads none of its config (warned about already)
    dversion = dump.get("version", 1)
    if dversion not in CRI_PATHS:
        raise EngineError("'%s config dump' reports config version %r, which this module does not know (it knows %s)"
                          % (binpath, dversion, ", ".join(str(x) for x in versions.CONFIG_VERSIONS)))
    cri = get_in(dump, CRI_PATHS[dversion], {}) or {}    # the dump's own version, not the file's
    runtimes = get_in(cri, ("containerd", "runtimes"), {}) or {}
    default = get_in(cri, ("containerd", "default_runtime_name")) or "runc"
    if present:
        for name, binary in handler_binaries(opts).items():
            got = get_in(runtimes, (name, "options", "BinaryName"))
            if got != render_placeholders(binary, opts.get("placeholders")):
                raise EngineError(
                    "containerd does not load the %s handler from the new config (it reports BinaryName %r); is "
                    "the CRI section shadowed by an imported file? Use drop_in to write beside it." % (name, got))
    if not present and opts.get("manage_imports", True):
        left = [n for n in handler_binaries(opts) if get_in(runtimes, (n, "options", "BinaryName")) == handler_binaries(opts)[n]]
        if left:
            p.warnings.append("containerd still loads the %s handler after state=absent: it is defined in a file or "
                              "table this module did not write; remove it there" % ", ".join(left))
    if opts.get("manage_imports", True) and default not in runtimes:
        raise EngineError("with the new config containerd's CRI plugin would not load: default_runtime_name = %r "
                          "is not among its runtimes (%s)" % (default, ", ".join(sorted(runtimes)) or "none"))
    if present and opts.get("enable_cdi") and (cri.get("enable_cdi") is not True or not p.rules.cdi):
        p.warnings.append("this containerd does not support CDI (enable_cdi is not in its config; CDI needs "
                          "containerd >= 1.7): enable_cdi has no effect")


def ctr_for(binpath):
    """The ctr client beside containerd, else on PATH."""
    if binpath:
        cand = os.path.join(os.path.dirname(binpath), "ctr")
        if os.access(cand, os.X_OK):
            return cand
    return which("ctr")


def cri_plugin_status(ctr, socket_path, runner=default_runner):
    """{'type id': status} of the CRI plugin rows reported by ``ctr plugins ls`` (None when ctr fails)."""
    rc, out, _err = runner([ctr, "--address", socket_path, "plugins", "ls"])
    if rc != 0:
        return None
    return parse_plugins_ls(out)


def parse_plugins_ls(out):
    """``ctr plugins ls`` output -> {'type id': status} of its CRI plugin rows."""
    rows = set(r for major in versions.CRI_HEALTH_ROWS.values() for r in major)
    found = {}
    for line in (out or "").splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 3 and (cols[0], cols[1]) in rows:
            found["%s %s" % (cols[0], cols[1])] = cols[-1]
    return found


def cri_healthy(status, rules):
    """The one CRI health rule (module and role): every CRI row this containerd has is listed and ``ok``
    (1.x: io.containerd.grpc.v1 cri; 2.x: that and io.containerd.cri.v1 runtime). Unknown version: every
    row found ok, and the gRPC service among them."""
    if not status:
        return False
    rows = rules.health_rows if rules.known else (("io.containerd.grpc.v1", "cri"),)
    return all(status.get("%s %s" % r) == "ok" for r in rows) and all(v == "ok" for v in status.values())


def cri_expected(p):
    """False when the final main config disables the CRI plugin (then its health is not required)."""
    for f in p.files:
        if f.after is not None and f.path == p.main_path:
            try:
                data = load(f.after)
            except TomlEditError:
                return True
            return not any(x in CRI_PLUGIN_IDS for x in data.get("disabled_plugins") or [])
    return True


# -- state: query ---------------------------------------------------------------------------------------
def cri_view(eff):
    """What an effective config (an ``Effective``) says about the CRI handlers: ``config_version``,
    ``runtimes`` (handler -> its ``options.BinaryName``), ``handlers`` (the tables), ``default_runtime``,
    ``enable_cdi`` and ``cri_disabled`` (``disabled_plugins`` names the CRI plugin)."""
    cri = get_in(eff.data, CRI_PATHS[eff.version], {}) or {}
    return runtime_view(eff.runtimes, ("options", "BinaryName"), eff.default, config_version=eff.version,
                        enable_cdi=cri.get("enable_cdi") is True, cri_disabled=any(x in CRI_PLUGIN_IDS for x in eff.disabled))


def query(opts, socket_path=None, runner=default_runner):
    """``state: query``, read only: the CRI view (see cri_view) of ``config`` (rendered with ``placeholders``)
    as the first ``config_source`` that works reads it -- ``command``: ``containerd --config F config dump``; ``file``: F and its imports,
    merged the way a containerd that loads a file of that version merges them -- and, when something answers
    on ``socket_path``, the CRI health (``ctr plugins ls``, judged by cri_healthy). Raises EngineError."""
    opts = _options(opts)
    config = opts["config"]
    binpath = which(opts["containerd_path"])
    main_text = read_text(config)
    rendered = render_placeholders(main_text, opts["placeholders"])   # as the reader sees it (same text without)
    main_data = load(rendered or "", config)

    def from_command():
        if not binpath:
            raise EngineError("containerd binary %r not found" % opts["containerd_path"])
        # containerd 1.x refuses a missing --config: an absent file is dumped as an empty one; a rendered
        # template is dumped from a temp copy
        text = "" if main_text is None else (None if rendered == main_text else rendered)
        return Effective(*_dump(binpath, runner, config, text) + ("command",))

    def from_files():
        version = file_version(main_data, config)
        if version is None:
            return Effective(versions.containerd(None).empty_file_version(), {}, "file")
        why = versions.containerd(None).check_config_version(version, config)
        if why:
            raise EngineError(why)
        return effective_from_files(opts, version, main_data, config, versions.containerd(None))

    source, eff = pick_source(opts["config_source"], {"command": from_command, "file": from_files})
    out = dict(source=source, view=cri_view(eff), containerd_version=None, cri_health=None)
    if socket_path and service.socket_answers(socket_path):
        rules = versions.containerd(None)     # the health rule depends on the major version
        if binpath:
            try:
                rules = versions.containerd(version_of(opts, binpath, runner))
                out["containerd_version"] = versions.vstr(rules.version)
            except EngineError:
                pass
        ctr = ctr_for(binpath)
        status = cri_plugin_status(ctr, socket_path, runner=runner) if ctr else None
        out["cri_health"] = dict(ctr=ctr, plugins=status, healthy=None if status is None else cri_healthy(status, rules))
    return out


# -- the module's part of the shared flow (_runtime_flow) -----------------------------------------------
class ContainerdHealth(service.Health):
    """The socket answers (the Restarter checks it) and ``ctr plugins ls`` shows the CRI plugin ``ok``
    (when the final config does not disable it); without ctr only the socket counts. The CRI check
    stays after a rollback."""

    def __init__(self, p, ctr, socket_path, runner):
        super(ContainerdHealth, self).__init__()
        self.p, self.ctr, self.socket, self.runner = p, ctr, socket_path, runner
        self.expect_cri = cri_expected(p)

    def check(self, expect):
        if not self.ctr:
            return True
        status = cri_plugin_status(self.ctr, self.socket, runner=self.runner)
        if status is None:
            return False
        if not self.expect_cri:
            return True
        return cri_healthy(status, self.p.rules)


class Adapter(service.RuntimeAdapter):
    """nvidia_containerd_runtime: validation with ``containerd config dump``, ``restart: signal``, CRI health."""

    errors = (EngineError, TomlEditError)
    reads_toml = True
    states = ("present", "absent", "query")
    options = dict(   # the module's own options (its DOCUMENTATION); _runtime_flow.argument_spec adds the shared ones
        config=dict(type="path", default="/etc/containerd/config.toml"),
        drop_in=dict(type="path"),
        manage_imports=dict(type="bool", default=True),
        config_source=dict(type="list", elements="str", default=["command", "file"], choices=["command", "file"]),
        containerd_path=dict(type="str", default="containerd"),
        containerd_version=dict(type="str"),
        config_version=dict(type="str", default="auto", choices=["auto", "1", "2", "3", "4"]),
        layout=dict(type="str", choices=["auto", "in_place", "drop_in"]),
        k0s_version=dict(type="str"),
        runtime_type=dict(type="str", default="io.containerd.runc.v2"),
        enable_cdi=dict(type="bool", default=False),
        cdi_spec_dirs=dict(type="list", elements="path"),
        copy_options_from=dict(type="str"),
        placeholders=dict(type="dict"),
        enable_cri=dict(type="bool", default=False),
        validate=dict(type="bool", default=True),
        restart=dict(type="str", default="auto", choices=["auto", "systemd", "signal", "none"]),
        service=dict(type="str", default="containerd"),
        socket=dict(type="path", default="/run/containerd/containerd.sock"),
    )

    def _opts(self, params):
        opts = dict((k, params[k]) for k in DEFAULTS)
        opts["containerd_path"] = params["containerd_path"]
        return opts

    def plan(self, job):
        return plan(self._opts(job.params), runner=job.run, cache="read" if job.check_mode else "write")

    def query(self, job):
        return query(self._opts(job.params), job.params["socket"], runner=job.run)

    def result_fields(self, job):
        p = job.plan
        return dict(config_version=p.config_version, containerd_version=versions.vstr(p.containerd_version), layout=p.layout,
                    cdi_supported=p.rules.cdi, source=p.source, runtimes=p.runtimes, default_runtime=p.default_runtime,
                    low_level_runtime=p.low_level_runtime)

    def validate(self, job):
        params = job.params
        if not params["validate"]:
            return
        binpath = which(params["containerd_path"])
        if binpath:
            validate(job.plan, self._opts(params), binpath, runner=job.run)
        elif os.path.exists(params["config"]):
            raise EngineError("containerd binary %r not found, so the new config cannot be validated and %s "
                              "exists; install containerd first or set validate: false"
                              % (params["containerd_path"], params["config"]))
        else:
            job.plan.warnings.append("validation skipped: containerd binary %r not found (bootstrap before the "
                                     "runtime is installed)" % params["containerd_path"])

    def before_write(self, job):
        sock = job.params["socket"]
        if job.params["restart"] == "signal" and not service.socket_answers(sock):
            raise EngineError("restart: signal, but nothing listens on %s to signal; nothing was written (use "
                              "restart: auto or none when containerd is not running)" % sock)

    def health(self, job):
        return ContainerdHealth(job.plan, ctr_for(which(job.params["containerd_path"])), job.params["socket"], job.run)

    def decide(self, job, restarter, health):
        method = restarter.decide()
        if method is not None and not health.ctr:
            job.warn("ctr not found beside %s or on PATH: health after restart is judged by the socket only"
                     % job.params["containerd_path"])
        return method
