#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: nvidia_containerd_runtime
short_description: Add the NVIDIA runtime handler to containerd without losing anything else
version_added: "0.1.0"
description:
  - Adds (or removes) the C(nvidia) runtime handler, and optionally its C(-cdi)/C(-legacy) variants, to
    containerd's CRI plugin, for containerd 1.6/1.7 (config version 1 and 2), 2.0-2.2 (version 3) and
    2.3 (version 4), in place or through a drop-in file.
  - What differs per containerd and k0s release (config versions, CRI paths, how imports merge) comes from
    one rules table in the collection (C(plugins/module_utils/versions.py)).
  - A new handler copies the whole table of the runtime it wraps (the default runtime unless it is one of
    ours, else C(runc), else C(crun)), so C(SystemdCgroup) and friends follow, and sets
    C(options.BinaryName).
  - An existing handler table keeps what its owner set (C(privileged_without_host_devices),
    C(pod_annotations), C(base_runtime_spec), other C(options)...). The module owns C(options.BinaryName),
    C(runtime_type) only when it is empty, and keeps C(options.SystemdCgroup) equal to the wrapped
    runtime's; keys the table lacks are filled from the wrapped runtime. Every such edit is recorded, so
    O(state=absent) restores the table byte for byte.
  - Edits are format-preserving; comments, order and every key the module does not own stay
    byte-identical. Values it changes keep the original in a trailing C(# gpuops.nvidia:) comment so
    that O(state=absent) restores the original bytes.
  - On containerd older than 2.0 a file's C(runtimes) table replaces the built-in one, so the default
    runtime is written too when the file lacks it (otherwise the CRI plugin refuses to load). On
    containerd older than 2.0 an imported file replaces whole plugin sections, so a drop-in imported by
    containerd carries the main file's whole CRI section; from 2.0 imports are deep-merged and the
    drop-in holds only the handler tables.
  - A drop-in always carries the main file's config version (a higher one is refused by containerd
    2.3.0-2.3.4, and a version 3 drop-in on a version 2 main file silently drops every CRI setting of the
    main file on 2.0-2.2).
  - Candidate files are checked with the real C(containerd config dump) before anything is replaced;
    the runtime is restarted only when a file changed, and the files are rolled back when it does not
    come back healthy.
author:
  - gpuops.nvidia developers (@gpuops)
extends_documentation_fragment:
  - gpuops.nvidia.runtime
