#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: nvidia_runtime_facts
short_description: Facts about NVIDIA GPUs, the driver, the container toolkit and the container runtimes
version_added: "0.1.0"
description:
  - Read-only. Sets C(ansible_facts.nvidia_runtime) with the NVIDIA GPUs found on the PCI bus, the
    loaded driver, the NVIDIA Container Toolkit, every container runtime found (stock containerd, k0s,
    k3s, RKE2, MicroK8s, CRI-O, Docker) and the one a role should configure (RV(ansible_facts.nvidia_runtime.engine)).
  - Engine selection goes by tiers; the first tier that has an engine wins.
  - Tier 1, Kubernetes distributions (k0s, k3s, rke2, microk8s). They bring their own containerd, so a stray
    C(/usr/bin/containerd) beside them loses.
  - Tier 2, CRI runtimes, containerd with its CRI plugin enabled and crio.
  - Tier 3, docker; a containerd whose CRI plugin is disabled (Docker's C(containerd.io)) counts only when
    dockerd is absent, otherwise it is Docker's backend.
  - Inside the winning tier the active engines are the candidates (else all of the tier). When more than
    one candidate remains, RV(ansible_facts.nvidia_runtime.engine_ambiguous) is true, a warning is given and the first in
    the preference order k0s, k3s, rke2, microk8s, containerd, crio, docker is picked.
  - Active means the systemd unit is active (C(systemctl is-active), asked only when O(root=/), systemd runs
    and the unit file exists), else that the runtime's socket accepts a connection.
  - Config versions follow containerd's rules (the collection's version rules table), the C(version) key; a
    non-empty file without it is version 1; an empty or missing file gets what the binary's C(config default)
    writes (1.x 2, 2.0-2.2 3, 2.3 and later 4). For k0s it is the version of the drop-ins the installed release
    merges (2 up to 1.35, 3 from 1.36); k3s/RKE2 without a generated config, from the template's name.
  - An nvidia handler is any runtime table named C(nvidia*) in the main config and its drop-ins (containerd
    C(imports), k0s C(containerd.d), CRI-O C(crio.conf.d), Docker's C(runtimes)). For k3s and RKE2 it also
    counts when C(nvidia-container-runtime) (or C(.cdi), C(-experimental)) is in a folder k3s searches
    (C(/usr/local/nvidia/toolkit) and the systemd C(PATH)), because they add those handlers themselves at start.
author:
  - gpuops.nvidia developers (@gpuops)
requirements:
  - a TOML reader in the managed node's Python, Python >= 3.11 (tomllib) or one of tomli >= 1.0, tomlkit >= 0.7, toml >= 0.10
  - on Pythons before 3.11 the distribution's python3-tomli, python3-tomlkit or python3-toml (the nvidia_runtime role installs one)
  - without a reader the TOML configs' fields are null and a warning is given (see RV(ansible_facts.nvidia_runtime.toml_reader))
extends_documentation_fragment:
  - action_common_attributes
  - action_common_attributes.facts
attributes:
  check_mode:
    support: full
    description: Reads only; check mode changes nothing.
  diff_mode:
    support: partial
    description: With O(check_engine), the diff the engine's module would show in check mode.
  facts:
    support: full
  platform:
    platforms: posix
options:
  root:
    description:
      - Look for everything under this folder (C(/sys), C(/proc), C(/etc), C(/var/lib), C(/usr/bin)...), e.g. a
        mounted image or a test tree. Paths in the facts are paths inside O(root).
      - When it is not C(/), no program is run and systemd is not asked.
      - "Versions are then read from files only: the dpkg database (C(/var/lib/dpkg/status), and the package's
        C(.list) must own the binary) for containerd, CRI-O, Docker and the toolkit; the release string embedded
        in the k0s, k3s and rke2 binaries (C(v1.30.1+k0s.0)...); RKE2's C(data/v...-rke2rN-...) folder; MicroK8s'
        C(/snap/microk8s/current/meta/snap.yaml). Otherwise they are null."
      - GPU names come from C(pci.ids) under O(root).
    type: path
    default: /
  host_facts:
    description:
      - Also set the host facts the role C(gpuops.nvidia.nvidia_runtime) reads, as a fact gathering of the
        C(min) subset would set them (the same collectors of ansible-core, so the same values) -- C(os_family),
        C(distribution), C(distribution_version), C(distribution_major_version), C(distribution_release),
        C(architecture), C(kernel), C(python), C(pkg_mgr), C(system), C(machine) and the rest of those collectors' facts --
        so a play needs no fact gathering. They describe the machine the module runs on, whatever O(root) is.
    type: bool
    default: false
  packages:
    description:
      - Packages whose installed version to report in RV(ansible_facts.nvidia_runtime.packages).
    type: list
    elements: str
    default: []
  paths:
    description:
      - Paths (inside O(root)) whose state to report in RV(ansible_facts.nvidia_runtime.paths).
    type: list
    elements: path
    default: []
  engine:
    description:
      - The engine whose module arguments O(engine_args) holds; V(auto) is the one the facts pick
        (RV(ansible_facts.nvidia_runtime.engine)).
    type: str
    default: auto
  engine_args:
    description:
      - Per engine (V(containerd), V(k0s), V(crio), V(docker)), the arguments of its module as a role states them
        (M(gpuops.nvidia.nvidia_containerd_runtime) for containerd and k0s, M(gpuops.nvidia.nvidia_crio_runtime),
        M(gpuops.nvidia.nvidia_docker_runtime)); a null or empty value is not stated.
      - Those of O(engine) are returned in RV(ansible_facts.nvidia_runtime.module_args), completed from the node.
        containerd, C(containerd_path) when not stated is the binary the facts found (inside O(root)), else
        C(containerd); C(containerd_version) is then the version the facts read from it. k0s, C(k0s_version) when
        not stated is the installed release; C(validate) is whether C(containerd_path) exists.
    type: dict
    default: {}
  check_engine:
    description:
      - Also return what the module of O(engine) would do in check mode with
        RV(ansible_facts.nvidia_runtime.module_args) (RV(engine_check)), in this module's run -- the same flow as
        that module's own check mode, so the same result, warnings and errors -- so a plan needs one module run
        per node. Nothing is written.
    type: bool
    default: false
