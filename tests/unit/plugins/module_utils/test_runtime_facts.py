"""nvidia_runtime_facts' logic (plugins/module_utils/facts.py) on fake node trees.

Every tree is generated here with tests/fixtures/facts/faketree.py (containerd configs come from
tests/fixtures/containerd byte for byte). With a root other than "/" nothing may be run: the runner
given to gather() fails the test if it is called. The real containerd builds and the module run
through Ansible are in tests/integration/test_facts_module.py.
"""
import json

import pytest

from ansible_collections.gpuops.nvidia.plugins.module_utils import facts, service
from fixtures.facts import faketree
from fixtures.facts.faketree import Tree


def forbidden_runner(argv):
    raise AssertionError("a program was run under a fake root: %r" % (argv,))


@pytest.fixture
def tree():
    with Tree.temporary() as t:
        yield t


def gather(tree, **kw):
    kw.setdefault("runner", forbidden_runner)
    f, warnings = facts.gather(str(tree.root), **kw)
    json.dumps(f)  # plain JSON values only
    return f, warnings


# ---------------------------------------------------------------------------------------------- GPUs

def test_empty_root(tree):
    f, w = gather(tree)
    assert f["gpus"] == [] and f["gpu_count"] == 0
    assert f["engines"] == {} and f["engine"] is None
    assert f["engine_ambiguous"] is False and f["engine_candidates"] == []
    assert f["driver"]["loaded"] is False and f["driver"]["reboot_pending"] is False
    assert f["toolkit"]["installed"] is False
    assert w == []


def test_gpus_only_nvidia_display_and_3d(tree):
    tree.pci_ids()
    tree.gpu("0000:01:00.0", 0x2204, 0x030000, driver="nvidia", numa=0)
    tree.gpu("0000:41:00.0", 0x20b5, 0x030200)                           # 3D controller, no driver
    tree.gpu("0000:01:00.1", 0x228b, 0x040300, driver="snd_hda_intel")   # the GPU's audio function
    tree.pci("0000:00:02.0", 0x8086, 0x4680, 0x030000, driver="i915")    # an Intel iGPU
    tree.pci("0000:02:00.0", 0x10df, 0x2204, 0x010400)                   # vendor 10df, same device id
    f, dummy = gather(tree)
    assert f["gpu_count"] == 2
    a, b = f["gpus"]
    assert a == {"pci_address": "0000:01:00.0", "vendor_id": "0x10de", "device_id": "0x2204", "class": "0x030000",
                 "subsystem_device_id": "0x1454", "name": "GA102 [GeForce RTX 3090]", "driver": "nvidia",
                 "numa_node": 0}
    assert b["pci_address"] == "0000:41:00.0" and b["class"] == "0x030200"
    assert b["name"] == "GA100 [A100 PCIe 80GB]" and b["driver"] is None and b["numa_node"] == -1


def test_gpu_name_unknown_without_pci_ids(tree):
    tree.gpu(device=0x9999)
    f, dummy = gather(tree)
    assert f["gpus"][0]["name"] is None and f["gpus"][0]["device_id"] == "0x9999"


def test_lspci_name_only_when_programs_may_run(tree):
    tree.gpu()
    tree.exe("/usr/bin/lspci")
    calls = []

    def runner(argv):
        calls.append(argv)
        if argv[-2:] == ["-s", "0000:01:00.0"]:
            return 0, '01:00.0 "VGA compatible controller" "NVIDIA Corporation" "GA102 [GeForce RTX 3090 Ti]" ' \
                      '-ra1 "NVIDIA Corporation" "Device 1454"\n', ""
        return 1, "", "no"
    f, dummy = gather(tree, runner=runner, run_binaries=True)
    assert f["gpus"][0]["name"] == "GA102 [GeForce RTX 3090 Ti]"
    assert calls and calls[0][0] == str(tree.p("/usr/bin/lspci"))


def test_lspci_device_placeholder_is_no_name(tree):
    tree.gpu()
    tree.exe("/usr/bin/lspci")
    f, dummy = gather(tree, run_binaries=True,
                      runner=lambda argv: (0, '01:00.0 "3D controller" "NVIDIA Corporation" "Device 2204"\n', ""))
    assert f["gpus"][0]["name"] is None


# ---------------------------------------------------------------------------------------------- driver

def test_driver_loaded(tree):
    tree.gpu(driver="nvidia")
    tree.nvidia_loaded("550.54.14")
    tree.nvidia_installed("550.54.14")
    d = gather(tree)[0]["driver"]
    assert d["loaded"] is True and d["version"] == "550.54.14"
    assert d["version_source"] == "/sys/module/nvidia/version"
    assert d["open_kernel_module"] is False
    assert d["library_version"] == "550.54.14" and d["installed"] is True
    assert d["nvidia_smi"] == "/usr/bin/nvidia-smi"
    assert d["module_files"] == ["/lib/modules/6.1.0-18-amd64/updates/dkms/nvidia.ko.xz"]
    assert d["reboot_pending"] is False and d["reboot_reason"] is None
    assert d["nouveau_loaded"] is False


def test_driver_version_from_proc_open_module(tree):
    tree.gpu(driver="nvidia")
    tree.nvidia_loaded("560.35.03", sysfs=False, open_module=True)
    d = gather(tree)[0]["driver"]
    assert d["loaded"] is True and d["version"] == "560.35.03"
    assert d["version_source"] == "/proc/driver/nvidia/version" and d["open_kernel_module"] is True


