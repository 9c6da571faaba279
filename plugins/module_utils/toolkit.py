# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plain edits of the NVIDIA Container Toolkit config (``/etc/nvidia-container-runtime/config.toml``).

Settings are ``{dotted key: value}``; ``unset`` lists dotted keys to remove. Keys are split on
unquoted dots with TOML's own rules (:func:`split_key`): ``nvidia-container-runtime.runtimes`` is the
key ``runtimes`` of table ``[nvidia-container-runtime]``; a segment holding a dot must be quoted:
``features."a.b"``.

Edits go through :class:`tomledit.Editor` without records (``record=False``): every byte we do not
change stays as it was. A key that the packaged default only shows as a comment (``#no-cgroups = false``)
is added on the line right after that comment, in the same table, with the comment's indentation. A
missing table is added after the family of its closest existing parent table (else at the end), in the
file's indentation style (the toolkit's own files use none), its header marked ``# gpuops.nvidia: added``:
the one marker written, so that unsetting its last key removes the table again (original bytes back).

Nothing here writes: :func:`plan` returns a ``common.Plan`` (the runtime engines' shape) holding the
before/after texts; the module writes them with ``fileops.apply_changes``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

from ansible_collections.gpuops.nvidia.plugins.module_utils import common
from ansible_collections.gpuops.nvidia.plugins.module_utils import tomledit
from ansible_collections.gpuops.nvidia.plugins.module_utils.tomledit import TomlEditError

DEFAULT_PATH = "/etc/nvidia-container-runtime/config.toml"

_BARE = re.compile(r"[A-Za-z0-9_-]+")


class ToolkitError(common.EngineError):
    """A request cannot be applied; the message says which key and why. Nothing was changed. An EngineError,
    like every error of the engines: callers catch one family."""


# -- keys ----------------------------------------------------------------------------------------------
def split_key(dotted):
    """``'a."b.c".d'`` -> ``('a', 'b.c', 'd')``: TOML dotted-key rules, splitting on unquoted dots.

    Segments are bare (``A-Za-z0-9_-``), ``"basic"`` (escapes allowed) or ``'literal'``; whitespace
    around dots is ignored. Anything else (an empty segment, a stray character) raises ToolkitError.
    """
    if not isinstance(dotted, str):
        raise ToolkitError("key %r: a key must be a string" % (dotted,))
    s, i, n, parts = dotted, 0, len(dotted), []

    def bad(why):
        return ToolkitError("invalid key %r: %s (segments are bare A-Za-z0-9_- words or quoted "
                            "strings, separated by unquoted dots)" % (dotted, why))

    while True:
        while i < n and s[i] in " \t":
            i += 1
        if i >= n:
            raise bad("empty segment" if parts or s.strip() else "empty key")
        if s[i] == '"':
            j = i + 1
            while j < n and s[j] != '"':
                j += 2 if s[j] == "\\" else 1
            if j >= n:
                raise bad("unterminated quote")
            raw = s[i:j + 1]
            try:
                parts.append(str(tomledit.load("k = " + raw)["k"]))
            except Exception as e:
                raise bad("bad quoted segment %s (%s)" % (raw, e))
            i = j + 1
        elif s[i] == "'":
            j = s.find("'", i + 1)
            if j < 0:
                raise bad("unterminated quote")
            if "\n" in s[i:j]:
                raise bad("newline in a quoted segment")
            parts.append(s[i + 1:j])
            i = j + 1
        else:
            m = _BARE.match(s, i)
            if not m:
                raise bad("empty segment" if s[i] == "." else "unexpected %r at position %d" % (s[i], i))
            parts.append(m.group(0))
            i = m.end()
        while i < n and s[i] in " \t":
            i += 1
        if i >= n:
            return tuple(parts)
        if s[i] != ".":
            raise bad("unexpected %r at position %d" % (s[i], i))
        i += 1


def join_key(parts):
    """The canonical dotted spelling of a key path (quotes only where needed)."""
    return ".".join(tomledit.render_key(p) for p in parts)


# -- values --------------------------------------------------------------------------------------------
def _kind(value):
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (datetime.date, datetime.time)):
        return "a date-time"
    return "a %s" % type(value).__name__


