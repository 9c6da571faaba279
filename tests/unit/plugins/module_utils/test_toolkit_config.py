"""The toolkit config logic (module_utils/toolkit.py): requests in, exact bytes out."""

import pytest

from ansible_collections.gpuops.nvidia.plugins.module_utils import toolkit
from ansible_collections.gpuops.nvidia.plugins.module_utils.common import EngineError
from ansible_collections.gpuops.nvidia.plugins.module_utils.tomledit import TomlEditError
from ansible_collections.gpuops.nvidia.plugins.module_utils.toolkit import ToolkitError, edit, split_key
from ansible_run import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "toolkit"
DEBIAN = (FIXTURES / "config-debian.toml").read_text()
UBUNTU = (FIXTURES / "config-ubuntu.toml").read_text()
NVIDIA_CTK_DEFAULT = (FIXTURES / "nvidia-ctk-1.20-config-default.toml").read_text()
M = "  # gpuops.nvidia: added"   # the marker after the header of a table we add (unset removes it again)


def replaced(text, old, new):
    """``text`` with the single occurrence of ``old`` replaced (fails loudly when it is not exactly once)."""
    assert text.count(old) == 1, old
    return text.replace(old, new)


def changed_lines(before, after):
    """Lines of ``after`` that are not in ``before`` (and vice versa), in order."""
    b, a = before.splitlines(), after.splitlines()
    return [x for x in a if x not in b], [x for x in b if x not in a]


# -- keys ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dotted, parts", [
    ("mode", ("mode",)),
    ("nvidia-container-runtime.runtimes", ("nvidia-container-runtime", "runtimes")),
    ("nvidia-container-runtime.modes.cdi.spec-dirs", ("nvidia-container-runtime", "modes", "cdi", "spec-dirs")),
    ('"nvidia-container-runtime.runtimes"', ("nvidia-container-runtime.runtimes",)),
    ('features."a.b".c', ("features", "a.b", "c")),
    ("features.'a.b'", ("features", "a.b")),
    ('a . "b\\u0041" . c_1', ("a", "bA", "c_1")),
    ('""', ("",)),
])
def test_split_key(dotted, parts):
    assert split_key(dotted) == parts


@pytest.mark.parametrize("dotted, why", [
    ("", "empty key"), ("a..b", "empty segment"), ("a.", "empty segment"), (".a", "empty segment"),
    ("a b", "unexpected 'b'"), ("nvidia.com/gpu", "unexpected '/'"), ('a."b', "unterminated quote"),
    ("a.'b", "unterminated quote"), ('"a" x', "unexpected 'x'"), ("a = 1", "unexpected '='"),
])
def test_split_key_errors(dotted, why):
    with pytest.raises(ToolkitError, match="invalid key .*" + why):
        split_key(dotted)


def test_join_key_quotes_only_where_needed():
    assert toolkit.join_key(("features", "a.b", "c-d")) == 'features."a.b".c-d'


# -- setting values --------------------------------------------------------------------------------
def test_set_existing_key_changes_only_its_value():
    out, values = edit(DEBIAN, {"nvidia-container-runtime.runtimes": ["/usr/bin/crun", "runc"]})
    assert out == replaced(DEBIAN, 'runtimes = ["docker-runc", "runc", "crun"]', 'runtimes = ["/usr/bin/crun", "runc"]')
    assert values == {"nvidia-container-runtime.runtimes": ["/usr/bin/crun", "runc"]}


def test_set_string_and_booleans():
    out, values = edit(DEBIAN, {"nvidia-container-runtime.mode": "cdi", "disable-require": True,
                                "nvidia-container-runtime-hook.skip-mode-detection": True})
    expected = replaced(DEBIAN, 'mode = "auto"', 'mode = "cdi"')
    expected = replaced(expected, "disable-require = false", "disable-require = true")
    expected = replaced(expected, "skip-mode-detection = false", "skip-mode-detection = true")
    assert out == expected
    assert values["disable-require"] is True


def test_a_string_true_stays_a_string():
    out, values = edit(DEBIAN, {"disable-require": "true"})
    assert out == replaced(DEBIAN, "disable-require = false", 'disable-require = "true"')
    assert values == {"disable-require": "true"}


