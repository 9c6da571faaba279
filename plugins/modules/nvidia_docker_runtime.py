#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: nvidia_docker_runtime
short_description: Add the NVIDIA runtime to Docker Engine's daemon.json without losing anything else
version_added: "0.2.0"
description:
  - Adds (or removes) the C(nvidia) runtime, and optionally its C(-cdi)/C(-legacy) variants, to the
    C(runtimes) of Docker Engine's C(daemon.json); optionally makes it C(default-runtime) and turns on
    C(features.cdi).
  - Edits are byte-preserving. Every key the file had keeps its place, its value and its layout; new
    members copy the file's indentation. A second run changes zero bytes. The file is rewritten
    atomically (temp file and rename), keeping its mode and owner; a symlink stays a symlink.
  - An existing C(runtimes.<name>) keeps its other keys; the module owns C(path), and C(runtimeArgs)
    only when O(runtime_args) is given.
  - JSON has no comments, so what the module replaced is recorded in a file beside the config,
    C(<config>.gpuops-nvidia) (for the default, C(/etc/docker/daemon.json.gpuops-nvidia); Docker reads
    only C(daemon.json), so the file is inert). It holds, for each edit, the exact text before and
    after. O(state=absent) reads it to restore the original bytes, then deletes it (and deletes
    C(daemon.json) when the module created it). Do not edit it; read it to see what was replaced.
  - The candidate file is checked with the real C(dockerd --validate --config-file) (Docker 23.0 and
    later) before anything is replaced; older Docker (20.10) gets only the module's own JSON checks,
    with a warning.
  - Malformed JSON (reported with line and column), a top level that is not an object, C(runtimes) or
    C(features) or a handler that is not an object, a duplicated key the module would edit, and a key
    C(dockerd --validate) rejects are errors; nothing is changed.
  - Docker restarts when a file changed (O(restart)). Without C(live-restore) in C(daemon.json), a
    restart of Docker stops every running container (containers with a restart policy are started
    again). With C(live-restore) set to C(true), running containers keep running while C(dockerd)
    restarts, and the new runtimes apply to containers started afterwards.
author:
  - gpuops.nvidia developers (@gpuops)
attributes:
  check_mode:
    support: full
    description: Computes every change and the real diff, and validates; writes nothing and restarts nothing.
  diff_mode:
    support: full
    description: Returns a before/after pair per file (C(daemon.json) and its record).
  platform:
    support: full
    platforms: posix
    description: Linux nodes running Docker Engine (systemd unit C(docker)).
