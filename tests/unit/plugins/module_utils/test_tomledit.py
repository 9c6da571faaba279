"""The format-preserving editor: exact bytes in, exact bytes out."""
import pytest

from ansible_collections.gpuops.nvidia.plugins.module_utils.tomledit import (
    ADDED, Editor, TomlEditError, TomlText,
)

SAMPLE = """# top comment
version = 2  # trailing
imports = ['/etc/containerd/conf.d/*.toml']

[plugins]
  # comment above a table
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = 'runc'   # spaced comment
    snapshotter = "overlayfs"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true

# a comment that belongs to the next table
[metrics]
  address = ""
"""
CRI = ("plugins", "io.containerd.grpc.v1.cri")
CTD = CRI + ("containerd",)
RT = CTD + ("runtimes",)


def test_headers_are_located_with_their_paths():
    tt = TomlText(SAMPLE)
    paths = [h.path for h in tt.headers]
    assert paths == [("plugins",), CTD, RT + ("runc",), RT + ("runc", "options"), ("metrics",)]
    assert tt.header(RT + ("runc",)).indent == "    "


def test_replacing_a_value_keeps_the_original_in_a_record_and_undo_restores_bytes():
    ed = Editor(SAMPLE)
    assert ed.set_value(CTD, "default_runtime_name", "nvidia")
    line = [x for x in ed.text.splitlines() if "default_runtime_name" in x][0]
    assert line == "    default_runtime_name = \"nvidia\"  # gpuops.nvidia: replaced 'runc'   # spaced comment"
    assert ed.tt.data["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["default_runtime_name"] == "nvidia"
    # setting it again changes nothing
    assert not ed.set_value(CTD, "default_runtime_name", "nvidia")
    assert ed.undo_value(CTD, "default_runtime_name")
    assert ed.text == SAMPLE


def test_a_value_already_right_is_left_unmarked():
    ed = Editor(SAMPLE)
    assert not ed.set_value(CTD, "snapshotter", "overlayfs")
    assert ed.text == SAMPLE
    assert not ed.undo_value(CTD, "snapshotter")


def test_adding_a_key_marks_it_and_undo_removes_it():
    ed = Editor(SAMPLE)
    ed.set_value(CRI, "enable_cdi", True)  # [CRI] has no header: a table of ours is added
    ed.set_value(CTD, "discard_unpacked_layers", True)
    assert "    discard_unpacked_layers = true  " + ADDED in ed.text
    assert ed.tt.get(CRI + ("enable_cdi",)) is True
    ed.undo_value(CTD, "discard_unpacked_layers")
    ed.undo_value(CRI, "enable_cdi")
    assert ed.text == SAMPLE


def test_a_table_added_after_a_family_takes_its_indent_and_comes_out_exactly():
    ed = Editor(SAMPLE)
    ed.add_table(RT + ("nvidia",), {"runtime_type": "io.containerd.runc.v2", "options": {"BinaryName": "/x", "SystemdCgroup": True}},
                 after=RT + ("runc",), indent="    ", step="  ")
    text = ed.text
    assert text.index("runtimes.nvidia]") > text.index("SystemdCgroup = true")
    assert text.index("runtimes.nvidia]") < text.index("# a comment that belongs to the next table")
    assert '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]  ' + ADDED in text
    assert '        BinaryName = "/x"' in text
    assert ed.tt.get(RT + ("nvidia", "options", "SystemdCgroup")) is True
    ed.remove_table(RT + ("nvidia",))
    assert ed.text == SAMPLE


def test_table_written_over_a_foreign_one_is_marked_replaced():
    ed = Editor(SAMPLE)
    ed.write_table(RT + ("runc",), {"runtime_type": "io.containerd.runc.v2", "options": {"SystemdCgroup": False}})
    assert "runtimes.runc]  # gpuops.nvidia: replaced" in ed.text
    assert ed.tt.get(RT + ("runc", "options", "SystemdCgroup")) is False
    assert "[metrics]" in ed.text and "# a comment that belongs to the next table" in ed.text


def test_value_where_a_table_must_be_is_refused():
    ed = Editor("plugins = 3\n")
    with pytest.raises(TomlEditError, match="plugins must be a table"):
        ed.set_value(CTD, "default_runtime_name", "nvidia")
    assert ed.text == "plugins = 3\n"


def test_malformed_toml_names_file_and_line():
    with pytest.raises(TomlEditError, match=r"malformed TOML in /etc/x\.toml:3"):
        Editor("a = 1\nb = 2\nc = = 3\n", "/etc/x.toml")


def test_dotted_key_forms_are_refused_not_guessed():
    text = '[plugins."io.containerd.grpc.v1.cri"]\n  containerd.default_runtime_name = "runc"\n'
    ed = Editor(text)
    with pytest.raises(TomlEditError, match="cannot edit safely"):
        ed.set_value(CTD, "default_runtime_name", "nvidia")


def test_crlf_files_stay_crlf():
    text = SAMPLE.replace("\n", "\r\n")
    ed = Editor(text)
    ed.add_table(RT + ("nvidia",), {"runtime_type": "x"}, after=RT + ("runc",), indent="    ")
    ed.set_value(CTD, "default_runtime_name", "nvidia")
    assert "\n" not in ed.text.replace("\r\n", "")
    ed.remove_table(RT + ("nvidia",))
    ed.undo_value(CTD, "default_runtime_name")
    assert ed.text == text


def test_file_without_final_newline_round_trips_exactly():
    text = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  default_runtime_name = "runc"'
    ed = Editor(text)
    ed.add_table(RT + ("nvidia",), {"runtime_type": "x"})
    ed.set_value(CTD, "default_runtime_name", "nvidia")
    assert ed.tt.get(RT + ("nvidia", "runtime_type")) == "x"
    ed.remove_table(RT + ("nvidia",))
    ed.undo_value(CTD, "default_runtime_name")
    assert ed.text == text


def test_root_key_added_to_a_file_without_final_newline_round_trips():
    text = "version = 2"
    ed = Editor(text)
    ed.set_value((), "imports", ["/x.toml"])
    assert ed.tt.data == {"version": 2, "imports": ["/x.toml"]}
    ed.undo_value((), "imports")
    assert ed.text == text
