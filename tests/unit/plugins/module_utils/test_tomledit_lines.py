"""tomledit on the edges of a text (issue 10, items 5, 6, 12): TOML's only line ends are LF and CRLF,
a leading BOM is a kept prefix, reads go through load() (tomllib, tomli or tomlkit alike), and the
lexer that finds headers and values in place of tomlkit."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import tomlkit

from ansible_collections.gpuops.nvidia.plugins.module_utils import containerd as engine
from ansible_collections.gpuops.nvidia.plugins.module_utils import tomledit
from ansible_collections.gpuops.nvidia.plugins.module_utils.tomledit import (
    BOM, Editor, TomlEditError, TomlText, comment_start, load, split_lines,
)

CTD = ("plugins", "io.containerd.grpc.v1.cri", "containerd")
RT = CTD + ("runtimes",)
# characters str.splitlines() splits on that TOML allows inside comments and strings
SEPARATORS = ["\u2028", "\u2029", "\x85"]
# ... and those TOML forbids raw anywhere (control characters): a file holding one is malformed
CONTROLS = ["\x0c", "\x0b", "\x1c", "\x1d", "\x1e"]


def sample(ch):
    return (
        "version = 2  # ends in a separator" + ch + "\n"
        "# a comment line" + ch + "\n"
        "note = \"a" + ch + "b\"\n"
        "lit = 'c" + ch + "'\n"
        "ml = \"\"\"\nline" + ch + "\n[not.a.table]\n\"\"\"\n"
        "\n"
        "[plugins.\"io.containerd.grpc.v1.cri\".containerd]  # header comment" + ch + "\n"
        "  default_runtime_name = \"runc\"  # why" + ch + "\n"
        "  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n"
        "    runtime_type = \"io.containerd.runc.v2\"\n"
        "    # last" + ch + "\n"
    )


def round_trip(text):
    """Edits of every kind, then undone: the text must come back byte for byte."""
    ed = Editor(text, "/etc/containerd/config.toml")
    assert ed.set_value(CTD, "default_runtime_name", "nvidia")
    assert ed.set_value(CTD, "enable_x", True)
    ed.add_table(RT + ("nvidia",), {"runtime_type": "io.containerd.runc.v2", "options": {"BinaryName": "/x"}},
                 after=RT + ("runc",), indent="  ")
    ed.set_value(("metrics",), "address", "x")
    assert ed.tt.get(RT + ("nvidia", "options", "BinaryName")) == "/x"
    ed.undo_value(("metrics",), "address")
    ed.remove_table(RT + ("nvidia",))
    ed.undo_value(CTD, "enable_x")
    ed.undo_value(CTD, "default_runtime_name")
    return ed.text


@pytest.mark.parametrize("nl", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("ch", SEPARATORS, ids=lambda c: "U+%04X" % ord(c))
def test_unicode_line_separators_stay_inside_their_line(ch, nl):
    text = sample(ch).replace("\n", nl)
    tt = TomlText(text)
    assert len(tt.lines) == text.count("\n")
    assert tt.data["note"] == "a" + ch + "b" and tt.data["ml"].replace("\r\n", "\n") == "line" + ch + "\n[not.a.table]\n"
    assert [h.path for h in tt.headers] == [CTD, RT + ("runc",)]
    assert round_trip(text) == text


@pytest.mark.parametrize("ch", SEPARATORS, ids=lambda c: "U+%04X" % ord(c))
def test_engine_present_then_absent_restores_the_bytes(tmp_path, ch):
    cfg = tmp_path / "config.toml"
    original = sample(ch).encode("utf-8")
    cfg.write_bytes(original)
    opts = dict(config=str(cfg), containerd_path="/nonexistent/containerd", config_source=["file"])
    p = engine.plan(opts, binary_version=(1, 7, 24))
    assert p.changed
    cfg.write_bytes(p.files[-1].after.encode("utf-8"))
    assert not engine.plan(opts, binary_version=(1, 7, 24)).changed
    p = engine.plan(dict(opts, state="absent"), binary_version=(1, 7, 24))
    assert p.files[-1].after.encode("utf-8") == original


@pytest.mark.parametrize("ch", CONTROLS, ids=lambda c: "%#04x" % ord(c))
def test_raw_control_characters_are_malformed_toml_named_by_line(ch):
    text = sample("").replace("# a comment line", "# a comment line" + ch)
    with pytest.raises(TomlEditError, match=r"malformed TOML in /etc/c\.toml:2:"):
        Editor(text, "/etc/c.toml")
    # escaped, they are plain string content
    assert load('s = "\\f\\u000b\\u001c"\n') == {"s": "\x0c\x0b\x1c"}


def test_split_lines_only_on_lf():
    assert split_lines("") == []
    assert split_lines("a\u2028b\x0cc\r\nd\x85\ne") == ["a\u2028b\x0cc\r\n", "d\x85\n", "e"]
    assert split_lines("a\n\n") == ["a\n", "\n"]


# -- BOM ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("nl", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_a_bom_is_kept_and_ignored(nl):
    text = BOM + sample("").replace("\n", nl)
    assert load(text)["version"] == 2
    tt = TomlText(text)
    assert tt.bom == BOM and tt.data["version"] == 2 and not tt.lines[0].startswith(BOM)
    assert [h.path for h in tt.headers] == [CTD, RT + ("runc",)]
    assert round_trip(text) == text


def test_a_bom_stays_first_when_a_table_goes_at_the_top():
    ed = Editor(BOM)
    assert ed.tt.data == {}
    ed.add_table(("a",), {"k": 1})
    assert ed.text == BOM + "[a]  # gpuops.nvidia: added\n  k = 1\n"
    ed.remove_table(("a",))
    assert ed.text == BOM
    ed = Editor(BOM + "[b]\n")
    ed.set_value((), "version", 2)
    assert ed.text == BOM + "version = 2  # gpuops.nvidia: added\n[b]\n"


def test_engine_patches_and_restores_a_file_with_a_bom(tmp_path, containerd_fixtures):
    cfg = tmp_path / "config.toml"
    original = BOM.encode("utf-8") + containerd_fixtures["default-1.7.toml"].read_bytes()
    cfg.write_bytes(original)
    opts = dict(config=str(cfg), containerd_path="/nonexistent/containerd", config_source=["file"])
    p = engine.plan(opts, binary_version=(1, 7, 24))
    after = p.files[-1].after
    assert after.startswith(BOM) and load(after)["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["nvidia"]
    cfg.write_bytes(after.encode("utf-8"))
    assert not engine.plan(opts, binary_version=(1, 7, 24)).changed
    assert engine.plan(dict(opts, state="absent"), binary_version=(1, 7, 24)).files[-1].after.encode("utf-8") == original


# -- load() ------------------------------------------------------------------------------------
BAD = [
    ("a = 1\nb = 2\nc = = 3\n", r"malformed TOML in /etc/x\.toml:3(:\d+)?: "),
    ("version = 2\n[plugins\nx = 1\n", r"malformed TOML in /etc/x\.toml:2(:\d+)?: "),
    ("[a]\nx = 1\n[a]\n", r"malformed TOML in /etc/x\.toml:3(:\d+)?: "),
    ("a = [1,\n", r"malformed TOML in /etc/x\.toml:1\b"),
]


@pytest.fixture(params=["fast", "tomlkit"])
def reader(request, monkeypatch):
    """load() with the fast parser, and as a node without tomllib/tomli reads (tomlkit)."""
    if request.param == "tomlkit":
        monkeypatch.setattr(tomledit, "READER", ("tomlkit", tomlkit.__version__, tomledit._tomlkit_loads))
    return request.param


@pytest.mark.parametrize("text,match", BAD)
def test_load_errors_name_file_line_and_column(reader, text, match):
    with pytest.raises(TomlEditError, match=match):
        load(text, "/etc/x.toml")
    with pytest.raises(TomlEditError, match=match):
        Editor(text, "/etc/x.toml")


def test_load_reads_the_same_data_with_every_parser(reader, containerd_fixtures):
    for path in sorted(containerd_fixtures.values()):
        text = path.read_text()
        assert load(text) == tomlkit.parse(text).unwrap(), path.name
        ed = Editor(text, str(path))
        assert ed.tt.data == tomlkit.parse(text).unwrap()


def test_fast_error_message_is_reshaped():
    if tomledit.READER[0] not in ("tomllib", "tomli"):
        pytest.skip("no tomllib/tomli here")
    with pytest.raises(TomlEditError) as e:
        load("a = 1\nb = = 2\n", "f")
    assert str(e.value) == "malformed TOML in f:2:5: Invalid value"


# -- the lexer that replaced tomlkit for the structure -------------------------------------------
def test_headers_and_keys_inside_multiline_values_are_not_taken_for_real_ones():
    text = ('s = """\n[t]\nx = 1\n"""\n'
            "l = '''\n[t] # ''\n'''\n"
            "a = [\n  [1, 2],  # ]\n  ['[t]'],\n]\n"
            '[t]\n  m = """x = 0\nx = 5"""\n  x = 2\n')
    ed = Editor(text)
    assert [(h.index, h.path) for h in ed.tt.headers] == [(11, ("t",))]
    assert ed.set_value(("t",), "x", 3)
    assert ed.text == text.replace("  x = 2\n", '  x = 3  # gpuops.nvidia: replaced 2\n')
    ed.undo_value(("t",), "x")
    assert ed.text == text


@pytest.mark.parametrize("rest,at", [
    ('"a # b"  # c', 9), ("'#'#", 3), ('[1, "]#"] # x', 10), ('{ a = "#" }', -1), ('"\\"#"', -1),
    ('"""#"""  # x', 9), ("1", -1), ('""', -1),
])
def test_comment_start(rest, at):
    assert comment_start(rest) == at


