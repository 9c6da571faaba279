"""The role with engine microk8s, run for real on localhost against a MicroK8s tree in a temp folder.

MicroK8s itself is not here: its ``containerd-template.toml`` (tests/fixtures/microk8s) sits in a fake node tree
that the facts read (``nvidia_runtime_facts_root``), the role edits it in place with the containerd module, and the
result is judged the way MicroK8s would use it: the placeholders rendered by plain substitution (what the snap's
containerd wrapper does at start), then the real containerd build of the matching series (1.7 or 2.1, both load
the ``version = 2`` templates MicroK8s ships) started on the rendered file and asked over CRI ``Status`` which
runtimes it loaded.
"""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from ansible_collections.gpuops.nvidia.plugins.module_utils import facts
from ansible_run import REPO_ROOT, run_playbook
from test_role_sandbox import assert_ok, base_vars, localhost_inventory, recap, run_role

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "microk8s"
TEMPLATE = "var/snap/microk8s/current/args/containerd-template.toml"
NCR = "/usr/bin/nvidia-container-runtime"
PLACEHOLDER = re.compile(r"\$\{[A-Z_]+\}")


def node_tree(tmp_path: Path, fixture: str, *, with_binary: bool = True, text: str | None = None) -> Path:
    """A node tree with MicroK8s' template (and a stand-in for its containerd binary, which the facts only look
    at: they run nothing under another root). Returns the template's path."""
    root = tmp_path / "node"
    tpl = root / TEMPLATE
    tpl.parent.mkdir(parents=True)
    tpl.write_text(text if text is not None else (FIXTURES / fixture).read_text())
    (root / "snap/microk8s/current/meta").mkdir(parents=True)
    (root / "snap/microk8s/current/meta/snap.yaml").write_text("name: microk8s\nversion: v1.34.1\n")
    if with_binary:
        exe = root / "snap/microk8s/current/bin/containerd"
        exe.parent.mkdir(parents=True)
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
    return tpl


def mk8s_vars(tmp_path: Path, build, **extra) -> dict:
    v = base_vars(tmp_path)
    v.update({
        "nvidia_runtime_engine": "microk8s",
        "nvidia_runtime_facts_root": str(tmp_path / "node"),
        "nvidia_runtime_microk8s_template": str(tmp_path / "node" / TEMPLATE),
        "nvidia_runtime_microk8s_containerd_path": build.containerd if build else "",
        "nvidia_runtime_microk8s_socket": str(tmp_path / "no-containerd.sock"),
        # the handler keeps MicroK8s' /usr/bin/nvidia-container-runtime, which this host (no toolkit) lacks: a
        # sandbox is a bootstrap, so the role's missing-default-runtime check only warns
        "nvidia_runtime_allow_missing_runtime_binary": True,
    })
    v.update(extra)
    return v


def placeholder_lines(text: str) -> list:
    return [line for line in text.splitlines() if PLACEHOLDER.search(line)]


def render(tmp_path: Path, tpl: Path) -> Path:
    """The template as the snap renders it (its values; the fixed metrics port cleared for parallel daemons)."""
    out = tmp_path / "rendered" / "containerd.toml"
    out.parent.mkdir(exist_ok=True)
    text = facts.render_microk8s(tpl.read_text(), facts.microk8s_values())
    assert not PLACEHOLDER.search(text)
    out.write_text(text.replace('"127.0.0.1:1338"', '""'))
    return out


def loaded_runtimes(daemon_factory, build, cfg: Path) -> dict:
    d = daemon_factory(build, str(cfg))
    assert d.cri_ok(), "CRI plugin did not load:\n%s" % d.log_tail(20)
    cri = d.cri_config()
    return cri["containerd"]["runtimes"], cri["containerd"]["defaultRuntimeName"]