def test_driver_installed_not_loaded_is_reboot_pending(tree):
    tree.gpu()
    tree.nvidia_installed()
    d = gather(tree)[0]["driver"]
    assert d["loaded"] is False and d["installed"] is True
    assert d["reboot_pending"] is True and "not loaded" in d["reboot_reason"]


def test_nouveau_loaded_is_reboot_pending(tree):
    tree.gpu(driver="nouveau")
    tree.dir("/sys/module/nouveau")
    tree.nvidia_installed()
    f, dummy = gather(tree)
    d = f["driver"]
    assert d["nouveau_loaded"] is True and d["loaded"] is False
    assert d["reboot_pending"] is True and "nouveau" in d["reboot_reason"]
    assert f["gpus"][0]["driver"] == "nouveau"


def test_nouveau_without_nvidia_driver_is_not_reboot_pending(tree):
    tree.gpu(driver="nouveau")
    tree.dir("/sys/module/nouveau")
    d = gather(tree)[0]["driver"]
    assert d["nouveau_loaded"] is True and d["installed"] is False and d["reboot_pending"] is False


def test_upgraded_userspace_is_reboot_pending(tree):
    tree.gpu(driver="nvidia")
    tree.nvidia_loaded("550.54.14")
    tree.nvidia_installed("550.127.05")
    d = gather(tree)[0]["driver"]
    assert d["reboot_pending"] is True
    assert "550.54.14" in d["reboot_reason"] and "550.127.05" in d["reboot_reason"]


def test_no_gpu_no_reboot_hint(tree):
    tree.nvidia_installed()
    d = gather(tree)[0]["driver"]
    assert d["installed"] is True and d["reboot_pending"] is False


def test_ubuntu_prebuilt_module_and_merged_usr(tree):
    tree.gpu()
    tree.file("/usr/lib/modules/6.8.0-45-generic/kernel/nvidia-550srv/nvidia.ko", "x")
    tree.link("/lib", "usr/lib")  # merged /usr: found once
    d = gather(tree)[0]["driver"]
    assert d["module_files"] == ["/lib/modules/6.8.0-45-generic/kernel/nvidia-550srv/nvidia.ko"]
    assert d["reboot_pending"] is True


# ---------------------------------------------------------------------------------------------- toolkit

def test_toolkit_from_package(tree):
    tree.toolkit()
    tree.file("/etc/cdi/nvidia.yaml", "cdiVersion: 0.5.0\n")
    tree.file("/etc/cdi/other.yaml", "cdiVersion: 0.5.0\n")
    t = gather(tree)[0]["toolkit"]
    assert t == {
        "installed": True,
        "nvidia_ctk": "/usr/bin/nvidia-ctk", "nvidia_ctk_version": "1.17.9",
        "nvidia_ctk_version_source": "dpkg:nvidia-container-toolkit-base",
        "runtime": "/usr/bin/nvidia-container-runtime", "runtime_version": "1.17.9",
        "runtime_version_source": "dpkg:nvidia-container-toolkit-base",
        "runtime_cdi": "/usr/bin/nvidia-container-runtime.cdi",
        "runtime_legacy": "/usr/bin/nvidia-container-runtime.legacy",
        "config": "/etc/nvidia-container-runtime/config.toml",
        "cdi_specs": ["/etc/cdi/nvidia.yaml"],
    }


def test_toolkit_of_the_gpu_operator_has_no_file_version(tree):
    tree.toolkit("/usr/local/nvidia/toolkit", version=None, config=False)
    t = gather(tree)[0]["toolkit"]
    assert t["runtime"] == "/usr/local/nvidia/toolkit/nvidia-container-runtime"
    assert t["runtime_version"] is None and t["runtime_version_source"] is None
    assert t["config"] is None


def test_dpkg_version_needs_the_package_to_own_the_file(tree):
    tree.dpkg("nvidia-container-toolkit-base", "1.17.9-1", ["/usr/bin/nvidia-ctk"])
    tree.exe("/usr/local/bin/nvidia-ctk")  # hand-installed copy first on PATH
    t = gather(tree)[0]["toolkit"]
    assert t["nvidia_ctk"] == "/usr/local/bin/nvidia-ctk" and t["nvidia_ctk_version"] is None


def test_toolkit_version_from_binary_when_programs_may_run(tree):
    tree.toolkit(version="1.16.0")
    out = {"nvidia-ctk": "NVIDIA Container Toolkit CLI version 1.17.9\ncommit: 8f5e4a4\n",
           "nvidia-container-runtime": "NVIDIA Container Runtime version 1.17.9\ncommit: 8f5e4a4\nspec: 1.2.0\n\n"
                                       "runc version 1.1.12\n"}
    f, dummy = gather(tree, run_binaries=True, runner=lambda argv: (0, out.get(argv[0].rsplit("/", 1)[1], ""), ""))
    t = f["toolkit"]
    assert (t["nvidia_ctk_version"], t["nvidia_ctk_version_source"]) == ("1.17.9", "binary")
    assert (t["runtime_version"], t["runtime_version_source"]) == ("1.17.9", "binary")


# ---------------------------------------------------------------------------------------------- containerd