notes:
  - On O(root=/) versions come from C(<binary> --version) (C(k0s version)), falling back to the files above;
    GPU names from C(lspci -mm -s <address>), falling back to C(pci.ids).
  - C(driver.reboot_pending) is a hint, given only on nodes with an NVIDIA GPU, when an C(nvidia.ko) is installed
    for some kernel under C(/lib/modules) but the module is not loaded (nouveau loaded, or a new kernel/driver
    not booted yet; sometimes C(modprobe nvidia) is enough), or when the loaded module's version differs
    from the user-space library's (C(libnvidia-ml.so.<version>)).
  - Symlinks under a O(root) other than C(/) are resolved inside it, as in a chroot.
seealso:
  - module: gpuops.nvidia.nvidia_containerd_runtime
"""

EXAMPLES = r"""
- name: Gather the NVIDIA runtime facts
  gpuops.nvidia.nvidia_runtime_facts:

- name: Configure the runtime the node uses
  gpuops.nvidia.nvidia_containerd_runtime:
    config: "{{ engine.config }}"
    drop_in: "{{ (engine.drop_in_dir ~ '/99-nvidia.toml') if engine.config_managed else omit }}"
    manage_imports: "{{ engine.kind != 'k0s' }}"
    containerd_path: "{{ engine.binary | default('containerd', true) }}"
    socket: "{{ engine.socket }}"
    service: "{{ engine.unit }}"
  vars:
    engine: "{{ ansible_facts.nvidia_runtime.engines[ansible_facts.nvidia_runtime.engine] }}"
  when:
    - ansible_facts.nvidia_runtime.engine in ['containerd', 'k0s']
    - not ansible_facts.nvidia_runtime.engine_ambiguous

- name: Stop when the node needs a reboot for its driver
  ansible.builtin.assert:
    that: not ansible_facts.nvidia_runtime.driver.reboot_pending
    fail_msg: "{{ ansible_facts.nvidia_runtime.driver.reboot_reason }}"

- name: Audit a mounted image without running anything from it
  gpuops.nvidia.nvidia_runtime_facts:
    root: /mnt/image
"""

RETURN = r"""
engine_check:
  description:
    - With O(check_engine), what the module of O(engine) returns in check mode (C(changed), C(files),
      C(low_level_runtime)...; C(failed) and C(msg) when it would fail); the facts module itself does not fail.
  returned: when O(check_engine) is true and O(engine_args) has O(engine)
  type: dict
  sample: {"changed": false, "files": [], "low_level_runtime": "runc"}
