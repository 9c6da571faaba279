# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Docker Engine: the ``nvidia`` runtime in ``daemon.json`` without losing a byte of anything else.

Plain Python, no Ansible (unit-tested directly).  ``plan(opts)`` reads ``daemon.json`` and its record
file and returns a :class:`DockerPlan` (``files``: the new text of both); the module validates it with
the real ``dockerd --validate`` (:func:`validate`), writes it with ``fileops.apply_changes`` and
restarts through ``service.Restarter``, judging health with :func:`daemon_info` over the socket.

Why a hand-written editor (and not ``json``)
    ``json.load`` + ``json.dump`` loses the key order and the layout of the operator's file (that is
    what ``nvidia-ctk runtime configure`` does), and neither the standard library nor a small,
    well-kept, dependency-free package for Python 3.6 edits JSON in place.  So the editor here is
    span-based and minimal: the whole file is first checked with ``json`` (errors name line and
    column); then :class:`JsonObject` finds, with ``json``'s own string scanner and ``raw_decode``,
    the byte spans of the members we own (``runtimes``, ``runtimes.<name>`` and its ``path`` /
    ``runtimeArgs``, ``default-runtime``, ``features``, ``features.cdi``), and an edit is a
    replacement of exactly one span.  Every other byte stays; new members copy the indentation, the
    ``:`` spacing and the line ending of the file.

The record (JSON has no comments)
    Every span the module changes is written down in a sidecar file beside ``daemon.json``,
    ``<config>.gpuops-nvidia`` (Docker reads only ``daemon.json``): for each edit the span's exact
    text before and after.  ``state=absent`` puts each span back when it still holds what the module
    wrote (so the original bytes come back exactly), falls back to removing our handlers when an
    operator changed them since, and deletes the sidecar (and ``daemon.json`` when the module created
    it).  An operator can read the sidecar to see what the module replaced.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import socket
from collections import OrderedDict

from ansible_collections.gpuops.nvidia.plugins.module_utils import fileops, service
from ansible_collections.gpuops.nvidia.plugins.module_utils.common import (
    EngineError, FileChange, Plan, handler_binaries, handler_names, read_binary_version, read_text, which,
)

__all__ = ["DEFAULTS", "EngineError", "plan", "validate", "dockerd_version", "can_validate", "daemon_info",
           "info_matches", "sidecar_path", "which", "Adapter"]

DEFAULTS = {
    "state": "present",
    "config": "/etc/docker/daemon.json",
    "runtime_name": "nvidia",
    "runtime_path": "/usr/bin/nvidia-container-runtime",
    "runtime_args": None,
    "variants": [],
    "set_as_default": False,
    "enable_cdi": False,
}

SIDECAR_SUFFIX = ".gpuops-nvidia"
RECORD_OWNER = "gpuops.nvidia nvidia_docker_runtime"
# Docker's built-in runtime names: a handler cannot take them.
BUILTIN_RUNTIMES = ("runc", "io.containerd.runc.v2", "io.containerd.runtime.v1.linux")
# ``dockerd --validate`` exists since Docker 23.0.
VALIDATE_SINCE = (23, 0, 0)
# A new file, or a blank one (Docker reads a blank daemon.json as no settings), starts as this object.
BLANK = "{}\n"
DEFAULT_STEP = "    "
WS = " \t\r\n"
_DECODER = json.JSONDecoder()


def sidecar_path(config):
    return config + SIDECAR_SUFFIX


# ---------------------------------------------------------------------------------------------------
# reading JSON with spans
# ---------------------------------------------------------------------------------------------------

def _line_col(text, pos):
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _reject_constant(name):
    raise ValueError("%s is not JSON" % name)


def check_json(text, name):
    """The whole text must be one JSON object (Go's decoder rules: no NaN/Infinity). Returns the data."""
    body = text[1:] if text.startswith(u"\ufeff") else text
    try:
        data = json.loads(body, parse_constant=_reject_constant, object_pairs_hook=OrderedDict)
    except ValueError as e:
        line, col = getattr(e, "lineno", None), getattr(e, "colno", None)
        where = " at line %s column %s" % (line, col) if line else ""
        raise EngineError("%s is not valid JSON%s: %s; nothing was changed"
                          % (name, where, getattr(e, "msg", str(e))))
    if not isinstance(data, dict):
        raise EngineError("%s must hold a JSON object at the top level, not %s; nothing was changed"
                          % (name, _json_type(data)))
    return data


