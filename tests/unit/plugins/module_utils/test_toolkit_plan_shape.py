"""One Plan/diff shape and one file reader (issue 11): the toolkit engine plans with common.Plan/FileChange,
reads with common.read_text, and its errors are EngineErrors like the runtime engines'."""

import os
import re

import pytest

from ansible_collections.gpuops.nvidia.plugins.module_utils import common, docker, toolkit

DIFF_KEYS = {"before", "after", "before_header", "after_header"}
SETTING = {"nvidia-container-runtime.mode": "cdi"}


def runtime_diff(path, before, after):
    """The diff a runtime engine's plan gives for the same change of one file."""
    p = common.Plan()
    p.files.append(common.FileChange(path, before, after))
    return p.diff()


# -- one Plan/diff shape ----------------------------------------------------------------------------
def test_the_toolkit_plan_is_a_common_plan_of_one_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[nvidia-container-runtime]\nmode = "auto"\n')
    plan = toolkit.plan(str(path), SETTING)
    assert isinstance(plan, common.Plan)
    assert [type(f) for f in plan.files] == [common.FileChange]
    f = plan.files[0]
    assert (f.path, f.before, f.after) == (str(path), '[nvidia-container-runtime]\nmode = "auto"\n',
                                           '[nvidia-container-runtime]\nmode = "cdi"\n')
    assert plan.settings == SETTING


def test_the_diff_of_a_changed_file_is_the_runtime_engines_list_form(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[nvidia-container-runtime]\nmode = "auto"\n')
    diff = toolkit.plan(str(path), SETTING).diff()
    assert isinstance(diff, list) and len(diff) == 1 and set(diff[0]) == DIFF_KEYS
    assert diff == runtime_diff(str(path), path.read_text(), '[nvidia-container-runtime]\nmode = "cdi"\n')
    assert diff[0]["before_header"] == "%s (before)" % path and diff[0]["after_header"] == "%s (after)" % path


def test_a_new_file_has_the_same_diff_as_a_new_file_of_a_runtime_engine(tmp_path):
    toolkit_path, docker_path = tmp_path / "config.toml", tmp_path / "daemon.json"
    tk = toolkit.plan(str(toolkit_path), SETTING).diff()
    dk = [d for d in docker.plan({"config": str(docker_path)}).diff() if d["before_header"].startswith(str(docker_path) + " ")]
    assert [set(d) for d in tk] == [set(d) for d in dk] == [DIFF_KEYS]
    assert tk[0]["before"] == dk[0]["before"] == ""
    assert (tk[0]["before_header"], dk[0]["before_header"]) == ("%s (absent)" % toolkit_path, "%s (absent)" % docker_path)
    assert tk == runtime_diff(str(toolkit_path), None, '[nvidia-container-runtime]  # gpuops.nvidia: added\nmode = "cdi"\n')


def test_no_change_is_an_empty_list_like_the_runtime_engines(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[nvidia-container-runtime]\nmode = "cdi"\n')
    plan = toolkit.plan(str(path), SETTING)
    assert not plan.changed and plan.diff() == [] == runtime_diff(str(path), path.read_text(), path.read_text())


def test_a_missing_file_that_gets_no_content_stays_missing_and_unchanged(tmp_path):
    path = tmp_path / "etc" / "config.toml"
    plan = toolkit.plan(str(path), None, ["nvidia-container-runtime.mode"])
    assert [(f.before, f.after) for f in plan.files] == [(None, None)]
    assert not plan.changed and plan.diff() == []
    assert not common.FileChange(str(path), None, None).changed


# -- one reader: common.read_text ------------------------------------------------------------------
def test_the_toolkit_has_no_reader_of_its_own():
    assert not hasattr(toolkit, "read_text")


def test_a_directory_is_an_error_naming_it(tmp_path):
    with pytest.raises(common.EngineError, match=re.escape("%s is a directory" % tmp_path)):
        common.read_text(str(tmp_path))


def test_a_symlink_to_a_directory_is_a_directory_too(tmp_path):
    link = tmp_path / "config.toml"
    link.symlink_to(tmp_path)
    with pytest.raises(common.EngineError, match=re.escape("%s is a directory" % link)):
        common.read_text(str(link))


def test_a_dangling_symlink_is_a_missing_file(tmp_path):
    link = tmp_path / "config.toml"
    link.symlink_to(tmp_path / "nowhere.toml")
    assert common.read_text(str(link)) is None


def test_a_parent_that_is_a_file_means_a_missing_file(tmp_path):
    blocker = tmp_path / "etc"
    blocker.write_text("")
    assert common.read_text(str(blocker / "config.toml")) is None


def test_a_plain_missing_file_is_none(tmp_path):
    assert common.read_text(str(tmp_path / "config.toml")) is None


def test_a_symlink_loop_is_an_error_not_a_missing_file(tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    os.symlink(str(b), str(a))
    os.symlink(str(a), str(b))
    with pytest.raises(common.EngineError, match=re.escape("%s is a symlink loop" % a)):
        common.read_text(str(a))


def test_non_utf8_bytes_are_an_error_naming_the_file(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'a = "\xe9"\n')
    with pytest.raises(common.EngineError, match=re.escape("%s is not UTF-8 text" % path)):
        common.read_text(str(path))


def test_utf8_text_is_read_as_is(tmp_path):
    path = tmp_path / "config.toml"
    path.write_bytes('a = "\u00e9"\r\n'.encode("utf-8"))
    assert common.read_text(str(path)) == 'a = "\u00e9"\r\n'


# -- one error family ---------------------------------------------------------------------------------
def test_toolkit_errors_are_engine_errors():
    assert issubclass(toolkit.ToolkitError, common.EngineError)
    with pytest.raises(common.EngineError, match="invalid key"):
        toolkit.plan("/nonexistent/config.toml", {"a..b": 1})


@pytest.mark.parametrize("make, match", [
    (lambda d: d, "is a directory"),
    (lambda d: (os.symlink(str(d / "y"), str(d / "x")), os.symlink(str(d / "x"), str(d / "y")), d / "x")[-1],
     "is a symlink loop"),
], ids=["directory", "symlink-loop"])
def test_toolkit_read_errors_are_engine_errors(tmp_path, make, match):
    with pytest.raises(common.EngineError, match=match):
        toolkit.plan(str(make(tmp_path)), SETTING)