def test_stock_containerd(tree):
    faketree.stock_containerd(tree, "default-1.7.toml")
    f, w = gather(tree)
    e = f["engines"]["containerd"]
    assert f["engine"] == "containerd" and not f["engine_ambiguous"] and f["engine_candidates"] == ["containerd"]
    assert e["binary"] == "/usr/bin/containerd"
    assert (e["version"], e["version_source"]) == ("1.7.24", "dpkg:containerd")
    assert e["config"] == "/etc/containerd/config.toml" and e["config_exists"] is True
    assert e["config_managed"] is False
    assert (e["config_version"], e["config_version_source"]) == (2, "file")
    assert e["cri_disabled"] is False
    assert e["runtimes"] == ["runc"] and e["nvidia_runtimes"] == [] and e["nvidia_configured"] is False
    assert e["default_runtime"] == "runc"
    assert e["drop_in_dir"] == "/etc/containerd/conf.d" and e["drop_in_dir_loaded"] is False
    assert e["imports"] == [] and e["drop_ins"] == []
    assert e["socket"] == "/run/containerd/containerd.sock" and e["socket_answers"] is False
    assert e["units"] == ["containerd"] and e["unit"] == "containerd"
    assert e["unit_file"] == "/lib/systemd/system/containerd.service"
    assert e["unit_active"] is None and e["active"] is False
    assert w == []


def test_containerd_binary_from_unit_exec_start(tree):
    tree.exe("/usr/bin/containerd")
    tree.exe("/usr/local/bin/containerd")
    tree.unit("containerd", "/usr/bin/containerd --log-level info")
    assert gather(tree)[0]["engines"]["containerd"]["binary"] == "/usr/bin/containerd"


def test_containerd_without_unit_prefers_usr_local(tree):
    tree.exe("/usr/bin/containerd")
    tree.exe("/usr/local/bin/containerd")
    e = gather(tree)[0]["engines"]["containerd"]
    assert e["binary"] == "/usr/local/bin/containerd" and e["unit_file"] is None


def test_containerd_v3_with_conf_d_drop_in(tree):
    faketree.stock_containerd(tree, "v3-conf-d.toml", "2.1.9~ds1-1")
    tree.file("/etc/containerd/conf.d/99-nvidia.toml", """version = 3
[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = 'nvidia'
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.nvidia]
  runtime_type = 'io.containerd.runc.v2'
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.nvidia.options]
  BinaryName = '/usr/bin/nvidia-container-runtime'
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.nvidia-cdi.options]
  BinaryName = '/usr/bin/nvidia-container-runtime.cdi'
""")
    e = gather(tree)[0]["engines"]["containerd"]
    assert e["version"] == "2.1.9" and e["config_version"] == 3
    assert e["imports"] == ["/etc/containerd/conf.d/*.toml"]
    assert e["drop_ins"] == ["/etc/containerd/conf.d/99-nvidia.toml"] and e["drop_in_dir_loaded"] is True
    assert e["nvidia_runtimes"] == ["nvidia", "nvidia-cdi"] and e["nvidia_configured"] is True
    assert e["nvidia_binaries"] == {"nvidia": "/usr/bin/nvidia-container-runtime",
                                    "nvidia-cdi": "/usr/bin/nvidia-container-runtime.cdi"}
    assert e["default_runtime"] == "nvidia" and "runc" in e["runtimes"]


def test_containerd_legacy_v1_file(tree):
    faketree.stock_containerd(tree, "legacy-v1.toml")
    e = gather(tree)[0]["engines"]["containerd"]
    assert (e["config_version"], e["config_version_source"]) == (1, "file")
    assert e["runtimes"] == ["runc"]


def test_containerd_stale_nvidia_is_reported_with_its_binary(tree):
    faketree.stock_containerd(tree, "stale-nvidia-v2.toml")
    e = gather(tree)[0]["engines"]["containerd"]
    assert e["nvidia_binaries"] == {"nvidia": "/usr/local/nvidia/toolkit/nvidia-container-runtime"}
    assert e["default_runtime"] == "runc"


@pytest.mark.parametrize("deb_version, expected", [("1.6.20~ds1-1+deb12u1", 2), ("2.1.9~ds1-1", 3), (None, None)])
def test_containerd_empty_or_missing_config_version_from_binary(tree, deb_version, expected):
    faketree.stock_containerd(tree, None, deb_version)
    tree.file("/etc/containerd/config.toml", "# nothing but a comment\n")
    e = gather(tree)[0]["engines"]["containerd"]
    assert e["config_version"] == expected
    assert e["config_version_source"] == ("binary" if expected else None)
    assert e["default_runtime"] == "runc" and e["runtimes"] == []


def test_containerd_io_cri_disabled(tree):
    faketree.containerd_io(tree)
    f, dummy = gather(tree)
    e = f["engines"]["containerd"]
    assert e["cri_disabled"] is True and e["config_version"] == 1
    assert (e["version"], e["version_source"]) == ("1.7.25", "dpkg:containerd.io")
    # nothing else: it is all there is (tier 3 without dockerd)
    assert f["engine"] == "containerd" and "Docker" in f["engine_reason"]


def test_docker_with_containerd_io(tree):
    faketree.containerd_io(tree)
    faketree.docker(tree, json.dumps({"default-runtime": "nvidia", "runtimes": {
        "nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": []}}}))
    f, dummy = gather(tree)
    d = f["engines"]["docker"]
    assert f["engine"] == "docker" and f["engine_candidates"] == ["docker"] and not f["engine_ambiguous"]
    assert (d["version"], d["version_source"]) == ("27.3.1", "dpkg:docker-ce")
    assert d["binary"] == "/usr/bin/dockerd" and d["config"] == "/etc/docker/daemon.json"
    assert d["nvidia_runtimes"] == ["nvidia"] and d["nvidia_configured"] is True
    assert d["nvidia_binaries"] == {"nvidia": "/usr/bin/nvidia-container-runtime"}
    assert d["default_runtime"] == "nvidia" and d["config_version"] is None and d["cri_disabled"] is None
    assert d["socket"] == "/run/docker.sock"
    assert f["engines"]["containerd"]["cri_disabled"] is True


