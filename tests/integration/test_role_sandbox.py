"""The role gpuops.nvidia.nvidia_runtime run FOR REAL on this machine, against sandboxes in temp folders.

Every test runs ``ansible-playbook`` with the role on localhost (connection local, the venv's Python), with
``nvidia_runtime_driver_method: none`` and ``nvidia_runtime_toolkit_install: false`` (no package is installed
here: the molecule scenarios do that in containers) and every engine path pointed into ``tmp_path``. What the
role wrote is judged by the bytes on disk, by the real containerd builds of the harness (``config dump``; a
daemon kept alive by the supervisor, asked over CRI which runtimes it loaded) and by the play recap: a second
run must report ``changed=0`` and restart nothing.

Not covered here (no systemd, no k0s/k3s/CRI-O binaries, no packages): systemd restarts, the driver and toolkit
package steps, k0s/k3s picking the files up; those are molecule's.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

import harness
import k0s_layout
from ansible_run import REPO_ROOT, run_playbook

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROLE = REPO_ROOT / "roles" / "nvidia_runtime"
STANDIN = str(harness.NVIDIA_STANDIN)

PLAYBOOK = """\
- name: nvidia_runtime role sandbox
  hosts: localhost
  gather_facts: false
  roles:
    - role: gpuops.nvidia.nvidia_runtime
  post_tasks:
    - name: Save the role's outcome
      ansible.builtin.copy:
        content: "{{ nvidia_runtime_result | to_json }}"
        dest: "{{ sandbox_result_file }}"
        mode: "0600"
      check_mode: false
      changed_when: false
"""

RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


# --------------------------------------------------------------------------------------------- helpers

def base_vars(tmp_path: Path) -> dict:
    """Nothing outside tmp_path: no driver, no packages, the toolkit config in the sandbox."""
    return {
        "nvidia_runtime_driver_method": "none",
        "nvidia_runtime_toolkit_install": False,
        "nvidia_runtime_tomlkit_install": False,  # the venv's Python has it; never pip on the host
        "nvidia_runtime_toolkit_config_path": str(tmp_path / "etc/nvidia-container-runtime/config.toml"),
        "nvidia_runtime_verify_retries": 3,
        "nvidia_runtime_verify_delay": 1,
        "sandbox_result_file": str(tmp_path / "result.json"),
    }


def run_role(tmp_path: Path, extravars: dict, *, check: bool = False, diff: bool = False, playbook: str = PLAYBOOK):
    rc, out, err = run_playbook(playbook, extravars=extravars, check=check, diff=diff)
    result_file = Path(extravars.get("sandbox_result_file", tmp_path / "result.json"))
    result = json.loads(result_file.read_text()) if result_file.is_file() and rc == 0 else None
    if result_file.is_file():
        result_file.unlink()
    return rc, out, err, result


def recap(out: str) -> dict:
    m = RECAP.search(out)
    assert m, "no play recap in:\n" + out[-3000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups())))


def assert_ok(rc, out, err):
    assert rc == 0, "ansible-playbook failed (rc=%d)\n%s\n%s" % (rc, out[-6000:], err[-3000:])


def tree(root: Path) -> dict:
    """{relative path: bytes} of every file under root (except the result file)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "result.json"}


def default_config(build, path: Path) -> Path:
    """``containerd config default`` of this build, runc with SystemdCgroup = true."""
    text, n = re.subn(r"SystemdCgroup = false", "SystemdCgroup = true", harness.config_default(build))
    assert n == 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------- the role's metadata

def test_argument_specs_describe_every_default():
    """meta/argument_specs.yml documents every variable of defaults/main.yml with the same default."""
    defaults = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    specs = yaml.safe_load((ROLE / "meta/argument_specs.yml").read_text())["argument_specs"]
    options = specs["main"]["options"]
    assert set(options) == set(defaults)
    assert specs["audit"]["options"] == options
    for name, spec in options.items():
        assert name.startswith("nvidia_runtime_")
        assert spec.get("description"), name
        if "{{" in str(defaults[name]):  # computed default (NVIDIA's deb or rpm URL): described, not repeated
            assert "default" not in spec, name
            continue
        assert spec.get("default") == defaults[name], name
        if "choices" in spec:
            values = defaults[name] if isinstance(defaults[name], list) else [defaults[name]]
            assert all(v in spec["choices"] for v in values), name


def test_nvidia_hosts_only_in_defaults():
    """NVIDIA's hosts appear in defaults/main.yml only, so a mirror (or the molecule stand-in repo) replaces them."""
    offenders = []
    for p in ROLE.rglob("*"):
        if p.is_file() and p.relative_to(ROLE).parts[0] not in ("defaults", "meta"):
            text = p.read_text(errors="replace")
            if re.search(r"nvidia\.github\.io|developer\.download\.nvidia\.com", text):
                offenders.append(str(p.relative_to(ROLE)))
    assert offenders == []


