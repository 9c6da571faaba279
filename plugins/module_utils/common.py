# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pieces shared by the runtime engines (containerd.py, crio.py): plain Python, no Ansible.

Errors, running and finding binaries, reading files, nested-dict helpers, the Plan/FileChange pair the
modules write from, handler naming, and where a new runtime table goes in a file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import errno
import os
import re
import subprocess

from ansible_collections.gpuops.nvidia.plugins.module_utils import fileops
from ansible_collections.gpuops.nvidia.plugins.module_utils.tomledit import TomlEditError, detect_step

VARIANT_SUFFIX = {"cdi": ".cdi", "legacy": ".legacy"}


class EngineError(Exception):
    """Bad input or a state we refuse to touch; nothing has been written."""


def default_runner(argv):
    """Run a command in the C locale (its output is parsed), for at most a minute; (rc, stdout, stderr).
    Missing binary (or timeout) -> rc 127."""
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False,
                           env=dict(os.environ, LC_ALL="C"))
    except (OSError, subprocess.SubprocessError) as e:
        return 127, "", str(e)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def which(name, extra_dirs=()):
    if os.sep in name:
        return name if os.access(name, os.X_OK) and os.path.isfile(name) else None
    dirs = list(extra_dirs) + os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin").split(os.pathsep)
    for d in dirs + ["/usr/local/bin", "/usr/bin", "/usr/sbin", "/sbin", "/bin"]:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def parse_version(text):
    """'containerd github.com/containerd/containerd 1.6.20~ds1 ...' -> (1, 6, 20)."""
    for tok in text.split()[1:]:
        m = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", tok)
        if m:
            return tuple(int(x) for x in m.groups())
    return None


def read_binary_version(path, runner):
    rc, out, err = runner([path, "--version"])
    if rc != 0:
        raise EngineError("%s --version failed (rc=%s): %s" % (path, rc, (err or out).strip()))
    v = parse_version(out)
    if v is None:
        raise EngineError("cannot read a version from %r" % out.strip())
    return v


