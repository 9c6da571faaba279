"""driver: a GPU node (fake GPU in sysfs) where the role installs the stand-in driver packages."""
import json
import os
import pathlib
import tomllib

import checks

STANDIN_DRIVER = ("535.247.01-1", "550.163.01-1")
CONFIG = "/etc/containerd/config.toml"
CRI = "io.containerd.grpc.v1.cri"
NONFREE = "/etc/apt/sources.list.d/gpuops-debian-nonfree.sources"
BLACKLIST = "/etc/modprobe.d/blacklist-nouveau.conf"


def _runs(host):
    """What converge.yml recorded for this host: converge, idempotence, check mode (in that order)."""
    path = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "driver-runs.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    name = host.check_output("hostname")
    mine = [r for r in rows if r["host"] == name] or rows
    return mine


def test_three_runs_recorded(host):
    runs = _runs(host)
    assert [r["check_mode"] for r in runs] == [False, False, True], runs


def test_fake_gpu_seen_and_distro_method_chosen(host):
    for run in _runs(host):
        assert run["facts_gpu_count"] == 1
        assert run["driver_method"] == "distro"


def test_nonfree_components_from_the_real_archive(host):
    """The role added Debian's non-free components; apt really fetched their lists from the archive."""
    src = host.file(NONFREE)
    assert src.is_file and src.mode == 0o644 and src.user == "root"
    assert "Components: non-free non-free-firmware" in src.content_string
    policy = host.check_output("apt-cache policy")
    assert "bookworm/non-free " in policy and "bookworm/non-free-firmware " in policy


def test_driver_packages_installed_from_the_standins(host):
    pkgs = checks.package_versions(host, ["nvidia-driver", "nvidia-smi", "firmware-misc-nonfree"])
    assert pkgs["nvidia-driver"] in STANDIN_DRIVER
    assert pkgs["nvidia-smi"] == pkgs["nvidia-driver"]
    assert pkgs["firmware-misc-nonfree"] == "20230210-5+gpuops1"
    arch = host.check_output("dpkg --print-architecture")
    assert host.package("linux-headers-" + arch).version.endswith("+gpuops1")
    for name in ("nvidia-driver", "nvidia-smi", "firmware-misc-nonfree", "linux-headers-" + arch):
        assert host.file("/usr/share/gpuops-standin/packages/" + name).exists, name
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
    calls = [row for row in checks.log_lines(host, checks.CTK_LOG) if "generate" in row]
    assert calls == []


def test_runtime_configured_and_cri_ok(host):
    dump = tomllib.loads(host.check_output("containerd --config %s config dump", CONFIG))
    runtimes = dump["plugins"][CRI]["containerd"]["runtimes"]
    assert runtimes["nvidia"]["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    assert checks.cri_status(host) == "ok"
    first, second, check = _runs(host)
    assert first["result"]["engine_changed"] and first["result"]["restarted"]
    assert not second["result"]["engine_changed"] and not second["result"]["restarted"]
    assert not check["result"]["engine_changed"]