def test_distribution_vars_files_exist():
    """first_found candidates exist for every distribution the role names (RHEL family written, not run here)."""
    for name in ("Debian_12", "Debian_13", "Debian", "Ubuntu_22.04", "Ubuntu_24.04", "Ubuntu",
                 "RedHat_8", "RedHat_9", "RedHat"):
        data = yaml.safe_load((ROLE / "vars" / (name + ".yml")).read_text())
        assert data["__nvidia_runtime_pkg_mgr"] in ("apt", "dnf"), name
        assert "__nvidia_runtime_pip_packages" in data, name   # the TOML reader's package comes from the facts


# --------------------------------------------------------------------------------------------- k0s (bootstrap)

def k0s_vars(tmp_path: Path, **extra) -> dict:
    v = base_vars(tmp_path)
    v.update({
        "nvidia_runtime_engine": "k0s",
        "nvidia_runtime_k0s_config": str(tmp_path / "etc/k0s/containerd.toml"),
        "nvidia_runtime_k0s_dropin_dir": str(tmp_path / "etc/k0s/containerd.d"),
        "nvidia_runtime_k0s_containerd_path": str(tmp_path / "var/lib/k0s/bin/containerd"),
        "nvidia_runtime_k0s_socket": str(tmp_path / "run/k0s/containerd.sock"),
    })
    v.update(extra)
    return v


@pytest.mark.parametrize("k0s_version, config_version, build_key, cri_path", [
    ("v1.33.1+k0s.0", 2, "1.7", 'plugins."io.containerd.grpc.v1.cri"'),
    ("v1.36.1+k0s.0", 3, "2.1", 'plugins."io.containerd.cri.v1.runtime"'),
])
def test_k0s_bootstrap_writes_the_dropin_and_restarts_nothing(tmp_path, builds, k0s_version, config_version,
                                                              build_key, cri_path):
    ev = k0s_vars(tmp_path, nvidia_runtime_k0s_version=k0s_version)
    before = tree(tmp_path)

    # check mode first: the diff, and nothing on disk
    rc, out, err, dummy = run_role(tmp_path, ev, check=True, diff=True)
    assert_ok(rc, out, err)
    assert "containerd.d/nvidia.toml" in out and "+version = %d" % config_version in out
    assert tree(tmp_path) == before

    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    dropin = tmp_path / "etc/k0s/containerd.d/nvidia.toml"
    text = dropin.read_text()
    assert re.search(r"^version = %d$" % config_version, text, re.M)
    assert "[%s.containerd.runtimes.nvidia]" % cri_path in text
    assert 'BinaryName = "/usr/bin/nvidia-container-runtime"' in text
    assert "imports" not in text
    # k0s owns its main config: never created nor touched; nothing was restarted, no handler ran
    assert not (tmp_path / "etc/k0s/containerd.toml").exists()
    assert result["engine"] == "k0s" and result["engine_changed"] is True
    assert result["restarted"] is False
    assert "RUNNING HANDLER" not in out
    assert "The k0s drop-in is at version %d" % config_version in out
    assert recap(out)["changed"] == 1

    # the containerd k0s bundles (1.7 for <= 1.35, 2.x for >= 1.36) loads the snippet at its version
    rc2, dump, derr = harness.config_dump(builds[build_key], dropin)
    assert rc2 == 0, derr
    assert re.search(r"runtimes\.nvidia\.options\]\s*\n\s*BinaryName = ['\"]/usr/bin/nvidia-container-runtime['\"]", dump)

    # second run: nothing changes, nothing restarts
    snapshot = tree(tmp_path)
    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert recap(out)["changed"] == 0
    assert result["engine_changed"] is False and result["restarted"] is False
    assert tree(tmp_path) == snapshot


def test_k0s_without_a_version_stops_with_a_clear_message(tmp_path):
    rc, out, err, dummy = run_role(tmp_path, k0s_vars(tmp_path))
    assert rc != 0
    assert "Set nvidia_runtime_k0s_version" in out + err
    assert not (tmp_path / "etc").exists()


def test_k0s_release_that_concatenates_drop_ins_is_refused(tmp_path):
    """k0s 1.27.1-1.27.4 append CRI drop-ins instead of merging them: the role stops, naming the fix."""
    rc, out, err, dummy = run_role(tmp_path, k0s_vars(tmp_path, nvidia_runtime_k0s_version="v1.27.3+k0s.0"))
    assert rc != 0
    assert "upgrade k0s to 1.27.5 / 1.28.2 or later first" in out + err
    assert not (tmp_path / "etc/k0s/containerd.d/nvidia.toml").exists()