def test_value_text_and_comment_split_like_tomlkit(containerd_fixtures):
    """split_key_line no longer asks tomlkit where a value ends: the same answer on every key line of
    the fixtures and on tricky ones."""
    extra = ('a = "x # y"   # c\nb = [1, [2, "]"]]#d\nc = { k = "#" }\t \nd = \'\'\'#\'\'\'  \n'
             'e = 1979-05-27T07:32:00Z # t\nf = -inf\ng = "\\"# "  #  x\n')
    texts = [p.read_text() for p in containerd_fixtures.values()] + [extra]
    checked = 0
    for text in texts:
        tt = TomlText(text)
        for i, line in enumerate(tt.lines):
            m = tomledit._KEYLINE_RE.match(line.rstrip("\r\n"))
            if not m or i in tt.inside_values:
                continue
            rest = m.group(4)
            try:
                value_text = tomlkit.parse("k = " + rest).item("k").as_string()
            except Exception:
                continue       # the first line of a multi-line value
            tail = rest[len(value_text):]
            c = tail.find("#")
            want = (value_text, tail, "") if c < 0 else (value_text, tail[:c], tail[c:])
            assert tt.split_key_line(i)[1:] == want, line
            checked += 1
    assert checked > 100


def test_a_text_read_again_is_not_parsed_again_and_each_reader_gets_its_own_data(monkeypatch):
    text = "[a]\n  k = [1]\n"
    first = TomlText(text + "\n")
    calls = []
    real = tomledit.load
    monkeypatch.setattr(tomledit, "load", lambda t, name="<string>": calls.append(t) or real(t, name))
    second, third = TomlText(text + "\n"), Editor(text + "\n").tt
    assert calls == []
    first.data["a"]["k"].append(2)
    first.lines.append("x")
    assert second.data == third.data == {"a": {"k": [1]}} and len(second.lines) == 3
    tomledit.clear_cache()
    assert TomlText(text + "\n").data == {"a": {"k": [1]}} and len(calls) == 1