def _json_type(value):
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return "a number"
    return "a string"


def _skip_ws(text, pos):
    while pos < len(text) and text[pos] in WS:
        pos += 1
    return pos


class Member(object):
    def __init__(self, key, kstart, kend, vstart, vend, value):
        self.key = key
        self.kstart = kstart    # the key's opening quote
        self.kend = kend        # after the key's closing quote
        self.vstart = vstart    # first character of the value
        self.vend = vend        # after the value
        self.value = value


class JsonObject(object):
    """The members of the JSON object whose ``{`` is at ``start`` in ``text``, with their spans.

    Only called on text that ``check_json`` accepted, so the scanner can be minimal.
    """

    def __init__(self, text, start, name="", where=""):
        if text[start] != "{":
            raise EngineError("internal: no object at %d" % start)
        self.text = text
        self.start = start
        self.name = name          # dotted path, for messages
        self.where = where        # the file, for messages
        self.members = []
        pos = _skip_ws(text, start + 1)
        if text[pos] == "}":
            self.end = pos + 1
            return
        while True:
            kstart = pos
            key, kend = json.decoder.scanstring(text, pos + 1)
            pos = _skip_ws(text, kend)
            pos = _skip_ws(text, pos + 1)            # the ':'
            value, vend = _DECODER.raw_decode(text, pos)
            self.members.append(Member(key, kstart, kend, pos, vend, value))
            pos = _skip_ws(text, vend)
            if text[pos] == "}":
                self.end = pos + 1
                return
            pos = _skip_ws(text, pos + 1)            # the ','

    @property
    def inner(self):
        return self.start + 1, self.end - 1

    def get(self, key):
        found = [m for m in self.members if m.key == key]
        if len(found) > 1:
            line, _col = _line_col(self.text, found[-1].kstart)
            raise EngineError("%s: %s has the key %r %d times (again at line %d); Docker would use the last "
                              "one, this module refuses to guess: remove the duplicates; nothing was changed"
                              % (self.where, self.name or "the top level", key, len(found), line))
        return found[0] if found else None

    def child(self, key, what="an object"):
        """The member ``key`` as a JsonObject, None when absent; an error when it is not an object."""
        m = self.get(key)
        if m is None:
            return None
        path = "%s.%s" % (self.name, key) if self.name else key
        if not isinstance(m.value, dict):
            line, col = _line_col(self.text, m.vstart)
            raise EngineError("%s: %s must be %s, but it is %s (line %d column %d); nothing was changed"
                              % (self.where, path, what, _json_type(m.value), line, col))
        return JsonObject(self.text, m.vstart, path, self.where)


def _path_object(top, path):
    """The JsonObject at ``path`` (a list of keys) from ``top``, or None when a step is missing."""
    obj = top
    for key in path:
        obj = obj.child(key)
        if obj is None:
            return None
    return obj


# ---------------------------------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------------------------------

class Layout(object):
    """How the file writes JSON: line ending, indentation step, ``:`` spacing, ``,`` spacing on one line."""

    def __init__(self, text, top):
        self.nl = "\r\n" if "\r\n" in text else "\n"
        self.step = DEFAULT_STEP
        self.colon = ": "
        self.sep = ", "
        if len(top.members) > 1:
            between = text[top.members[0].vend:top.members[1].kstart]
            if "\n" not in between and between.strip() == ",":
                self.sep = between
        first = top.members[0] if top.members else None
        if first is not None:
            ind = _line_indent(text, first.kstart)
            if ind:
                self.step = ind
            self.colon = text[first.kend:first.vstart]
            if self.colon.strip() != ":" or "\n" in self.colon:
                self.colon = ": "

    def dump(self, value, indent, inline):
        if inline:
            return json.dumps(value, separators=(self.sep, self.colon))
        s = json.dumps(value, indent=self.step, separators=(",", self.colon))
        return s.replace("\n", self.nl + indent)


