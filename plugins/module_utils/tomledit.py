# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Format-preserving, reversible TOML edits.

A TOML parser is used to *understand* a file (validate, read values; see :func:`load`) and a small line
lexer to locate its tables and values; the edits themselves are exact line operations, so that every
byte we do not own stays as it was and every edit can be undone (:func:`render_value` writes the values):

* a value we changed keeps the original text in a trailing comment:
  ``default_runtime_name = "nvidia"  # gpuops.nvidia: replaced "runc"``
* a key or table we added is marked ``# gpuops.nvidia: added``
* a table we rewrote (it existed with other values) is marked ``# gpuops.nvidia: replaced``

``undo_value`` and ``remove_table`` use these records to restore the original bytes exactly. Every edit
re-reads the result, so a change that would produce invalid TOML is refused instead of written.

Reading goes through :func:`load`, with what the node has (stdlib ``tomllib``, else ``tomli``, else
tomlkit, else ``toml``: see :data:`READERS`); no module needs tomlkit. Where none is there,
:func:`reader_missing_message` is the one message that says what to install. Lines end with LF or CRLF only (TOML's line ends): text is
never split with ``str.splitlines``, which also splits on U+2028, U+0085, form feed... A leading
UTF-8 BOM (U+FEFF) is kept as a prefix: reads ignore it, edits keep it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re
import sys

BOM = u"\ufeff"

# -- reading: what the node has ---------------------------------------------------------------------
# The TOML readers a node may have, in order of preference (first usable wins): the stdlib (3.11+),
# tomli (fast, strict), tomlkit (slow on large files; its document is converted here by walking its
# pairs, never unwrapped: unwrap() is missing before 0.11, and the mapping view of 0.9 / 0.11 loses keys
# of tables out of order), and the old ``toml`` package (python3-toml, the only one RHEL 8 ships for
# Python 3.6): it reads every fixture of the tests exactly like tomllib, but it reads TOML 0.5 (an array
# of mixed types is refused as malformed, never misread) and accepts some invalid documents: it comes last.
READERS = (
    ("tomllib", None),
    ("tomli", (1, 0)),
    ("tomlkit", (0, 7)),
    ("toml", (0, 10)),
)

# The distribution packages that give a node one (one home: the facts module reports the one for the
# node, the role installs it, the modules' error names it). Names as the distributions spell them:
# Debian 12/13 and Ubuntu 22.04/24.04 ship python3-tomli and python3-tomlkit; RHEL 8 (Python 3.6) and
# RHEL 9 ship python3-toml in AppStream (python3-tomli only from EPEL/CRB). Python >= 3.11 (Debian 12+,
# Ubuntu 24.04, RHEL 10) needs nothing.
READER_PACKAGES = (
    ("Debian", ("python3-tomli", "python3-tomlkit")),
    ("Ubuntu", ("python3-tomli", "python3-tomlkit")),
    ("RedHat", ("python3-toml", "python3-tomli")),
    ("Suse", ("python3-toml",)),
)
READER_PIP = "tomli"   # the pip/mirror spec (pure Python, no dependencies, supports Python 3.6 from 1.2)


def _version_tuple(text):
    out = []
    for part in re.split(r"[.+-]", str(text or "")):
        if not part.isdigit():
            break
        out.append(int(part))
    return tuple(out)


def _import_reader(name):
    """(version, loads) of one reader, or None when it is not importable."""
    if name == "tomllib":
        try:
            import tomllib
        except ImportError:
            return None
        return "%d.%d.%d" % sys.version_info[:3], tomllib.loads
    try:
        mod = __import__(name)
    except ImportError:
        return None
    version = getattr(mod, "__version__", None)
    if name == "tomlkit":
        return version, _tomlkit_loads
    return version, mod.loads


def _pick_reader():
    """(name, version, loads) of the first usable reader, and the unusable ones found ('tomlkit 0.6.0')."""
    unusable = []
    for name, minimum in READERS:
        got = _import_reader(name)
        if got is None:
            continue
        version, loads = got
        if minimum and version is not None and _version_tuple(version) < minimum:
            unusable.append("%s %s" % (name, version))
            continue
        return (name, version, loads), unusable
    return None, unusable


def _tomlkit_loads(text):
    import tomlkit
    return _merge_body(tomlkit.parse(text).body, {})


def _is_table(item):
    return hasattr(getattr(item, "value", None), "body") and not isinstance(item, list)


def _merge_body(body, out):
    """A tomlkit container's body (its (key, item) pairs, any version from 0.7) -> plain data.

    Walks the pairs themselves, never ``unwrap()`` (missing before 0.11) nor the mapping view: 0.9 and 0.11
    lose keys of tables out of order there (``[a.b]`` ... ``[c]`` ... ``[a.d]``), 0.11.7 raises 'Key "runc"
    already exists'. The pieces of a table are merged; those of an array of tables are appended.
    """
    for key, item in body:
        if key is None:      # blank lines, comments
            continue
        k = _plain_key(key)
        if type(item).__name__ == "AoT":
            elements = out.setdefault(k, [])
            for table in item.body:
                elements.append(_merge_body(table.value.body, {}))
        elif _is_table(item):
            sub = out.get(k)
            if not isinstance(sub, dict):
                sub = out[k] = {}
            _merge_body(item.value.body, sub)
        else:
            out[k] = _plain(item)
    return out


def _plain(value):
    """One tomlkit value (array, inline table, scalar) -> plain Python."""
    if _is_table(value):
        return _merge_body(value.value.body, {})
    if isinstance(value, list):
        return [_plain(v) for v in value]
    inner = getattr(value, "value", value)
    if isinstance(inner, bool) or isinstance(value, bool):
        return bool(inner)
    for t in (int, float):
        if isinstance(value, t):
            return t(value)
    if isinstance(value, str):
        return str(value[:])
    for t in (datetime.datetime, datetime.date, datetime.time):   # tomlkit's subclasses -> the stdlib's
        if isinstance(value, t):
            if t is datetime.datetime:
                return datetime.datetime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                                         value.microsecond, value.tzinfo)
            if t is datetime.date:
                return datetime.date(value.year, value.month, value.day)
            return datetime.time(value.hour, value.minute, value.second, value.microsecond, value.tzinfo)
    return inner


