#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: nvidia_crio_runtime
short_description: Add the NVIDIA runtime handler to CRI-O without losing anything else
version_added: "0.1.0"
description:
  - Adds (or removes) the C(nvidia) runtime handler, and optionally its C(-cdi)/C(-legacy) variants, to
    CRI-O, through a drop-in file (default) or by editing the main file in place.
  - CRI-O reads O(config), then B(every) file under O(config_dir) recursively, in lexical order, whatever
    its extension (a backup left there is loaded too). The module emulates exactly that merge to decide
    what to copy and to check that its handler wins.
  - A later file that defines a runtime table replaces the whole earlier definition. So a new handler is
    written as a B(copy of the whole table) of the runtime it wraps (C(default_runtime) unless it is one
    of ours, else C(crun), else C(runc)); C(monitor_path), C(monitor_cgroup), C(allowed_annotations),
    C(runtime_type) (a C(pod) runtime stays C(pod)) and friends follow; then C(runtime_path) is set,
    C(runtime_type) only when empty, and C(runtime_root) (see O(runtime_root)).
    C(inherit_default_runtime) and C(platform_runtime_paths) are not copied (CRI-O would replace our
    C(runtime_path) with them). A VM runtime (C(runtime_type = "vm"), e.g. Kata) is never copied.
  - When no file defines the wrapped runtime, it is CRI-O's built-in default handler. Its whole table is
    copied for the CRI-O versions whose C(crio config) output is known (1.36 and later, with C(runtime_type),
    C(runtime_root), C(allowed_annotations), C(monitor_env), C(container_min_memory)); for other or unknown
    versions only C(runtime_type) and C(runtime_root) (a guessed C(allowed_annotations) entry that CRI-O does
    not know makes it ignore the handler) and the module warns. With O(config_source=[command, file]) and
    CRI-O running, the table is read from the daemon instead.
  - An B(existing) handler table named O(runtime_name) (or a variant), written by the operator or another
    tool, keeps what its owner set (C(allowed_annotations), C(monitor_env), C(privileged_without_host_devices),
    C(platform_runtime_paths), any other key); the module owns C(runtime_path) only, sets C(runtime_type) and
    C(runtime_root) only when missing (a C(runtime_root) that is another runtime's state folder is replaced,
    with a warning) and fills the keys it lacks from the wrapped runtime. In a file the module edits, each
    change is recorded on its line, and O(state=absent) gives the table back byte for byte. A table with
    C(inherit_default_runtime = true) is refused (CRI-O would replace its C(runtime_path)).
  - Edits of shared files are format-preserving; comments, order and every key the module does not own
    stay byte-identical. Values it changes keep the original in a trailing C(# gpuops.nvidia:) comment so
    that O(state=absent) restores the original bytes. The module's own drop-in starts with a header
    comment C(# Managed by Ansible) that names the module, and is deleted by O(state=absent).
  - "Precedence: a file in O(config_dir) that sorts after the module's target and defines one of its
    handlers, or sets C(default_runtime) when O(set_as_default=true), would override it. The module then
    fails (nothing is written) naming that file. A file that sorts before and defines the handler, like the
    C(99-nvidia.conf) that the GPU Operator / C(nvidia-ctk) writes, is overridden by ours: the module goes
    ahead and warns, naming the file (two tools should not own one handler)."
  - The runtime is reloaded or restarted only when a file changed (or when the running CRI-O left out a
    handler its files define), and the files are rolled back when it does not come back healthy.
  - B(A change of handler tables or C(default_runtime) restarts CRI-O; a reload is not enough.) Seen on
    CRI-O 1.36.3 (open upstream bug L(cri-o/cri-o#10202,https://github.com/cri-o/cri-o/issues/10202)),
    after a reload (SIGHUP) C(crio status config) lists the new handler, but RunPodSandbox fails with
    C(failed to find runtime handler nvidia) and pods without a handler keep the old default. Every
    change this module makes is such a change, so it restarts, until a CRI-O release fixes the bug.
author:
  - gpuops.nvidia developers (@gpuops)
extends_documentation_fragment:
  - gpuops.nvidia.runtime
options:
  config:
    description: CRI-O's main config file (C(crio --config)). It may not exist (the CRI-O packages of pkgs.k8s.io ship none).
    type: path
    default: /etc/crio/crio.conf
  drop_in:
    description:
      - The file, inside O(config_dir), that holds the handlers. It is the module's own file (written whole)
        unless it exists without the module's header; then it is edited like a shared file.
      - Null or empty edits O(config) in place instead. Every file of O(config_dir) loads after O(config),
        so in-place edits lose against any drop-in that sets the same things (the module then fails).
      - Files with the module's header under other names in O(config_dir) (an earlier O(drop_in)) are removed.
    type: path
    default: /etc/crio/crio.conf.d/99-nvidia.toml
  config_dir:
    description: CRI-O's drop-in folder (C(crio --config-dir)).
    type: path
    default: /etc/crio/crio.conf.d
  config_source:
    description:
      - Ordered ways to read the effective configuration (default runtime, runtimes); the first that works wins.
      - V(command) asks the running daemon, C(<crio_path> status --socket <socket> config); it is skipped
        when crio is missing or fails.
      - V(file) merges O(config) and O(config_dir) the way CRI-O does.
      - The copied table itself is taken as written in the files when a file defines it, else from the
        running daemon, else from CRI-O's built-in default.
    type: list
    elements: str
    choices: [command, file]
    default: [command, file]
  crio_path:
    description: crio binary, for the version, C(crio status) and the health check.
    type: str
    default: crio
  runtime_path:
    description: The NVIDIA runtime binary; becomes C(runtime_path).
    type: path
    default: /usr/bin/nvidia-container-runtime
  runtime_type:
    description: Used when the copied runtime table has no C(runtime_type).
    type: str
    default: oci
  runtime_root:
    description:
      - C(runtime_root) (state folder) of the handler; variants get C(<runtime_root>-cdi) / C(-legacy).
      - By default it is a sibling of the copied runtime's root named after the handler, e.g.
        C(/run/crun) -> C(/run/crun-nvidia), C(/run/crun-nvidia-cdi). It never shares the copied runtime's
        folder (C(nvidia-container-runtime) may exec runc while crun keeps its state there) and never uses
        C(/run/nvidia), which belongs to the GPU Operator (driver root, validations).
      - An existing handler table keeps its own C(runtime_root) unless this option is set (or it is another
        runtime's state folder).
    type: path
  variants:
    description: Extra handlers C(<runtime_name>-cdi) / C(-legacy) with C(runtime_path) C(<runtime_path>.cdi) / C(.legacy).
    type: list
    elements: str
    choices: [cdi, legacy]
    default: []
  set_as_default:
    description: Make O(runtime_name) the C(default_runtime). V(false) unsets a default that names one of ours in the edited file.
    type: bool
    default: false
  copy_options_from:
    description: Runtime whose table is copied. Default is the default runtime unless it is one of ours, else C(crun), else C(runc).
    type: str
  backup:
    description:
      - Create a timestamped backup of each changed file before it is changed.
      - Backups are never written inside O(config_dir) (CRI-O would load them as configuration), see O(backup_dir).
    type: bool
    default: false
  backup_dir:
    description: Where backups go. Default is the folder of O(config) (C(/etc/crio)). It must not be inside O(config_dir).
    type: path
  restart:
    description:
      - When a file changed. V(auto) restarts the active systemd unit O(service) when handler tables or
        C(default_runtime) change (every change this module makes; a reload does not apply them, see
        cri-o/cri-o#10202 above). A change that leaves them alone is reloaded (C(systemctl reload), SIGHUP)
        on CRI-O >= 1.26, with a restart when the version is older or unknown or the reload did not show in
        C(crio status config). When the unit is not active it warns if something answers on O(socket),
        else (nothing runs, bootstrap) does nothing.
      - V(reload) reloads, except for a change of handler tables or C(default_runtime); then it restarts
        and warns (naming cri-o/cri-o#10202). V(systemd) always restarts the unit, V(none) does neither
        (it warns when the running CRI-O needs a restart to use a handler its files define).
      - Also when no file changes but C(crio status config) lacks a handler that the files define and whose
        binary now exists (CRI-O left it out because the binary was missing when it started); the module
        restarts CRI-O (V(auto), V(reload), V(systemd)) and reports changed. This is not seen after a reload
        of such a CRI-O, which lists the handler without using it.
    type: str
    choices: [auto, reload, systemd, none]
    default: auto
  service:
    description: systemd unit of CRI-O.
    type: str
    default: crio
  socket:
    description: CRI-O's socket, for C(crio status) and health checks.
    type: path
    default: /var/run/crio/crio.sock
  lock_timeout:
    description:
      - Seconds to wait for another run that is changing the same files before failing; the locks are held from
        reading the files to the end of the restart. Check mode takes no lock. On timeout the module fails,
        naming the file and the PID of the holder, and writes nothing.
    type: int
    default: 120
  restart_timeout:
    description: Seconds to wait for a healthy runtime after a restart or reload.
    type: int
    default: 60
notes:
  - Healthy means the socket answers and, when O(crio_path) is found, C(crio status --socket <socket> config)
    succeeds and reports the handlers with their C(runtime_path) (and C(default_runtime) when
    O(set_as_default=true)); without the binary only the socket is checked (with a warning). After a
    restart that is what CRI-O uses; after a reload C(crio status config) cannot prove a handler usable
    (cri-o/cri-o#10202), which is why handler changes restart.
  - When the runtime is not healthy after the restart, every file written is restored to its previous
    bytes, the runtime is reloaded/restarted again and the module fails with the daemon's last log lines.
  - CRI-O checks C(runtime_path) when it starts or reloads; the module warns when the binary is missing.
  - O(state=absent) removes handler tables named O(runtime_name) (and variants) from the files it
    edits, even when another tool wrote them there, and deletes its own drop-in. A table that existed
    before and that the module only edited (its changed lines carry C(# gpuops.nvidia:) records) is given
    back as it was instead. Files of other tools
    (e.g. the GPU Operator's C(99-nvidia.conf)) are never edited; the module warns that they still
    define the handler.
  - The folder O(config_dir) is created when missing and left in place by O(state=absent).
  - A main file that the module created (in-place mode) and that is empty again after O(state=absent) is deleted.
seealso:
  - name: crio.conf(5)
    description: CRI-O's configuration file reference.
    link: https://github.com/cri-o/cri-o/blob/main/docs/crio.conf.5.md
  - module: gpuops.nvidia.nvidia_containerd_runtime
"""

EXAMPLES = r"""
- name: Add the nvidia handler through /etc/crio/crio.conf.d/99-nvidia.toml
  gpuops.nvidia.nvidia_crio_runtime:
    state: present

- name: As the default runtime, with the CDI variant (CRI-O is restarted, cri-o/cri-o#10202)
  gpuops.nvidia.nvidia_crio_runtime:
    set_as_default: true
    variants: [cdi]

- name: Edit /etc/crio/crio.conf in place (nodes without a drop-in folder)
  gpuops.nvidia.nvidia_crio_runtime:
    drop_in: ""

- name: Bootstrap before CRI-O runs; keep backups out of the drop-in folder
  gpuops.nvidia.nvidia_crio_runtime:
    restart: none
    backup: true
    backup_dir: /var/backups/crio

- name: Remove everything the module added
  gpuops.nvidia.nvidia_crio_runtime:
    state: absent
"""

RETURN = r"""
diff:
  description: A before/after pair per file, with the file as header (check and diff mode).
  returned: when diff mode is on
  type: list
  elements: dict
crio_version:
  description: The version of O(crio_path), when it was found (O(state=query) reads it only for the file source).
  returned: always
  type: str
  sample: 1.31.3
source:
  description: Which source the effective configuration was read from.
  returned: always
  type: str
  sample: file
files:
  description: Files written or deleted (or that would be, in check mode).
  returned: always
  type: list
  elements: str
runtimes:
  description: Handlers managed.
  returned: unless state is query
  type: list
  elements: str
  sample: [nvidia, nvidia-cdi]
default_runtime:
  description: The C(default_runtime) CRI-O uses after the change (from the merged files).
  returned: unless state is query
  type: str
  sample: crun
low_level_runtime:
  description: The copied runtime's C(runtime_path), or its name when that is empty (the toolkit config needs it).
  returned: when state is present
  type: str
  sample: /usr/libexec/crio/crun
restarted:
  description: Whether CRI-O was reloaded or restarted.
  returned: always
  type: bool
restart_method:
  description: How (reload, systemd) or null. V(systemd) for every handler change, also when V(reload) was asked.
  returned: always
  type: str
backup_files:
  description: Backups created (never inside O(config_dir)).
  returned: always
  type: list
  elements: str
view:
  description:
    - The handlers of the effective configuration (C(crio status config) with O(config_source=command)).
    - C(runtimes) maps each handler to its C(runtime_path) (null when unset), C(handlers) holds the tables
      as read, with C(default_runtime).
  returned: when state is query
  type: dict
  sample: {"runtimes": {"crun": /usr/libexec/crio/crun, "nvidia": /usr/bin/nvidia-container-runtime},
           "default_runtime": crun, "handlers": {}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpuops.nvidia.plugins.module_utils._runtime_flow import argument_spec, run
from ansible_collections.gpuops.nvidia.plugins.module_utils.crio import Adapter


def main():
    run(AnsibleModule(argument_spec=argument_spec(Adapter), supports_check_mode=True), Adapter)


if __name__ == "__main__":
    main()