ansible_facts:
  description: The facts.
  returned: always
  type: complex
  contains:
    nvidia_runtime:
      description: Everything found under O(root).
      returned: always
      type: complex
      contains:
        root:
          description: The folder searched (absolute).
          type: str
          returned: always
          sample: /
        gpus:
          description: NVIDIA display/3D controllers (PCI vendor C(0x10de), class C(0x03xxxx)) in C(/sys/bus/pci/devices).
          type: list
          elements: dict
          returned: always
          contains:
            pci_address:
              description: PCI address.
              type: str
              sample: "0000:01:00.0"
            vendor_id:
              description: Always C(0x10de).
              type: str
            device_id:
              description: PCI device id.
              type: str
              sample: "0x2204"
            class:
              description: PCI class (C(0x030000) VGA, C(0x030200) 3D controller).
              type: str
              sample: "0x030200"
            subsystem_device_id:
              description: PCI subsystem device id, or null.
              type: str
            name:
              description: Marketing name from C(lspci) or C(pci.ids); null when unknown.
              type: str
              sample: GA102 [GeForce RTX 3090]
            driver:
              description: Kernel driver bound to the device (C(nvidia), C(nouveau), C(vfio-pci)), or null.
              type: str
            numa_node:
              description: NUMA node, or null.
              type: int
        gpu_count:
          description: Number of entries in RV(ansible_facts.nvidia_runtime.gpus).
          type: int
          returned: always
        driver:
          description: The NVIDIA kernel driver.
          type: dict
          returned: always
          contains:
            loaded:
              description: C(/sys/module/nvidia) or C(/proc/driver/nvidia/version) exists.
              type: bool
            version:
              description: Version of the loaded module (C(/sys/module/nvidia/version), else C(/proc/driver/nvidia/version)).
              type: str
              sample: 550.54.14
            version_source:
              description: The file the version was read from.
              type: str
            open_kernel_module:
              description: Whether the loaded module is the open one (from C(/proc/driver/nvidia/version)); null when unknown.
              type: bool
            library_version:
              description: Highest version of C(libnvidia-ml.so.<version>) in the library folders, or null.
              type: str
            module_files:
              description: C(nvidia.ko*) files found for any kernel under C(/lib/modules) and C(/usr/lib/modules).
              type: list
              elements: str
            installed:
              description: Loaded, or a module file or the user-space library exists.
              type: bool
            nvidia_smi:
              description: Path of C(nvidia-smi), or null.
              type: str
            nouveau_loaded:
              description: C(/sys/module/nouveau) exists.
              type: bool
            reboot_pending:
              description: Hint that the driver needs a reboot; see the notes.
              type: bool
            reboot_reason:
              description: Why RV(ansible_facts.nvidia_runtime.driver.reboot_pending) is true, or null.
              type: str
        toolkit:
          description: The NVIDIA Container Toolkit (searched on the systemd C(PATH), then C(/usr/local/nvidia/toolkit)).
          type: dict
          returned: always
          contains:
            installed:
              description: C(nvidia-container-runtime) or C(nvidia-ctk) was found.
              type: bool
            nvidia_ctk:
              description: Path of C(nvidia-ctk), or null.
              type: str
            nvidia_ctk_version:
              description: Its version, or null.
              type: str
              sample: 1.17.9
            nvidia_ctk_version_source:
              description: C(binary) (C(--version)) or C(dpkg:<package>), or null.
              type: str
            runtime:
              description: Path of C(nvidia-container-runtime), or null.
              type: str
            runtime_version:
              description: Its version, or null.
              type: str
            runtime_version_source:
              description: C(binary) or C(dpkg:<package>), or null.
              type: str
            runtime_cdi:
              description: Path of C(nvidia-container-runtime.cdi), or null.
              type: str
            runtime_legacy:
              description: Path of C(nvidia-container-runtime.legacy), or null.
              type: str
            config:
              description: C(/etc/nvidia-container-runtime/config.toml) when it exists, else null.
              type: str
            cdi_specs:
              description: CDI specs with C(nvidia) in their name in C(/etc/cdi), C(/var/run/cdi), C(/run/cdi).
              type: list
              elements: str
        engines:
          description:
            - Every container runtime found, keyed by kind (C(containerd), C(k0s), C(k3s), C(rke2), C(microk8s), C(crio), C(docker)),
              for example C(engines.k0s.drop_in_dir). Each value holds the fields below; every field is always present.
            - Found means its binary, its distribution's binary or its systemd unit file exists (k3s/RKE2 also their
              C(data) folder, MicroK8s its snap folder or template); leftover config files alone do not count.
            - Config-derived fields are null when the config could not be read (no TOML reader, malformed file, see C(config_error)).
          type: dict
          returned: always
          contains:
            kind:
              description: The key again.
              type: str
            binary:
              description: The runtime daemon (containerd, crio, dockerd; the distribution's bundled containerd), or null.
              type: str
              sample: /var/lib/k0s/bin/containerd
            version:
              description: Its version, C(X.Y.Z), or null.
              type: str
              sample: 1.7.24
            version_source:
              description: C(binary) or C(dpkg:<package>), or null.
              type: str
            distribution_binary:
              description: C(k0s), C(k3s), C(rke2) or C(microk8s) binary, or null.
              type: str
            distribution_version:
              description: The distribution's version, e.g. C(v1.30.1+k0s.0), or null.
              type: str
            distribution_version_source:
              description: C(binary), C(embedded) (read from the binary's file), C(path) (RKE2 data folder), C(snap.yaml), or null.
              type: str
            config:
              description:
                - The main config file (may not exist yet). k3s/RKE2 the generated C(config.toml); MicroK8s
                  C(containerd-template.toml); Docker C(daemon.json).
              type: str
            config_exists:
              description: Whether RV(ansible_facts.nvidia_runtime.engines.config) exists.
              type: bool
            config_managed:
              description:
                - The distribution writes the main config itself (k0s while it carries C(# k0s_managed=true) as that
                  release reads the marker, or before it exists; k3s/RKE2 always), so use a drop-in or the template,
                  never edit it in place.
              type: bool
            drop_in_problems:
              description:
                - k0s only, from the version rules of the installed release; empty when all is well.
                - Why k0s would refuse a file of its drop-in folder (e.g. a version 2 C(nvidia.toml) left from
                  1.35 stops a 1.36 worker at its pre-flight check), or why this release cannot load drop-ins at all.
              type: list
              elements: str
            config_error:
              description: Why a config could not be read, or null.
              type: str
            templates:
              description: k3s/RKE2 C(config.toml.tmpl) / C(config-v3.toml.tmpl) that exist.
              type: list
              elements: str
            template_name:
              description: k3s/RKE2 only, the template that release renders its config from (C(config-v3.toml.tmpl) for config version 3).
              type: str
            drop_in_dir:
              description: Drop-in folder (C(/etc/containerd/conf.d), C(/etc/k0s/containerd.d), C(/etc/crio/crio.conf.d)), or null.
              type: str
            drop_in_dir_loaded:
              description: Whether files there are loaded (containerd only when its C(imports) cover the folder), or null.
              type: bool
            drop_ins:
              description: Drop-in files that are loaded, in load order.
              type: list
              elements: str
            imports:
              description: The main containerd config's C(imports) as written, or null.
              type: list
              elements: str
            socket:
              description: The runtime's socket (the one that answered, else the usual path).
              type: str
            socket_answers:
              description: Something accepts connections on RV(ansible_facts.nvidia_runtime.engines.socket).
              type: bool
            units:
              description: The systemd units that can run it (k0s C(k0sworker), C(k0scontroller)).
              type: list
              elements: str
            unit:
              description: The active unit, else the one whose file exists, else the first.
              type: str
            unit_file:
              description: The unit file found, or null.
              type: str
            unit_active:
              description: C(systemctl is-active) said so; null when not asked.
              type: bool
            active:
              description: RV(ansible_facts.nvidia_runtime.engines.unit_active) when asked, else RV(ansible_facts.nvidia_runtime.engines.socket_answers).
              type: bool
            config_version:
              description: containerd config version (1, 2, 3, 4), or null (CRI-O, Docker, unknown).
              type: int
            config_version_source:
              description: C(file), C(binary), C(distribution), C(template) or null.
              type: str
            cri_disabled:
              description: containerd's C(disabled_plugins) names the CRI plugin (Docker's C(containerd.io)); null for CRI-O/Docker.
              type: bool
            runtimes:
              description: Runtime handler names configured in the files.
              type: list
              elements: str
            nvidia_runtimes:
              description: Those named C(nvidia*) (k3s/RKE2 also from the templates).
              type: list
              elements: str
            nvidia_binaries:
              description: C(BinaryName) (containerd), C(runtime_path) (CRI-O) or C(path) (Docker) of each nvidia handler.
              type: dict
            auto_nvidia_runtimes:
              description: k3s/RKE2 only, the handlers they add at start, with the binary found.
              type: dict
              sample: {"nvidia": "/usr/bin/nvidia-container-runtime"}
            nvidia_configured:
              description: An nvidia handler is configured (or, k3s/RKE2, will be added at start).
              type: bool
            default_runtime:
              description:
                - The default handler (containerd C(default_runtime_name), C(runc) when unset; k3s/RKE2 their
                  C(default-runtime) setting when set; CRI-O C(default_runtime), null when unset; Docker C(default-runtime)).
                - MicroK8s, the template's value as written (placeholders such as C(${RUNTIME}) are not expanded).
              type: str
            placeholders:
              description: MicroK8s only, the C(${NAME}) placeholders its C(containerd-template.toml) holds (rendered by the snap at start).
              type: list
              elements: str
              sample: ["${RUNTIME}", "${SNAP_DATA}"]
            placeholder_values:
              description:
                - MicroK8s only, what the snap substitutes for each placeholder before containerd starts (plain string
                  replacement) -- C(${SNAP}), C(${SNAP_DATA}), C(${SNAP_COMMON}), C(${RUNTIME}) (C(runc), or
                  C(nvidia-container-runtime) while the old GPU addon's C(var/lock/gpu) exists), C(${RUNTIME_TYPE}),
                  C(${SNAPSHOTTER}) (C(overlayfs), the usual value).
              type: dict
            reuse_handler:
              description:
                - MicroK8s only, the handler the template already has for the NVIDIA runtime (its C(BinaryName) is
                  C(nvidia-container-runtime), bare or a path), e.g. MicroK8s' own C(nvidia-container-runtime); the role
                  configures that one instead of adding a second. Null when there is none.
              type: str
            copy_options_from:
              description:
                - MicroK8s only, C(runc) when C(default_runtime_name), as the snap renders it, names an nvidia handler
                  (the old GPU addon's C(${RUNTIME}), or the handler made default earlier), so that a new handler never
                  wraps another one; null otherwise (the containerd module resolves the placeholders itself, given
                  C(placeholder_values) as its C(placeholders)).
              type: str
        engine:
          description: Kind of the engine to configure, or null when none was found.
          type: str
          returned: always
          sample: k0s
        engine_ambiguous:
          description: More than one engine qualified; RV(ansible_facts.nvidia_runtime.engine) is the preferred one.
          type: bool
          returned: always
        engine_candidates:
          description: The engines that qualified, preferred first.
          type: list
          elements: str
          returned: always
        engine_reason:
          description: Why RV(ansible_facts.nvidia_runtime.engine) was picked.
          type: str
          returned: always
        toml_reader:
          description:
            - The TOML reader the modules use in the node's Python (the first found of tomllib, tomli, tomlkit >= 0.7,
              toml >= 0.10), and the distribution packages that give a node without one a reader.
            - The role skips its install step when RV(ansible_facts.nvidia_runtime.toml_reader.name) is set.
          type: dict
          returned: always
          contains:
            name:
              description: tomllib, tomli, tomlkit or toml; null when the node's Python has none.
              type: str
              sample: tomllib
            version:
              description: Its version (for tomllib, Python's).
              type: str
              sample: 3.11.2
            family:
              description: ID and ID_LIKE of C(/etc/os-release), space separated.
              type: str
              sample: ubuntu debian
            packages:
              description: The distribution packages that provide a reader on this node, preferred first (empty when unknown).
              type: list
              elements: str
              sample: [python3-tomli, python3-tomlkit]
            missing:
              description: Without a reader, the message the modules fail with (what was found, what is needed, what to install); else null.
              type: str
        probe:
          description: What the Python running the modules offers them (the one that ran this module).
          type: dict
          returned: always
          contains:
            executable:
              description: The interpreter.
              type: str
            venv:
              description: It is a virtualenv.
              type: bool
            prefix:
              description: Its C(sys.prefix).
              type: str
            externally_managed:
              description: Its standard library folder holds C(EXTERNALLY-MANAGED) (PEP 668).
              type: bool
            pip:
              description: pip can be imported.
              type: bool
        packages:
          description:
            - Installed version of each package of O(packages) (C(1.17.8-1)), null when not installed; from the dpkg
              database, else C(rpm -q) (only when O(root=/)).
          type: dict
          returned: always
          sample: {"nvidia-container-toolkit": "1.17.8-1"}
        paths:
          description: State of each path of O(paths), keyed by the path; a last symlink is not followed.
          type: dict
          returned: always
          contains:
            exists:
              description: It exists.
              type: bool
            isdir:
              description: It is a folder.
              type: bool
            mode:
              description: Permission bits in octal, e.g. C(0644); null when missing.
              type: str
            uid:
              description: Owner id, or null.
              type: int
            gid:
              description: Group id, or null.
              type: int
            checksum:
              description: SHA-1 of a regular file's bytes (what Ansible's C(stat) and C(copy) compare), else null.
              type: str
        module_args:
          description: The arguments of the module of O(engine), O(engine_args) completed from the node.
          type: dict
          returned: when O(engine_args) has O(engine)
          sample: {"config": /etc/containerd/config.toml, "containerd_path": /usr/bin/containerd, "containerd_version": "1.7.24"}
"""

import os
import sys

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpuops.nvidia.plugins.module_utils import facts as facts_lib
from ansible_collections.gpuops.nvidia.plugins.module_utils._runtime_flow import check

_FACTS_PACKAGE = "ansible.module_utils.facts"


def _host_fact_collectors():
    """ansible-core's platform, distribution, python and pkg_mgr fact collectors (the four of a C(min) gathering
    the role needs). Imported without running the ``ansible.module_utils.facts`` package's ``__init__``, which
    imports every collector ansible-core has (hardware, network, virtual...): on a node that is a fifth of this
    module's run, compiled anew each time (AnsiballZ ships sources), for collectors never called. The package
    module is created from its spec but not executed; its submodules import as usual. When the interpreter or
    ansible-core does not allow that, the plain import."""
    if _FACTS_PACKAGE not in sys.modules:
        try:
            import importlib.util
            spec = importlib.util.find_spec(_FACTS_PACKAGE)
            sys.modules[_FACTS_PACKAGE] = importlib.util.module_from_spec(spec)
        except Exception:  # noqa: BLE001 - Python 2, or a loader without specs: the plain import below
            sys.modules.pop(_FACTS_PACKAGE, None)
    from ansible.module_utils.facts.system.distribution import DistributionFactCollector
    from ansible.module_utils.facts.system.pkg_mgr import PkgMgrFactCollector
    from ansible.module_utils.facts.system.platform import PlatformFactCollector
    from ansible.module_utils.facts.system.python import PythonFactCollector
    return (PlatformFactCollector, DistributionFactCollector, PythonFactCollector, PkgMgrFactCollector)


def host_facts(module):
    """The facts of ansible-core's platform, distribution, python and pkg_mgr collectors (part of a C(min) fact
    gathering), unprefixed as setup returns them under ansible_facts."""
    collected = {}
    for cls in _host_fact_collectors():
        found = cls().collect(module=module, collected_facts=dict(
            collected, **dict(("ansible_" + k, v) for k, v in collected.items()))) or {}
        collected.update(found)
    return collected


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", default="/"),
            host_facts=dict(type="bool", default=False),
            packages=dict(type="list", elements="str", default=[]),
            paths=dict(type="list", elements="path", default=[]),
            engine=dict(type="str", default="auto"),
            engine_args=dict(type="dict", default={}),
            check_engine=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    root = module.params["root"]
    if not os.path.isdir(root):
        module.fail_json(msg="root %s is not a folder" % root)

    def run(argv):
        return module.run_command(argv, environ_update={"LC_ALL": "C"})

    facts, warnings = facts_lib.gather(root, runner=run)
    facts.update(facts_lib.gather_role_inputs(root, module.params["packages"], module.params["paths"], runner=run))
    for w in warnings:
        module.warn(w)
    out = dict(changed=False, ansible_facts=host_facts(module) if module.params["host_facts"] else {})
    out["ansible_facts"]["nvidia_runtime"] = facts
    engine = module.params["engine"] if module.params["engine"] != "auto" else facts["engine"]
    stated = module.params["engine_args"].get(engine)
    if stated is not None:
        facts["module_args"] = facts_lib.module_args(engine, stated, facts, root)
        adapter = facts_lib.engine_adapter(engine)
        if module.params["check_engine"] and adapter:
            out["engine_check"], warnings = check(module, adapter, facts["module_args"])
            for w in warnings:
                module.warn(w)
            if module._diff and "diff" in out["engine_check"]:
                out["diff"] = out["engine_check"]["diff"]
    module.exit_json(**out)


if __name__ == "__main__":
    main()