def test_k0s_1_27_concatenation_breaks_the_drop_in_the_refusal_prevents(tmp_path, builds):
    """Why 1.27.1-1.27.4 are refused: the drop-in that 1.27.5-1.35 merge (it repeats runtimes.runc, which a
    file's runtimes map needs on containerd 1.7) makes the concatenated CRI config invalid for the real 1.7."""
    rc, out, err, dummy = run_role(tmp_path, k0s_vars(tmp_path, nvidia_runtime_k0s_version="v1.35.2+k0s.0"))
    assert_ok(rc, out, err)
    merged = k0s_layout.K0sLayout(builds["1.7"], "registry.k8s.io/pause:3.10", base=tmp_path, generation=k0s_layout.GEN_V2)
    merged.setup_config()
    assert harness.config_dump(builds["1.7"], merged.config)[0] == 0
    concat = k0s_layout.K0sLayout(builds["1.7"], "registry.k8s.io/pause:3.10", base=tmp_path, generation=k0s_layout.GEN_CONCAT)
    concat.setup_config()
    rc2, dump, derr = harness.config_dump(builds["1.7"], concat.config)
    assert rc2 != 0, dump[-500:]


def k0s_136_worker(tmp_path: Path, build) -> Path:
    """An installed k0s 1.36 worker: the containerd.toml k0s 1.36 writes, and its containerd as 2.3 answers
    (k0s_layout.write_containerd_23_emulator over the real 2.x build)."""
    layout = k0s_layout.K0sLayout(build, "registry.k8s.io/pause:3.10", base=tmp_path, generation=k0s_layout.GEN_V3,
                                  release="v1.36.3+k0s.0")
    layout.setup_config()
    k0s_layout.write_containerd_23_emulator(build, tmp_path / "var/lib/k0s/bin/containerd")
    return layout


def test_k0s_136_installed_worker_with_containerd_23(tmp_path, builds):
    """containerd 2.3 (bundled by k0s 1.36) dumps version 4: the role still validates and writes a v3 drop-in
    that k0s 1.36's pre-flight accepts; a second run changes nothing."""
    layout = k0s_136_worker(tmp_path, builds["2.1"])
    ev = k0s_vars(tmp_path, nvidia_runtime_k0s_version="v1.36.3+k0s.0")
    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    text = (tmp_path / "etc/k0s/containerd.d/nvidia.toml").read_text()
    assert re.search(r"^version = 3$", text, re.M) and 'plugins."io.containerd.cri.v1.runtime"' in text
    assert layout.preflight() == {}
    assert layout.k0s_managed()
    # containerd "2.3" loads the main file + the drop-in and serves the handler (dump printed as version 4)
    rc2, dump, derr = harness.config_dump(harness.Build(**dict(vars(builds["2.1"]), containerd=str(
        tmp_path / "var/lib/k0s/bin/containerd"))), layout.config)
    assert rc2 == 0, derr
    assert dump.startswith("version = 4")
    assert re.search(r"runtimes\.nvidia\.options\]\s*\n\s*BinaryName = ['\"]/usr/bin/nvidia-container-runtime", dump)
    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert recap(out)["changed"] == 0 and result["engine_changed"] is False


def test_k0s_upgrade_135_to_136_rewrites_the_drop_in_before_the_upgrade(tmp_path, builds):
    """1.35 wrote a v2 drop-in; stating the release being upgraded to (1.36) rewrites it to v3 before k0s 1.36
    starts: its pre-flight (emulated) rejects the old file and accepts the new one."""
    ev = k0s_vars(tmp_path, nvidia_runtime_k0s_version="v1.35.2+k0s.0")
    rc, out, err, dummy = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    dropin = tmp_path / "etc/k0s/containerd.d/nvidia.toml"
    assert re.search(r"^version = 2$", dropin.read_text(), re.M)
    layout = k0s_layout.K0sLayout(builds["2.1"], "registry.k8s.io/pause:3.10", base=tmp_path,
                                  generation=k0s_layout.GEN_V3, release="v1.36.3+k0s.0")
    assert str(dropin) in layout.preflight()          # the upgraded worker would not start
    rc, out, err, dummy = run_role(tmp_path, dict(ev, nvidia_runtime_k0s_version="v1.36.3+k0s.0"), check=True, diff=True)
    assert_ok(rc, out, err)
    assert "+version = 3" in out and re.search(r"^version = 2$", dropin.read_text(), re.M)   # check mode wrote nothing
    rc, out, err, dummy = run_role(tmp_path, dict(ev, nvidia_runtime_k0s_version="v1.36.3+k0s.0"))
    assert_ok(rc, out, err)
    assert re.search(r"^version = 3$", dropin.read_text(), re.M)
    assert layout.preflight() == {}