def _plain_key(key):
    return str(getattr(key, "key", key)[:])


READER, READER_UNUSABLE = _pick_reader()
HAS_TOML_READER = READER is not None


def reader_info():
    """The reader the modules use on this node: {name, version} (None when there is none)."""
    if READER is None:
        return None
    return dict(name=READER[0], version=READER[1])


def reader_packages(family):
    """The distribution packages that give a node of ``family`` (Ansible's os_family or /etc/os-release
    ID / ID_LIKE words) a TOML reader; () when unknown."""
    words = [w.lower() for w in re.split(r"[\s,]+", family or "") if w]
    for name, pkgs in READER_PACKAGES:
        if name.lower() in words:
            return pkgs
    aliases = dict(rhel="RedHat", centos="RedHat", fedora="RedHat", rocky="RedHat", almalinux="RedHat",
                   ol="RedHat", sles="Suse", opensuse="Suse", suse="Suse")
    for w in words:
        if w in aliases:
            return dict(READER_PACKAGES)[aliases[w]]
    return ()


def os_release_words(path="/etc/os-release"):
    """ID and ID_LIKE of /etc/os-release as one string ("ubuntu debian"); "" when unreadable."""
    words = []
    try:
        with open(path) as f:
            for line in f:
                k, _sep, v = line.strip().partition("=")
                if k in ("ID", "ID_LIKE"):
                    words.append(v.strip("\"'"))
    except (IOError, OSError):
        return ""
    return " ".join(words)


def reader_missing_message(python=None, found=None, family=None):
    """The one message for a node without a TOML reader: the Python found, what is needed, and the
    package to install (this node's distribution first, when known), or the mirror option."""
    python = python or "%d.%d.%d" % sys.version_info[:3]
    found = READER_UNUSABLE if found is None else found
    family = os_release_words() if family is None else family
    here = reader_packages(family)
    per_family = "; ".join("%s: %s" % (name, " or ".join(pkgs)) for name, pkgs in READER_PACKAGES)
    return ("no TOML reader in the node's Python %s (%s)%s. The modules need one of: Python >= 3.11 (tomllib), "
            "tomli >= 1.0, tomlkit >= 0.7, toml >= 0.10. %s(per distribution: %s), or from a mirror: "
            "pip install %s (air-gapped: pip install --no-index --find-links <dir> %s)"
            % (python, sys.executable or "python", (", found unusable: %s" % ", ".join(found)) if found else "",
               ("Install %s on this node " % " or ".join(here)) if here else "Install the distribution's package ",
               per_family, READER_PIP, READER_PIP))


def reader_missing():
    """None when the node has a TOML reader, else :func:`reader_missing_message` (the one check)."""
    return None if READER is not None else reader_missing_message()


MARK = "gpuops.nvidia:"
ADDED = "# gpuops.nvidia: added"
REPLACED = "# gpuops.nvidia: replaced "
REPLACED_TABLE = "# gpuops.nvidia: replaced"

