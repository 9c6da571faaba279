"""Tags of gpuops.nvidia.nvidia_runtime: one per concern, so operators can run or skip a step.

``ansible-playbook --list-tasks --tags T`` shows, per tag, that only that concern's steps (plus the
always-tagged preflight and facts, and the tomlkit step for the steps that need it) are selected.
Then the role runs for real on localhost against a k0s sandbox in tmp_path (bootstrap: no k0s, no
containerd binary, nothing restarted) with ``--tags`` / ``--skip-tags``, and the files on disk say which
steps ran: the k0s drop-in is the runtime step, the toolkit's config.toml the toolkit_config step.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ansible_run import REPO_ROOT, run_playbook

pytestmark = [pytest.mark.integration]

ROLE_TASKS = REPO_ROOT / "roles" / "nvidia_runtime" / "tasks"

PLAYBOOK = """\
- name: nvidia_runtime tags
  hosts: localhost
  gather_facts: false
  roles:
    - role: gpuops.nvidia.nvidia_runtime
"""

# tag -> the top-level step(s) of tasks/main.yml it must select (names as --list-tasks prints them)
CONCERNS = {
    "driver": ["NVIDIA driver"],
    "toolkit": ["NVIDIA Container Toolkit packages"],
    "tomlkit": ["Install the distribution's TOML reader package", "Install a TOML reader with pip (nvidia_runtime_toml_pip)"],
    "runtime": ["Check the runtime that becomes the default (every engine)", "Configure the container runtime"],
    "toolkit_config": ["Align the toolkit config with the runtime it wraps"],
    "cdi": ["CDI specification"],
    "runtimeclass": ["RuntimeClass"],
    "verify": ["Verify what the runtime reports"],
}
ENTRY_STEPS = {name for names in CONCERNS.values() for name in names}
# Steps that need a TOML reader also run its installation; the facts (which report it) and the summary run always.
NEEDS_TOMLKIT = {"tomlkit", "runtime", "toolkit_config"}

TASK_LINE = re.compile(r"^\s+(?:gpuops\.nvidia\.)?nvidia_runtime : (?P<name>.+?)\tTAGS: \[(?P<tags>[^\]]*)\]\s*$", re.M)


def list_tasks(*args: str) -> list[tuple[str, set[str]]]:
    rc, out, err = run_playbook(PLAYBOOK, extra_args=["--list-tasks", *args], timeout=120)
    assert rc == 0, out + err
    tasks = [(m["name"], {t.strip() for t in m["tags"].split(",") if t.strip()}) for m in TASK_LINE.finditer(out)]
    assert tasks, "no role task listed:\n" + out
    return tasks


def test_every_concern_has_its_tag_in_main():
    """main.yml: every include/import of a concern carries its tag (include_tasks also through apply);
    the TOML reader's installation is tagged in tomlkit.yml (the facts that report it run always)."""
    text = (ROLE_TASKS / "main.yml").read_text()
    for tag in set(CONCERNS) - {"tomlkit"}:
        assert re.search(r"tags: \[[^\]]*\b%s\b" % tag, text), tag
    assert "tags: [tomlkit, runtime, toolkit_config]" in (ROLE_TASKS / "tomlkit.yml").read_text()
    for include in re.finditer(r"ansible\.builtin\.include_tasks:\n(?P<body>(?:\s{4,}.*\n)+)", text):
        assert "apply:" in include["body"] and "tags:" in include["body"], include["body"]


@pytest.mark.parametrize("tag", sorted(CONCERNS))
def test_each_tag_selects_its_concern(tag):
    tasks = list_tasks("--tags", tag)
    names = {name for name, _tags in tasks}
    for step in CONCERNS[tag]:
        assert step in names, "%s does not select %r: %s" % (tag, step, sorted(names))
    # no other concern's step sneaks in; everything listed carries the tag or always
    others = ENTRY_STEPS - set(CONCERNS[tag])
    if tag in NEEDS_TOMLKIT:
        others -= set(CONCERNS["tomlkit"])
    assert not names & others, "%s also selects %s" % (tag, sorted(names & others))
    for name, tags in tasks:
        assert tag in tags or "always" in tags, (tag, name, tags)
    # preflight (the facts, with the TOML reader; the engine; the checks) and the summary always run
    for step in ("Gather the NVIDIA runtime facts (GPUs, driver, toolkit, container engines)",
                 "Check the node and the options",
                 "Record the outcome (nvidia_runtime_result)"):
        assert step in names, (tag, step)
    assert ("Install the distribution's TOML reader package" in names) == (tag in NEEDS_TOMLKIT)