def test_commented_only_key_is_added_right_after_its_comment():
    out, values = edit(DEBIAN, {"nvidia-container-cli.no-cgroups": True})
    assert out == replaced(DEBIAN, "#no-cgroups = false\n", "#no-cgroups = false\nno-cgroups = true\n")
    assert values == {"nvidia-container-cli.no-cgroups": True}


def test_commented_key_goes_into_its_own_table_only():
    # '#debug' is commented in both [nvidia-container-cli] and [nvidia-container-runtime]
    out, dummy = edit(DEBIAN, {"nvidia-container-runtime.debug": "/var/log/nvidia-container-runtime.log"})
    assert out == replaced(DEBIAN, '#debug = "/var/log/nvidia-container-runtime.log"\n',
                           '#debug = "/var/log/nvidia-container-runtime.log"\n'
                           'debug = "/var/log/nvidia-container-runtime.log"\n')


def test_commented_root_key_and_its_indentation():
    out, dummy = edit(DEBIAN, {"accept-nvidia-visible-devices-as-volume-mounts": True})
    assert out.startswith("#accept-nvidia-visible-devices-as-volume-mounts = false\n"
                          "accept-nvidia-visible-devices-as-volume-mounts = true\n"
                          "#accept-nvidia-visible-devices-envvar-when-unprivileged = true\n")
    assert changed_lines(DEBIAN, out) == (["accept-nvidia-visible-devices-as-volume-mounts = true"], [])
    text = "[t]\n    a = 1\n    # b = 2\n    c = 3\n"
    out, dummy = edit(text, {"t.b": 5})
    assert out == "[t]\n    a = 1\n    # b = 2\n    b = 5\n    c = 3\n"


def test_new_key_without_comment_goes_after_the_tables_last_key():
    out, dummy = edit(DEBIAN, {"nvidia-container-cli.no-pivot": True})
    assert out == replaced(DEBIAN, "load-kmods = true\n", "load-kmods = true\nno-pivot = true\n")


def test_new_sub_table_goes_after_its_siblings():
    out, values = edit(DEBIAN, {"nvidia-container-runtime.modes.legacy.cuda-compat-mode": "ldconfig"})
    assert out == replaced(
        DEBIAN,
        'mount-spec-path = "/etc/nvidia-container-runtime/host-files-for-container.d"\n',
        'mount-spec-path = "/etc/nvidia-container-runtime/host-files-for-container.d"\n'
        '\n[nvidia-container-runtime.modes.legacy]' + M + '\ncuda-compat-mode = "ldconfig"\n')
    assert values == {"nvidia-container-runtime.modes.legacy.cuda-compat-mode": "ldconfig"}


def test_new_top_level_table_goes_at_the_end_and_gets_all_its_keys():
    out, dummy = edit(DEBIAN, {"features.allow-ldconfig-from-container": False,
                               "features.disable-imex-channel-creation": True})
    assert out == DEBIAN + ("\n[features]" + M + "\nallow-ldconfig-from-container = false\n"
                            "disable-imex-channel-creation = true\n")


def test_new_table_follows_an_indented_files_style():
    text = "[plugins]\n  [plugins.a]\n    x = 1\n"
    out, dummy = edit(text, {"plugins.b.y": 2})
    assert out == text + "\n  [plugins.b]" + M + "\n    y = 2\n"


def test_quoted_segment_with_a_dot():
    out, values = edit(DEBIAN, {'nvidia-container-runtime-hook."x.y"': 1})
    assert out == replaced(DEBIAN, "skip-mode-detection = false\n", 'skip-mode-detection = false\n"x.y" = 1\n')
    assert values == {'nvidia-container-runtime-hook."x.y"': 1}


def test_changed_value_keeps_its_trailing_comment():
    text = '[nvidia-container-runtime]\nmode = "auto"  # set by the installer\n'
    out, dummy = edit(text, {"nvidia-container-runtime.mode": "cdi"})
    assert out == '[nvidia-container-runtime]\nmode = "cdi"  # set by the installer\n'


def test_list_values_and_empty_lists():
    out, values = edit(DEBIAN, {"nvidia-container-cli.environment": ["A=1", "B=2"],
                                "nvidia-container-runtime.modes.cdi.spec-dirs": [],
                                "nvidia-container-runtime.modes.cdi.annotation-prefixes": ("x/", "y/")})
    expected = replaced(DEBIAN, "environment = []", 'environment = ["A=1", "B=2"]')
    expected = replaced(expected, 'spec-dirs = ["/etc/cdi", "/var/run/cdi"]', "spec-dirs = []")
    expected = replaced(expected, 'annotation-prefixes = ["cdi.k8s.io/"]', 'annotation-prefixes = ["x/", "y/"]')
    assert out == expected
    assert values["nvidia-container-runtime.modes.cdi.annotation-prefixes"] == ["x/", "y/"]