options:
  state:
    description: V(absent) removes exactly what V(present) adds and restores values it replaced.
    type: str
    choices: [present, absent]
    default: present
  config:
    description: Docker's C(daemon.json). It may not exist yet.
    type: path
    default: /etc/docker/daemon.json
  runtime_name:
    description: Runtime name (C(docker run --runtime <name>)). Docker's built-in names are refused.
    type: str
    default: nvidia
  runtime_path:
    description: The NVIDIA runtime binary; becomes C(runtimes.<name>.path).
    type: path
    default: /usr/bin/nvidia-container-runtime
  runtime_args:
    description:
      - C(runtimeArgs) of the runtime (and its variants). When omitted, an existing C(runtimeArgs) is
        left alone and a new runtime gets none.
    type: list
    elements: str
  variants:
    description: Extra runtimes C(<runtime_name>-cdi) / C(-legacy) with path C(<runtime_path>.cdi) / C(.legacy).
    type: list
    elements: str
    choices: [cdi, legacy]
    default: []
  set_as_default:
    description:
      - Make O(runtime_name) Docker's C(default-runtime).
      - V(false) unsets a C(default-runtime) that names one of ours (back to the value the module
        replaced, else Docker's default C(runc)).
    type: bool
    default: false
  enable_cdi:
    description: Set C(features.cdi = true) (Docker 25 and later read it); every other feature is kept.
    type: bool
    default: false
  dockerd_path:
    description: dockerd binary for validation.
    type: str
    default: dockerd
  validate:
    description:
      - Check the candidate file with C(dockerd --validate) before anything is replaced.
      - When dockerd is absent and O(config) does not exist yet (bootstrap), validation is skipped
        with a warning; when the file exists it is an error.
    type: bool
    default: true
  backup:
    description: Create a timestamped backup beside C(daemon.json) before it is changed.
    type: bool
    default: false
  restart:
    description:
      - When a file changed. V(auto) restarts the systemd unit O(service) if it is active; else warns
        when something listens on O(socket); else (Docker not running) does nothing.
      - V(systemd) always restarts the unit. V(none) never restarts (the change applies at the next
        start of Docker).
    type: str
    choices: [auto, systemd, none]
    default: auto
  service:
    description: systemd unit to restart.
    type: str
    default: docker
  socket:
    description: Docker's API socket, for the health check.
    type: path
    default: /run/docker.sock
  restart_timeout:
    description: Seconds to wait for a healthy Docker after a restart.
    type: int
    default: 60
  lock_timeout:
    description:
      - Seconds to wait for another run that is changing the same file before failing; the lock is held from
        reading the file to the end of the restart. Check mode takes no lock. On timeout the module fails,
        naming the file and the PID of the holder, and writes nothing.
    type: int
    default: 120
notes:
  - Healthy after a restart means C(GET /info) on O(socket) (what C(docker info) shows) answers and
    lists the runtimes written (and none removed), with the C(default-runtime) written.
  - When Docker is not healthy after the restart, C(daemon.json) and the record get their previous
    bytes back, Docker is restarted again and the module fails with the unit's last log lines.
  - O(state=absent) removes runtimes named O(runtime_name) (and variants) even when another tool
    (C(nvidia-ctk)) wrote them, and never leaves C(default-runtime) naming a removed runtime; the
    exact original bytes come back whenever the original had no such runtime and nobody edited what
    the module wrote.
  - C(dockerd --validate) does not check that C(default-runtime) names a configured runtime; the
    module only ever sets it to a runtime it writes.
seealso:
  - name: Docker daemon configuration file
    description: dockerd's reference, daemon.json and live restore.
    link: https://docs.docker.com/reference/cli/dockerd/#daemon-configuration-file
"""

EXAMPLES = r"""
- name: Add the nvidia runtime to /etc/docker/daemon.json
  gpuops.nvidia.nvidia_docker_runtime:
    state: present

- name: As the default runtime, with CDI and the nvidia-cdi variant
  gpuops.nvidia.nvidia_docker_runtime:
    set_as_default: true
    enable_cdi: true
    variants: [cdi]

- name: Write the file now, let Docker pick it up at its next start
  gpuops.nvidia.nvidia_docker_runtime:
    restart: none

- name: Remove everything the module added (the original bytes come back)
  gpuops.nvidia.nvidia_docker_runtime:
    state: absent
"""

RETURN = r"""
diff:
  description: A before/after pair per file, with the file as header (check and diff mode).
  returned: when diff mode is on
  type: list
  elements: dict
docker_version:
  description: The version of O(dockerd_path), when it was found.
  returned: always
  type: str
  sample: 26.1.5
validated:
  description: Whether C(dockerd --validate) checked the new file.
  returned: always
  type: bool
files:
  description: Files written or deleted (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [/etc/docker/daemon.json, /etc/docker/daemon.json.gpuops-nvidia]
record:
  description: The file recording what the module replaced.
  returned: always
  type: str
  sample: /etc/docker/daemon.json.gpuops-nvidia
runtimes:
  description: Handlers managed.
  returned: always
  type: list
  elements: str
  sample: [nvidia, nvidia-cdi]
default_runtime:
  description: Docker's default runtime after the change.
  returned: always
  type: str
  sample: runc
restarted:
  description: Whether Docker was restarted.
  returned: always
  type: bool
restart_method:
  description: How it was restarted (systemd) or null.
  returned: always
  type: str
backup_files:
  description: Backups created.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpuops.nvidia.plugins.module_utils._runtime_flow import argument_spec, run
from ansible_collections.gpuops.nvidia.plugins.module_utils.docker import Adapter


def main():
    run(AnsibleModule(argument_spec=argument_spec(Adapter), supports_check_mode=True), Adapter)


if __name__ == "__main__":
    main()
