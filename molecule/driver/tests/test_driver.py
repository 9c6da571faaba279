"""driver: GPU nodes (a fake GPU in sysfs) where the role installs the stand-in driver packages.

gpuops-driver-bookworm takes Debian's way (method auto -> distro, non-free from the real archive);
gpuops-driver-cuda takes NVIDIA's CUDA repository (cuda_repo, branch 535, open kernel modules).
"""
import json
import os
import pathlib

import pytest

import checks

STANDIN_DRIVER = ("535.247.01-1", "550.163.01-1")
CRI = "io.containerd.grpc.v1.cri"
NONFREE = "/etc/apt/sources.list.d/gpuops-debian-nonfree.sources"
BLACKLIST = "/etc/modprobe.d/blacklist-nouveau.conf"
DISTRO_NODE = "gpuops-driver-bookworm"
CUDA_NODE = "gpuops-driver-cuda"


def _node(host):
    return host.backend.name


def _runs(host):
    """What converge.yml recorded for this node: converge, idempotence, check mode (in that order)."""
    path = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / ("driver-runs-%s.jsonl" % _node(host))
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert all(r["host"] == _node(host) for r in rows), rows
    return rows


def _only(host, node):
    if _node(host) != node:
        pytest.skip("checked on %s" % node)


def test_three_runs_recorded(host):
    assert [r["check_mode"] for r in _runs(host)] == [False, False, True]


def test_fake_gpu_seen_and_method_chosen(host):
    want = "cuda_repo" if _node(host) == CUDA_NODE else "distro"
    for run in _runs(host):
        assert run["facts_gpu_count"] == 1
        assert run["driver_method"] == want


def test_nonfree_components_from_the_real_archive(host):
    """The role added Debian's non-free components; apt really fetched their lists from the archive."""
    _only(host, DISTRO_NODE)
    src = host.file(NONFREE)
    assert src.is_file and src.mode == 0o644 and src.user == "root"
    assert "Components: non-free non-free-firmware" in src.content_string
    policy = host.check_output("apt-cache policy")
    assert "bookworm/non-free " in policy and "bookworm/non-free-firmware " in policy


def test_distro_driver_packages_from_the_standins(host):
    _only(host, DISTRO_NODE)
    pkgs = checks.package_versions(host, ["nvidia-driver", "nvidia-smi", "firmware-misc-nonfree"])
    assert pkgs["nvidia-driver"] in STANDIN_DRIVER
    assert pkgs["nvidia-smi"] == pkgs["nvidia-driver"]
    assert pkgs["firmware-misc-nonfree"] == "20230210-5+gpuops1"
    for name in ("nvidia-driver", "nvidia-smi", "firmware-misc-nonfree"):
        assert host.file("/usr/share/gpuops-standin/packages/" + name).exists, name
    assert not host.file("/etc/apt/preferences.d/gpuops-nvidia-driver-branch.pref").exists   # cuda_repo only


def test_cuda_repository_from_its_keyring_package(host):
    """cuda_repo: cuda-keyring installed from the repository's URL added the (stand-in) CUDA apt source;
    no Debian non-free was added."""
    _only(host, CUDA_NODE)
    assert host.package("cuda-keyring").is_installed
    assert host.file("/usr/share/keyrings/cuda-archive-keyring.gpg").is_file
    lst = host.file("/etc/apt/sources.list.d/cuda-debian12-x86_64.list")
    assert lst.is_file and "/cuda/repos/debian12/x86_64/ /" in lst.content_string
    assert "signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg" in lst.content_string
    assert not host.file(NONFREE).exists


def test_cuda_branch_and_open_modules(host):
    """nvidia-open-535: the open-module driver of branch 535, though the repository offers 550 too."""
    _only(host, CUDA_NODE)
    pkgs = checks.package_versions(host, ["nvidia-open-535", "nvidia-open", "nvidia-driver", "cuda-drivers"])
    assert pkgs["nvidia-open-535"] == pkgs["nvidia-open"] == pkgs["nvidia-driver"] == "535.247.01-1", pkgs
    assert pkgs["cuda-drivers"] is None                      # the proprietary-module metapackage is not wanted
    # the repository offers 550 too; the role's branch pin keeps apt (and later upgrades) on 535
    offered = [ln.split("|")[1].strip() for ln in host.check_output("apt-cache madison nvidia-driver").splitlines()]
    assert "550.163.01-1" in offered
    pin = host.file("/etc/apt/preferences.d/gpuops-nvidia-driver-branch.pref")
    assert pin.is_file and pin.mode == 0o644 and "Pin: version 535.*" in pin.content_string
    candidate = [ln.split()[-1] for ln in host.check_output("apt-cache policy nvidia-driver").splitlines()
                 if "Candidate:" in ln]
    assert candidate == ["535.247.01-1"]
    assert host.run("apt-get -s -y upgrade").stdout.count("Inst nvidia") == 0


def test_kernel_headers_installed(host):
    _only(host, DISTRO_NODE)
    arch = host.check_output("dpkg --print-architecture")
    assert host.package("linux-headers-" + arch).version.endswith("+gpuops1")


def test_driver_userspace_answers(host):
    assert "NVIDIA STAND-IN GPU" in host.check_output("nvidia-smi -L")


def test_nouveau_blacklisted(host):
    f = host.file(BLACKLIST)
    assert f.is_file and f.mode == 0o644 and f.user == "root"
    lines = f.content_string.splitlines()
    assert "blacklist nouveau" in lines and "options nouveau modeset=0" in lines


def test_first_run_changed_the_driver_and_the_blacklist_only_once(host):
    first, second, check = _runs(host)
    assert first["driver_changed"] and first["nouveau_blacklist_changed"]
    assert not second["driver_changed"] and not second["nouveau_blacklist_changed"]
    assert not check["driver_changed"] and not check["nouveau_blacklist_changed"]


def test_reboot_pending_reported_on_every_run(host):
    """Installed but not loaded: the first run knows it installed it; later runs see it in the facts."""
    first, second, check = _runs(host)
    for run in (first, second, check):
        assert run["result"]["reboot_pending"] is True, run
    assert first["reboot_pending"] is True
    module = "/lib/modules/%s/updates/dkms/nvidia.ko" % host.check_output("uname -r")
    for run in (second, check):
        assert run["facts_driver"]["reboot_pending"] is True
        assert run["facts_driver"]["loaded"] is False
        assert module in run["facts_driver"]["module_files"]
        assert "not loaded" in run["facts_driver"]["reboot_reason"]
    assert host.file(module).exists


def test_no_cdi_spec_while_the_driver_is_not_loaded(host):
    """CDI generation needs a loaded driver: skipped, and nvidia-ctk was never asked to generate."""
    assert not host.file("/etc/cdi/nvidia.yaml").exists
    assert [row for row in checks.log_lines(host, checks.CTK_LOG) if "generate" in row] == []


def test_runtime_configured_and_cri_ok(host):
    dump = checks.config_dump(host)
    runtimes = dump["plugins"][CRI]["containerd"]["runtimes"]
    assert runtimes["nvidia"]["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    assert checks.cri_status(host) == "ok"
    first, second, check = _runs(host)
    assert first["result"]["engine_changed"] and first["result"]["restarted"]
    assert not second["result"]["engine_changed"] and not second["result"]["restarted"]
    assert not check["result"]["engine_changed"]