def _line_indent(text, pos):
    """The whitespace before ``pos`` on its line when only whitespace precedes it there, else None."""
    start = text.rfind("\n", 0, pos) + 1
    lead = text[start:pos]
    if lead.strip(" \t") == "":
        return lead
    return None


def _multiline(obj):
    """Members one per line: as the object has them; an empty object as the file has them (the top
    level always: ``{}`` becomes a readable file)."""
    if obj.members:
        a, b = obj.inner
        return "\n" in obj.text[a:b]
    return obj.name == "" or "\n" in obj.text.strip(WS)


# ---------------------------------------------------------------------------------------------------
# edits and their record
# ---------------------------------------------------------------------------------------------------

class Edit(object):
    """Replace text[start:end] with ``new``; ``record`` is how absent finds and reverses it."""

    def __init__(self, start, end, new, record):
        self.start = start
        self.end = end
        self.new = new
        self.record = record


def _set_value(obj, member, path, value, layout):
    new = layout.dump(value, "", inline=True)
    old = obj.text[member.vstart:member.vend]
    return Edit(member.vstart, member.vend, new,
                OrderedDict([("op", "value"), ("path", list(path)), ("before", old), ("after", new)]))


def _insert_members(obj, path, pairs, layout):
    """Insert ``pairs`` [(key, value)] at the end of ``obj`` (at ``path``), in the file's layout."""
    text = obj.text
    if not _multiline(obj):
        sep = layout.sep
        if len(obj.members) > 1:
            sep = text[obj.members[-2].vend:obj.members[-1].kstart]
        items = [json.dumps(k) + layout.colon + layout.dump(v, "", inline=True) for k, v in pairs]
        if obj.members:
            start = end = obj.members[-1].vend
            before = ""
            new = "".join(sep + i for i in items)
        else:
            start, end = obj.inner
            before = text[start:end]
            new = sep.join(items)
    else:
        if obj.members:
            last = obj.members[-1]
            ind = _line_indent(text, last.kstart)
            if ind is None:
                ind = (_line_indent(text, obj.members[0].kstart) or "") or layout.step
            body = "".join("," + layout.nl + ind + json.dumps(k) + layout.colon + layout.dump(v, ind, False)
                           for k, v in pairs)
            start = end = last.vend
            new = body
            before = ""
        else:
            # an empty object: its inner whitespace becomes the members, one per line
            line_start = text.rfind("\n", 0, obj.start) + 1
            own = re.match(r"[ \t]*", text[line_start:obj.start]).group(0)
            ind = own + layout.step
            start, end = obj.inner
            before = text[start:end]
            new = ("," + layout.nl).join(ind + json.dumps(k) + layout.colon + layout.dump(v, ind, False)
                                         for k, v in pairs)
            new = layout.nl + new + layout.nl + own
    return Edit(start, end, new, OrderedDict([("op", "insert"), ("path", list(path)),
                                              ("keys", [k for k, _v in pairs]), ("before", before),
                                              ("after", new)]))


def _region(top, record):
    """Where a recorded edit is now: (start, end), or None when its members are gone."""
    if record["op"] == "value":
        obj = _path_object(top, record["path"][:-1])
        m = obj.get(record["path"][-1]) if obj is not None else None
        return (m.vstart, m.vend) if m is not None else None
    obj = _path_object(top, record["path"])
    if obj is None:
        return None
    keys = record["keys"]
    idx = [i for i, m in enumerate(obj.members) if m.key in keys]
    if len(idx) != len(keys) or idx != list(range(idx[0], idx[0] + len(idx))):
        return None
    if idx[0] == 0:
        # the members were the first: they went into an empty object, whose inner text is the span
        return obj.inner if len(idx) == len(obj.members) else None
    return obj.members[idx[0] - 1].vend, obj.members[idx[-1]].vend


def _remove_member(obj, key):
    """Edit that removes member ``key`` from ``obj`` (not recorded: nothing to reverse)."""
    ms = obj.members
    i = [m.key for m in ms].index(key)
    if len(ms) == 1:
        a, b = obj.inner
        return Edit(a, b, "", None)
    if i == len(ms) - 1:
        return Edit(ms[i - 1].vend, ms[i].vend, "", None)
    return Edit(ms[i].kstart, ms[i + 1].kstart, "", None)