def _bare_python(tmp_path: Path, version: str = "3.10.13") -> str:
    """A fresh virtualenv of a Python < 3.11 without any TOML reader (a virtualenv gets no distribution package)."""
    import subprocess
    base = Path.home() / ".pyenv/versions" / version / "bin/python"
    if not base.is_file():
        pytest.skip("no Python %s under ~/.pyenv" % version)
    node_venv = tmp_path / "node-python"
    subprocess.run([str(base), "-m", "venv", str(node_venv)], check=True, capture_output=True)
    py = str(node_venv / "bin/python")
    for mod in ("tomllib", "tomli", "tomlkit", "toml"):
        assert subprocess.run([py, "-c", "import " + mod], capture_output=True, check=False).returncode != 0, mod
    return py


def _node_inventory(tmp_path: Path, py: str) -> Path:
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": py}}}}))
    return inv


def test_toml_reader_pip_in_a_bare_python(tmp_path):
    """The node's Python (3.10) has no TOML reader and no distribution package can serve a virtualenv: with
    nvidia_runtime_toml_pip the role installs tomli with pip, the facts are read again and the module runs."""
    import subprocess
    py = _bare_python(tmp_path)
    probe = subprocess.run([py, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp_path / "dl"), "tomli"],
                           capture_output=True, text=True, timeout=300, check=False)
    if probe.returncode != 0:
        pytest.skip("PyPI not reachable for pip: " + probe.stderr[-500:])
    inv = _node_inventory(tmp_path, py)
    ev = k0s_vars(tmp_path, nvidia_runtime_k0s_version="1.33.0", nvidia_runtime_tomlkit_install=True,
                  nvidia_runtime_toml_pip=True)
    rc, out, err = run_playbook(PLAYBOOK, extravars=ev, inventory=inv)
    assert_ok(rc, out, err)
    assert re.search(r"TASK \[[^\]]*Install a TOML reader with pip \(nvidia_runtime_toml_pip\)\][^\n]*\n(changed|ok): ", out), out[-5000:]
    assert subprocess.run([py, "-c", "import tomli"], capture_output=True, check=False).returncode == 0
    assert (tmp_path / "etc/k0s/containerd.d/nvidia.toml").is_file()
    rc, out, err = run_playbook(PLAYBOOK, extravars=ev, inventory=inv)
    assert_ok(rc, out, err)
    assert recap(out)["changed"] == 0
    # the facts report tomli now: the install step is skipped
    assert not re.search(r"TASK \[[^\]]*Install a TOML reader with pip[^\n]*\n(changed|ok): ", out), out[-5000:]


GUIDANCE = "no TOML reader in the node's Python 3.10.13"


def test_no_reader_without_pip_stops_with_the_modules_guidance(tmp_path):
    """pip not allowed (the default) and no package for a virtualenv: the role stops before any edit with the
    modules' own message (what was found, what is needed, the package per distribution) and what it may do."""
    py = _bare_python(tmp_path)
    ev = k0s_vars(tmp_path, nvidia_runtime_k0s_version="1.33.0", nvidia_runtime_tomlkit_install=True)
    rc, out, err = run_playbook(PLAYBOOK, extravars=ev, inventory=_node_inventory(tmp_path, py))
    assert rc != 0
    assert GUIDANCE in out and "Python >= 3.11 (tomllib)" in out and "nvidia_runtime_toml_pip: true allows it" in out, out[-3000:]
    assert "Stop when the node still has no TOML reader" in out
    assert not (tmp_path / "etc/k0s/containerd.d/nvidia.toml").exists()


def test_air_gapped_pip_failure_ends_in_the_same_guidance(tmp_path):
    """pip allowed but nothing to install from (an empty wheel folder, --no-index): the pip error is turned
    into the same guidance, nothing is edited."""
    py = _bare_python(tmp_path)
    (tmp_path / "wheels").mkdir()
    ev = k0s_vars(tmp_path, nvidia_runtime_k0s_version="1.33.0", nvidia_runtime_tomlkit_install=True,
                  nvidia_runtime_toml_pip=True,
                  nvidia_runtime_toml_pip_extra_args="--no-index --find-links %s" % (tmp_path / "wheels"))
    rc, out, err = run_playbook(PLAYBOOK, extravars=ev, inventory=_node_inventory(tmp_path, py))
    assert rc != 0
    assert "Installing a TOML reader failed (Install a TOML reader with pip" in out, out[-3000:]
    assert GUIDANCE in out and "pip is allowed" in out
    assert not (tmp_path / "etc/k0s/containerd.d/nvidia.toml").exists()


# --------------------------------------------------------------------------------------------- stock containerd