def test_no_parser_at_all_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(tomledit, "READER", None)
    with pytest.raises(TomlEditError, match="cannot read /x.toml: no TOML reader in the node's Python"):
        load("a = 1\n", "/x.toml")


def test_tables_inside_arrays_of_tables_are_mapped():
    text = '[[a]]\n  x = 1\n[[a]]\n  x = 2\n  [a.b]\n    y = 3\n  [[a.c]]\n    z = 4\n[t]\n  k = "v"\n'
    ed = Editor(text)
    assert [(h.index, h.path, h.aot) for h in ed.tt.headers] == [
        (0, ("a",), True), (2, ("a",), True), (4, ("a", "b"), False), (6, ("a", "c"), True), (8, ("t",), False)]
    assert ed.set_value(("t",), "k", "w")
    ed.undo_value(("t",), "k")
    assert ed.text == text


# -- the lexer against documents built piece by piece: we know where every header and value is -----
_CH = st.sampled_from(list("ab #[]{}=.'") + ['\\"', "\\\\", "\u2028", "x\\u0041"])
_LIT_CH = st.sampled_from(list('ab #[]{}=."\\') + ["\u2028"])


@st.composite
def _value(draw):
    """(value text on its line, extra lines it spans) of a one-line or a multi-line value."""
    kind = draw(st.sampled_from(["basic", "literal", "int", "array", "inline", "ml_basic", "ml_literal", "ml_array"]))
    if kind == "basic":
        return '"' + "".join(draw(st.lists(_CH, max_size=6))) + '"', []
    if kind == "literal":
        return "'" + "".join(draw(st.lists(_LIT_CH, max_size=6))) + "'", []
    if kind == "int":
        return str(draw(st.integers(-5, 5))), []
    if kind == "array":
        return '[1, "]#", [2, \'[\'], {a = "}"}]', []
    if kind == "inline":
        return '{ k = "#", l = [1, "]"] }', []
    lines = draw(st.lists(st.sampled_from(["[t0]", "x = 1", "# c", "  [[a]]", "", "'' \"\" ]", "\u2028"]),
                          min_size=1, max_size=3))
    if kind == "ml_basic":
        body = ["\"\"\"" + lines[0]] + lines[1:]
        return body[0], body[1:] + ['\\"\"\" \\\\ ' + draw(st.sampled_from(['"""', '""""', '"""""']))]
    if kind == "ml_literal":
        body = ["'''" + lines[0]] + lines[1:]
        return body[0], body[1:] + ["x" + draw(st.sampled_from(["'''", "''''", "'''''"]))]
    return "[  # [", ['  "]", # {', "  [1, ']'],", "  # ]]", "]"]