def test_docker_without_daemon_json(tree):
    faketree.docker(tree)
    d = gather(tree)[0]["engines"]["docker"]
    assert d["config_exists"] is False and d["runtimes"] == [] and d["default_runtime"] == "runc"
    assert d["nvidia_configured"] is False


def test_docker_malformed_daemon_json(tree):
    faketree.docker(tree, "{ not json")
    f, w = gather(tree)
    d = f["engines"]["docker"]
    assert "malformed JSON" in d["config_error"] and d["runtimes"] is None and d["nvidia_configured"] is None
    assert any("daemon.json" in x for x in w)


def test_docker_with_cri_enabled_containerd_picks_containerd(tree):
    """Debian's docker.io + containerd packages: containerd's CRI plugin is on, so it is a CRI runtime."""
    faketree.stock_containerd(tree, "debian-package.toml", "1.6.20~ds1-1+deb12u1")
    faketree.docker(tree)
    f, dummy = gather(tree)
    assert f["engine"] == "containerd" and set(f["engines"]) == {"containerd", "docker"}
    assert not f["engine_ambiguous"]


def test_malformed_containerd_config(tree):
    faketree.stock_containerd(tree, None)
    tree.file("/etc/containerd/config.toml", "version = 2\n[plugins\n")
    f, w = gather(tree)
    e = f["engines"]["containerd"]
    assert "malformed TOML in /etc/containerd/config.toml" in e["config_error"]
    assert e["runtimes"] is None and e["config_version"] is None and e["cri_disabled"] is None
    assert any("malformed TOML" in x for x in w)
    assert f["engine"] == "containerd"


def test_leftover_config_alone_is_no_engine(tree):
    tree.fixture("/etc/containerd/config.toml", "default-1.7.toml")
    tree.file("/etc/crio/crio.conf", faketree.CRIO_CONF)
    assert gather(tree)[0]["engines"] == {}


# ---------------------------------------------------------------------------------------------- k0s

def test_k0s_before_install_wins_over_stray_containerd(tree):
    faketree.stock_containerd(tree, "default-1.6.toml", "1.6.20~ds1-1+deb12u1")
    faketree.k0s_before_install(tree, "v1.36.0+k0s.0")
    f, w = gather(tree)
    e = f["engines"]["k0s"]
    assert f["engine"] == "k0s" and f["engine_candidates"] == ["k0s"] and not f["engine_ambiguous"]
    assert "containerd" in f["engines"]
    assert e["distribution_binary"] == "/usr/local/bin/k0s"
    assert (e["distribution_version"], e["distribution_version_source"]) == ("v1.36.0+k0s.0", "embedded")
    assert e["binary"] is None and e["version"] is None
    assert e["config"] == "/etc/k0s/containerd.toml" and e["config_exists"] is False
    assert e["config_managed"] is True
    assert e["drop_in_dir"] == "/etc/k0s/containerd.d" and e["drop_in_dir_loaded"] is True
    # k0s >= 1.36 bundles containerd 2.x: v3 snippets only
    assert (e["config_version"], e["config_version_source"]) == (3, "distribution")
    assert e["unit_file"] is None and e["unit"] == "k0sworker" and e["active"] is False
    assert e["socket"] == "/run/k0s/containerd.sock"
    assert e["nvidia_configured"] is False and e["default_runtime"] == "runc"
    assert w == []


def test_k0s_installed_with_drop_in(tree):
    faketree.k0s_installed(tree, "v1.30.1+k0s.0")
    f, dummy = gather(tree)
    e = f["engines"]["k0s"]
    assert f["engine"] == "k0s"
    assert e["binary"] == "/var/lib/k0s/bin/containerd" and e["version"] is None
    assert e["distribution_version"] == "v1.30.1+k0s.0"
    assert e["config_exists"] is True and e["config_managed"] is True
    assert (e["config_version"], e["config_version_source"]) == (2, "file")
    assert e["imports"] == ["/run/k0s/containerd-cri.toml"]
    assert e["drop_ins"] == ["/etc/k0s/containerd.d/nvidia.toml"]
    assert e["nvidia_runtimes"] == ["nvidia"] and e["nvidia_configured"] is True
    assert e["nvidia_binaries"] == {"nvidia": "/usr/bin/nvidia-container-runtime"}
    assert e["unit"] == "k0sworker" and e["unit_file"] == "/etc/systemd/system/k0sworker.service"


def test_k0s_drop_in_that_does_not_fit_the_installed_release_is_flagged(tree):
    """A v2 nvidia.toml left from 1.35 on a k0s 1.36 node: 1.36's pre-flight would stop the worker."""
    faketree.k0s_installed(tree, "v1.36.3+k0s.0")
    e = gather(tree)[0]["engines"]["k0s"]
    assert (e["config_version"], e["config_version_source"]) == (3, "distribution")
    assert len(e["drop_in_problems"]) == 1 and "accepts only version 3" in e["drop_in_problems"][0]
    assert "/etc/k0s/containerd.d/nvidia.toml" in e["drop_in_problems"][0]
    faketree.k0s_installed(tree, "v1.35.2+k0s.0")
    assert gather(tree)[0]["engines"]["k0s"]["drop_in_problems"] == []


def test_k0s_release_that_concatenates_drop_ins_is_flagged(tree):
    faketree.k0s_installed(tree, "v1.27.3+k0s.0")
    e = gather(tree)[0]["engines"]["k0s"]
    assert any("1.27.5" in x for x in e["drop_in_problems"])


