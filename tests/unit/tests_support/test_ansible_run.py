"""Proves tests/ansible_run.py (and the collection plumbing) with builtin modules."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ansible_run
from ansible_run import run_module, run_playbook

# A throw-away module (found through ANSIBLE_LIBRARY) that reports what it sees: the
# interpreter running it, an environment variable, and one warning.
PROBE_MODULE = textwrap.dedent(
    """\
    #!/usr/bin/python
    import os, sys
    from ansible.module_utils.basic import AnsibleModule

    def main():
        m = AnsibleModule(argument_spec=dict(text=dict(type="str"), fail=dict(type="bool", default=False)),
                          supports_check_mode=True)
        if m.params["fail"]:
            m.fail_json(msg="probe failed on purpose: " + (m.params["text"] or ""), detail=42)
        m.warn("probe warning")
        m.exit_json(changed=True, text=m.params["text"], python=sys.executable,
                    env_value=os.environ.get("GPUOPS_PROBE_VAR"), check_mode=m.check_mode)

    if __name__ == "__main__":
        main()
    """
)


@pytest.fixture
def probe_env(tmp_path: Path) -> dict[str, str]:
    lib = tmp_path / "library"
    lib.mkdir()
    (lib / "gpuops_probe.py").write_text(PROBE_MODULE)
    return {"ANSIBLE_LIBRARY": str(lib), "GPUOPS_PROBE_VAR": "hello from the test"}


# --------------------------------------------------------------------------- run_module
def test_ping_ok() -> None:
    r = run_module("ansible.builtin.ping", {})
    assert r["failed"] is False
    assert r["changed"] is False
    assert r["ping"] == "pong"
    assert r.rc == 0


def test_failing_module_is_returned_not_raised() -> None:
    r = run_module("ansible.builtin.ping", {"data": "crash"})
    assert r["failed"] is True
    assert "boom" in r["msg"] or "crash" in json.dumps(r).lower()


def test_fail_json_message_and_extra_keys(probe_env: dict[str, str]) -> None:
    r = run_module("gpuops_probe", {"text": "xyz", "fail": True}, env=probe_env)
    assert r["failed"] is True
    assert r["changed"] is False
    assert r["msg"] == "probe failed on purpose: xyz"
    assert r["detail"] == 42


def test_module_runs_with_this_interpreter_env_and_warnings(probe_env: dict[str, str]) -> None:
    r = run_module("gpuops_probe", {"text": "t"}, env=probe_env)
    assert r["failed"] is False, r
    assert r["changed"] is True
    assert r["python"] == sys.executable
    assert r["env_value"] == "hello from the test"
    assert r["check_mode"] is False
    assert "probe warning" in r.get("warnings", [])


def test_check_mode_is_passed(probe_env: dict[str, str]) -> None:
    r = run_module("gpuops_probe", {"text": "t"}, check=True, env=probe_env)
    assert r["check_mode"] is True


def test_copy_check_mode_with_diff_leaves_file_alone(tmp_path: Path) -> None:
    f = tmp_path / "config.toml"
    f.write_text("version = 2\n")
    r = run_module(
        "ansible.builtin.copy",
        {"dest": str(f), "content": "version = 3\n", "mode": "0644"},
        check=True,
        diff=True,
    )
    assert r["failed"] is False, r
    assert r["changed"] is True
    assert f.read_text() == "version = 2\n"
    diffs = r["diff"] if isinstance(r["diff"], list) else [r["diff"]]
    content_diff = [d for d in diffs if "before" in d and "after" in d and "version" in str(d["after"])]
    assert content_diff, r["diff"]
    assert content_diff[0]["before"] == "version = 2\n"
    assert content_diff[0]["after"] == "version = 3\n"


def test_copy_for_real_then_idempotent(tmp_path: Path) -> None:
    f = tmp_path / "out.txt"
    args = {"dest": str(f), "content": "a\n", "mode": "0600"}
    r1 = run_module("ansible.builtin.copy", args)
    assert (r1["failed"], r1["changed"]) == (False, True), r1
    assert f.read_text() == "a\n"
    r2 = run_module("ansible.builtin.copy", args)
    assert (r2["failed"], r2["changed"]) == (False, False), r2


def test_no_diff_key_without_diff_mode(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_text("1\n")
    r = run_module("ansible.builtin.copy", {"dest": str(f), "content": "2\n"}, check=True)
    assert r["changed"] is True
    assert "diff" not in r or not r["diff"]


def test_arguments_are_never_templated(tmp_path: Path) -> None:
    f = tmp_path / "tmpl"
    text = '{{ template "base" . }}\n{% raw %}x{{ y }}\n\'quotes\' "dq" \\ \u00e9 \t!\n'
    r = run_module("ansible.builtin.copy", {"dest": str(f), "content": text})
    assert r["failed"] is False, r
    assert f.read_text() == text


def test_non_string_arguments(tmp_path: Path) -> None:
    d = tmp_path / "d"
    r = run_module("ansible.builtin.file", {"path": d, "state": "directory", "mode": "0750", "recurse": False})
    assert r["failed"] is False, r
    assert d.is_dir() and (d.stat().st_mode & 0o777) == 0o750


def test_unknown_module_gives_failed_result_with_ansible_error() -> None:
    r = run_module("gpuops.nvidia.no_such_module_here", {"x": 1})
    assert r["failed"] is True
    assert r["changed"] is False
    assert "no_such_module_here" in r["msg"]
    assert r.rc != 0


def test_bad_argument_is_a_failed_result() -> None:
    r = run_module("ansible.builtin.ping", {"no_such_option": 1})
    assert r["failed"] is True
    assert "no_such_option" in r["msg"]


# --------------------------------------------------------------------------- run_playbook
PLAYBOOK = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.copy:
        dest: "{{ dest }}"
        content: "{{ content }}"
        mode: "0600"
"""