def _apply(text, edits):
    for e in sorted(edits, key=lambda e: e.start, reverse=True):
        text = text[:e.start] + e.new + text[e.end:]
    return text


def _covers(outer, inner_path):
    """True when ``inner_path`` lies inside members that the insert record ``outer`` added."""
    if outer["op"] != "insert":
        return False
    p = outer["path"]
    return len(inner_path) > len(p) and inner_path[:len(p)] == p and inner_path[len(p)] in outer["keys"]


def _record_path(rec):
    return rec["path"] if rec["op"] == "value" else rec["path"] + ["*"]


# ---------------------------------------------------------------------------------------------------
# the plan
# ---------------------------------------------------------------------------------------------------

class DockerPlan(Plan):
    def __init__(self):
        super(DockerPlan, self).__init__()
        self.after_data = None      # daemon.json's content after the change (dict), None when deleted
        self.expect_runtimes = []   # handlers Docker must list after a restart
        self.expect_absent = []     # handlers Docker must not list


def _load_record(path, text):
    if text is None:
        return None
    try:
        data = json.loads(text, object_pairs_hook=OrderedDict)
    except ValueError as e:
        raise EngineError("%s (the record of what gpuops.nvidia replaced in daemon.json) is not valid JSON: %s; "
                          "fix or remove it; nothing was changed" % (path, e))
    if not isinstance(data, dict) or not isinstance(data.get("edits"), list):
        raise EngineError("%s is not a gpuops.nvidia record (no \"edits\" list); nothing was changed" % path)
    return data


def _dump_record(record):
    return json.dumps(record, indent=2, separators=(",", ": ")) + "\n"


def _check_opts(opts):
    for name in handler_names(opts):
        if name in BUILTIN_RUNTIMES:
            raise EngineError("runtime_name: %r is one of Docker's built-in runtimes (%s)"
                              % (name, ", ".join(BUILTIN_RUNTIMES)))


def plan(opts, read=read_text):
    """What ``opts`` (DEFAULTS' keys) would change. Raises EngineError on bad input (nothing written)."""
    o = dict(DEFAULTS)
    o.update(opts)
    _check_opts(o)
    config = o["config"]
    side = sidecar_path(config)
    before = read(config)
    side_before = read(side)
    record = _load_record(side, side_before)

    p = DockerPlan()
    p.main_path = config
    p.runtimes = handler_names(o)

    if record is not None and before is None:
        p.warnings.append("%s exists but %s does not: its record is stale and is dropped" % (side, config))
        record = None
    if record is None:
        record = OrderedDict([("managed_by", RECORD_OWNER), ("config", config), ("edits", [])])

    blank = before is None or before.strip(WS + u"\ufeff") == ""
    text = BLANK if blank else before
    if blank and "file_before" not in record:
        record["file_before"] = before
    if not blank:
        check_json(text, config)
    bom = u"\ufeff" if text.startswith(u"\ufeff") else ""
    top = JsonObject(text, _skip_ws(text, len(bom)), "", config)

    if o["state"] == "present":
        after_text, record = _present(text, top, o, record)
    else:
        after_text, record = _absent(text, top, o, record, p.warnings)

    if o["state"] == "absent":
        fb = record.get("file_before", "missing")
        after_top = JsonObject(after_text, _skip_ws(after_text, len(bom)), "", config)
        if fb != "missing" and not after_top.members:
            after_text = fb             # the module made this file: back to nothing (or the blank text)
        elif blank:
            after_text = before
        side_after = None
    else:
        side_after = _dump_record(record) if record["edits"] else None
    if o["state"] == "present" and blank and after_text == BLANK:
        after_text = before             # nothing to add to a blank file
    if side_before is not None and side_after is not None and _same_record(side_before, side_after):
        side_after = side_before

    p.files = [FileChange(config, before, after_text), FileChange(side, side_before, side_after)]
    p.after_data = check_json(after_text, config) if after_text and after_text.strip(WS + u"\ufeff") else (
        None if after_text is None else OrderedDict())
    data = p.after_data or {}
    runtimes = data.get("runtimes") if isinstance(data.get("runtimes"), dict) else {}
    p.expect_runtimes = [n for n in p.runtimes if n in runtimes]
    p.expect_absent = [n for n in p.runtimes if n not in runtimes]
    p.default_runtime = data.get("default-runtime") or "runc"
    return p