def _check_value(name, value):
    if value is None:
        raise ToolkitError("%s: TOML has no null value; use unset to remove a key" % name)
    if isinstance(value, dict):
        raise ToolkitError("%s: a mapping is not a value here; name each key with a dotted key "
                           "(e.g. %s.<key>: value)" % (name, name))
    if isinstance(value, (list, tuple)):
        for v in value:
            if isinstance(v, dict):
                raise ToolkitError("%s: arrays of tables are not supported" % name)
            _check_value(name, v)
        return list(value)
    if not isinstance(value, (bool, int, float, str)):
        raise ToolkitError("%s: cannot write a %s as TOML" % (name, type(value).__name__))
    return value


def _show(value):
    try:
        return tomledit.render_value(value)
    except Exception:
        return repr(value)


# -- the request ---------------------------------------------------------------------------------------
def parse_request(settings, unset):
    """Validate the request: ([(dotted, parts, value)], [(dotted, parts)]); ToolkitError on conflicts."""
    sets, unsets, seen = [], [], {}
    for dotted, value in (settings or {}).items():
        parts = split_key(dotted)
        sets.append((dotted, parts, _check_value(dotted, value)))
    for dotted in unset or []:
        unsets.append((dotted, split_key(dotted)))
    every = [(d, p, "settings") for d, p, _v in sets] + [(d, p, "unset") for d, p in unsets]
    for dotted, parts, where in every:
        if parts in seen:
            other, other_where = seen[parts]
            if where == other_where == "unset":
                continue
            raise ToolkitError("%s (%s) and %s (%s) name the same key" % (other, other_where, dotted, where))
        seen[parts] = (dotted, where)
    for a, pa, wa in every:
        for b, pb, wb in every:
            if len(pa) < len(pb) and pb[:len(pa)] == pa:
                raise ToolkitError("%s (%s) and %s (%s) overlap: %s cannot be a value and a table at once"
                                   % (a, wa, b, wb, a))
    return sets, unsets


def _walk(data, parts, name, verb):
    """The value at ``parts`` (None when absent); ToolkitError when the path crosses a non-table."""
    node = data
    for i, p in enumerate(parts):
        if not isinstance(node, dict):
            where = join_key(parts[:i])
            raise ToolkitError("%s: cannot %s %s: %s is %s (%s), not a table"
                               % (name, verb, join_key(parts), where, _kind(node), _show(node)))
        if p not in node:
            return None
        node = node[p]
    return node


# -- layout helpers ------------------------------------------------------------------------------------
def commented_key_line(tt, path, key):
    """(index, indent) of the first ``#key = ...`` line in the body of table ``path``, else None."""
    rng = tt.body_range(path)
    if rng is None:
        return None
    names = {key, tomledit.render_key(key), "'%s'" % key}
    pattern = re.compile(r"^([ \t]*)#[ \t]*(?:%s)[ \t]*=" % "|".join(re.escape(x) for x in sorted(names)))
    for i in range(rng[0], rng[1]):
        m = pattern.match(tt.lines[i])
        if m:
            return i, m.group(1)
    return None


def _has_keys(tt, h):
    start, end = tt.body_range(h.path)
    return any(x.strip() and not x.strip().startswith("#") for x in tt.lines[start:end])


def _step(tt):
    """Indentation of keys relative to their header, as the file does it ('' for the toolkit's files)."""
    for h in tt.headers:
        if not h.aot and _has_keys(tt, h):
            return tomledit.detect_step(tt, h)
    return ""


def _table_place(tt, path):
    """(after, header indent) for a new table ``path``."""
    anc = None
    for n in range(len(path) - 1, 0, -1):
        h = tt.header(path[:n])
        if h is not None:
            anc = h
            break
    siblings = [h for h in tt.headers if h.path[:-1] == path[:-1] and len(h.path) == len(path)]
    if siblings:
        indent = siblings[0].indent
    elif anc is not None:
        nested = any(h.indent for h in tt.headers)
        indent = anc.indent + (_step(tt) if nested else "")
    else:
        indent = ""
    return (anc.path if anc is not None else None), indent


