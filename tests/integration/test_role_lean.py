"""A run of the role (and of playbooks/site.yml) that changes nothing is lean: no fact gathering, no separate
TOML-reader probe, no verify step (unless nvidia_runtime_verify=always or a change), and site.yml's rollout play
gets no host. Sandboxes in tmp_path, the helpers of test_role_sandbox.py."""
from __future__ import annotations

import re

import pytest

from ansible_run import REPO_ROOT, run_playbook
from test_role_sandbox import (
    STANDIN, assert_ok, containerd_vars, default_config, k0s_vars, localhost_inventory, recap, run_role,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VERIFIED = "containerd's effective config has nvidia"


def ran(out: str, task: str) -> bool:
    """The task ran (ok/changed) rather than being skipped."""
    m = re.search(r"TASK \[[^\]]*%s\][^\n]*\n(?P<status>\w+):" % re.escape(task), out)
    assert m, "task %r not in the output:\n%s" % (task, out[-3000:])
    return m["status"] in ("ok", "changed")


def test_no_change_run_skips_probe_and_verify(tmp_path, builds):
    build = builds["1.7"]
    config = default_config(build, tmp_path / "etc/containerd/config.toml")
    ev = containerd_vars(tmp_path, build, config, nvidia_runtime_binary=STANDIN)

    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert result["engine_changed"] is True
    assert VERIFIED in out                     # a change: verified
    assert "Gathering Facts" not in out
    assert not ran(out, "Install the distribution's TOML reader package")   # the facts named a TOML reader

    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert recap(out)["changed"] == 0
    assert VERIFIED not in out and not ran(out, "Verify what the runtime reports")
    assert not ran(out, "Install the distribution's TOML reader package")

    rc, out, err, result = run_role(tmp_path, dict(ev, nvidia_runtime_verify="always"))
    assert_ok(rc, out, err)
    assert recap(out)["changed"] == 0
    assert VERIFIED in out


def test_site_rollout_only_over_nodes_with_changes(tmp_path):
    ev = k0s_vars(tmp_path / "sb", nvidia_runtime_k0s_version="1.34.2")
    ev["ansible_become"] = False
    inv = localhost_inventory(tmp_path)
    site = REPO_ROOT / "playbooks/site.yml"
    rollout = re.compile(r"PLAY \[NVIDIA runtime on the GPU nodes\] \**\n(?P<next>[^\n]*\n[^\n]*)")

    rc, out, err = run_playbook(site, extravars=dict(ev, nvidia_runtime_serial=1), inventory=inv)
    assert_ok(rc, out, err)
    assert "skipping: no hosts matched" not in rollout.search(out)["next"]
    assert (tmp_path / "sb/etc/k0s/containerd.d/nvidia.toml").is_file()

    before = (tmp_path / "sb/etc/k0s/containerd.d/nvidia.toml").read_bytes()
    rc, out, err = run_playbook(site, extravars=dict(ev, nvidia_runtime_serial=1), inventory=inv)
    assert_ok(rc, out, err)
    assert "skipping: no hosts matched" in rollout.search(out)["next"]     # planned: nothing to do
    assert recap(out)["changed"] == 0
    assert "Gathering Facts" not in out
    assert (tmp_path / "sb/etc/k0s/containerd.d/nvidia.toml").read_bytes() == before

    # without the plan every node goes to the rollout, as before
    rc, out, err = run_playbook(site, extravars=dict(ev, nvidia_runtime_site_plan=False), inventory=inv)
    assert_ok(rc, out, err)
    assert "skipping: no hosts matched" not in rollout.search(out)["next"]
    assert recap(out)["changed"] == 0


IN_PLACE = """\
- name: the toolkit step's in-place rules against given facts
  hosts: localhost
  gather_facts: false
  vars_files: [%(role)s/defaults/main.yml, %(role)s/vars/main.yml]
  vars:
    missing: {exists: false, isdir: false, mode: null, uid: null, gid: null, checksum: null}
    dir_ok: {exists: true, isdir: true, mode: "0755", uid: 0, gid: 0, checksum: null}
    file_ok: {exists: true, isdir: false, mode: "0644", uid: 0, gid: 0, checksum: null}
    pin: /etc/apt/preferences.d/nvidia-container-toolkit.pref
    pin_sha1: "{{ __nvidia_runtime_toolkit_pin_text | hash('sha1') }}"
    all_missing: "{{ dict(__nvidia_runtime_facts_paths | zip([missing] * (__nvidia_runtime_facts_paths | length))) }}"
  tasks:
    - name: Nothing there yet
      ansible.builtin.set_fact:
        ansible_facts: {architecture: x86_64, nvidia_runtime: {paths: "{{ all_missing }}", packages: {}}}
    - name: Every rule says no
      ansible.builtin.assert:
        that:
          - not __nvidia_runtime_keyrings_dir_in_place
          - not __nvidia_runtime_toolkit_key_in_place
          - not __nvidia_runtime_toolkit_pin_in_place
          - not __nvidia_runtime_toolkit_packages_in_place
    - name: The folder, the key and the pin as the tasks leave them
      ansible.builtin.set_fact:
        ansible_facts:
          architecture: x86_64
          nvidia_runtime:
            packages: {}
            paths: "{{ all_missing | combine({nvidia_runtime_apt_keyrings_dir: dir_ok, __nvidia_runtime_toolkit_keyring: file_ok,
                                              pin: file_ok | combine({'checksum': pin_sha1})}) }}"
    - name: Those rules say yes
      ansible.builtin.assert:
        that:
          - __nvidia_runtime_keyrings_dir_in_place
          - __nvidia_runtime_toolkit_key_in_place
          - __nvidia_runtime_toolkit_pin_in_place
    - name: Another mode, another pin
      ansible.builtin.set_fact:
        ansible_facts:
          architecture: x86_64
          nvidia_runtime:
            packages: {}
            paths: "{{ all_missing | combine({nvidia_runtime_apt_keyrings_dir: dir_ok | combine({'mode': '0700'}),
                                              pin: file_ok | combine({'checksum': '0' * 40})}) }}"
    - name: Those rules say no
      ansible.builtin.assert:
        that:
          - not __nvidia_runtime_keyrings_dir_in_place
          - not __nvidia_runtime_toolkit_pin_in_place
"""


def test_toolkit_in_place_rules_compare_values(tmp_path):
    """A fresh node (every path missing) is not 'in place' (the rules once compared dict keys only), a path
    as the task leaves it is, another mode or checksum is not."""
    pb = tmp_path / "in_place.yml"
    pb.write_text(IN_PLACE % {"role": REPO_ROOT / "roles/nvidia_runtime"})
    rc, out, err = run_playbook(pb, extravars={"nvidia_runtime_toolkit_version": "1.17.8-1"}, timeout=300)
    assert rc == 0, out[-4000:] + err[-2000:]


APT_TEXTS = """\
- name: the toolkit step's apt files as text
  hosts: localhost
  gather_facts: false
  vars_files: [%(role)s/defaults/main.yml, %(role)s/vars/main.yml]
  vars:
    ansible_facts: {architecture: x86_64}
  tasks:
    - name: Write them
      ansible.builtin.copy:
        content: "{{ item.text }}"
        dest: "%(out)s/{{ item.name }}"
        mode: "0644"
      loop:
        - {name: repo, text: "{{ __nvidia_runtime_toolkit_repo_text }}"}
        - {name: pin, text: "{{ __nvidia_runtime_toolkit_pin_text }}"}
"""

HEADER = "# Ansible managed (gpuops.nvidia.nvidia_runtime)\n"
KEY = "/etc/apt/keyrings/nvidia-container-toolkit.asc"
URL = "https://nvidia.github.io/libnvidia-container/stable/deb/amd64"


@pytest.mark.parametrize("fmt, components, repo", [
    ("deb822", [], "Types: deb\nURIs: %s\nSuites: /\nSigned-By: %s\n" % (URL, KEY)),
    ("deb822", ["main", "extra"], "Types: deb\nURIs: %s\nSuites: /\nComponents: main extra\nSigned-By: %s\n" % (URL, KEY)),
    ("one_line", [], "deb [signed-by=%s] %s /\n\n" % (KEY, URL)),
    ("one_line", ["main"], "deb [signed-by=%s] %s / main\n\n" % (KEY, URL)),
])
def test_toolkit_apt_texts_keep_the_bytes_earlier_releases_wrote(tmp_path, fmt, components, repo):
    """The repository and pin files are written from the role's text (the same text the in-place rules hash, no
    template rendered to judge a node): byte for byte what 1.0.0's templates wrote with the default ansible_managed,
    so an upgrade rewrites nothing and apt is not refreshed."""
    pb = tmp_path / "texts.yml"
    pb.write_text(APT_TEXTS % {"role": REPO_ROOT / "roles/nvidia_runtime", "out": tmp_path})
    rc, out, err = run_playbook(pb, extravars={"nvidia_runtime_apt_sources_format": fmt, "nvidia_runtime_toolkit_version": "1.17.8",
                                               "nvidia_runtime_toolkit_repo_components": components}, timeout=300)
    assert rc == 0, out[-4000:] + err[-2000:]
    assert (tmp_path / "repo").read_text() == (
        HEADER + "# NVIDIA Container Toolkit (libnvidia-container) repository.\n" + repo)
    assert (tmp_path / "pin").read_text() == (
        HEADER + "# Keep the NVIDIA Container Toolkit packages together at one version.\n"
        "Package: nvidia-container-toolkit nvidia-container-toolkit-base libnvidia-container-tools libnvidia-container1\n"
        "Pin: version 1.17.8-*\nPin-Priority: 1001\n")


def test_no_change_run_reads_containerd_once(tmp_path, builds):
    """A no-change run of the role asks the node's containerd twice in all: its version once and one config dump
    (the dump of an empty config, the build's built-in runtimes, comes from the cache the first real run wrote).
    In a sandbox the facts run no binary, so the version is the engine module's own read; on a node the facts read
    it and the module takes it from them (containerd_version: test_containerd_builtin_cache.py)."""
    build = builds["1.7"]
    node = tmp_path / "node"
    default_config(build, node / "etc/containerd/config.toml")
    (node / "usr/bin").mkdir(parents=True)
    calls = tmp_path / "calls.log"
    wrapper = node / "usr/bin/containerd"      # the node's containerd, logging how it is called
    wrapper.write_text('#!/bin/sh\necho "$*" >> %s\nexec %s "$@"\n' % (calls, build.containerd))
    wrapper.chmod(0o755)
    ev = {"nvidia_runtime_sandbox": str(node), "sandbox_result_file": str(tmp_path / "result.json")}

    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert result["engine_changed"] is True
    calls.unlink()

    rc, out, err, result = run_role(tmp_path, ev)
    assert_ok(rc, out, err)
    assert recap(out)["changed"] == 0
    lines = calls.read_text().splitlines()
    assert sum(1 for c in lines if c == "--version") == 1, lines
    assert sum(1 for c in lines if c.endswith("config dump")) == 1, lines
    assert len(lines) == 2, lines


def test_site_plan_is_one_module_run_per_node(tmp_path, builds):
    """The plan play asks one module per node: the facts module answers for the engine module in the same run
    (check_engine), so on a node that needs nothing the engine task is not run and the rollout gets no host. A config
    the engine module would refuse: the plan runs that module itself, which fails with its own error, as before."""
    build = builds["1.7"]
    config = default_config(build, tmp_path / "sb/etc/containerd/config.toml")
    ev = dict(containerd_vars(tmp_path / "sb", build, config, nvidia_runtime_binary=STANDIN), ansible_become=False)
    inv = localhost_inventory(tmp_path)
    site = REPO_ROOT / "playbooks/site.yml"
    engine_task = "Configure the nvidia handler in containerd"
    rollout = re.compile(r"PLAY \[NVIDIA runtime on the GPU nodes\] \**\n(?P<next>[^\n]*\n[^\n]*)")

    rc, out, err = run_playbook(site, extravars=ev, inventory=inv)   # the plan says "runtime config": the rollout runs
    assert_ok(rc, out, err)
    assert "skipping: no hosts matched" not in rollout.search(out)["next"]
    plan = out[:out.index("PLAY [NVIDIA runtime on the GPU nodes]")]
    assert engine_task not in plan, plan
    assert re.search(r"TASK \[[^\]]*%s[^\]]*\][^\n]*\nchanged: " % engine_task, out)   # the rollout's real run
    written = config.read_bytes()

    rc, out, err = run_playbook(site, extravars=ev, inventory=inv)   # nothing to do: one module run, no rollout
    assert_ok(rc, out, err)
    assert "skipping: no hosts matched" in rollout.search(out)["next"]
    assert recap(out)["changed"] == 0 and engine_task not in out
    assert config.read_bytes() == written

    config.write_text(config.read_text() + "\n[plugins\n")          # not TOML: the engine module must say so
    rc, out, err = run_playbook(site, extravars=ev, inventory=inv)
    assert rc != 0
    assert "PLAY [NVIDIA runtime on the GPU nodes]" not in out          # the plan stopped the play
    task = out[out.index("TASK [gpuops.nvidia.nvidia_runtime : " + engine_task):]    # the engine module's own error
    assert re.match(r"[^\n]*\n(?:.*\n)*?fatal: \[localhost\]: FAILED! => [^\n]*malformed TOML in [^\n]*config.toml", task)