def test_reuses_microk8s_handler_and_keeps_placeholders(tmp_path, builds, daemon_factory):
    """containerd 2.x MicroK8s (current releases), its template with its own nvidia-container-runtime handler:
    that handler is configured (no second one), every placeholder line stays byte for byte, the rendered
    template loads in the real containerd with the handler, runc and kata intact; check mode and a second run
    change nothing."""
    build = builds["2.1"]
    tpl = node_tree(tmp_path, "containerd-template-v2-kata.toml")
    original = tpl.read_text()
    ev = mk8s_vars(tmp_path, build)

    rc, out, err, dummy = run_role(tmp_path, ev, check=True, diff=True)
    assert_ok(rc, out, err)
    assert tpl.read_text() == original

    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    text = tpl.read_text()
    assert result["engine"] == "microk8s" and result["engine_changed"] is True and result["restarted"] is False
    assert placeholder_lines(text) == placeholder_lines(original)
    assert ".runtimes.nvidia]" not in text   # no second handler
    assert 'BinaryName = "%s"  # gpuops.nvidia: replaced "nvidia-container-runtime"' % NCR in text
    assert "has nvidia-container-runtime" in out and "MicroK8s' containerd loads nvidia-container-runtime" in out

    runtimes, default = loaded_runtimes(daemon_factory, build, render(tmp_path, tpl))
    assert runtimes["nvidia-container-runtime"]["options"]["BinaryName"] == NCR
    assert runtimes["nvidia-container-runtime"]["runtimeType"] == "io.containerd.runc.v2"
    assert runtimes["kata"]["options"]["BinaryName"] == "kata-runtime"
    assert runtimes["runc"]["runtimeType"] == "io.containerd.runc.v2"
    assert default == "runc"

    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert recap(out)["changed"] == 0 and result["engine_changed"] is False
    assert tpl.read_text() == text


def test_adds_nvidia_when_the_template_has_no_gpu_handler(tmp_path, builds, daemon_factory):
    """The real MicroK8s template of the GPU-addon era (canonical/microk8s, version 2) without its
    nvidia-container-runtime table: the role adds nvidia_runtime_handler_name (nvidia), copying runc (what
    ${RUNTIME} renders to), and containerd 2.1 loads it from the rendered template."""
    build = builds["2.1"]
    full = (FIXTURES / "containerd-template-v2-gpu.toml").read_text()
    start = full.index('    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia-container-runtime]')
    end = full.index("  # 'plugins.\"io.containerd.grpc.v1.cri\".cni'")
    tpl = node_tree(tmp_path, "", text=full[:start] + full[end:])
    original = tpl.read_text()

    rc, out, err, result = run_role(tmp_path, mk8s_vars(tmp_path, build))
    assert_ok(rc, out, err)
    text = tpl.read_text()
    assert placeholder_lines(text) == placeholder_lines(original)
    assert '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]' in text
    assert '"${RUNTIME}"]' not in text

    runtimes, default = loaded_runtimes(daemon_factory, build, render(tmp_path, tpl))
    assert runtimes["nvidia"]["options"]["BinaryName"] == NCR
    assert set(runtimes) == {"runc", "nvidia"} and default == "runc"


