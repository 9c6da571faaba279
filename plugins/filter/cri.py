# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``cri_healthy``: the CRI health rule of nvidia_containerd_runtime, for the role's verify step.

One implementation: the module judges a restart with ``containerd.cri_healthy`` and the role's verify step
asks the same function through this filter (documentation in cri_healthy.yml beside this file).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.gpuops.nvidia.plugins.module_utils import versions
from ansible_collections.gpuops.nvidia.plugins.module_utils.containerd import cri_healthy as _cri_healthy
from ansible_collections.gpuops.nvidia.plugins.module_utils.containerd import parse_plugins_ls


def cri_healthy(plugins_ls, containerd_version=None):
    """``ctr plugins ls`` output (and the containerd version, when known) -> True when the CRI plugin is healthy."""
    return _cri_healthy(parse_plugins_ls(plugins_ls), versions.containerd(containerd_version or None))


class FilterModule(object):
    """gpuops.nvidia CRI filters."""

    def filters(self):
        return {"cri_healthy": cri_healthy}
