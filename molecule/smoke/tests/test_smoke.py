"""Machinery proof: what every later scenario relies on works on the test node."""
import checks

TOOLKIT = ["nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
           "libnvidia-container1"]
PINNED = "1.17.8-1"


def test_systemd_is_pid_1(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"


def test_system_running(host):
    state = checks.system_state(host)
    assert state in ("running", "degraded"), (state, checks.failed_units(host))


def test_containerd_active(host):
    svc = host.service("containerd")
    assert svc.is_running
    assert svc.is_enabled


def test_cri_plugin_ok(host):
    assert checks.cri_status(host) == "ok"


def test_toolkit_pinned(host):
    assert checks.package_versions(host, TOOLKIT) == {p: PINNED for p in TOOLKIT}


def test_newer_version_offered_but_not_installed(host):
    policy = host.check_output("apt-cache policy nvidia-container-toolkit")
    assert "1.17.9-1" in policy and "127.0.0.1" in policy


def test_repository_is_signed(host):
    # apt only keeps an InRelease it verified against the signed-by keyring.
    arch = host.check_output("dpkg --print-architecture")
    lists = host.check_output("ls /var/lib/apt/lists").split()
    assert "127.0.0.1:17821_stable_deb_%s_InRelease" % arch in lists or any(
        name.endswith("_stable_deb_%s_InRelease" % arch) for name in lists)


def test_driver_standins_offered_and_pinned(host):
    policy = host.check_output("apt-cache policy nvidia-driver")
    assert "Candidate: 550.163.01-1" in policy
    assert "1001" in policy


def test_standin_runtime_installed(host):
    for name in ("nvidia-container-runtime", "nvidia-container-runtime.cdi", "nvidia-container-runtime.legacy"):
        assert host.file("/usr/bin/" + name).is_executable or host.file("/usr/bin/" + name).is_symlink
    out = host.check_output("nvidia-container-runtime --version")
    assert out.splitlines()[0] == "NVIDIA Container Runtime version 1.17.8"
    assert "STAND-IN" in host.check_output("dpkg-query -W -f='${Description}' nvidia-container-toolkit-base")
    assert host.check_output("nvidia-ctk --version").splitlines()[0] == "NVIDIA Container Toolkit CLI version 1.17.8"


def test_toolkit_config_created_by_postinst(host):
    config = host.file("/etc/nvidia-container-runtime/config.toml")
    assert config.is_file
    assert 'runtimes = ["docker-runc", "runc", "crun"]' in config.content_string


def test_standin_runtime_log_empty(host):
    assert checks.log_lines(host) == []


def test_container_runs_through_standin_runtime(host):
    """The nested engine starts a container through the stand-in runtime, which logs it (runs last)."""
    checks.assert_container_runs_through_standin(host, "smoke-probe")