_KEY = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')(?:[ \t]*\.[ \t]*(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*'))*"""
_HEADER_RE = re.compile(r"^([ \t]*)(\[\[?)[ \t]*(" + _KEY + r")[ \t]*(\]\]?)([ \t]*(#.*)?)$")
_BARE_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_KEYLINE_RE = re.compile(r"^([ \t]*)(" + _KEY + r")([ \t]*=[ \t]*)(.*)$")


class TomlEditError(Exception):
    """A file cannot be edited safely; the message says why and where."""


def split_lines(text):
    """Lines with their ends (LF or CRLF, TOML's only line ends); unlike ``str.splitlines`` a U+2028,
    U+0085, form feed... stays inside its line."""
    if not text:
        return []
    lines = text.split("\n")
    last = lines.pop()
    out = [x + "\n" for x in lines]
    if last:
        out.append(last)
    return out


def strip_bom(text):
    return text[1:] if text[:1] == BOM else text


def _malformed(e, name, text=None):
    where, msg = name, str(e)
    line = getattr(e, "line", None) or getattr(e, "lineno", None)   # tomlkit; toml
    col = getattr(e, "col", None) or getattr(e, "colno", None)
    m = _FAST_ERR_RE.match(msg)
    if m:   # tomllib / tomli: "Invalid value (at line 3, column 5)" or "... (at end of document)"
        msg = m.group(1)
        if m.group(2):
            where = "%s:%s:%s" % (name, m.group(2), m.group(3))
        else:
            if text is not None:
                where = "%s:%d" % (name, len(split_lines(text)) or 1)
            msg += " at the end of the file"
    elif line:
        where = "%s:%s" % (name, line) + (":%s" % col if col else "")
        msg = getattr(e, "msg", None) or _TOML_POS_RE.sub("", msg)
    return TomlEditError("malformed TOML in %s: %s" % (where, msg))


_FAST_ERR_RE = re.compile(r"^(.*?) \((?:at line (\d+), column (\d+)|at end of document)\)$", re.S)
_TOML_POS_RE = re.compile(r" (?:\(line \d+ column \d+ char \d+\)|at line \d+ col \d+)$")


def load(text, name="<string>"):
    """TOML text -> plain Python data (dict/list/str/int/bool/float/datetime), read only.

    Uses the node's reader (:data:`READER`: stdlib ``tomllib``, else ``tomli``, else tomlkit, else
    ``toml``): the same data whichever it is; a syntax error is a TomlEditError "malformed TOML in
    <name>:<line>:<col>: ...". A leading BOM is ignored. No reader: a TomlEditError with
    :func:`reader_missing_message`.
    """
    text = strip_bom(text)
    if READER is None:
        raise TomlEditError("cannot read %s: %s" % (name, reader_missing_message()))
    try:
        return READER[2](text)
    except Exception as e:  # TOMLDecodeError, ParseError (and anything else a parser raises on a bad document)
        raise _malformed(e, name, text)


# -- rendering: the values and keys we write -------------------------------------------------------
# Written by hand because no distribution ships a TOML writer usable here: tomli-w is not packaged for
# Debian 12, Ubuntu 22.04 or RHEL 8/9, ``toml``'s writer quotes differently, and tomlkit (which rendered
# these values in earlier releases) is what this module must not need. The output is byte for byte
# what tomlkit >= 0.12 rendered for every value we write (scalars, arrays, inline tables, the tables of
# a copied section), so files written by earlier releases stay unchanged on a second run (the unit
# tests compare both renderers over every fixture). Basic strings escape like tomlkit: backslash,
# double quote, the control characters (short forms \b \t \n \f \r, else \uXXXX) and DEL.
_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}
_ESCAPED_RE = re.compile(u'[\x00-\x1f\x7f"\\\\]')


def _escape(match):
    ch = match.group(0)
    return _SHORT_ESCAPES.get(ch) or "\\u%04x" % ord(ch)


def render_string(text):
    """A TOML basic string."""
    return '"' + _ESCAPED_RE.sub(_escape, text) + '"'


def render_value(value):
    """One-line TOML text for a plain Python value (tables render inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join("%s = %s" % (render_key(k), render_value(v)) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    if hasattr(value, "isoformat"):   # datetime, date, time
        return value.isoformat()
    if isinstance(value, type(u"")) or isinstance(value, str):
        return render_string(value)
    raise TomlEditError("cannot render %r as a TOML value" % (value,))


def render_key(key):
    if _BARE_RE.match(key):
        return key
    return render_string(key)


def _is_aot(value):
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def render_tables(path, data):
    """The table ``path`` holding ``data`` (plain data) as a TOML document, as tomlkit renders one: the
    table's values first, then its sub-tables and arrays of tables, each header after a blank line; a
    table holding only tables (or the parents of ``path``) gets no header of its own."""
    out = []

    def table(p, d, aot, first_in_element):
        values = [(k, v) for k, v in d.items() if not isinstance(v, dict) and not _is_aot(v)]
        subs = [(k, v) for k, v in d.items() if isinstance(v, dict) or _is_aot(v)]
        header = ".".join(render_key(x) for x in p)
        if aot:
            out.append("\n[[%s]]\n" % header)
        elif values or not subs:
            out.append(("" if first_in_element else "\n") + "[%s]\n" % header)
        for k, v in values:
            out.append("%s = %s\n" % (render_key(k), render_value(v)))
        for i, (k, v) in enumerate(subs):
            first = aot and not values and i == 0
            if isinstance(v, dict):
                table(p + (k,), v, False, first)
            else:
                for elem in v:
                    table(p + (k,), elem, True, False)

    table(tuple(path), data, False, False)
    return "".join(out).lstrip("\n")


def same_value(a, b):
    """Equal as TOML values: like ``==`` but types must agree (``true`` is not ``1``, ``1`` is not ``1.0``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    for t in (bool, float, dict, list, tuple):
        if isinstance(a, t) != isinstance(b, t):
            return False
    return a == b


def _split_raw_key(raw):
    """Split a dotted key's raw text into its raw components (quotes kept)."""
    parts, i, n = [], 0, len(raw)
    while i < n:
        while i < n and raw[i] in " \t":
            i += 1
        start = i
        if i < n and raw[i] == '"':
            i += 1
            while i < n and raw[i] != '"':
                i += 2 if raw[i] == "\\" else 1
            i += 1
        elif i < n and raw[i] == "'":
            i = raw.index("'", i + 1) + 1
        else:
            while i < n and raw[i] not in ". \t":
                i += 1
        parts.append(raw[start:i])
        while i < n and raw[i] in " \t":
            i += 1
        if i < n and raw[i] == ".":
            i += 1
    return parts


def _key_path(raw):
    """Parsed components of a dotted key (``a."b.c".'d'`` -> ('a', 'b.c', 'd'))."""
    path = _KEY_PATHS.get(raw)
    if path is None:
        path = _parse_key_path(raw)
        if len(_KEY_PATHS) < 20000:
            _KEY_PATHS[raw] = path
    return path


_KEY_PATHS = {}


def _parse_key_path(raw):
    out = []
    for part in _split_raw_key(raw):
        if part.startswith('"') or part.startswith("'"):
            out.append(load("k = %s" % part)["k"])
        else:
            out.append(part)
    return tuple(out)


def is_content(line):
    """True for a line holding more than blanks (space, tab) and a comment."""
    s = line.strip(" \t\r\n")
    return bool(s) and not s.startswith("#")


_is_content = is_content


# A line lexer, just enough to know which lines start outside any value (so a key line, a header or
# a comment can start there) and where a comment starts: strings, comments and brackets only. It runs
# on text that parsed, so it need not find errors.
_TOKEN_RE = re.compile(r'"""|' + r"'''|" + r'"(?:[^"\\\n]|\\.)*"|' + r"'[^'\n]*'|#|[\[\]{}]")
_ML_BASIC, _ML_LITERAL = '"' * 3, "'" * 3
_ML_END = {
    _ML_BASIC: re.compile(r'(?:[^"\\]|\\[\s\S]|"(?!""))*""""{0,2}'),
    _ML_LITERAL: re.compile(r"(?:[^']|'(?!''))*'''" + r"'{0,2}"),
}


def _scan_line(line, state):
    """Lex one line. ``state`` is (the open multi-line string's delimiter or None, bracket depth) at
    its start; returns the state at its end and where its comment starts (None: no comment)."""
    ml, depth = state
    pos = 0
    if ml:
        m = _ML_END[ml].match(line)
        if m is None:
            return state, None
        pos = m.end()
    while True:
        m = _TOKEN_RE.search(line, pos)
        if m is None:
            return (None, depth), None
        tok = m.group(0)
        if tok == "#":
            return (None, depth), m.start()
        if tok == _ML_BASIC or tok == _ML_LITERAL:
            end = _ML_END[tok].match(line, m.end())
            if end is None:
                return (tok, depth), None
            pos = end.end()
            continue
        if tok == "[" or tok == "{":
            depth += 1
        elif tok == "]" or tok == "}":
            depth -= 1
        pos = m.end()


def comment_start(text):
    """Where the comment of a line (or of a one-line value's text) starts; -1 when it has none."""
    at = _scan_line(text, (None, 0))[1]
    return -1 if at is None else at


class Header(object):
    __slots__ = ("index", "path", "raw", "indent", "aot", "comment")

    def __init__(self, index, path, raw, indent, aot, comment):
        self.index, self.path, self.raw, self.indent, self.aot, self.comment = index, path, raw, indent, aot, comment

    @property
    def marker(self):
        c = self.comment or ""
        if c == REPLACED_TABLE:
            return "replaced"
        if c == ADDED:
            return "added"
        return None


_OPENER_RE = re.compile(r'"""|' + r"'''|[\[{]")


def _scan_headers(lines, data, name):
    """The table headers among ``lines`` (checked against ``data``), and the indexes of the lines that
    start inside a multi-line value (string or array), where no header or key line can be.

    Only the lines holding a bracket or a triple quote can start a header or a multi-line value:
    the others (most of a large file: keys, comments) are skipped without a look.
    """
    headers, inside = [], set()
    body = "".join(lines)
    n = len(lines)
    i, off = 0, 0                  # line i starts at offset off
    while i < n:
        m = _OPENER_RE.search(body, off)
        if m is None:
            break
        start = body.rfind("\n", 0, m.start()) + 1
        if start > off:
            i += body.count("\n", off, start)
            off = start
        line = lines[i].rstrip("\r\n")
        if line.lstrip(" \t").startswith("["):
            headers.append(_header(line, i, data, name))
        else:
            state = _scan_line(line, (None, 0))[0]
            while state != (None, 0) and i + 1 < n:
                off += len(lines[i])
                i += 1
                inside.add(i)
                state = _scan_line(lines[i], state)[0]
        off += len(lines[i])
        i += 1
    return headers, frozenset(inside)


def _header(line, i, data, name):
    m = _HEADER_RE.match(line)
    aot = m is not None and m.group(2) == "[["
    path = None
    if m and m.group(3).strip(" \t") and aot == (m.group(4) == "]]"):
        try:
            path = _key_path(m.group(3).strip(" \t"))
        except TomlEditError:
            path = None
    node = data if path else None
    for p in path or ():      # a table in an array of tables belongs to its latest element
        node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, list) and node:
            node = node[-1]
    if not isinstance(node, dict):
        raise TomlEditError("%s:%d: cannot map the tables of this file to its lines; refusing to edit it" % (name, i + 1))
    return Header(i, path, m.group(3).strip(" \t"), m.group(1), aot, (m.group(5) or "").strip(" \t"))


_CACHE = []          # [(text, (data, lines, headers, inside_values, by_path))], the newest first
_CACHE_SIZE = 4


def _cache_get(text):
    for i, (t, entry) in enumerate(_CACHE):
        if t is text or t == text:
            if i:
                _CACHE.insert(0, _CACHE.pop(i))
            return entry
    return None


def _cache_put(text, data, lines, headers, inside):
    by_path = {}
    for h in reversed(headers):
        if not h.aot:
            by_path[h.path] = h
    entry = (data, tuple(lines), tuple(headers), inside, by_path)
    _CACHE.insert(0, (text, entry))
    del _CACHE[_CACHE_SIZE:]
    return entry


def clear_cache():
    """Forget the texts read so far (a benchmark that wants every read cold)."""
    del _CACHE[:]


def _copy_data(value):
    """A copy of plain TOML data: new dicts and lists, the same (immutable) scalars."""
    if isinstance(value, dict):
        return dict((k, _copy_data(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_copy_data(v) for v in value]
    return value


class TomlText(object):
    """A TOML document as lines plus the parsed view, with the table headers located.

    ``text`` is the whole text; ``bom`` a leading U+FEFF ("" when none), which ``lines`` (split on
    LF / CRLF only, ends kept) leave out: line indexes, headers and edits never see it.

    A text read a moment ago (the same text again: a plan reads a file, then edits it) is not parsed
    again: the last few texts are remembered, and each TomlText gets its own copy of the data.
    """

    def __init__(self, text, name="<string>"):
        self.name = name
        self.text = text
        self.bom = BOM if text[:1] == BOM else ""
        body = text[len(self.bom):]
        hit = _cache_get(text)
        if hit is None:
            data = load(body, name)
            lines = split_lines(body)
            headers, inside = _scan_headers(lines, data, name)
            hit = _cache_put(text, data, lines, headers, inside)
        pristine, lines, headers, self.inside_values, self._by_path = hit
        self.data = _copy_data(pristine)
        self.lines = list(lines)
        self.headers = list(headers)
        self.nl = "\r\n" if "\r\n" in body else "\n"

    # -- structure -------------------------------------------------------------------------------
    def header(self, path):
        return self._by_path.get(tuple(path))

    def headers_under(self, path):
        path = tuple(path)
        return [h for h in self.headers if h.path[:len(path)] == path]

    def body_range(self, path):
        """(start, end) line indexes of a table's own key lines; root = lines before the first header."""
        if not path:
            return 0, (self.headers[0].index if self.headers else len(self.lines))
        h = self.header(path)
        if h is None:
            return None
        return h.index + 1, self._next_header_index(h.index)

    def _next_header_index(self, index, under=None):
        for h in self.headers:
            if h.index > index and (under is None or h.path[:len(under)] != tuple(under)):
                return h.index
        return len(self.lines)

    def family_end(self, path):
        """Index after the last content line of a table and its contiguous sub-tables."""
        h = self.header(path)
        stop = self._next_header_index(h.index, under=h.path)
        end = h.index + 1
        for i in range(h.index + 1, stop):
            if _is_content(self.lines[i]):
                end = i + 1
        return end

    def get(self, path, default=None):
        node = self.data
        for p in path:
            if not isinstance(node, dict) or p not in node:
                return default
            node = node[p]
        return node

    def key_line(self, path, key):
        """Index of the single line ``key = value`` in table ``path`` (None when the key is absent).

        Raises when the key exists but not as a plain one-line assignment we can edit.
        """
        table = self.get(path)
        if not isinstance(table, dict) or key not in table:
            return None
        rng = self.body_range(path)
        if rng is not None:
            for i in range(rng[0], rng[1]):
                if i in self.inside_values:
                    continue
                m = _KEYLINE_RE.match(self.lines[i].rstrip("\r\n"))
                if m and _key_path(m.group(2)) == (key,):
                    try:
                        value = load(m.group(2) + " = " + m.group(4), self.name)[key]
                    except TomlEditError:
                        break  # a multi-line value
                    if value == table[key]:
                        return i
                    break
        raise TomlEditError("%s: %s is set in a form this module cannot edit safely (dotted key, inline "
                            "table or multi-line value); edit it by hand" % (self.name, ".".join(tuple(path) + (key,))))

    def split_key_line(self, index):
        """(prefix up to the value, value text, comment whitespace, comment) of a key line."""
        body = self.lines[index].rstrip("\r\n")
        m = _KEYLINE_RE.match(body)
        rest = m.group(4)
        comment_at = comment_start(rest)
        if comment_at < 0:
            comment_at = len(rest)
        value_text = rest[:comment_at].rstrip(" \t")
        if not value_text:
            raise TomlEditError("%s:%d: cannot locate the value on this line" % (self.name, index + 1))
        return m.group(1) + m.group(2) + m.group(3), value_text, rest[len(value_text):comment_at], rest[comment_at:]

    def key_indent(self, path):
        rng = self.body_range(path)
        if rng:
            for i in range(rng[0], rng[1]):
                m = None if i in self.inside_values else _KEYLINE_RE.match(self.lines[i].rstrip("\r\n"))
                if m:
                    return m.group(1)
        h = self.header(path) if path else None
        return (h.indent + "  ") if h is not None and h.indent else ""

    def raw_header(self, path):
        """Header text for ``path``, reusing the quoting of the closest existing header."""
        path = tuple(path)
        best, best_len = None, 0
        for h in self.headers:
            n = 0
            while n < min(len(h.path), len(path)) and h.path[n] == path[n]:
                n += 1
            if n > best_len:
                best, best_len = h, n
        parts = _split_raw_key(best.raw)[:best_len] if best else []
        parts += [render_key(p) for p in path[len(parts):]]
        return ".".join(parts)


# -- editing ---------------------------------------------------------------------------------------
class Editor(object):
    """Applies reversible edits to a text; after every edit ``text`` is re-read (one fast parse) and valid TOML."""

    def __init__(self, text, name="<string>", tt=None):
        """``tt``: the TomlText of ``text`` already read (the caller's parse is reused, not redone); the
        Editor never changes it (each edit makes a new ``self.tt``)."""
        self.name = name
        self.tt = tt if tt is not None and tt.text == text else TomlText(text, name)

    @classmethod
    def from_tomltext(cls, tt):
        """An Editor on a document already read (see TomlText): no second parse."""
        return cls(tt.text, tt.name, tt=tt)

    @property
    def text(self):
        return self.tt.text

    def _commit(self, lines):
        text = self.tt.bom + "".join(lines)
        try:
            self.tt = TomlText(text, self.name)
        except TomlEditError as e:
            raise TomlEditError("%s: an edit would make the file invalid (%s); nothing was changed" % (self.name, e))

    def _line(self, body):
        return body + self.tt.nl

    @staticmethod
    def _same_ending(old, body):
        """``body`` with the line ending ``old`` had (none at the end of a file without one)."""
        return body + old[len(old.rstrip("\r\n")):]

    def _insert(self, lines, at, new):
        """Insert whole lines; at the end of a file without a final newline, our last line goes without."""
        if at > 0 and not lines[at - 1].endswith(("\n", "\r")):
            lines[at - 1] += self.tt.nl
            if at == len(lines):
                new = list(new)
                new[-1] = new[-1].rstrip("\r\n")
        lines[at:at] = new

    def _delete(self, lines, start, end):
        """Delete whole lines; give the missing final newline back when our last line had none."""
        at_eof_without_nl = end == len(lines) and not lines[-1].endswith(("\n", "\r"))
        del lines[start:end]
        if at_eof_without_nl and lines:
            lines[-1] = lines[-1].rstrip("\r\n")

    # -- values ------------------------------------------------------------------------------------
    def set_value(self, path, key, value, record=True):
        """Set ``key`` in table ``path`` to ``value`` (plain Python), recording what was there.

        A key that already holds the value is left alone (and unmarked). A missing table is added as
        a table of ours at the end of the file. Returns True when the text changed.

        ``record=False`` writes a plain value instead: no marker comment; a changed line keeps its own
        trailing comment; "already holds the value" is judged by :func:`same_value` (types agree); a
        new key goes after the table's last key, a missing table is added unmarked at the end.
        """
        path = tuple(path)
        tt = self.tt
        new = render_value(value)
        idx = tt.key_line(path, key)
        if not record:
            return self._set_plain(path, key, value, new, idx)
        if idx is not None:
            prefix, old, ws, comment = tt.split_key_line(idx)
            ours = comment == ADDED or comment.startswith(REPLACED)
            if ours and old == new:
                return False
            if not ours and tt.get(path)[key] == value:
                return False
            lines = list(tt.lines)
            if ours:
                lines[idx] = self._same_ending(lines[idx], prefix + new + ws + comment)
            else:
                lines[idx] = self._same_ending(lines[idx], prefix + new + "  " + REPLACED + old + ws + comment)
            self._commit(lines)
            return True
        self._check_tables(path)
        if path and tt.header(path) is None:
            self.add_table(path, {key: value}, mark_keys=True)
            return True
        self._append_key_line(path, render_key(key) + " = " + new + "  " + ADDED)
        return True

    def _set_plain(self, path, key, value, new, idx):
        tt = self.tt
        if idx is not None:
            if same_value(tt.get(path)[key], value):
                return False
            prefix, _old, ws, comment = tt.split_key_line(idx)
            lines = list(tt.lines)
            lines[idx] = self._same_ending(lines[idx], prefix + new + ws + comment)
            self._commit(lines)
            return True
        self._check_tables(path)
        if path and tt.header(path) is None:
            self.add_table(path, {key: value}, mark=None)
            return True
        self._append_key_line(path, render_key(key) + " = " + new)
        return True

    def _append_key_line(self, path, body):
        """Insert ``body`` (a key line, indented like the table's keys) after the table's last content line."""
        tt = self.tt
        lines = list(tt.lines)
        start, end = tt.body_range(path)
        at = start
        for i in range(start, end):
            if _is_content(lines[i]):
                at = i + 1
        self._insert(lines, at, [self._line(tt.key_indent(path) + body)])
        self._commit(lines)

    def insert_key(self, path, key, value, after, indent=""):
        """Add the plain line ``<indent>key = value`` to table ``path`` right after line index ``after``.

        ``after`` must be the table's header or a line of its own body (for the root table: a line
        before the first header). Refused (TomlEditError, nothing changed) when the key exists, or when
        the result would not parse as exactly the old document plus this key (e.g. ``after`` lies inside
        a multi-line string). Returns True.
        """
        path = tuple(path)
        tt = self.tt
        table = tt.get(path)
        where = ".".join(path + (key,))
        if not isinstance(table, dict):
            raise TomlEditError("%s: %s: no table %s to add the key to" % (self.name, where, ".".join(path)))
        if key in table:
            raise TomlEditError("%s: %s is already set" % (self.name, where))
        rng = tt.body_range(path)
        if rng is None or not (rng[0] - 1 if path else 0) <= after < rng[1]:
            raise TomlEditError("%s: line %d is not in table [%s]" % (self.name, after + 1, ".".join(path)))
        lines = list(tt.lines)
        self._insert(lines, after + 1, [self._line(indent + render_key(key) + " = " + render_value(value))])
        self._commit(lines)
        got = self.tt.get(path)
        if not (isinstance(got, dict) and key in got and same_value(got[key], value)
                and same_value(_without(self.tt.data, path, key), tt.data)):
            self.tt = tt
            raise TomlEditError("%s: adding %s after line %d would change more than that key; nothing was changed"
                                % (self.name, where, after + 1))
        return True

    def _check_tables(self, path):
        node = self.tt.data
        for i, p in enumerate(path):
            if not isinstance(node, dict):
                break
            node = node.get(p, {})
            if not isinstance(node, dict):
                raise TomlEditError("%s: %s must be a table, but it is set to a value (%r)"
                                    % (self.name, ".".join(path[:i + 1]), node))

    def marker_of(self, path, key):
        """'added', 'replaced' or None for a key line."""
        try:
            idx = self.tt.key_line(tuple(path), key)
        except TomlEditError:
            return None
        if idx is None:
            return None
        comment = self.tt.split_key_line(idx)[3]
        if comment == ADDED:
            return "added"
        if comment.startswith(REPLACED):
            return "replaced"
        return None

    def undo_value(self, path, key):
        """Restore a value we replaced or remove a key we added. Returns True when the text changed."""
        path = tuple(path)
        marker = self.marker_of(path, key)
        if marker is None:
            return False
        tt = self.tt
        idx = tt.key_line(path, key)
        prefix, _old, _ws, comment = tt.split_key_line(idx)
        lines = list(tt.lines)
        if marker == "replaced":
            lines[idx] = self._same_ending(lines[idx], prefix + comment[len(REPLACED):])
            self._commit(lines)
            return True
        self._delete(lines, idx, idx + 1)
        self._commit(lines)
        h = self.tt.header(path) if path else None
        if h is not None and h.marker == "added":
            start, end = self.tt.body_range(path)
            if not any(_is_content(x) for x in self.tt.lines[start:end]):
                self.remove_table(path)
        return True

    def delete_key(self, path, key):
        """Remove a key line that is not ours (no record is kept)."""
        idx = self.tt.key_line(tuple(path), key)
        if idx is None:
            return False
        lines = list(self.tt.lines)
        del lines[idx]
        self._commit(lines)
        return True

    # -- tables ------------------------------------------------------------------------------------
    def render_table(self, path, data, indent="", step="  ", mark=ADDED, mark_keys=False):
        """Lines of a table block: header (marked), keys, then sub-tables; no blank or comment lines."""
        out = []

        def emit(p, d, ind, hmark):
            hdr = ind + "[" + self.tt.raw_header(p) + "]"
            out.append(self._line(hdr + ("  " + hmark if hmark else "")))
            for k, v in d.items():
                if not isinstance(v, dict):
                    out.append(self._line(ind + step + render_key(k) + " = " + render_value(v)
                                          + ("  " + ADDED if mark_keys else "")))
            for k, v in d.items():
                if isinstance(v, dict):
                    emit(p + (k,), v, ind + step, None)

        emit(tuple(path), data, indent, mark)
        return out

    def add_table(self, path, data, after=None, indent="", step="  ", mark_keys=False, mark=ADDED):
        """Insert a new table of ours after the family of table ``after`` (else at the end).

        The block is preceded by one blank line (when it does not start the file); remove_table
        takes both away again. ``mark=None`` writes a plain header (not a table of ours).
        """
        path = tuple(path)
        self._check_tables(path[:-1])
        tt = self.tt
        lines = list(tt.lines)
        if after is not None and tt.header(after) is not None:
            at = tt.family_end(after)
        else:
            at = len(lines)
            while at > 0 and not _is_content(lines[at - 1]):
                at -= 1
        block = self.render_table(path, data, indent, step, mark=mark, mark_keys=mark_keys)
        if at > 0:
            self._insert(lines, at, [self._line("")] + block)
        else:
            lines[0:0] = block + ([self._line("")] if lines else [])
        self._commit(lines)

    def table_block(self, path):
        """(start, end) of a table with its contiguous sub-tables, up to its last content line."""
        tt = self.tt
        h = tt.header(path)
        end = h.index + 1
        for i in range(h.index + 1, len(tt.lines)):
            line = tt.lines[i]
            m = _HEADER_RE.match(line.rstrip("\r\n"))
            if m and m.group(3).strip(" \t"):
                try:
                    sub = _key_path(m.group(3).strip(" \t"))
                except Exception:
                    sub = ()
                if sub[:len(h.path)] != h.path:
                    break
            if _is_content(line):
                end = i + 1
        return h.index, end

    def write_table(self, path, data):
        """Make an existing table equal ``data``: re-render it in place, marked as ours.

        A table we added stays 'added'; any other is marked 'replaced'. No change when equal.
        """
        path = tuple(path)
        tt = self.tt
        h = tt.header(path)
        under = tt.headers_under(path)
        if h is None and not under:
            raise TomlEditError("%s: %s is not written as a [table]; edit it by hand" % (self.name, ".".join(path)))
        if h is None:   # only its sub-tables have headers ([...nvidia.options]): replace from the first one
            first = under[0]
            start, end = first.index, self.table_block(first.path)[1]
            for x in under[1:]:
                if x.index == end or all(not _is_content(line) for line in tt.lines[end:x.index]):
                    end = self.table_block(x.path)[1]
            h = Header(first.index, path, first.raw, first.indent, False, first.comment)
            h_marker = None
        else:
            start, end = self.table_block(path)
            h_marker = h.marker
        spread = [x for x in under if x.index >= end]
        if spread:
            raise TomlEditError("%s: the sub-tables of %s are spread over the file (line %d); edit it by hand"
                                % (self.name, ".".join(path), spread[0].index + 1))
        if tt.get(path) == data and h_marker is not None:
            return False
        step = detect_step(tt, h) if tt.header(path) is not None else "  "
        block = self.render_table(path, data, h.indent, step, mark=ADDED if h_marker == "added" else REPLACED_TABLE)
        lines = list(tt.lines)
        if lines[start:end] == block:
            return False
        lines[start:end] = block
        self._commit(lines)
        return True

    def remove_table(self, path):
        """Remove a table and its contiguous sub-tables; a table we added takes its blank line along."""
        path = tuple(path)
        h = self.tt.header(path)
        if h is None:
            return False
        start, end = self.table_block(path)
        lines = list(self.tt.lines)
        if h.marker == "added":
            if start > 0 and not lines[start - 1].strip(" \t\r\n"):
                start -= 1
            elif start == 0 and end < len(lines) and not lines[end].strip(" \t\r\n"):
                end += 1
        self._delete(lines, start, end)
        self._commit(lines)
        return True


def detect_step(tt, h):
    rng = tt.body_range(h.path)
    for i in range(rng[0], rng[1]):
        m = _KEYLINE_RE.match(tt.lines[i].rstrip("\r\n"))
        if m:
            return m.group(1)[len(h.indent):] if m.group(1).startswith(h.indent) else "  "
    return "  "


def _without(data, path, key):
    """A copy of ``data`` without ``key`` in table ``path`` (the tables on the way are copied)."""
    out = dict(data)
    node = out
    for p in path:
        node[p] = dict(node[p])
        node = node[p]
    node.pop(key, None)
    return out