def containerd_vars(tmp_path: Path, build, config: Path, **extra) -> dict:
    v = base_vars(tmp_path)
    v.update({
        "nvidia_runtime_engine": "containerd",
        "nvidia_runtime_containerd_config": str(config),
        "nvidia_runtime_containerd_dropin": str(config.parent / "conf.d/99-nvidia.toml"),
        "nvidia_runtime_containerd_path": build.containerd,
        "nvidia_runtime_containerd_socket": str(tmp_path / "nothing-listens.sock"),
        "nvidia_runtime_containerd_service": "gpuops-test-no-such-unit",
        "nvidia_runtime_restart": "none",
    })
    v.update(extra)
    return v


def test_one_variable_points_the_role_into_a_sandbox(tmp_path, builds):
    """nvidia_runtime_sandbox alone: a copy of a node's files (its containerd config and binary) is read as the
    node, check mode shows the diff and writes nothing, a real run writes into the folder only, nothing restarts."""
    build = builds["1.7"]
    node = tmp_path / "node"
    config = default_config(build, node / "etc/containerd/config.toml")
    (node / "usr/bin").mkdir(parents=True)
    shutil.copy2(build.containerd, node / "usr/bin/containerd")   # the node's containerd validates the result
    ev = {"nvidia_runtime_sandbox": str(node), "sandbox_result_file": str(tmp_path / "result.json")}
    before = tree(node)

    rc, out, err, dummy = run_role(tmp_path, ev, check=True, diff=True)
    assert_ok(rc, out, err)
    assert "+++ after: %s" % config in out and "runtimes.nvidia]" in out
    assert tree(node) == before, "check mode wrote something"

    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert result["engine"] == "containerd" and result["engine_changed"] is True and result["restarted"] is False
    assert result["files"] and all(f.startswith(str(node) + "/") for f in result["files"]), result["files"]
    after = tree(node)
    assert {k for k in after if after[k] != before.get(k)} == {"etc/containerd/config.toml"}
    assert 'BinaryName = "/usr/bin/nvidia-container-runtime"' in config.read_text()   # node paths inside configs

    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert recap(out)["changed"] == 0 and result["engine_changed"] is False


def test_containerd_in_place_or_drop_in_verified_by_config_dump(tmp_path, build):
    config = default_config(build, tmp_path / "etc/containerd/config.toml")
    # the default runtime must exist on the node (test_role_footguns.py): the stand-in and its .cdi variant
    ev = containerd_vars(tmp_path, build, config, nvidia_runtime_variants=["cdi"], nvidia_runtime_set_as_default=True,
                         nvidia_runtime_binary=STANDIN)
    before = tree(tmp_path)

    rc, out, err, dummy = run_role(tmp_path, ev, check=True, diff=True)
    assert_ok(rc, out, err)
    assert tree(tmp_path) == before, "check mode wrote something"

    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    # the verify step ran containerd --config <cfg> config dump and found the handlers and the default
    assert "containerd's effective config has nvidia, nvidia-cdi (default runtime nvidia)" in out
    assert result["engine_changed"] is True and result["restarted"] is False
    dropin = config.parent / "conf.d/99-nvidia.toml"
    if build.key == "2.1":       # containerd >= 2.1 deep-merges imports: a drop-in, imported by the main file
        assert dropin.is_file() and str(dropin) in config.read_text()
        assert set(result["files"]) == {str(dropin), str(config)}
    else:                        # < 2.1: in place
        assert not dropin.exists()
        assert "runtimes.nvidia]" in config.read_text()
    # nothing listens on the socket: the CRI check says so instead of failing
    assert "the CRI plugin check is skipped" in out

    # judged again by the real binary, independently of the role
    rc2, dump, derr = harness.config_dump(build, config)
    assert rc2 == 0, derr
    assert re.search(r"default_runtime_name = ['\"]nvidia['\"]", dump)
    assert re.search(r"runtimes\.nvidia-cdi\.options\]\s*\n\s*BinaryName = ['\"]%s['\"]" % re.escape(STANDIN + ".cdi"), dump)

    snapshot = tree(tmp_path)
    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert recap(out)["changed"] == 0
    assert tree(tmp_path) == snapshot


