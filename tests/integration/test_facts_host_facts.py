"""nvidia_runtime_facts host_facts=true sets the host facts a min fact gathering sets, with the same values
(the role's plays gather no facts), and probe/packages/paths describe this host."""
from __future__ import annotations

import sys

import pytest

from ansible_run import run_playbook

pytestmark = [pytest.mark.integration]

KEYS = ["os_family", "distribution", "distribution_version", "distribution_major_version", "distribution_release",
        "architecture", "kernel", "machine", "system", "pkg_mgr", "python"]

PLAYBOOK = """\
- name: host facts of the facts module against setup's
  hosts: localhost
  gather_facts: false
  vars:
    keys: %(keys)r
  tasks:
    - name: The facts module alone
      gpuops.nvidia.nvidia_runtime_facts:
        host_facts: true
        packages: [python3-surely-not-installed-gpuops]
        paths: [/, /surely/not/here]

    - name: Keep them
      ansible.builtin.set_fact:
        from_module: "{{ keys | map('extract', ansible_facts) | list }}"
        nr: "{{ ansible_facts['nvidia_runtime'] }}"

    - name: Forget every fact
      ansible.builtin.meta: clear_facts

    - name: A min fact gathering
      ansible.builtin.setup:
        gather_subset: [min]

    - name: Same values
      ansible.builtin.assert:
        that:
          - from_module == keys | map('extract', ansible_facts) | list
          - nr['probe']['executable'] == ansible_facts['python']['executable']
          - nr['packages']['python3-surely-not-installed-gpuops'] is none
          - nr['paths']['/']['isdir'] and nr['paths']['/']['mode'] is string
          - not nr['paths']['/surely/not/here']['exists']
"""


def test_host_facts_match_a_min_fact_gathering():
    rc, out, err = run_playbook(PLAYBOOK % {"keys": KEYS}, extravars={"ansible_python_interpreter": sys.executable},
                                timeout=300)
    assert rc == 0, out[-4000:] + err[-2000:]