# -- editing -------------------------------------------------------------------------------------------
def _set(ed, name, parts, value):
    path, key = parts[:-1], parts[-1]
    tt = ed.tt
    current = _walk(tt.data, parts, name, "set")
    if isinstance(current, dict):
        raise ToolkitError("%s: cannot set %s: it is a table; set the keys inside it (%s.<key>)"
                           % (name, join_key(parts), join_key(parts)))
    if isinstance(current, list) and current and all(isinstance(x, dict) for x in current):
        raise ToolkitError("%s: cannot set %s: it is an array of tables; edit it by hand" % (name, join_key(parts)))
    if current is not None:
        if tomledit.same_value(current, value):
            return False  # already right, whatever form it is written in
        return ed.set_value(path, key, value, record=False)
    if path and tt.header(path) is None:
        after, indent = _table_place(tt, path)
        ed.add_table(path, {key: value}, after=after, indent=indent, step=_step(tt), mark=tomledit.ADDED)
        return True
    found = commented_key_line(tt, path, key)
    if found is not None:
        try:
            return ed.insert_key(path, key, value, after=found[0], indent=found[1])
        except TomlEditError:
            pass  # the comment is not where a key can go (e.g. inside a multi-line string): append instead
    return ed.set_value(path, key, value, record=False)


def _unset(ed, name, parts):
    current = _walk(ed.tt.data, parts, name, "unset")
    if current is None:
        return False
    if isinstance(current, dict):
        raise ToolkitError("%s: cannot unset %s: it is a table; unset removes keys (list the keys inside it)"
                           % (name, join_key(parts)))
    return ed.delete_key(parts[:-1], parts[-1])


def _drop_emptied_table(ed, path):
    """Remove table ``path`` when it is one we added (header marked ``# gpuops.nvidia: added``) and an
    unset left it with nothing: no key, no comment, no sub-table. ``Editor.remove_table`` takes the blank
    line ``add_table`` put before it, so a set then an unset of the same key gives the original bytes
    back. A table written by hand (the packaged ``[nvidia-ctk]``) keeps its header.
    """
    tt = ed.tt
    h = tt.header(path)
    if not path or h is None or h.marker != "added" or any(x.path != h.path for x in tt.headers_under(path)):
        return False
    start, end = tt.body_range(path)
    if any(line.strip() for line in tt.lines[start:end]):
        return False
    return ed.remove_table(path)


def edit(text, settings=None, unset=None, name="config.toml"):
    """Apply ``settings`` and ``unset`` to ``text``; returns (new text, {dotted key: resulting value}).

    Raises ToolkitError for a bad request or a key path that crosses a non-table, TomlEditError for
    malformed TOML (file and line) or a value written in a form that cannot be edited safely.
    """
    sets, unsets = parse_request(settings, unset)
    ed = tomledit.Editor(text or "", name)
    emptied = set()
    for _dotted, parts in unsets:
        if _unset(ed, name, parts):
            emptied.add(parts[:-1])
    for path in sorted(emptied, key=len, reverse=True):   # sub-tables first: their parent may empty too
        _drop_emptied_table(ed, path)
    # shallow keys first (stable): root keys must precede every [table] of a new file, and a new parent
    # table then exists before its new sub-tables are placed after it
    for _dotted, parts, value in sorted(sets, key=lambda s: len(s[1])):
        _set(ed, name, parts, value)
        got = _walk(ed.tt.data, parts, name, "set")
        if not tomledit.same_value(got, value):  # pragma: no cover - a safety net for the editor
            raise ToolkitError("%s: %s did not take the value %s; nothing was changed"
                               % (name, join_key(parts), _show(value)))
    values = dict((dotted, _walk(ed.tt.data, parts, name, "set")) for dotted, parts, _v in sets)
    return ed.text, values


class Plan(common.Plan):
    """What a run would do to the toolkit's file: the runtime engines' Plan (``changed``, ``diff()`` in
    Ansible's list-of-diffs form) holding one FileChange (before None: the file does not exist; after None:
    it stays missing), and ``settings``, the resulting value of each key set."""

    def __init__(self, path, before, after, settings):
        super(Plan, self).__init__()
        self.main_path = path
        self.files = [common.FileChange(path, before, after)]
        self.settings = settings


def plan(path, settings=None, unset=None):
    """Read ``path`` (common.read_text) and compute the edit. A missing file is planned as new only when it
    gets content."""
    before = common.read_text(path)
    after, values = edit(before, settings, unset, name=path)
    if before is None and not after:
        after = None
    return Plan(path, before, after, values)