def test_containerd_live_daemon_signal_restart_once(tmp_path, builds, supervisor_factory):
    """A running containerd (respawned like systemd Restart=always): the role's run makes the handler live
    with exactly one restart, the verify step asks the daemon (ctr plugins ls: CRI ok); the second run
    restarts nothing."""
    build = builds["1.7"]
    config = default_config(build, tmp_path / "etc/containerd/config.toml")
    sup = supervisor_factory(build, config)
    assert sup.cri_ok()
    assert "nvidia" not in sup.cri_config()["containerd"]["runtimes"]
    ev = containerd_vars(tmp_path, build, config, nvidia_runtime_restart="signal",
                         nvidia_runtime_containerd_socket=sup.socket, nvidia_runtime_binary=STANDIN,
                         nvidia_runtime_restart_timeout=30)
    r0 = sup.restarts

    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert result["restarted"] is True
    sup.wait_healthy(cri=True)
    assert sup.restarts == r0 + 1
    runtimes = sup.cri_config()["containerd"]["runtimes"]
    assert runtimes["nvidia"]["options"]["BinaryName"] == STANDIN
    assert runtimes["nvidia"]["options"]["SystemdCgroup"] is True   # copied from runc
    assert "The CRI plugin on %s is ok." % sup.socket in out

    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert recap(out)["changed"] == 0
    assert result["restarted"] is False
    assert sup.restarts == r0 + 1


def test_toolkit_config_follows_an_explicit_low_level_runtime(tmp_path, builds):
    """containerd's default runtime is crun at an explicit path: the toolkit is told, exactly that (issue #712)."""
    build = builds["1.7"]
    config = tmp_path / "etc/containerd/config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        'version = 2\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd]\n'
        '  default_runtime_name = "crun"\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun]\n'
        '  runtime_type = "io.containerd.runc.v2"\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun.options]\n'
        '  BinaryName = "/usr/local/bin/crun"\n'
        '  SystemdCgroup = true\n')
    ev = containerd_vars(tmp_path, build, config,
                         nvidia_runtime_toolkit_settings={"nvidia-container-cli.no-cgroups": False})
    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert result["low_level_runtime"] == "/usr/local/bin/crun"
    assert result["toolkit_config_changed"] is True
    toolkit = (tmp_path / "etc/nvidia-container-runtime/config.toml").read_text()
    assert 'runtimes = ["/usr/local/bin/crun"]\n' in toolkit
    assert "no-cgroups = false" in toolkit

    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert recap(out)["changed"] == 0


# --------------------------------------------------------------------------------------------- k3s and CRI-O files