@st.composite
def _doc(draw):
    """(text, [(line index, header path)], {line index: (value text, spacing, comment)})."""
    out, headers, keys, n = [], [], {}, 0
    names = ["t%d" % i for i in range(draw(st.integers(0, 4)))]
    for t in [None] + names:
        if t is not None:
            quoted = draw(st.booleans())
            raw = t + ('."q]#.x"' if quoted else "")
            headers.append((len(out), (t, "q]#.x") if quoted else (t,)))
            out.append("[" + raw + "]" + draw(st.sampled_from(["", "  # [h]", " #\u2028"])))
        for _line in range(draw(st.integers(0, 4))):
            if draw(st.booleans()):
                out.append(draw(st.sampled_from(["# a [comment] \"\"\" '''", "", "  # x = 1", "#\u2029"])))
                continue
            value, more = draw(_value())
            comment = draw(st.sampled_from(["", "# c", "#[x] \"\"\"", "# \u0085"]))
            spacing = draw(st.sampled_from(["", " ", "  \t"])) if comment else ""
            if more and comment:
                spacing = comment = ""        # a comment after an opening ''' is string content
            keys[len(out)] = (value, spacing, comment) if not more else None
            out.append("k%d = %s%s%s" % (n, value, spacing, comment))
            out.extend(more)
            n += 1
    return "\n".join(out) + "\n", headers, keys


@settings(max_examples=300, deadline=None)
@given(doc=_doc())
def test_the_lexer_finds_exactly_the_headers_and_values_that_were_written(doc):
    text, headers, keys = doc
    load(text)                          # the built document is valid TOML
    tt = TomlText(text)
    assert [(h.index, h.path) for h in tt.headers] == headers
    for index, want in keys.items():
        if want is not None:
            assert tt.split_key_line(index)[1:] == want
