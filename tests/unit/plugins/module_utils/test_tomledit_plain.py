"""The editor's plain (unrecorded) primitives: set_value(record=False), insert_key, add_table(mark=None),
same_value. Exact bytes in, exact bytes out."""
import pytest

from ansible_collections.gpuops.nvidia.plugins.module_utils.tomledit import (
    ADDED, Editor, TomlEditError, same_value,
)

SAMPLE = """# top
a = 1
[t]
  x = "one"   # keep me
  #y = 2
  z = ['p', "q"]

[u]
k = true
"""


def test_record_true_is_still_the_default():
    ed = Editor(SAMPLE)
    assert ed.set_value(("t",), "x", "two")
    assert "# gpuops.nvidia: replaced \"one\"" in ed.text
    ed = Editor(SAMPLE)
    ed.set_value(("t",), "w", 1)
    assert "  w = 1  " + ADDED + "\n" in ed.text


def test_plain_replace_keeps_the_trailing_comment_and_writes_no_marker():
    ed = Editor(SAMPLE)
    assert ed.set_value(("t",), "x", "two", record=False)
    assert ed.text == SAMPLE.replace('x = "one"   # keep me', 'x = "two"   # keep me')


def test_plain_replace_of_a_line_without_comment_keeps_its_bytes_around_the_value():
    ed = Editor(SAMPLE)
    assert ed.set_value((), "a", 2, record=False)
    assert ed.text == SAMPLE.replace("a = 1", "a = 2")


def test_plain_same_value_in_another_spelling_is_left_alone():
    ed = Editor(SAMPLE)
    assert not ed.set_value(("t",), "z", ["p", "q"], record=False)   # 'p' vs "p": same value
    assert not ed.set_value(("u",), "k", True, record=False)
    assert ed.text == SAMPLE


def test_plain_values_compare_with_their_types():
    ed = Editor("n = 1\nf = 1.0\n")
    assert ed.set_value((), "n", True, record=False)       # 1 == True in Python, not in TOML
    assert ed.set_value((), "f", 1, record=False)          # 1.0 is a float
    assert ed.text == "n = true\nf = 1\n"
    # the recording mode keeps its historical Python equality
    ed = Editor("n = 1\n")
    assert not ed.set_value((), "n", True)


def test_plain_new_key_goes_after_the_last_key_with_the_tables_indent():
    ed = Editor(SAMPLE)
    assert ed.set_value(("t",), "w", False, record=False)
    assert ed.text == SAMPLE.replace("  z = ['p', \"q\"]\n", "  z = ['p', \"q\"]\n  w = false\n")


def test_plain_missing_table_is_added_unmarked_at_the_end():
    ed = Editor(SAMPLE)
    assert ed.set_value(("v", "w"), "on", True, record=False)
    assert ed.text == SAMPLE + "\n[v.w]\n  on = true\n"
    assert "gpuops.nvidia" not in ed.text


def test_plain_set_refuses_to_cross_a_value():
    ed = Editor(SAMPLE)
    with pytest.raises(TomlEditError, match="must be a table"):
        ed.set_value(("t", "x"), "deeper", 1, record=False)
    assert ed.text == SAMPLE


def test_add_table_without_mark():
    ed = Editor(SAMPLE)
    ed.add_table(("t", "sub"), {"k": [1, 2]}, after=("t",), step="", mark=None)
    assert ed.text == SAMPLE.replace("  z = ['p', \"q\"]\n", "  z = ['p', \"q\"]\n\n[t.sub]\nk = [1, 2]\n")


def test_insert_key_after_a_commented_line():
    ed = Editor(SAMPLE)
    idx = SAMPLE.splitlines().index("  #y = 2")
    assert ed.insert_key(("t",), "y", 3, after=idx, indent="  ")
    assert ed.text == SAMPLE.replace("  #y = 2\n", "  #y = 2\n  y = 3\n")
    assert ed.tt.data["t"]["y"] == 3


def test_insert_key_right_after_the_header_and_in_the_root():
    ed = Editor(SAMPLE)
    ed.insert_key(("u",), "first", "s", after=SAMPLE.splitlines().index("[u]"))
    assert ed.text.endswith('[u]\nfirst = "s"\nk = true\n')
    ed.insert_key((), "b", 2, after=0)
    assert ed.text.startswith("# top\nb = 2\na = 1\n")


def test_insert_key_refusals_change_nothing():
    ed = Editor(SAMPLE)
    with pytest.raises(TomlEditError, match="already set"):
        ed.insert_key(("t",), "x", 1, after=3)
    with pytest.raises(TomlEditError, match="not in table"):
        ed.insert_key(("u",), "y", 1, after=3)          # line 4 belongs to [t]
    with pytest.raises(TomlEditError, match="not in table"):
        ed.insert_key((), "y", 1, after=2)              # [t]'s header is not the root's
    with pytest.raises(TomlEditError, match="no table"):
        ed.insert_key(("nope",), "y", 1, after=0)
    assert ed.text == SAMPLE


def test_insert_key_inside_a_multiline_string_is_refused():
    text = 's = """\n#k = 1\n"""\n'
    ed = Editor(text)
    with pytest.raises(TomlEditError, match="change more than that key"):
        ed.insert_key((), "k", 2, after=1)
    assert ed.text == text


def test_insert_key_keeps_crlf_and_a_missing_final_newline():
    ed = Editor("a = 1\r\n#b = 0\r\nc = 3")
    ed.insert_key((), "b", 2, after=1)
    assert ed.text == "a = 1\r\n#b = 0\r\nb = 2\r\nc = 3"
    ed = Editor("a = 1\n#b = 0")
    ed.insert_key((), "b", 2, after=1)
    assert ed.text == "a = 1\n#b = 0\nb = 2"


@pytest.mark.parametrize("a, b, same", [
    (1, 1, True), (1, True, False), (1, 1.0, False), (True, True, True), ("1", 1, False),
    ([1, [2]], [1, [2]], True), ([1], (1,), True), ([1], [True], False), ({"a": [1]}, {"a": [1]}, True),
    ({"a": 1}, {"a": 1, "b": 2}, False), ([], {}, False),
])
def test_same_value(a, b, same):
    assert same_value(a, b) is same