def _same_record(a, b):
    try:
        return json.loads(a) == json.loads(b)
    except ValueError:
        return False


def _desired_handler(o, path):
    h = OrderedDict([("path", path)])
    if o["runtime_args"] is not None:
        h["runtimeArgs"] = list(o["runtime_args"])
    return h


def _present(text, top, o, record):
    layout = Layout(text, top)
    edits = []
    bins = handler_binaries(o)
    names = handler_names(o)

    rt = top.child("runtimes")
    if rt is None:
        edits.append(_insert_members(top, [], [("runtimes", OrderedDict(
            (n, _desired_handler(o, bins[n])) for n in names))], layout))
    else:
        missing = []
        for n in names:
            h = rt.child(n)
            if h is None:
                missing.append((n, _desired_handler(o, bins[n])))
                continue
            want = _desired_handler(o, bins[n])
            add = []
            for k, v in want.items():
                m = h.get(k)
                if m is None:
                    add.append((k, v))
                elif m.value != v:
                    edits.append(_set_value(h, m, ["runtimes", n, k], v, layout))
            if add:
                edits.append(_insert_members(h, ["runtimes", n], add, layout))
        if missing:
            edits.append(_insert_members(rt, ["runtimes"], missing, layout))

    default = top.get("default-runtime")
    unset_default = False
    if o["set_as_default"]:
        if default is None:
            edits.append(_insert_members(top, [], [("default-runtime", o["runtime_name"])], layout))
        elif default.value != o["runtime_name"]:
            edits.append(_set_value(top, default, ["default-runtime"], o["runtime_name"], layout))
    elif default is not None and default.value in names:
        unset_default = True

    if o["enable_cdi"]:
        feats = top.child("features")
        if feats is None:
            edits.append(_insert_members(top, [], [("features", OrderedDict([("cdi", True)]))], layout))
        else:
            cdi = feats.get("cdi")
            if cdi is None:
                edits.append(_insert_members(feats, ["features"], [("cdi", True)], layout))
            elif cdi.value is not True:
                edits.append(_set_value(feats, cdi, ["features", "cdi"], True, layout))

    # several inserts at the top level go in as one edit (one span, one record)
    tops = [e for e in edits if e.record is not None and e.record["op"] == "insert" and e.record["path"] == []]
    if len(tops) > 1:
        pairs = []
        for e in tops:
            pairs.extend((k, _value_of(o, k, bins, names)) for k in e.record["keys"])
        edits = [e for e in edits if e not in tops] + [_insert_members(top, [], pairs, layout)]

    new_text = text
    if edits:
        new_text = _apply(text, edits)
        record = _merge_records(text, new_text, top, record, [e.record for e in edits if e.record is not None])
    if unset_default:
        new_text = _unset_default(new_text, top.start, record, o["config"])
    return new_text, record


def _unset_default(text, start, record, config):
    """``default-runtime`` names one of ours but should not: the value it had before the module set it
    (from the record), else no ``default-runtime`` at all (Docker's default, runc)."""
    top = JsonObject(text, start, "", config)
    default = top.get("default-runtime")
    for rec in record["edits"]:
        if rec["op"] == "value" and rec["path"] == ["default-runtime"] and text[default.vstart:default.vend] == rec["after"]:
            record["edits"].remove(rec)
            return text[:default.vstart] + rec["before"] + text[default.vend:]
    return _apply(text, [_remove_member(top, "default-runtime")])


def _value_of(o, key, bins, names):
    if key == "runtimes":
        return OrderedDict((n, _desired_handler(o, bins[n])) for n in names)
    if key == "default-runtime":
        return o["runtime_name"]
    return OrderedDict([("cdi", True)])