@pytest.mark.parametrize("series, fixture", [
    ("1.7", "containerd-template-v2-kata.toml"),
    ("1.7", "containerd-template-v2-gpu.toml"),
    ("2.1", "containerd-template-v2-crun.toml"),
])
def test_runtime_placeholder_default_works_without_set_as_default(tmp_path, builds, daemon_factory, series, fixture):
    """default_runtime_name = "${RUNTIME}" and MicroK8s not installed (the facts cannot tell its containerd: read
    as 1.x, whose file runtimes replace the built-in ones). The role passes the snap's values to the containerd
    module, which resolves ${RUNTIME} to runc: no "${RUNTIME}" table is added (the snap would render it into a
    second runc table), the module validates the rendered candidate with the real containerd, and the rendered
    template loads in the real containerd with the handler, every other runtime and runc as default."""
    build = builds[series]
    tpl = node_tree(tmp_path, fixture, with_binary=False)
    original = tpl.read_text()
    ev = mk8s_vars(tmp_path, build)

    rc, out, err, dummy = run_role(tmp_path, ev, check=True, diff=True)
    assert_ok(rc, out, err)
    assert tpl.read_text() == original

    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    text = tpl.read_text()
    assert result["engine_changed"] is True and result["low_level_runtime"] == "runc"
    assert placeholder_lines(text) == placeholder_lines(original)   # the handler reused: no line added
    assert 'default_runtime_name = "${RUNTIME}"\n' in text and '"${RUNTIME}"]' not in text
    assert 'BinaryName = "%s"  # gpuops.nvidia: replaced "nvidia-container-runtime"' % NCR in text

    runtimes, default = loaded_runtimes(daemon_factory, build, render(tmp_path, tpl))
    assert default == "runc"
    assert runtimes["nvidia-container-runtime"]["options"]["BinaryName"] == NCR
    assert set(runtimes) == set(tomllib.loads(facts.render_microk8s(original, facts.microk8s_values()))
                                ["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"])

    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert recap(out)["changed"] == 0 and tpl.read_text() == text


def test_bootstrap_without_microk8s_and_the_audit(tmp_path):
    """The molecule microk8s_layout case on localhost: MicroK8s not installed (no containerd to ask), the handler
    as default. The audit playbook (check mode) predicts the change and writes nothing; site.yml applies it, keeping
    every other placeholder line; a second run and a check-mode run change nothing, and the audit then says
    configured."""
    tpl = node_tree(tmp_path, "containerd-template-v2-kata.toml", with_binary=False)
    original = tpl.read_text()
    ev = mk8s_vars(tmp_path, None, nvidia_runtime_set_as_default=True)
    ev["nvidia_runtime_microk8s_containerd_path"] = str(tmp_path / "node/snap/microk8s/current/bin/containerd")
    ev["ansible_become"] = False
    ev["nvidia_runtime_audit_dir"] = str(tmp_path / "audit")
    inv = localhost_inventory(tmp_path)
    audit = REPO_ROOT / "playbooks/audit.yml"

    rc, out, err = run_playbook(audit, extravars=ev, inventory=inv)
    assert_ok(rc, out, err)
    assert re.search(r"localhost: engine=microk8s .* would_change=True", out), out[-4000:]
    assert tpl.read_text() == original
    (row,) = json.loads((tmp_path / "audit/report.json").read_text())["hosts"]
    assert (row["engine"], row["drift"]) == ("microk8s", True) and row["state"] != "configured"
    assert {c["file"]: c["change"] for c in row["changes"]} == {str(tpl): "modify"}

    rc, out, err = run_playbook(REPO_ROOT / "playbooks/site.yml", extravars=ev, inventory=inv)   # the real run
    assert_ok(rc, out, err)
    text = tpl.read_text()
    keep = [line for line in placeholder_lines(original) if "default_runtime_name" not in line]
    assert [line for line in placeholder_lines(text) if "default_runtime_name" not in line] == keep
    assert 'default_runtime_name = "nvidia-container-runtime"  # gpuops.nvidia: replaced "${RUNTIME}"' in text
    assert "containerd-template.toml has nvidia-container-runtime" in out
    assert "runtime config changed=True restarted=False" in out

    for check in (False, True):
        rc, out, err, dummy = run_role(tmp_path, ev, check=check)
        assert_ok(rc, out, err)
        assert recap(out)["changed"] == 0
    assert tpl.read_text() == text

    rc, out, err = run_playbook(audit, extravars=ev, inventory=inv)
    assert_ok(rc, out, err)
    assert "would_change=False" in out and "ERROR=" not in out
    (row,) = json.loads((tmp_path / "audit/report.json").read_text())["hosts"]
    assert (row["state"], row["engine"], row["changes"]) == ("configured", "microk8s", [])
