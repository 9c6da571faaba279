# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``path_in_place``: is a path as a file task would leave it, judged from the facts module's ``paths``.

The role's toolkit step skips its repository, key and pin tasks on a node that already has them as wanted
(roles/nvidia_runtime/vars/main.yml, ``__nvidia_runtime_*_in_place``): one comparison per path here instead of
the same path templated three times per rule (documentation in path_in_place.yml beside this file).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def path_in_place(paths, path, **want):
    """True when ``paths`` (the facts' ``paths``: path -> exists, isdir, mode, uid, gid, checksum) has ``path``
    and every key of ``want`` has that value there; False for a path the facts did not read."""
    state = (paths or {}).get(path)
    if not isinstance(state, dict):
        return False
    return all(k in state and state[k] == v for k, v in want.items())


class FilterModule(object):
    """gpuops.nvidia filters of the role's path rules."""

    def filters(self):
        return {"path_in_place": path_in_place}