def _merge_records(old_text, new_text, old_top, record, new):
    """Fold this run's edits into the record: a span edited again keeps its first ``before``; an edit
    inside members the module inserted earlier (and nobody changed since) just refreshes that insert."""
    bom_skip = len(u"\ufeff") if new_text.startswith(u"\ufeff") else 0
    new_top = JsonObject(new_text, _skip_ws(new_text, bom_skip))
    edits = list(record["edits"])
    intact = []
    for rec in edits:
        r = _region(old_top, rec)
        intact.append(r is not None and old_text[r[0]:r[1]] == rec["after"])
    refresh = set()
    for rec in new:
        target = None
        for i, old in enumerate(edits):
            if not intact[i]:
                continue
            if _covers(old, _record_path(rec)):
                target = i
                break
            if old["op"] == "value" and rec["op"] == "value" and old["path"] == rec["path"]:
                target = i
                break
        if target is None:
            edits.append(rec)
            intact.append(True)
        else:
            refresh.add(target)
            if edits[target]["op"] == "value" and rec["op"] == "value":
                edits[target]["after"] = rec["after"]
    for i in refresh:
        r = _region(new_top, edits[i])
        if r is not None:
            edits[i]["after"] = new_text[r[0]:r[1]]
    record["edits"] = edits
    return record


def _absent(text, top, o, record, warnings):
    config = o["config"]
    for rec in reversed(record["edits"]):
        top = JsonObject(text, top.start, "", config)
        r = _region(top, rec)
        if r is not None and text[r[0]:r[1]] == rec["after"]:
            text = text[:r[0]] + rec["before"] + text[r[1]:]
            continue
        where = ".".join(rec["path"] + (rec.get("keys") or [])[:1]) if rec["op"] == "insert" else ".".join(rec["path"])
        if rec["op"] == "value":
            if r is not None:
                warnings.append("%s: %s was changed since gpuops.nvidia set it; left as it is now"
                                % (config, where))
            continue
        # an insert that was changed since: drop our members (containers are dropped below when empty)
        obj = _path_object(top, rec["path"])
        if obj is None:
            continue
        for key in rec["keys"]:
            if obj.get(key) is None or (rec["path"] == [] and key in ("runtimes", "features")):
                continue
            text = _apply(text, [_remove_member(obj, key)])
            obj = _path_object(JsonObject(text, top.start, "", config), rec["path"])
        warnings.append("%s: what gpuops.nvidia added at %s was changed since; removed its own members only"
                        % (config, where or "the top level"))
    # whatever another tool (nvidia-ctk) or an operator added under our names goes too
    names = handler_names(o)
    top = JsonObject(text, top.start, "", config)
    rt = top.child("runtimes")
    for n in names:
        if rt is not None and rt.get(n) is not None:
            text = _apply(text, [_remove_member(rt, n)])
            top = JsonObject(text, top.start, "", config)
            rt = top.child("runtimes")
    default = top.get("default-runtime")
    if default is not None and default.value in names:
        text = _apply(text, [_remove_member(top, "default-runtime")])
        top = JsonObject(text, top.start, "", config)
    created = [k for rec in record["edits"] if rec["op"] == "insert" and rec["path"] == [] for k in rec["keys"]]
    for key in ("runtimes", "features"):
        m = top.get(key)
        if key in created and m is not None and m.value == {}:
            text = _apply(text, [_remove_member(top, key)])
            top = JsonObject(text, top.start, "", config)
    return text, record


# ---------------------------------------------------------------------------------------------------
# validation with the real dockerd
# ---------------------------------------------------------------------------------------------------

# (major, minor, patch) of ``dockerd --version`` ("Docker version 26.1.5+dfsg1, build ...")
dockerd_version = read_binary_version


def can_validate(version):
    return version is not None and tuple(version) >= VALIDATE_SINCE


def validate(plan, dockerd, runner):
    """``dockerd --validate --config-file <candidate>``: the daemon's own check of every key.

    ``--userland-proxy=false`` is added unless the file sets ``userland-proxy`` (a flag and the same
    key in the file is an error): without it, a node whose docker-proxy is not on the module's PATH
    fails validation for a reason unrelated to the file.  Raises EngineError with dockerd's message.
    """
    after = plan.files[0].after
    if after is None:
        return
    with fileops.scratch_dir("docker") as tmpdir:
        cand = os.path.join(tmpdir, "daemon.json")
        with open(cand, "wb") as f:
            f.write(after.encode("utf-8"))
        argv = [dockerd, "--validate", "--config-file", cand]
        if "userland-proxy" not in (plan.after_data or {}):
            argv.append("--userland-proxy=false")
        rc, out, err = runner(argv)
    if rc != 0:
        msg = (err or out).strip().replace(cand, plan.main_path)
        raise EngineError("dockerd --validate rejects the new %s (rc=%s): %s; nothing was changed"
                          % (plan.main_path, rc, msg))