def test_a_value_of_another_type_is_rewritten():
    text = "[nvidia-container-cli]\nno-cgroups = 1\n"
    out, dummy = edit(text, {"nvidia-container-cli.no-cgroups": True})
    assert out == "[nvidia-container-cli]\nno-cgroups = true\n"


def test_ubuntu_file_keeps_its_ldconfig():
    out, dummy = edit(UBUNTU, {"nvidia-container-runtime.mode": "cdi", "nvidia-container-cli.no-cgroups": True})
    assert 'ldconfig = "@/sbin/ldconfig.real"\n' in out
    assert changed_lines(UBUNTU, out) == (["no-cgroups = true", 'mode = "cdi"'], ['mode = "auto"'])


def test_crlf_file_stays_crlf():
    text = DEBIAN.replace("\n", "\r\n")
    out, dummy = edit(text, {"nvidia-container-cli.no-cgroups": True, "nvidia-container-runtime.mode": "cdi",
                             "features.x": 1})
    assert "\n" not in out.replace("\r\n", "")
    assert out.replace("\r\n", "\n") == edit(DEBIAN, {"nvidia-container-cli.no-cgroups": True,
                                                      "nvidia-container-runtime.mode": "cdi", "features.x": 1})[0]


# -- idempotence -----------------------------------------------------------------------------------
REQUEST = {
    "nvidia-container-runtime.runtimes": ["/usr/bin/crun", "runc"],
    "nvidia-container-runtime.mode": "cdi",
    "nvidia-container-cli.no-cgroups": True,
    "accept-nvidia-visible-devices-as-volume-mounts": True,
    "nvidia-container-runtime.modes.legacy.cuda-compat-mode": "ldconfig",
    "features.allow-ldconfig-from-container": False,
}


@pytest.mark.parametrize("source", [DEBIAN, UBUNTU, "", None])
def test_second_run_changes_zero_bytes(source):
    once, values = edit(source, REQUEST, ["nvidia-ctk.path"])
    twice, values2 = edit(once, REQUEST, ["nvidia-ctk.path"])
    assert twice == once
    assert values == values2 == {k: (list(v) if isinstance(v, list) else v) for k, v in REQUEST.items()}


def test_already_set_value_in_another_spelling_is_left_alone():
    text = "[nvidia-container-runtime]\nruntimes = [ 'runc' ,'crun' ]\n"
    assert edit(text, {"nvidia-container-runtime.runtimes": ["runc", "crun"]})[0] == text


# -- a new file ------------------------------------------------------------------------------------
def test_new_file_from_nothing():
    out, dummy = edit(None, {"nvidia-container-runtime.runtimes": ["/usr/bin/crun"], "disable-require": False,
                             "nvidia-container-cli.no-cgroups": True})
    assert out == ("disable-require = false\n"
                   "\n[nvidia-container-runtime]" + M + "\nruntimes = [\"/usr/bin/crun\"]\n"
                   "\n[nvidia-container-cli]" + M + "\nno-cgroups = true\n")


# -- unset -----------------------------------------------------------------------------------------
def test_unset_removes_the_line_only():
    out, values = edit(DEBIAN, None, ["nvidia-container-runtime.log-level", "load-kmods",   # no root load-kmods
                                      "nvidia-container-cli.load-kmods"])
    assert out == replaced(DEBIAN, 'log-level = "info"\n', "").replace("load-kmods = true\n", "")
    assert values == {}


def test_unset_after_set_restores_the_original_bytes():
    out, dummy = edit(DEBIAN, {"nvidia-container-cli.no-cgroups": True,
                               "accept-nvidia-visible-devices-as-volume-mounts": True})
    back, dummy = edit(out, None, ["nvidia-container-cli.no-cgroups", "accept-nvidia-visible-devices-as-volume-mounts"])
    assert back == DEBIAN


def test_unset_missing_keys_changes_nothing():
    out, dummy = edit(DEBIAN, None, ["nvidia-container-cli.no-cgroups", "nope.nothing", "features.x"])
    assert out == DEBIAN