options:
  config:
    description: containerd's main config file. It may not exist yet.
    type: path
    default: /etc/containerd/config.toml
  drop_in:
    description:
      - Write the runtime tables to this file instead of editing O(config) in place (see O(layout)).
      - O(config) then gets an C(imports) entry for it unless an existing import (path or glob) already
        covers it, or O(manage_imports=false).
      - Must not be O(config) itself.
    type: path
  layout:
    description:
      - V(auto) writes to O(drop_in) where this containerd deep-merges imports (2.0 and later) and edits
        O(config) in place where imports replace whole plugin sections (1.x), which would force a copy of
        the CRI section into the drop-in. V(in_place) and V(drop_in) choose explicitly.
      - Default is V(drop_in) when O(drop_in) is set, else V(in_place). V(auto) and V(drop_in) need O(drop_in).
      - With V(in_place), a drop-in written by an earlier run at O(drop_in) is not touched.
    type: str
    choices: [auto, in_place, drop_in]
  k0s_version:
    description:
      - The k0s release that runs (or is about to run) this containerd, e.g. V(v1.36.3+k0s.0). The rules
        table then gives the drop-in's config version (2 up to k0s 1.35, 3 from 1.36) and the containerd
        it bundles, and refuses releases that cannot load a drop-in (before 1.27.1; 1.27.1-1.27.4 and
        1.28.0-1.28.1, which concatenate drop-ins instead of merging them).
      - Set it to the release a node is being upgraded to, so the drop-in is rewritten before the upgrade
        (k0s 1.36's pre-flight check rejects a version 2 drop-in left from 1.35). When the installed
        binary is not the containerd that release bundles, validation with it is skipped with a warning.
    type: str
  manage_imports:
    description: Add the drop-in to O(config)'s C(imports). V(false) for k0s, which loads its drop-in folder itself.
    type: bool
    default: true
  config_source:
    description:
      - Ordered ways to read the current effective config; the first that works wins.
      - V(command) runs C(<containerd_path> --config <config> config dump) (only read, never written back).
      - V(file) parses O(config) and its imports.
    type: list
    elements: str
    choices: [command, file]
    default: [command, file]
  containerd_path:
    description: containerd binary for the dump, version detection and validation (k0s C(/var/lib/k0s/bin/containerd)).
    type: str
    default: containerd
  containerd_version:
    description:
      - The version of O(containerd_path) as already read in this run, e.g. the facts module's
        C(ansible_facts.nvidia_runtime.engines[engine].version) when its C(version_source) is C(binary).
        When given, the module does not run C(<containerd_path> --version) (only when the binary is found).
      - A value that is not a version (such as V(1.7.24) or V(v2.1.9)) is an error naming this option, and nothing is changed.
      - Default is to run C(<containerd_path> --version).
    type: str
  config_version:
    description:
      - V(auto) reads the file's C(version) key; no key in a non-empty file means 1; an empty or missing
        file gets the version the binary's C(config default) writes (1.x 2, 2.0-2.2 3, 2.3 and later 4).
      - A version the binary does not load (4 before 2.3, 3 before 2.0, 1 on 2.x) or does not exist is an
        error that names the file and the binary's version.
    type: str
    choices: [auto, "1", "2", "3", "4"]
    default: auto
  runtime_path:
    description: The NVIDIA runtime binary; becomes C(options.BinaryName).
    type: path
    default: /usr/bin/nvidia-container-runtime
  runtime_type:
    description: Used when the copied runtime table has no C(runtime_type).
    type: str
    default: io.containerd.runc.v2
  variants:
    description: Extra handlers C(<runtime_name>-cdi) / C(-legacy) with C(BinaryName) C(<runtime_path>.cdi) / C(.legacy).
    type: list
    elements: str
    choices: [cdi, legacy]
    default: []
  set_as_default:
    description: Make O(runtime_name) the default runtime. V(false) unsets a default that names one of ours.
    type: bool
    default: false
  enable_cdi:
    description: Set C(enable_cdi = true) under the CRI plugin (containerd >= 1.7).
    type: bool
    default: false
  cdi_spec_dirs:
    description: C(cdi_spec_dirs) written beside C(enable_cdi) when O(enable_cdi=true).
    type: list
    elements: path
  copy_options_from:
    description: Runtime whose table is copied. Default is the default runtime unless it is one of ours, else C(runc), else C(crun).
    type: str
  placeholders:
    description:
      - Placeholders that a tool renders in O(config) before containerd reads it, each name (the literal text,
        e.g. C(${RUNTIME})) mapped to the value it becomes, e.g. MicroK8s' C(containerd-template.toml), which
        its snap renders into C(containerd.toml) at each start by plain replacement.
      - Used only to read, decide and validate; the default runtime and the runtime a new handler copies
        are the rendered names, and O(validate) loads a rendered copy of the candidate in a scratch folder.
        The bytes written keep every placeholder as it was.
      - Only with O(layout=in_place) (a drop-in beside O(config) would not be rendered). Default is none.
    type: dict
  enable_cri:
    description:
      - Remove the CRI plugin from C(disabled_plugins) (Docker's C(containerd.io) ships C(disabled_plugins = ["cri"])).
      - Without it such a config gets a warning naming this option.
    type: bool
    default: false
  validate:
    description:
      - Check the candidate files with the real binary before anything is replaced.
      - When the binary is absent and the config file does not exist yet (bootstrap), validation is
        skipped with a warning; when the file exists it is an error.
    type: bool
    default: true
  backup:
    description: Create a timestamped backup beside each file before it is changed.
    type: bool
    default: false
  restart:
    description:
      - When a file changed. V(auto) restarts the systemd unit O(service) if it is active; else warns
        when something listens on O(socket); else (nothing runs, bootstrap) does nothing.
      - V(systemd) always restarts the unit. V(none) never restarts.
      - V(signal) sends SIGHUP to the process owning O(socket). containerd B(exits) on SIGHUP (it is
        not a reload); its supervisor (systemd C(Restart=always), k0s) starts it again.
    type: str
    choices: [auto, systemd, signal, none]
    default: auto
  service:
    description: systemd unit to restart.
    type: str
    default: containerd
  socket:
    description: containerd's socket, for health checks and signal mode.
    type: path
    default: /run/containerd/containerd.sock
  restart_timeout:
    description: Seconds to wait for a healthy runtime (socket answers, CRI plugin C(ok)) after a restart.
    type: int
    default: 60
  lock_timeout:
    description:
      - Seconds to wait for another run that is changing the same files (another play, a retry, an ad-hoc run)
        before failing. The files' locks are held from reading them to the end of the restart; the waiting run
        then reads what the other one wrote. Check mode takes no lock.
      - On timeout the module fails, naming the file and the PID of the run holding the lock, and writes nothing.
    type: int
    default: 120
notes:
  - Healthy means the socket answers and C(ctr plugins ls) shows the CRI plugin C(ok) (when C(ctr) is
    found beside O(containerd_path) or on C(PATH); else only the socket is checked).
  - When the runtime is not healthy after the restart, every file written is restored to its previous
    bytes, the runtime is restarted again and the module fails with the daemon's last log lines.
  - O(state=absent) undoes exactly what the module did, so the original bytes come back and a second run
    changes nothing; it removes handler tables it added, restores tables it patched, and never leaves the
    default pointing at a removed handler. A handler table named O(runtime_name) that it never wrote stays,
    with a warning that containerd still loads it. A handler written as dotted keys or an inline table
    cannot be handled safely, and is an error.
  - A main config the module had to create (none existed) starts with a comment saying so, and
    O(state=absent) deletes it again unless something else was added to it.
  - The built-in runtimes of the binary (C(config dump) of an empty config, which only a new binary changes)
    are kept on the node in a root-private folder under C(/run/lock) (gone at reboot), one file per binary,
    keyed by its real path and its stat (device, inode, size, times), so a replaced binary is dumped again.
    Only a real run writes it; check mode only reads it.
seealso:
  - name: containerd configuration
    description: containerd's config file reference.
    link: https://github.com/containerd/containerd/blob/main/docs/man/containerd-config.toml.5.md
"""

EXAMPLES = r"""
- name: Add the nvidia handler in place (containerd 1.6/1.7, /etc/containerd/config.toml)
  gpuops.nvidia.nvidia_containerd_runtime:
    state: present

- name: Any containerd 1.6 to 2.3; in place on 1.x, a drop-in where imports deep-merge (2.0 and later)
  gpuops.nvidia.nvidia_containerd_runtime:
    layout: auto
    drop_in: /etc/containerd/conf.d/99-nvidia.toml

- name: containerd 2.x, through a drop-in, as the default runtime with CDI
  gpuops.nvidia.nvidia_containerd_runtime:
    drop_in: /etc/containerd/conf.d/99-nvidia.toml
    set_as_default: true
    enable_cdi: true
    variants: [cdi]

- name: k0s (also before k0s is installed); k0s loads and watches its drop-in folder itself
  gpuops.nvidia.nvidia_containerd_runtime:
    config: /etc/k0s/containerd.toml
    drop_in: /etc/k0s/containerd.d/nvidia.toml
    manage_imports: false
    containerd_path: /var/lib/k0s/bin/containerd
    k0s_version: v1.36.3+k0s.0
    socket: /run/k0s/containerd.sock
    restart: none

- name: MicroK8s' template, rendered by the snap at start (placeholders kept, read and validated rendered)
  gpuops.nvidia.nvidia_containerd_runtime:
    config: /var/snap/microk8s/current/args/containerd-template.toml
    containerd_path: /snap/microk8s/current/bin/containerd
    runtime_name: nvidia-container-runtime
    placeholders:
      ${SNAP}: /snap/microk8s/current
      ${SNAP_DATA}: /var/snap/microk8s/current
      ${SNAP_COMMON}: /var/snap/microk8s/common
      ${RUNTIME}: runc
      ${RUNTIME_TYPE}: io.containerd.runc.v2
      ${SNAPSHOTTER}: overlayfs
    service: snap.microk8s.daemon-containerd
    socket: /var/snap/microk8s/common/run/containerd.sock

- name: Docker's containerd.io ships the CRI plugin disabled
  gpuops.nvidia.nvidia_containerd_runtime:
    enable_cri: true

- name: Remove everything the module added
  gpuops.nvidia.nvidia_containerd_runtime:
    state: absent
"""

RETURN = r"""
diff:
  description: A before/after pair per file, with the file as header (check and diff mode).
  returned: when diff mode is on
  type: list
  elements: dict
config_version:
  description: The config version written.
  returned: unless state is query
  type: int
  sample: 2
layout:
  description: Where the tables went, V(in_place) or V(drop_in) (what O(layout=auto) chose).
  returned: unless state is query
  type: str
  sample: drop_in
cdi_supported:
  description: Whether this containerd has C(enable_cdi) (1.7 and later; true when the version is unknown).
  returned: unless state is query
  type: bool
containerd_version:
  description:
    - The version of O(containerd_path), when it was found (O(state=query) reads it only for RV(cri_health)).
    - O(containerd_version) when given (then C(--version) is not run).
  returned: always
  type: str
  sample: 1.7.24
source:
  description: Which source the effective configuration was read from.
  returned: always
  type: str
  sample: command
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
  description: The default runtime after the change.
  returned: unless state is query
  type: str
  sample: runc
low_level_runtime:
  description: The copied runtime's C(BinaryName), or its name when that is empty (the toolkit config needs it).
  returned: when state is present
  type: str
  sample: runc
restarted:
  description: Whether the runtime was restarted.
  returned: always
  type: bool
restart_method:
  description: How it was restarted (systemd, signal) or null.
  returned: always
  type: str
backup_files:
  description: Backups created.
  returned: always
  type: list
  elements: str
view:
  description:
    - The handlers of the effective configuration (C(config dump) with O(config_source=command)).
    - C(runtimes) maps each handler to its C(options.BinaryName) (null when unset), C(handlers) holds the
      tables as read, with C(default_runtime), C(config_version), C(enable_cdi) and C(cri_disabled).
  returned: when state is query
  type: dict
  sample: {"runtimes": {"runc": null, "nvidia": /usr/bin/nvidia-container-runtime}, "default_runtime": runc,
           "config_version": 2, "enable_cdi": false, "cri_disabled": false, "handlers": {}}
cri_health:
  description:
    - The CRI plugin of the containerd on O(socket), as the module judges it after a restart; null when
      nothing answers there.
    - C(plugins) holds the C(ctr plugins ls) rows of the CRI plugin (null without C(ctr)), C(healthy) the verdict.
  returned: when state is query
  type: dict
  sample: {"ctr": /usr/bin/ctr, "plugins": {"io.containerd.grpc.v1 cri": ok}, "healthy": true}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpuops.nvidia.plugins.module_utils._runtime_flow import argument_spec, run
from ansible_collections.gpuops.nvidia.plugins.module_utils.containerd import Adapter


def main():
    run(AnsibleModule(argument_spec=argument_spec(Adapter), supports_check_mode=True), Adapter)


if __name__ == "__main__":
    main()