def test_k0s_marker_read_as_the_release_reads_it(tree):
    faketree.k0s_installed(tree, "v1.36.3+k0s.0", nvidia=False)
    tree.file("/etc/k0s/containerd.toml", "version = 3\n# k0s_managed=true\n")
    assert gather(tree)[0]["engines"]["k0s"]["config_managed"] is False     # 1.36: first line only
    faketree.k0s_installed(tree, "v1.31.1+k0s.0", nvidia=False)
    tree.file("/etc/k0s/containerd.toml", "version = 2\n# k0s_managed=true\n")
    assert gather(tree)[0]["engines"]["k0s"]["config_managed"] is True      # 1.30-1.35: any line equal to it


def test_k0s_unmanaged_config(tree):
    faketree.k0s_installed(tree, nvidia=False)
    tree.fixture("/etc/k0s/containerd.toml", "default-1.7.toml")
    e = gather(tree)[0]["engines"]["k0s"]
    assert e["config_managed"] is False and e["nvidia_configured"] is False and e["runtimes"] == ["runc"]


def test_k0s_controller_unit(tree):
    faketree.k0s_before_install(tree)
    tree.unit("k0scontroller", "/usr/local/bin/k0s controller --enable-worker")
    e = gather(tree)[0]["engines"]["k0s"]
    assert e["unit"] == "k0scontroller" and e["unit_file"] == "/etc/systemd/system/k0scontroller.service"


# ---------------------------------------------------------------------------------------------- k3s / RKE2

def test_k3s_generated_config_and_default_runtime(tree):
    faketree.k3s(tree, nvidia_in_config=True, default_runtime="nvidia")
    f, dummy = gather(tree)
    e = f["engines"]["k3s"]
    assert f["engine"] == "k3s"
    assert e["distribution_binary"] == "/usr/local/bin/k3s"
    assert (e["distribution_version"], e["distribution_version_source"]) == ("v1.30.2+k3s1", "embedded")
    assert e["binary"] == "/var/lib/rancher/k3s/data/current/bin/containerd"
    assert e["config"] == "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"
    assert e["config_managed"] is True and e["templates"] == []
    assert e["config_version"] == 2 and e["nvidia_runtimes"] == ["nvidia"]
    assert e["default_runtime"] == "nvidia"
    assert e["socket"] == "/run/k3s/containerd/containerd.sock"
    assert e["units"] == ["k3s", "k3s-agent"] and e["unit"] == "k3s"
    assert e["auto_nvidia_runtimes"] == {}


def test_k3s_nvidia_on_search_path(tree):
    faketree.k3s(tree, nvidia_in_config=False, agent=True)
    tree.toolkit()
    e = gather(tree)[0]["engines"]["k3s"]
    assert e["nvidia_runtimes"] == []
    assert e["auto_nvidia_runtimes"] == {"nvidia": "/usr/bin/nvidia-container-runtime",
                                         "nvidia-cdi": "/usr/bin/nvidia-container-runtime.cdi"}
    assert e["nvidia_configured"] is True
    assert e["unit"] == "k3s-agent" and e["default_runtime"] == "runc"


def test_k3s_gpu_operator_toolkit_folder(tree):
    faketree.k3s(tree, generated=False)
    tree.toolkit("/usr/local/nvidia/toolkit", version=None)
    e = gather(tree)[0]["engines"]["k3s"]
    assert e["config_exists"] is False
    assert e["auto_nvidia_runtimes"]["nvidia"] == "/usr/local/nvidia/toolkit/nvidia-container-runtime"


def test_k3s_template_is_searched_not_parsed(tree):
    faketree.k3s(tree, generated=False, template=True)
    f, w = gather(tree)
    e = f["engines"]["k3s"]
    assert e["templates"] == ["/var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl"]
    assert e["nvidia_runtimes"] == ["nvidia-legacy"] and e["nvidia_configured"] is True
    assert (e["config_version"], e["config_version_source"]) == (2, "template")
    assert e["config_error"] is None and w == []


def test_k3s_without_nvidia(tree):
    faketree.k3s(tree, nvidia_in_config=False)
    e = gather(tree)[0]["engines"]["k3s"]
    assert e["nvidia_configured"] is False and e["runtimes"] == ["runc"]


def test_rke2(tree):
    faketree.rke2(tree, flags=" --default-runtime=nvidia")
    f, dummy = gather(tree)
    e = f["engines"]["rke2"]
    assert f["engine"] == "rke2"
    assert (e["distribution_version"], e["distribution_version_source"]) == ("v1.30.2+rke2r1", "path")
    # /var/lib/rancher/rke2/bin is an absolute symlink: resolved inside the root
    assert e["binary"] == "/var/lib/rancher/rke2/bin/containerd"
    assert e["config"] == "/var/lib/rancher/rke2/agent/etc/containerd/config.toml" and e["config_version"] == 2
    assert e["units"] == ["rke2-server", "rke2-agent"] and e["unit"] == "rke2-server"
    assert e["default_runtime"] == "nvidia"


@pytest.mark.parametrize("exec_start", [
    "/usr/local/bin/k3s server --default-runtime=nvidia",
    "/usr/local/bin/k3s server --default-runtime nvidia --disable traefik",
    "/usr/local/bin/k3s \\\n    server \\\n\t'--default-runtime=nvidia' \\\n",
    "/usr/local/bin/k3s \\\n    server \\\n\t'--default-runtime' \\\n\t'nvidia' \\\n",
])
def test_k3s_default_runtime_flag_in_the_unit(tree, exec_start):
    faketree.k3s(tree)
    tree.unit("k3s", exec_start)
    assert gather(tree)[0]["engines"]["k3s"]["default_runtime"] == "nvidia"