def test_skip_tags_leave_a_concern_out():
    names = {name for name, _tags in list_tasks("--skip-tags", "driver,verify,tomlkit")}
    assert "NVIDIA driver" not in names and "Verify what the runtime reports" not in names
    assert "Install the distribution's TOML reader package" not in names
    assert "Configure the container runtime" in names and "NVIDIA Container Toolkit packages" in names
    assert "Check the node and the options" in names


# --------------------------------------------------------------------------- real runs (k0s sandbox)

def sandbox_vars(tmp_path: Path) -> dict:
    """k0s bootstrap inside tmp_path: no driver, no packages, no pip, no binary, nothing restarted."""
    return {
        "nvidia_runtime_driver_method": "none",
        "nvidia_runtime_toolkit_install": False,
        "nvidia_runtime_tomlkit_install": False,
        "nvidia_runtime_toolkit_config_path": str(tmp_path / "etc/nvidia-container-runtime/config.toml"),
        # an operator's own toolkit setting: the toolkit_config step writes it whether or not the runtime
        # step ran (aligning the runtimes list needs the runtime step's result; runc needs no alignment)
        "nvidia_runtime_toolkit_settings": {"nvidia-container-runtime.log-level": "info"},
        "nvidia_runtime_verify_retries": 1,
        "nvidia_runtime_verify_delay": 1,
        "nvidia_runtime_engine": "k0s",
        "nvidia_runtime_k0s_version": "v1.33.1+k0s.0",
        "nvidia_runtime_k0s_config": str(tmp_path / "etc/k0s/containerd.toml"),
        "nvidia_runtime_k0s_dropin_dir": str(tmp_path / "etc/k0s/containerd.d"),
        "nvidia_runtime_k0s_containerd_path": str(tmp_path / "var/lib/k0s/bin/containerd"),
        "nvidia_runtime_k0s_socket": str(tmp_path / "run/k0s/containerd.sock"),
    }


def run_tagged(tmp_path: Path, *args: str) -> tuple[bool, bool]:
    """(drop-in written, toolkit config written) after one run with the given tag arguments."""
    rc, out, err = run_playbook(PLAYBOOK, extravars=sandbox_vars(tmp_path), extra_args=list(args), timeout=300)
    assert rc == 0, "ansible-playbook %s failed (rc=%d)\n%s\n%s" % (" ".join(args), rc, out[-6000:], err[-3000:])
    return ((tmp_path / "etc/k0s/containerd.d/nvidia.toml").is_file(),
            (tmp_path / "etc/nvidia-container-runtime/config.toml").is_file())


@pytest.mark.slow
@pytest.mark.parametrize("args, expected", [
    (("--tags", "runtime"), (True, False)),
    (("--tags", "toolkit_config"), (False, True)),
    # verify would (rightly) fail where the runtime step never wrote the drop-in: skipped with it
    (("--skip-tags", "runtime,verify"), (False, True)),
    (("--skip-tags", "runtime,toolkit_config,verify"), (False, False)),
    (("--tags", "driver,toolkit,cdi,runtimeclass"), (False, False)),
    (("--skip-tags", "tomlkit"), (True, True)),
    ((), (True, True)),
], ids=["tags-runtime", "tags-toolkit_config", "skip-runtime", "skip-both", "tags-others", "skip-tomlkit", "no-tags"])
def test_tags_decide_what_runs(tmp_path, args, expected):
    assert run_tagged(tmp_path, *args) == expected


@pytest.mark.slow
def test_verify_after_a_full_run(tmp_path):
    """--tags verify alone says it needs the runtime step; --tags runtime,verify on a configured node checks
    it and changes nothing."""
    assert run_tagged(tmp_path) == (True, True)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    rc, out, err = run_playbook(PLAYBOOK, extravars=sandbox_vars(tmp_path), extra_args=["--tags", "verify"], timeout=300)
    assert rc != 0 and "run --tags runtime,verify" in out, out[-3000:]
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    rc, out, err = run_playbook(PLAYBOOK, extravars=sandbox_vars(tmp_path), extra_args=["--tags", "runtime,verify"],
                                timeout=300)
    assert rc == 0, out[-6000:] + err[-3000:]
    assert "Check the drop-in's version and handler" in out
    assert re.search(r"^localhost\s*:.*changed=0 ", out, re.M), out[-2000:]
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