def test_unset_a_table_is_refused():
    with pytest.raises(ToolkitError, match="nvidia-container-runtime.modes.cdi: it is a table"):
        edit(DEBIAN, None, ["nvidia-container-runtime.modes.cdi"])


# -- errors ----------------------------------------------------------------------------------------
def test_crossing_a_non_table_is_an_error():
    with pytest.raises(ToolkitError) as e:
        edit(DEBIAN, {"nvidia-container-runtime.mode.x": 1}, name="/etc/x.toml")
    assert str(e.value) == ('/etc/x.toml: cannot set nvidia-container-runtime.mode.x: nvidia-container-runtime.mode '
                            'is a string ("auto"), not a table')
    with pytest.raises(ToolkitError, match="disable-require is a boolean \\(false\\), not a table"):
        edit(DEBIAN, {"disable-require.a.b": 1})
    with pytest.raises(ToolkitError, match=r"cannot unset nvidia-container-runtime.runtimes.x: "
                                           r"nvidia-container-runtime.runtimes is an array \(\["):
        edit(DEBIAN, None, ["nvidia-container-runtime.runtimes.x"])


def test_setting_a_table_to_a_value_is_an_error():
    with pytest.raises(ToolkitError, match="nvidia-container-runtime.modes: it is a table"):
        edit(DEBIAN, {"nvidia-container-runtime.modes": "cdi"})


def test_malformed_toml_names_file_and_line():
    bad = replaced(DEBIAN, 'mode = "auto"', 'mode = "auto')
    line = bad.splitlines().index('mode = "auto') + 1
    with pytest.raises(TomlEditError) as e:
        edit(bad, {"nvidia-container-runtime.mode": "cdi"}, name="/etc/nvidia-container-runtime/config.toml")
    assert "malformed TOML in /etc/nvidia-container-runtime/config.toml:%d" % line in str(e.value)


def test_duplicate_table_is_malformed():
    with pytest.raises(TomlEditError, match="malformed TOML"):
        edit("[a]\nx = 1\n[a]\ny = 2\n", {"a.x": 2})


@pytest.mark.parametrize("settings, unset, match", [
    ({"a.b": 1}, ["a.b"], "name the same key"),
    ({"a.b": 1, '"a".b': 2}, [], "name the same key"),
    ({"a.b": 1, "a.b.c": 2}, [], "overlap"),
    ({"a.b.c": 1}, ["a.b"], "overlap"),
    ({"a": None}, [], "no null value"),
    ({"a": {"b": 1}}, [], "a mapping is not a value"),
    ({"a": [{"b": 1}]}, [], "arrays of tables"),
    ({"a": [1, None]}, [], "no null value"),
    ({"a b": 1}, [], "invalid key"),
    ({}, ["x..y"], "invalid key"),
])
def test_bad_requests(settings, unset, match):
    with pytest.raises(ToolkitError, match=match):
        edit(DEBIAN, settings, unset)


def test_the_same_key_twice_in_unset_is_fine():
    out, dummy = edit(DEBIAN, None, ["nvidia-ctk.path", "nvidia-ctk.path"])
    assert out == replaced(DEBIAN, 'path = "nvidia-ctk"\n', "")


def test_a_multiline_value_is_refused_clearly():
    text = '[nvidia-container-runtime]\nruntimes = [\n  "runc",\n]\n'
    with pytest.raises(TomlEditError, match="cannot edit safely"):
        edit(text, {"nvidia-container-runtime.runtimes": ["crun"]})
    # but an equal value is simply left alone
    assert edit(text, {"nvidia-container-runtime.runtimes": ["runc"]})[0] == text


# -- plan / files ----------------------------------------------------------------------------------
def test_plan_of_an_existing_file(tmp_path):
    p = tmp_path / "config.toml"
    p.write_text(DEBIAN)
    plan = toolkit.plan(str(p), {"nvidia-container-runtime.mode": "cdi"})
    f = plan.files[0]
    assert plan.changed and f.before == DEBIAN
    assert f.after == replaced(DEBIAN, 'mode = "auto"', 'mode = "cdi"')
    assert plan.diff() == [dict(before=DEBIAN, after=f.after, before_header="%s (before)" % p,
                                after_header="%s (after)" % p)]
    p.write_text(f.after)
    again = toolkit.plan(str(p), {"nvidia-container-runtime.mode": "cdi"})
    assert not again.changed and again.settings == {"nvidia-container-runtime.mode": "cdi"} and again.diff() == []