def test_k3s_config_yaml_d_overrides(tree):
    faketree.k3s(tree, default_runtime="nvidia")
    tree.file("/etc/rancher/k3s/config.yaml.d/50-gpu.yaml", "default-runtime: 'nvidia-cdi'  # CDI\n")
    assert gather(tree)[0]["engines"]["k3s"]["default_runtime"] == "nvidia-cdi"


# ---------------------------------------------------------------------------------------------- MicroK8s, CRI-O

def test_microk8s(tree):
    faketree.microk8s(tree, "v1.30.1")
    f, dummy = gather(tree)
    e = f["engines"]["microk8s"]
    assert f["engine"] == "microk8s"
    assert e["distribution_binary"] == "/snap/bin/microk8s"
    assert (e["distribution_version"], e["distribution_version_source"]) == ("v1.30.1", "snap.yaml")
    assert e["binary"] == "/snap/microk8s/current/bin/containerd"
    assert e["config"] == "/var/snap/microk8s/current/args/containerd-template.toml"
    assert e["config_managed"] is False and e["config_version"] == 2
    assert e["nvidia_runtimes"] == ["nvidia-container-runtime"]
    assert e["nvidia_binaries"] == {"nvidia-container-runtime": "nvidia-container-runtime"}
    assert e["default_runtime"] == "${RUNTIME}"
    assert e["socket"] == "/var/snap/microk8s/common/run/containerd.sock"

    assert e["placeholders"] == ["${RUNTIME_TYPE}", "${RUNTIME}", "${SNAPSHOTTER}", "${SNAP_DATA}"]
    assert e["reuse_handler"] == "nvidia-container-runtime"   # MicroK8s' own handler is reused, not doubled
    assert e["placeholder_values"]["${SNAP_DATA}"] == "/var/snap/microk8s/current"
    assert e["placeholder_values"]["${RUNTIME}"] == "runc"
    assert e["copy_options_from"] is None   # ${RUNTIME} renders to runc: the module resolves it (placeholders)
    assert "edit_problem" not in e   # nothing refused: the module reads the template as rendered


def test_microk8s_without_a_gpu_handler_and_the_gpu_lock(tree):
    faketree.microk8s(tree)
    path = "/var/snap/microk8s/6750/args/containerd-template.toml"
    text = tree.p(path).read_text()
    tree.file(path, text[:text.index('    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia-container-runtime]')])
    tree.file("/var/snap/microk8s/6750/var/lock/gpu", "")
    e = gather(tree)[0]["engines"]["microk8s"]
    assert e["reuse_handler"] is None and e["nvidia_runtimes"] == []
    assert e["placeholder_values"]["${RUNTIME}"] == "nvidia-container-runtime"   # the old GPU addon's switch
    assert e["copy_options_from"] == "runc"   # never an nvidia handler


def test_microk8s_plain_default_leaves_the_copy_source_to_the_module(tree):
    faketree.microk8s(tree)
    path = "/var/snap/microk8s/6750/args/containerd-template.toml"
    tree.file(path, tree.p(path).read_text().replace('"${RUNTIME}"', '"runc"'))
    e = gather(tree)[0]["engines"]["microk8s"]
    assert e["copy_options_from"] is None and e["default_runtime"] == "runc"


def test_microk8s_handler_made_default_still_copies_runc(tree):
    """After a run with nvidia_runtime_set_as_default the default names the handler: a new handler copies runc,
    never an nvidia handler."""
    faketree.microk8s(tree)
    path = "/var/snap/microk8s/6750/args/containerd-template.toml"
    tree.file(path, tree.p(path).read_text().replace(
        '"${RUNTIME}"', '"nvidia-container-runtime"  # gpuops.nvidia: replaced "${RUNTIME}"'))
    e = gather(tree)[0]["engines"]["microk8s"]
    assert e["default_runtime"] == "nvidia-container-runtime" and e["copy_options_from"] == "runc"


@pytest.mark.parametrize("binaries, expected", [
    ({"nvidia-container-runtime": "nvidia-container-runtime", "nvidia": "/usr/bin/nvidia-container-runtime"},
     "nvidia-container-runtime"),
    ({"nvidia": "/usr/local/nvidia/toolkit/nvidia-container-runtime"}, "nvidia"),
    ({"nvidia-cdi": "/usr/bin/nvidia-container-runtime.cdi"}, None),
    ({"nvidia-x": None}, None),
    (None, None),
])
def test_reuse_handler(binaries, expected):
    assert facts.reuse_handler(binaries) == expected


def test_render_microk8s_is_plain_substitution():
    values = facts.microk8s_values()
    text = 'a = "${SNAP}/x"\nb = "${SNAP_DATA}/y"\nc = "${SNAP_COMMON}" # ${RUNTIME}\nd = "${UNKNOWN}"\n'
    assert facts.render_microk8s(text, values) == ('a = "/snap/microk8s/current/x"\nb = "/var/snap/microk8s/current/y"\n'
                                                   'c = "/var/snap/microk8s/common" # runc\nd = "${UNKNOWN}"\n')