def test_run_playbook_text_with_extravars(tmp_path: Path) -> None:
    dest = tmp_path / "pb.txt"
    rc, out, err = run_playbook(PLAYBOOK, extravars={"dest": str(dest), "content": "it's \"quoted\"\n"})
    assert rc == 0, out + err
    assert dest.read_text() == "it's \"quoted\"\n"
    assert "changed=1" in out


def test_run_playbook_file_check_and_diff(tmp_path: Path) -> None:
    dest = tmp_path / "pb.txt"
    dest.write_text("old\n")
    pb = tmp_path / "play.yml"
    pb.write_text(PLAYBOOK)
    rc, out, err = run_playbook(pb, extravars={"dest": str(dest), "content": "new\n"}, check=True, diff=True)
    assert rc == 0, out + err
    assert dest.read_text() == "old\n"
    assert "-old" in out and "+new" in out


def test_run_playbook_failure_rc(tmp_path: Path) -> None:
    rc, out, err = run_playbook(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.fail:\n        msg: deliberate failure\n"
    )
    assert rc != 0
    assert "deliberate failure" in out + err


# --------------------------------------------------------------------------- plumbing
def test_collection_link_points_at_checkout() -> None:
    in_place = ansible_run.in_place_collections_root()
    if in_place is not None:  # e.g. under ansible-test: the checkout is the collection, no link made
        assert ansible_run.ensure_collection_path() == in_place
        assert (in_place / "ansible_collections" / "gpuops" / "nvidia").resolve() == ansible_run.REPO_ROOT
        return
    link = ansible_run.COLLECTION_LINK
    assert link.is_symlink()
    assert link.resolve() == ansible_run.REPO_ROOT
    assert ansible_run.ensure_collection_path() == ansible_run.BUILD_DIR  # idempotent
    assert link.is_symlink() and link.resolve() == ansible_run.REPO_ROOT


def test_environment_set_up_by_conftest(collections_path: Path) -> None:
    assert collections_path == (ansible_run.in_place_collections_root() or ansible_run.BUILD_DIR)
    assert os.environ["ANSIBLE_COLLECTIONS_PATH"].split(os.pathsep)[0] == str(collections_path)
    if "ansible_pytest_collections" not in sys.modules:  # ansible-test's own loader imports the collection
        assert str(collections_path) in sys.path


def test_python_import_through_link(collections_path: Path) -> None:
    spec = importlib.util.find_spec("ansible_collections.gpuops.nvidia")
    assert spec is not None
    locations = [os.path.realpath(p) for p in (spec.submodule_search_locations or [])]
    assert str(ansible_run.REPO_ROOT) in locations


def test_ansible_sees_the_collection() -> None:
    p = subprocess.run(
        ansible_run._ansible_cmd("galaxy") + ["collection", "list", "gpuops.nvidia", "--format", "json"],
        check=False,
        env=ansible_run.ansible_env(),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    found = json.loads(p.stdout)
    versions = {name: info for path in found.values() for name, info in path.items()}
    assert "gpuops.nvidia" in versions, found