def test_plan_of_a_missing_file(tmp_path):
    p = tmp_path / "etc" / "config.toml"
    plan = toolkit.plan(str(p), {"nvidia-container-runtime.mode": "cdi"})
    assert plan.changed and plan.files[0].before is None
    assert plan.files[0].after == '[nvidia-container-runtime]' + M + '\nmode = "cdi"\n'
    assert [d["before_header"] for d in plan.diff()] == ["%s (absent)" % p]
    nothing = toolkit.plan(str(p), None, ["nvidia-container-runtime.mode"])
    assert not nothing.changed and nothing.files[0].after is None and nothing.diff() == []


def test_plan_read_errors(tmp_path):
    """The file is read by common.read_text: its errors are EngineErrors (ToolkitError's family)."""
    with pytest.raises(EngineError, match="is a directory"):
        toolkit.plan(str(tmp_path), {"a": 1})
    p = tmp_path / "latin1.toml"
    p.write_bytes(b'a = "\xe9"\n')
    with pytest.raises(EngineError, match="not UTF-8"):
        toolkit.plan(str(p), {"a": 1})
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert toolkit.plan(str(blocker / "config.toml"), {"a": 1}).files[0].before is None   # the write will fail instead


def test_new_parent_and_child_tables_come_out_in_order_whatever_the_request_order():
    out, dummy = edit(DEBIAN, {"features.sub.deep": 1, "features.flag": True})
    assert out == DEBIAN + "\n[features]" + M + "\nflag = true\n\n[features.sub]" + M + "\ndeep = 1\n"


# -- set then unset gives the original bytes back (issue 10, item 15) --------------------------------
@pytest.mark.parametrize("text", [NVIDIA_CTK_DEFAULT, DEBIAN], ids=["nvidia-ctk-1.20-default", "debian"])
@pytest.mark.parametrize("keys", [
    ["features.allow-ldconfig-from-container"],                        # a new top-level table, at the end
    ["nvidia-container-runtime.modes.jit-cdi.annotation-prefixes"],    # a new sub-table, among its siblings
    ["features.flag", "features.sub.deep"],                            # a new table and its new sub-table
    ["nvidia-container-runtime.modes.cdi.extra", "features.a", "nvidia-ctk.x"],   # mixed with existing tables
])
def test_set_then_unset_gives_the_original_bytes_back(text, keys):
    out, dummy = edit(text, {k: True for k in keys})
    assert out != text
    back, dummy = edit(out, None, keys)
    assert back == text
    back, dummy = edit(out, None, list(reversed(keys)))   # whatever the order of the unset
    assert back == text


def test_set_then_unset_of_a_new_file_leaves_nothing():
    out, dummy = edit(None, {"nvidia-container-runtime.mode": "cdi", "nvidia-container-cli.no-cgroups": True})
    back, dummy = edit(out, None, ["nvidia-container-runtime.mode", "nvidia-container-cli.no-cgroups"])
    assert back == ""


def test_a_hand_written_table_keeps_its_header_when_its_last_key_is_unset():
    out, dummy = edit(NVIDIA_CTK_DEFAULT, None, ["nvidia-ctk.path"])
    assert out == replaced(NVIDIA_CTK_DEFAULT, '[nvidia-ctk]\npath = "nvidia-ctk"\n', "[nvidia-ctk]\n")


def test_a_table_we_added_stays_while_it_holds_anything_else():
    out, dummy = edit(DEBIAN, {"features.a": True, "features.b": False})
    back, dummy = edit(out, None, ["features.a"])
    assert back == DEBIAN + "\n[features]" + M + "\nb = false\n"
    commented = out.replace("a = true\n", "a = true\n# kept by hand\n")
    back, dummy = edit(commented, None, ["features.a", "features.b"])
    assert back == DEBIAN + "\n[features]" + M + "\n# kept by hand\n"
    with_sub, dummy = edit(out, {"features.sub.c": 1})
    back, dummy = edit(with_sub, None, ["features.a", "features.b"])
    assert back == DEBIAN + "\n[features]" + M + "\n\n[features.sub]" + M + "\nc = 1\n"