# ---------------------------------------------------------------------------------------------------
# health: the Engine API over the socket
# ---------------------------------------------------------------------------------------------------

def daemon_info(socket_path, timeout=5.0):
    """``GET /info`` on Docker's unix socket (what ``docker info`` shows), as a dict; None when the
    daemon does not answer.  HTTP/1.0, so the daemon closes the connection after the body."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    chunks = []
    try:
        s.connect(socket_path)
        s.sendall(b"GET /info HTTP/1.0\r\nHost: docker\r\n\r\n")
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    except (OSError, socket.error):
        return None
    finally:
        s.close()
    raw = b"".join(chunks)
    head, _sep, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or status[1] != b"200":
        return None
    try:
        info = json.loads(body.decode("utf-8"))
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def info_matches(info, plan):
    """The daemon loaded what the plan wrote: our handlers listed (or gone), the default as written."""
    if not info:
        return False
    runtimes = info.get("Runtimes") or {}
    if any(n not in runtimes for n in plan.expect_runtimes):
        return False
    if any(n in runtimes for n in plan.expect_absent):
        return False
    return info.get("DefaultRuntime", "runc") == plan.default_runtime


# -- the module's part of the shared flow (_runtime_flow) -----------------------------------------------
class DockerHealth(service.Health):
    """``GET /info`` answers and lists what the plan wrote (after a rollback: any answer will do)."""

    def __init__(self, p, socket_path):
        super(DockerHealth, self).__init__()
        self.p, self.socket = p, socket_path

    def check(self, expect):
        info = daemon_info(self.socket)
        return info is not None and (not expect or info_matches(info, self.p))


class Adapter(service.RuntimeAdapter):
    """nvidia_docker_runtime: ``dockerd --validate``, the record beside daemon.json, health by GET /info."""

    errors = (EngineError,)
    options = dict(   # the module's own options (its DOCUMENTATION); _runtime_flow.argument_spec adds the shared ones
        config=dict(type="path", default="/etc/docker/daemon.json"),
        runtime_args=dict(type="list", elements="str"),
        enable_cdi=dict(type="bool", default=False),
        dockerd_path=dict(type="str", default="dockerd"),
        validate=dict(type="bool", default=True),
        restart=dict(type="str", default="auto", choices=["auto", "systemd", "none"]),
        service=dict(type="str", default="docker"),
        socket=dict(type="path", default="/run/docker.sock"),
    )

    def lock_paths(self, params):
        return [params["config"]]

    def initial_result(self, params):
        return dict(docker_version=None, validated=False, record=sidecar_path(params["config"]))

    def plan(self, job):
        return plan(dict((k, job.params[k]) for k in DEFAULTS))

    def result_fields(self, job):
        return dict(runtimes=job.plan.runtimes, default_runtime=job.plan.default_runtime)

    def validate(self, job):
        """dockerd --validate on the candidate, or why it cannot run (a warning or an error)."""
        params, p, result = job.params, job.plan, job.result
        if not params["validate"] or p.files[0].after is None:
            return
        binpath = which(params["dockerd_path"])
        if binpath is None:
            if p.files[0].before is not None:
                raise EngineError("dockerd %r not found, so the new %s cannot be validated and it exists; install "
                                  "Docker first or set validate: false" % (params["dockerd_path"], params["config"]))
            p.warnings.append("validation skipped: dockerd %r not found (bootstrap before Docker is installed)"
                              % params["dockerd_path"])
            return
        version = dockerd_version(binpath, job.run)
        result["docker_version"] = ".".join(str(x) for x in version)
        if not can_validate(version):
            p.warnings.append("dockerd %s has no --validate (Docker 23.0+): only the JSON structure was checked"
                              % result["docker_version"])
            return
        validate(p, binpath, job.run)
        result["validated"] = True

    def health(self, job):
        return DockerHealth(job.plan, job.params["socket"])
