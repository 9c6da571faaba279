# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """What the runtime modules (nvidia_containerd_runtime, nvidia_crio_runtime) share."""

    DOCUMENTATION = r"""
requirements:
  - a TOML reader in the managed node's Python, Python >= 3.11 (tomllib) or one of tomli >= 1.0, tomlkit >= 0.7, toml >= 0.10
  - on Pythons before 3.11 the distribution's python3-tomli, python3-tomlkit or python3-toml (the nvidia_runtime role installs one)
attributes:
  check_mode:
    support: full
    description: Computes every change and the real diff; writes nothing and restarts nothing.
  diff_mode:
    support: full
    description: Returns a before/after pair per file.
  platform:
    support: full
    platforms: posix
    description: Linux nodes with systemd or another supervisor for the runtime.
options:
  state:
    description:
      - V(absent) removes exactly what V(present) adds and restores values it replaced.
      - V(query) changes nothing; it returns RV(view), the handlers of the effective configuration as the
        first O(config_source) that works reads it (what the runtime loads with O(config_source=command)).
    type: str
    choices: [present, absent, query]
    default: present
  runtime_name:
    description: Handler name.
    type: str
    default: nvidia
"""