def test_crio(tree):
    faketree.crio(tree)
    tree.file("/etc/crio/crio.conf.d/99-nvidia.toml.bak", "[crio.runtime]\ndefault_runtime = \"old\"\n")
    tree.file("/etc/crio/crio.conf.d/50-sub/01.conf", "[crio.runtime.runtimes.nvidia-cdi]\n"
              "runtime_path = \"/usr/bin/nvidia-container-runtime.cdi\"\n")
    f, dummy = gather(tree)
    e = f["engines"]["crio"]
    assert f["engine"] == "crio"
    assert (e["version"], e["version_source"]) == ("1.30.3", "dpkg:cri-o")
    assert e["binary"] == "/usr/bin/crio" and e["config"] == "/etc/crio/crio.conf"
    # every file, recursively, in lexical order, whatever its extension (the .bak too)
    assert e["drop_ins"] == ["/etc/crio/crio.conf.d/10-crun.conf", "/etc/crio/crio.conf.d/50-sub/01.conf",
                             "/etc/crio/crio.conf.d/99-nvidia.toml", "/etc/crio/crio.conf.d/99-nvidia.toml.bak"]
    assert e["drop_in_dir_loaded"] is True
    assert e["runtimes"] == ["crun", "nvidia", "nvidia-cdi"] and e["nvidia_runtimes"] == ["nvidia", "nvidia-cdi"]
    assert e["nvidia_binaries"]["nvidia"] == "/usr/bin/nvidia-container-runtime"
    assert e["default_runtime"] == "old"  # the backup is loaded last
    assert e["config_version"] is None and e["cri_disabled"] is None
    assert e["socket"] == "/var/run/crio/crio.sock" and e["unit"] == "crio"


def test_crio_default_runtime_unset(tree):
    faketree.crio(tree, nvidia=False)
    tree.file("/etc/crio/crio.conf", "[crio]\n")
    tree.file("/etc/crio/crio.conf.d/10-crun.conf", "")
    e = gather(tree)[0]["engines"]["crio"]
    assert e["default_runtime"] is None and e["nvidia_configured"] is False


def test_crio_uses_the_module_rules_for_a_bad_shape(tree):
    """A value where CRI-O needs a table: the facts say what the module would refuse, not a guess."""
    faketree.crio(tree, nvidia=False)
    tree.file("/etc/crio/crio.conf.d/20-bad.conf", "[crio.runtime.runtimes]\nnvidia = \"/usr/bin/x\"\n")
    f, warnings = gather(tree)
    e = f["engines"]["crio"]
    assert "20-bad.conf" in e["config_error"] and "must be a table" in e["config_error"]
    assert e["nvidia_configured"] is None and any("must be a table" in w for w in warnings)


def test_crio_beats_containerd_io(tree):
    faketree.containerd_io(tree)
    faketree.crio(tree)
    f, dummy = gather(tree)
    assert f["engine"] == "crio" and f["engine_candidates"] == ["crio"] and not f["engine_ambiguous"]


# ---------------------------------------------------------------------------------------------- ambiguity

def test_two_distributions_are_ambiguous(tree):
    faketree.k3s(tree)
    faketree.rke2(tree)
    f, w = gather(tree)
    assert f["engine"] == "k3s" and f["engine_ambiguous"] is True
    assert f["engine_candidates"] == ["k3s", "rke2"]
    assert any("k3s, rke2" in x and "preference order" in x for x in w)
    assert "none is active" in f["engine_reason"]


def test_the_active_distribution_wins(tree):
    faketree.k0s_installed(tree)
    faketree.k3s(tree)
    tree.listen("/run/k3s/containerd/containerd.sock")
    f, w = gather(tree)
    assert f["engines"]["k3s"]["active"] is True and f["engines"]["k3s"]["socket_answers"] is True
    assert f["engines"]["k0s"]["active"] is False
    assert f["engine"] == "k3s" and not f["engine_ambiguous"] and f["engine_candidates"] == ["k3s"]
    assert w == []


def test_crio_and_containerd_both_active_are_ambiguous(tree):
    faketree.stock_containerd(tree)
    faketree.crio(tree)
    tree.listen("/run/containerd/containerd.sock")
    tree.listen("/var/run/crio/crio.sock")
    f, w = gather(tree)
    assert f["engine_ambiguous"] is True and f["engine"] == "containerd"
    assert f["engine_candidates"] == ["containerd", "crio"]
    assert "are active" in f["engine_reason"] and len(w) == 1


def test_crio_active_containerd_idle(tree):
    faketree.stock_containerd(tree)
    faketree.crio(tree)
    tree.listen("/var/run/crio/crio.sock")
    f, dummy = gather(tree)
    assert f["engine"] == "crio" and not f["engine_ambiguous"] and f["engine_candidates"] == ["crio"]


def test_crio_and_containerd_both_idle_are_ambiguous(tree):
    faketree.stock_containerd(tree)
    faketree.crio(tree)
    f, dummy = gather(tree)
    assert f["engine_ambiguous"] is True and f["engine_candidates"] == ["containerd", "crio"]


def test_stale_socket_file_is_not_active(tree):
    faketree.stock_containerd(tree)
    s = tree.listen("/run/containerd/containerd.sock")
    s.close()  # the file stays, nobody listens
    e = gather(tree)[0]["engines"]["containerd"]
    assert e["socket_answers"] is False and e["active"] is False


def test_select_engine_preference_order():
    def e(kind, active=False, cri_disabled=False):
        return {"kind": kind, "active": active, "cri_disabled": cri_disabled}
    engines = {k: e(k) for k in ("docker", "crio", "containerd", "microk8s", "rke2", "k3s", "k0s")}
    kind, amb, cands, dummy = facts.select_engine(engines)
    assert kind == "k0s" and amb and cands == ["k0s", "k3s", "rke2", "microk8s"]
    engines["microk8s"]["active"] = True
    assert facts.select_engine(engines)[:3] == ("microk8s", False, ["microk8s"])
    only = {"containerd": e("containerd", cri_disabled=True), "docker": e("docker")}
    assert facts.select_engine(only)[:3] == ("docker", False, ["docker"])
    assert facts.select_engine({})[:3] == (None, False, [])