def read_text(path):
    """The text of the file at ``path`` (every engine reads its files with this), or None when there is no
    file to read: it does not exist, it is a dangling symlink, or a folder on its way is a file (ENOTDIR; the
    write will say why it cannot create it). EngineError naming the path for a symlink loop (it is not a
    missing file), a directory, a file that cannot be read, and bytes that are not UTF-8."""
    try:
        fileops.resolve(path)
    except fileops.FileOpError as e:
        raise EngineError(str(e))
    if os.path.isdir(path):
        raise EngineError("%s is a directory, not a config file" % path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except (IOError, OSError) as e:
        if getattr(e, "errno", None) in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise EngineError("cannot read %s: %s" % (path, e))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EngineError("%s is not UTF-8 text (%s); config files must be UTF-8" % (path, e))


def get_in(data, path, default=None):
    node = data
    for p in path:
        if not isinstance(node, dict) or p not in node:
            return default
        node = node[p]
    return node


def render_placeholders(text, placeholders):
    """``text`` with every placeholder replaced by its value (``placeholders``: the literal text, e.g.
    ``${SNAP_DATA}``, -> value), longest name first so that ``${SNAP}`` never eats the start of ``${SNAP_DATA}``:
    what a tool that renders the file before containerd reads it does (MicroK8s' containerd wrapper). Used to
    read, decide and validate only; the bytes written keep every placeholder."""
    if not placeholders or text is None:
        return text
    for name in sorted(placeholders, key=len, reverse=True):
        text = text.replace(name, placeholders[name])
    return text


def deep_merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            deep_merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


def is_zero(v):
    """Go's zero value: what an unset key decodes to."""
    if isinstance(v, bool):
        return v is False
    if isinstance(v, (int, float)):
        return v == 0
    return v in ("", [], {})


def prune_zero(value):
    """Drop keys holding Go zero values (a dump lists every field; unset keys decode to the same)."""
    if not isinstance(value, dict):
        return value
    out = {}
    for k, v in value.items():
        v = prune_zero(v)
        if not is_zero(v):
            out[k] = v
    return out


def pick_source(sources, readers):
    """The effective config from the first of ``sources`` (``config_source``) whose reader works.

    ``readers`` maps each known source name to a callable returning what it read. Returns (name, value);
    raises EngineError naming every source that failed and why.
    """
    errors = []
    for src in sources:
        try:
            if src not in readers:
                raise EngineError("config_source: unknown source %r" % src)
            return src, readers[src]()
        except (EngineError, TomlEditError) as e:
            errors.append("%s: %s" % (src, e))
    raise EngineError("could not read the effective config: " + "; ".join(errors))


class Plan(object):
    """What a run would change; each engine subclasses it with what its module needs."""

    def __init__(self):
        self.files = []          # list of FileChange, in write order
        self.source = None       # which config source was read
        self.runtimes = []
        self.default_runtime = None
        self.low_level_runtime = None
        self.warnings = []
        self.main_path = None

    @property
    def changed(self):
        return any(f.changed for f in self.files)

    def diff(self):
        """A before/after pair per changed file, with the file as header (Ansible's list-of-diffs form)."""
        return [dict(before=f.before or "", after=f.after or "",
                     before_header="%s (%s)" % (f.path, "absent" if f.before is None else "before"),
                     after_header="%s (%s)" % (f.path, "deleted" if f.after is None else "after"))
                for f in self.files if f.changed]


class FileChange(object):
    def __init__(self, path, before, after):
        self.path = path
        self.before = before      # None: file did not exist
        self.after = after        # None: delete the file

    @property
    def changed(self):
        return self.before != self.after


# A handler name is what a Kubernetes RuntimeClass names in ``handler``: a DNS-1123 label.
_HANDLER_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_names(opts, path_options=("config", "drop_in", "runtime_path"), absolute=("runtime_path",)):
    """Argument checks shared by the runtime engines: the message names the option (before any file is read)."""
    for v in opts.get("variants") or []:
        if v not in VARIANT_SUFFIX:
            raise EngineError("variants: unknown variant %r (known: %s)" % (v, ", ".join(sorted(VARIANT_SUFFIX))))
    name = opts.get("runtime_name")
    if not isinstance(name, str) or not _HANDLER_NAME_RE.match(name) or len(name) > 63:
        raise EngineError("runtime_name %r is not a valid handler name: a RuntimeClass handler is a DNS label "
                          "(lowercase letters, digits and '-', starting and ending with a letter or digit, at most "
                          "63 characters)" % (name,))
    for key in path_options:
        value = opts.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value or any(c in value for c in "\n\r\x00"):
            raise EngineError("%s %r is not a usable path (empty, or with a newline or NUL)" % (key, value))
        if key in absolute and not os.path.isabs(value):
            raise EngineError("%s %r must be an absolute path" % (key, value))
    if opts.get("copy_options_from") is not None and not opts["copy_options_from"]:
        raise EngineError("copy_options_from must name a runtime (it is empty)")


def runtime_view(tables, binary_key, default, **extra):
    """The handlers a loaded configuration holds, as ``state: query`` returns them (both engines): ``runtimes``
    maps each handler to the binary it runs (``binary_key`` inside its table; None when unset), ``handlers``
    holds the tables as read, ``default_runtime`` names the default; ``extra`` adds engine keys."""
    tables = tables if isinstance(tables, dict) else {}
    runtimes = {}
    for name, table in tables.items():
        binary = get_in(table, binary_key)
        runtimes[name] = binary if isinstance(binary, str) and binary else None
    view = dict(runtimes=runtimes, handlers=tables, default_runtime=default)
    view.update(extra)
    return view


def handler_names(opts):
    names = [opts["runtime_name"]]
    for v in opts["variants"] or []:
        names.append("%s-%s" % (opts["runtime_name"], v))
    return names


def is_variant(name, opts):
    """True when ``name`` is one of the variant handlers of ``opts['runtime_name']`` (wanted or not)."""
    base = opts["runtime_name"] + "-"
    return name.startswith(base) and name[len(base):] in VARIANT_SUFFIX


def handler_binaries(opts):
    out = {opts["runtime_name"]: opts["runtime_path"]}
    for v in opts["variants"] or []:
        out["%s-%s" % (opts["runtime_name"], v)] = opts["runtime_path"] + VARIANT_SUFFIX[v]
    return out


def runtime_headers(ed, rt):
    return [h for h in ed.tt.headers if len(h.path) == len(rt) + 1 and h.path[:len(rt)] == rt]


def layout_for(ed, rt, after_name):
    """(after, indent, step) for a new runtime table: after ``after_name``'s family, same indentation."""
    hs = runtime_headers(ed, rt)
    anchor = None
    if after_name is not None:
        anchor = ed.tt.header(rt + (after_name,))
    if anchor is None and hs:
        anchor = hs[-1]
    if anchor is None:
        return None, "", "  "
    return anchor.path, anchor.indent, detect_step(ed.tt, anchor)


def require_tables(data, path, name):
    """Every step of ``path`` that exists must be a table: a value there is an error, not a guess."""
    node = data
    for i, p in enumerate(path):
        if not isinstance(node, dict) or p not in node:
            return
        node = node[p]
        if not isinstance(node, dict):
            raise EngineError("%s: %s must be a table, but it is set to a value (%r)" % (name, ".".join(path[:i + 1]), node))