def test_k3s_default_runtime_and_template_without_restart(tmp_path):
    """k3s is not installed: the config.yaml.d drop-in and the template (base first, no nvidia tables) are
    written, nothing is restarted; dropping the extra options removes the role's template again."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    runtime = bindir / "nvidia-container-runtime"
    runtime.write_text("#!/bin/sh\nexit 0\n")
    runtime.chmod(0o755)
    extra = '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]\n  runtime_type = "io.containerd.kata.v2"\n'
    ev = base_vars(tmp_path)
    ev.update({
        "nvidia_runtime_engine": "k3s",
        "nvidia_runtime_k3s_config_dir": str(tmp_path / "etc/rancher/k3s"),
        "nvidia_runtime_k3s_data_dir": str(tmp_path / "var/lib/rancher/k3s"),
        "nvidia_runtime_binary": str(runtime),
        "nvidia_runtime_k3s_runtime_search_dirs": [str(bindir)],
        "nvidia_runtime_set_as_default": True,
        "nvidia_runtime_k3s_template_extra": extra,
    })
    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert (tmp_path / "etc/rancher/k3s/config.yaml.d/99-nvidia.yaml").read_text().endswith("default-runtime: nvidia\n")
    tmpl = (tmp_path / "var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl").read_text()
    assert tmpl.splitlines()[0] == '{{ template "base" . }}'
    assert extra in tmpl and "runtimes.nvidia" not in tmpl
    assert result["restarted"] is False and "k3s is not running" in out

    rc, out, err, dummy = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert recap(out)["changed"] == 0

    ev.update({"nvidia_runtime_k3s_template_extra": "", "nvidia_runtime_set_as_default": False})
    rc, out, err, dummy = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert not (tmp_path / "var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl").exists()
    assert not (tmp_path / "etc/rancher/k3s/config.yaml.d/99-nvidia.yaml").exists()


def test_k3s_template_extra_must_not_redeclare_nvidia(tmp_path):
    ev = base_vars(tmp_path)
    ev.update({"nvidia_runtime_engine": "k3s",
               "nvidia_runtime_k3s_template_extra": '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes."nvidia"]\n'})
    rc, out, err, dummy = run_role(tmp_path, ev)
    assert rc != 0 and "no nvidia* runtime tables" in out + err


def crio_vars(tmp_path: Path, runtime_path: str = "/usr/libexec/crio/crun", **extra) -> dict:
    """CRI-O not installed: a crio.conf whose default crun runs ``runtime_path``, the drop-in folder beside it."""
    conf = tmp_path / "etc/crio/crio.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text('[crio.runtime]\ndefault_runtime = "crun"\n[crio.runtime.runtimes.crun]\n'
                    f'runtime_path = "{runtime_path}"\nruntime_root = "/run/crun"\n'
                    'monitor_path = "/usr/libexec/crio/conmon"\n')
    v = base_vars(tmp_path)
    v.update({
        "nvidia_runtime_engine": "crio",
        "nvidia_runtime_crio_config": str(conf),
        "nvidia_runtime_crio_config_dir": str(tmp_path / "etc/crio/crio.conf.d"),
        "nvidia_runtime_crio_dropin": str(tmp_path / "etc/crio/crio.conf.d/99-nvidia.toml"),
        "nvidia_runtime_crio_path": str(tmp_path / "no-crio-here"),
        "nvidia_runtime_crio_socket": str(tmp_path / "crio.sock"),
        "nvidia_runtime_restart": "none",
    })
    v.update(extra)
    return v


def test_crio_dropin_and_toolkit_runtimes(tmp_path):
    """CRI-O (not installed): the module's drop-in copies crun's table; crun has an explicit path, so the
    toolkit config lists it first."""
    ev = crio_vars(tmp_path)
    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    dropin = (tmp_path / "etc/crio/crio.conf.d/99-nvidia.toml").read_text()
    assert "[crio.runtime.runtimes.nvidia]" in dropin and 'monitor_path = "/usr/libexec/crio/conmon"' in dropin
    toolkit = (tmp_path / "etc/nvidia-container-runtime/config.toml").read_text()
    assert 'runtimes = ["/usr/libexec/crio/crun"]\n' in toolkit
    rc, out, err, dummy = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert recap(out)["changed"] == 0


def test_fresh_node_defaults_do_nothing(tmp_path):
    """This machine has no GPU and no container runtime: with the defaults (engine auto, driver auto) the role
    configures nothing and says why. Only the package steps are off (they would reach NVIDIA's hosts)."""
    ev = {"nvidia_runtime_toolkit_install": False, "nvidia_runtime_tomlkit_install": False,
          "sandbox_result_file": str(tmp_path / "result.json")}
    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert "No container runtime found" in out
    assert result["engine"] == "none" and result["driver_method"] == "none"
    assert result["engine_changed"] is False and recap(out)["changed"] == 0


def test_cdi_spec_and_runtimeclass_manifest_on_a_gpu_node(tmp_path):
    """A fake node tree with one NVIDIA GPU and a loaded driver (facts root), a stand-in nvidia-ctk: the CDI
    spec is written from `nvidia-ctk cdi generate` and rewritten only when it differs; the RuntimeClass
    manifest names every handler."""
    root = tmp_path / "node"
    dev = root / "sys/bus/pci/devices/0000:01:00.0"
    dev.mkdir(parents=True)
    for name, value in (("vendor", "0x10de"), ("device", "0x2204"), ("class", "0x030200")):
        (dev / name).write_text(value + "\n")
    (root / "sys/module/nvidia").mkdir(parents=True)
    (root / "sys/module/nvidia/version").write_text("550.54.14\n")
    ctk = tmp_path / "bin/nvidia-ctk"
    ctk.parent.mkdir()
    ctk.write_text('#!/bin/sh\n'
                   'echo "INFO generating CDI spec: $*" >&2\n'
                   '[ "$1 $2" = "cdi generate" ] || exit 2\n'
                   'printf "cdiVersion: 0.5.0\\nkind: nvidia.com/gpu\\ndevices:\\n- name: \\"0\\"\\n"\n')
    ctk.chmod(0o755)
    spec = tmp_path / "etc/cdi/nvidia.yaml"
    manifest = tmp_path / "etc/gpuops/runtimeclass.yaml"
    ev = base_vars(tmp_path)
    ev.update({
        "nvidia_runtime_engine": "none",
        "nvidia_runtime_facts_root": str(root),
        "nvidia_runtime_nvidia_ctk_path": str(ctk),
        "nvidia_runtime_cdi_generate": True,
        "nvidia_runtime_cdi_spec_path": str(spec),
        "nvidia_runtime_variants": ["cdi"],
        "nvidia_runtime_runtimeclass": True,
        "nvidia_runtime_runtimeclass_manifest_path": str(manifest),
        "nvidia_runtime_runtimeclass_node_selector": {"nvidia.com/gpu.present": "true"},
    })
    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert result["gpu_count"] == 1 and result["driver_version"] == "550.54.14"
    assert result["driver_method"] == "none"          # asked: none (auto would leave the loaded driver alone too)
    assert spec.read_text() == 'cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: "0"\n'
    assert result["cdi_spec_changed"] is True
    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    assert [(d["kind"], d["metadata"]["name"], d["handler"]) for d in docs] == [
        ("RuntimeClass", "nvidia", "nvidia"), ("RuntimeClass", "nvidia-cdi", "nvidia-cdi")]
    assert docs[0]["scheduling"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}

    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert recap(out)["changed"] == 0 and result["cdi_spec_changed"] is False


# --------------------------------------------------------------------------------------------- the playbooks

def localhost_inventory(tmp_path: Path, group: str = "gpu_nodes") -> Path:
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": {group: {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
    return inv


def test_site_playbook_check_diff_writes_nothing_then_applies(tmp_path):
    ev = k0s_vars(tmp_path / "sb", nvidia_runtime_k0s_version="1.34.2")
    ev["ansible_become"] = False
    inv = localhost_inventory(tmp_path)
    site = REPO_ROOT / "playbooks/site.yml"

    rc, out, err = run_playbook(site, extravars=ev, check=True, diff=True, inventory=inv)
    assert_ok(rc, out, err)
    assert "+version = 2" in out and not (tmp_path / "sb").exists()

    rc, out, err = run_playbook(site, extravars=dict(ev, nvidia_runtime_serial=1), inventory=inv)
    assert_ok(rc, out, err)
    assert (tmp_path / "sb/etc/k0s/containerd.d/nvidia.toml").is_file()


def test_k0s_bootstrap_playbook(tmp_path):
    ev = k0s_vars(tmp_path / "sb", nvidia_runtime_k0s_version="v1.36.1+k0s.0")
    ev.pop("nvidia_runtime_engine")   # the playbook sets it
    ev["ansible_become"] = False
    rc, out, err = run_playbook(REPO_ROOT / "playbooks/k0s_bootstrap.yml", extravars=ev,
                                inventory=localhost_inventory(tmp_path, "k0s_workers"))
    assert_ok(rc, out, err)
    assert re.search(r"^version = 3$", (tmp_path / "sb/etc/k0s/containerd.d/nvidia.toml").read_text(), re.M)
    assert recap(out)["changed"] == 1


def test_audit_playbook_reports_would_change_and_writes_nothing(tmp_path, builds):
    build = builds["2.1"]
    sb = tmp_path / "sb"
    config = default_config(build, sb / "etc/containerd/config.toml")
    ev = containerd_vars(sb, build, config)
    ev["ansible_become"] = False
    ev["nvidia_runtime_audit_dir"] = str(tmp_path / "audit")
    inv = localhost_inventory(tmp_path)
    audit = REPO_ROOT / "playbooks/audit.yml"
    before = tree(sb)

    rc, out, err = run_playbook(audit, extravars=ev, inventory=inv)
    assert_ok(rc, out, err)
    assert tree(sb) == before
    assert re.search(r"localhost: engine=containerd gpus=0 driver=not-loaded toolkit=not-installed "
                     r"handler=\S+ default=\S+ would_change=True", out), out[-4000:]

    report = json.loads((tmp_path / "audit/report.json").read_text())
    (row,) = report["hosts"]
    assert (row["host"], row["state"], row["drift"], row["engine"], row["handler_present"]) == (
        "localhost", "unconfigured", True, "containerd", None)   # the facts do not read the sandbox config
    assert {c["file"]: c["change"] for c in row["changes"]} == {
        str(config): "modify", str(config.parent / "conf.d/99-nvidia.toml"): "create"}
    assert report["summary"]["unconfigured"] == 1

    rc, out, err, dummy = run_role(sb, ev)          # a real run
    assert_ok(rc, out, err)
    rc, out, err = run_playbook(audit, extravars=ev, inventory=inv)
    assert_ok(rc, out, err)
    assert "would_change=False" in out and "ERROR=" not in out
    (row,) = json.loads((tmp_path / "audit/report.json").read_text())["hosts"]
    assert (row["state"], row["drift"], row["changes"], row["handlers"]) == ("configured", False, [], ["nvidia"])
    assert "| localhost | configured | containerd 2.1" in (tmp_path / "audit/report.md").read_text()

    # an unreachable host still gets a row; fail_on_drift fails after writing the report, naming it
    inv.write_text(yaml.safe_dump({"all": {"children": {"gpu_nodes": {"hosts": {
        "localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
        "ghost.invalid": {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 9,
                          "ansible_ssh_common_args": "-o ConnectTimeout=3"}}}}}}))
    configured = tree(sb)
    rc, out, err = run_playbook(audit, extravars=dict(ev, nvidia_runtime_audit_fail_on_drift=True), inventory=inv)
    assert rc != 0 and "1 host(s) not as a real run would leave them: ghost.invalid (error)" in out, out[-4000:]
    assert tree(sb) == configured
    report = json.loads((tmp_path / "audit/report.json").read_text())
    assert [(r["host"], r["state"]) for r in report["hosts"]] == [("ghost.invalid", "error"), ("localhost", "configured")]
    assert report["hosts"][0]["error"].startswith("unreachable: ")