# ---------------------------------------------------------------------------------------------- no tomlkit

def test_without_tomlkit_configs_are_null(tree, monkeypatch):
    monkeypatch.setattr(facts, "HAS_TOML_READER", False)
    faketree.k0s_installed(tree)
    faketree.k3s(tree, generated=False, template=True)
    faketree.docker(tree, '{"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime"}}}')
    f, w = gather(tree)
    k0s = f["engines"]["k0s"]
    assert k0s["runtimes"] is None and k0s["nvidia_configured"] is None
    assert k0s["default_runtime"] is None and k0s["cri_disabled"] is None
    assert k0s["distribution_version"] == "v1.30.1+k0s.0"  # not from TOML
    # the drop-in version k0s merges comes from its release (the rules table), not from a file
    assert (k0s["config_version"], k0s["config_version_source"]) == (2, "distribution")
    # the k3s template is plain text: still searched
    assert f["engines"]["k3s"]["nvidia_runtimes"] == ["nvidia-legacy"]
    assert f["engines"]["docker"]["nvidia_runtimes"] == ["nvidia"]  # JSON
    assert f["engine"] == "k0s" and f["engine_ambiguous"] is True
    assert any("tomlkit" in x for x in w)


# ---------------------------------------------------------------------------------------------- programs

def test_nothing_runs_under_a_fake_root(tree):
    """Every layout at once, with a runner that fails the test when called."""
    for build in (faketree.stock_containerd, faketree.k0s_installed, faketree.k3s, faketree.microk8s,
                  faketree.crio, faketree.docker):
        build(tree)
    tree.toolkit()
    tree.gpu()
    tree.exe("/usr/bin/lspci")
    f, dummy = gather(tree)
    assert set(f["engines"]) == {"containerd", "k0s", "k3s", "microk8s", "crio", "docker"}
    assert all(e["unit_active"] is None for e in f["engines"].values())


def test_versions_from_binaries_when_allowed(tree):
    faketree.k0s_installed(tree)
    faketree.k3s(tree)
    out = {
        "/usr/local/bin/k0s version": "v1.31.2+k0s.0\n",
        "/var/lib/k0s/bin/containerd --version": "containerd github.com/containerd/containerd v1.7.23 57f17b0a\n",
        "/usr/local/bin/k3s --version": "k3s version v1.31.1+k3s1 (452dbbc1)\ngo version go1.22.6\n",
        # the runner gets the real path: symlinks (data/current) resolved inside the root
        "/var/lib/rancher/k3s/data/abc123/bin/containerd --version":
            "containerd github.com/k3s-io/containerd v1.7.21-k3s2 4f4bf8f4\n",
    }
    root = str(tree.root)

    def runner(argv):
        key = " ".join([argv[0][len(root):]] + argv[1:])
        return (0, out[key], "") if key in out else (127, "", "not found")
    f, dummy = gather(tree, runner=runner, run_binaries=True)
    k0s, k3s = f["engines"]["k0s"], f["engines"]["k3s"]
    assert (k0s["distribution_version"], k0s["distribution_version_source"]) == ("v1.31.2+k0s.0", "binary")
    assert (k0s["version"], k0s["version_source"]) == ("1.7.23", "binary")
    assert (k3s["distribution_version"], k3s["distribution_version_source"]) == ("v1.31.1+k3s1", "binary")
    assert k3s["version"] == "1.7.21"


def test_units_asked_only_when_allowed(tree, monkeypatch):
    faketree.stock_containerd(tree)
    faketree.crio(tree)
    monkeypatch.setattr(facts, "systemd_running", lambda: True)
    monkeypatch.setattr(service, "systemd_running", lambda: True)
    calls = []

    def runner(argv):
        calls.append(argv)
        return (0, "active\n", "") if argv[-1] == "crio" else (3, "inactive\n", "")
    f, dummy = gather(tree, runner=runner, query_units=True)
    assert ["systemctl", "is-active", "crio"] in calls
    assert f["engines"]["crio"]["unit_active"] is True and f["engines"]["crio"]["active"] is True
    assert f["engines"]["containerd"]["unit_active"] is False
    assert f["engine"] == "crio" and not f["engine_ambiguous"]


def test_scan_embedded_version_in_a_large_file(tree):
    blob = b"\x00" * (3 * 1024 * 1024) + b"go1.22.4\x00+k0s.junk v1.29.4+k0s.0github.com/k0sproject" + b"\x00" * 100
    f = tree.p("/usr/local/bin/k0s")
    f.parent.mkdir(parents=True)
    f.write_bytes(blob)
    f.chmod(0o755)
    node = facts.Node(str(tree.root))
    assert facts.scan_embedded_version(node, "/usr/local/bin/k0s", "k0s") == "v1.29.4+k0s.0"
    assert facts.scan_embedded_version(node, "/usr/local/bin/k0s", "k3s") is None


def test_node_resolves_symlinks_inside_the_root(tree):
    tree.file("/opt/real/file", "x")
    tree.link("/etc/abs", "/opt/real")
    tree.link("/etc/rel", "../opt/real")
    tree.link("/etc/escape", "../../../../../../../opt/real")
    node = facts.Node(str(tree.root))
    for link in ("/etc/abs/file", "/etc/rel/file", "/etc/escape/file"):
        assert node.read(link) == "x", link
    assert node.glob("/etc/abs/*") == ["/etc/abs/file"]
    assert node.readlink("/etc/abs") == "/opt/real"
