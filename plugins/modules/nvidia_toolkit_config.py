#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: nvidia_toolkit_config
short_description: Set or remove options in the NVIDIA Container Toolkit's config.toml, keeping the rest byte-identical
version_added: "0.1.0"
description:
  - Edits the NVIDIA Container Toolkit's own TOML config (C(/etc/nvidia-container-runtime/config.toml)),
    read by C(nvidia-container-runtime), its hook and C(nvidia-ctk).
  - The toolkit must agree with the low-level runtime it wraps. When that runtime has an explicit path or is
    neither C(runc) nor C(crun), list it in C(nvidia-container-runtime.runtimes) (toolkit issue 712), for
    example V(["/usr/bin/crun"]).
  - Edits are format-preserving. Comments, order, spacing and every key not named stay byte-identical. A
    changed value keeps its line's trailing comment.
  - 'The only marker written is the comment C(# gpuops.nvidia: added) after the header of a table the
    module adds, so that O(unset) can remove that table again.'
  - A key that the packaged default only shows as a comment (C(#no-cgroups = false)) is added on the line right
    after that comment, in the same table and with the same indentation; the comment stays.
  - A missing table is added after its closest existing parent table and that table's sub-tables (else at the
    end of the file), in the file's indentation style, its header marked (see above).
  - A missing file is created (mode C(0644), parent folders included) when there is something to write.
  - Writes are atomic (temporary file and rename), refused when the file changed since it was read, and
    idempotent (a second run with the same options changes zero bytes).
  - Runs on the same file are serialised by a lock (C(flock) on a file in C(/run/lock/gpuops-nvidia));
    see O(lock_timeout).
author:
  - gpuops.nvidia developers (@gpuops)
requirements:
  - a TOML reader in the managed node's Python, Python >= 3.11 (tomllib) or one of tomli >= 1.0, tomlkit >= 0.7, toml >= 0.10
  - on Pythons before 3.11 the distribution's python3-tomli, python3-tomlkit or python3-toml (the nvidia_runtime role installs one)
extends_documentation_fragment: []
attributes:
  check_mode:
    support: full
    description:
      - Computes the new text and the real diff; writes nothing.
      - Tests, without writing, that the real run could write the file, and fails with the same message
        when it could not (read-only mount, immutable file or folder, a file where a folder must be, a
        symlink loop).
  diff_mode:
    support: full
    description: Returns the file before and after, with the file as header.
  platform:
    support: full
    platforms: posix
    description: Any POSIX node with the toolkit config file.
options:
  path:
    description: The toolkit's config file. It may not exist yet.
    type: path
    default: /etc/nvidia-container-runtime/config.toml
  settings:
    description:
      - Keys to set, as C(dotted.key) to value. The part before the last dot names the table, so
        C(nvidia-container-runtime.mode) is the key C(mode) of C([nvidia-container-runtime]).
      - Keys are split on unquoted dots with TOML's dotted-key rules. Bare segments may hold C(A-Za-z0-9_-);
        a segment holding a dot (or any other character) must be quoted, for example
        C('features."some.flag"') (mind the YAML quoting around the TOML quotes).
      - Values are written with their YAML type. V(true) is a TOML boolean, C("true") a string, a list an
        array. A value already present with the same type is left alone.
      - A mapping or C(null) is refused (name each key with a dotted key; use O(unset) to remove one).
    type: dict
    default: {}
  unset:
    description:
      - Dotted keys (same syntax as in O(settings)) to remove. Only the key's line is removed, so a key
        this module added after a C(#key = ...) comment goes away and the original bytes come back.
      - A table this module added (its header marked, see the description) that is left with no key,
        comment or sub-table is removed with its header and the blank line before it, so the original
        bytes come back. Tables written by hand keep their header.
      - A key that is not set is ignored. Naming a table is an error.
    type: list
    elements: str
    default: []
  backup:
    description:
      - Create a timestamped backup beside the file before changing it.
      - The backup is written like the file (temporary file and rename); a run that fails leaves no
        backup, complete or partial.
    type: bool
    default: false
  lock_timeout:
    description:
      - Seconds to wait for another run that is changing the same file (another play, a retry, an ad-hoc
        run) before failing. The file's lock is held from reading it to writing it; the waiting run then
        reads what the other one wrote.
      - On timeout the module fails, naming the file and the PID of the run holding the lock, and writes
        nothing.
    type: int
    default: 120
notes:
  - The toolkit reads this file at every container start, so no service needs a restart.
  - Errors leave the file untouched. They cover malformed TOML (file and line), a key path that crosses a
    value (C(a.b.c) when C(a.b) is a string), a key that also appears in O(unset) or overlaps another one,
    an unwritable path (the same error in check mode), a symlink loop, and a value written in a form that cannot be edited safely (multi-line array,
    inline table, dotted key inside the file). Edit such a value by hand once.
seealso:
  - module: gpuops.nvidia.nvidia_containerd_runtime
  - name: NVIDIA Container Toolkit configuration
    description: The toolkit's config file and its options.
    link: https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html
"""

EXAMPLES = r"""
- name: The runtime wraps crun at an explicit path (toolkit issue 712)
  gpuops.nvidia.nvidia_toolkit_config:
    settings:
      nvidia-container-runtime.runtimes: ["/usr/bin/crun"]   # exactly what the handler wraps: no fallback

- name: CDI mode, and no cgroup handling by nvidia-container-cli (rootless)
  gpuops.nvidia.nvidia_toolkit_config:
    settings:
      nvidia-container-runtime.mode: cdi
      nvidia-container-cli.no-cgroups: true

- name: Let the device plugin pass GPUs as volume mounts (kind clusters)
  gpuops.nvidia.nvidia_toolkit_config:
    settings:
      accept-nvidia-visible-devices-as-volume-mounts: true
      accept-nvidia-visible-devices-envvar-when-unprivileged: false
    backup: true

- name: Back to the packaged default for these keys
  gpuops.nvidia.nvidia_toolkit_config:
    unset:
      - nvidia-container-cli.no-cgroups
      - accept-nvidia-visible-devices-as-volume-mounts
"""

RETURN = r"""
changed:
  description: Whether the file changed (or would change, in check mode).
  returned: always
  type: bool
path:
  description: The file edited.
  returned: always
  type: str
  sample: /etc/nvidia-container-runtime/config.toml
settings:
  description: The resulting value of each key of O(settings), keyed as given.
  returned: success
  type: dict
  sample: {"nvidia-container-runtime.runtimes": ["/usr/bin/crun"], "nvidia-container-cli.no-cgroups": true}
diff:
  description:
    - The runtime modules' diff form, a list with one before/after pair per changed file, the file as header
      (C(before_header) says C(absent) for a new file). Empty when nothing changes. Shown by Ansible in diff mode.
    - Up to version 1.0.0 this was a single dict, returned when nothing changed too.
  returned: success
  type: list
  elements: dict
  contains:
    before:
      description: Text before (empty for a missing file).
      type: str
    after:
      description: Text after.
      type: str
    before_header:
      description: C(<path> (before)) or C(<path> (absent)).
      type: str
    after_header:
      description: C(<path> (after)).
      type: str
  sample:
    - before: "[nvidia-container-runtime]\nmode = \"auto\"\n"
      after: "[nvidia-container-runtime]\nmode = \"cdi\"\n"
      before_header: /etc/nvidia-container-runtime/config.toml (before)
      after_header: /etc/nvidia-container-runtime/config.toml (after)
backup_file:
  description: The backup created, when O(backup=true) and an existing file changed.
  returned: always
  type: str
  sample: /etc/nvidia-container-runtime/config.toml.12345.2026-01-01@12:00:00~
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.gpuops.nvidia.plugins.module_utils.common import EngineError
from ansible_collections.gpuops.nvidia.plugins.module_utils.tomledit import TomlEditError
from ansible_collections.gpuops.nvidia.plugins.module_utils._runtime_flow import require_toml_reader
from ansible_collections.gpuops.nvidia.plugins.module_utils import fileops
from ansible_collections.gpuops.nvidia.plugins.module_utils import toolkit


def run(module, result):
    """Plan, then write (check mode: the real run's write tests only); exits the module."""
    params = module.params
    try:
        plan = toolkit.plan(params["path"], params["settings"], params["unset"])
    except (EngineError, TomlEditError) as e:
        module.fail_json(msg=to_native(e), **result)
    result.update(changed=plan.changed, settings=plan.settings, diff=plan.diff())
    if not plan.changed:
        module.exit_json(**result)
    f = plan.files[0]   # the toolkit's one file
    try:   # check mode: the same tests as the real run (read-only mount, immutable file...), nothing written
        _written, backups = fileops.apply_changes([(f.path, f.before, f.after)], module=module, backup=params["backup"],
                                                  check_mode=module.check_mode)
    except fileops.FileOpError as e:
        result["changed"] = False
        module.fail_json(msg=to_native(e), **result)
    if module.check_mode:
        module.exit_json(**result)
    result["backup_file"] = backups[0] if backups else None
    if f.before is None:  # atomic_move gives a new file the umask's mode; the toolkit's file is 0644
        try:
            os.chmod(os.path.realpath(f.path), 0o644)
        except OSError as e:
            module.fail_json(msg="%s was written but its mode could not be set to 0644: %s" % (f.path, to_native(e)),
                             **result)
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default=toolkit.DEFAULT_PATH),
            settings=dict(type="dict", default={}),
            unset=dict(type="list", elements="str", default=[]),
            backup=dict(type="bool", default=False),
            lock_timeout=dict(type="int", default=fileops.LOCK_TIMEOUT),
        ),
        supports_check_mode=True,
    )
    require_toml_reader(module)
    result = dict(changed=False, path=module.params["path"], backup_file=None)
    if module.check_mode:   # reads only: no lock needed
        run(module, result)
    try:   # read, plan and write under the file's lock: a concurrent run waits, then reads what this one wrote
        with fileops.locked([module.params["path"]], timeout=module.params["lock_timeout"]):
            run(module, result)
    except fileops.FileOpError as e:
        module.fail_json(msg=to_native(e), **result)


if __name__ == "__main__":
    main()
