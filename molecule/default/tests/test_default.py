"""default: Debian bookworm's containerd 1.6 under systemd, configured in place by the role."""
import tomllib

import checks

TOOLKIT = ["nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
           "libnvidia-container1"]
PINNED = "1.17.8-1"
CONFIG = "/etc/containerd/config.toml"
CRI = 'io.containerd.grpc.v1.cri'


def _runtimes(host):
    return checks.config_dump(host)["plugins"][CRI]["containerd"]["runtimes"]


def test_system_running(host):
    state = checks.system_state(host)
    assert state in ("running", "degraded"), (state, checks.failed_units(host))


def test_containerd_is_debian_16(host):
    assert host.package("containerd").version.startswith("1.6.")


def test_containerd_active(host):
    svc = host.service("containerd")
    assert svc.is_running and svc.is_enabled


def test_toolkit_pinned(host):
    assert checks.package_versions(host, TOOLKIT) == {p: PINNED for p in TOOLKIT}
    pin = host.file("/etc/apt/preferences.d/nvidia-container-toolkit.pref")
    assert pin.exists and "1.17.8-1" in pin.content_string


def test_repo_signed_by(host):
    sources = host.file("/etc/apt/sources.list.d/nvidia-container-toolkit.sources")
    assert sources.is_file and sources.mode == 0o644
    assert "Signed-By: /etc/apt/keyrings/" in sources.content_string
    assert "127.0.0.1" in sources.content_string


def test_config_in_place_no_dropin(host):
    cfg = host.file(CONFIG)
    assert cfg.is_file and cfg.user == "root"
    assert cfg.mode & 0o022 == 0
    assert not host.file("/etc/containerd/conf.d/99-nvidia.toml").exists
    assert "imports" not in tomllib.loads(cfg.content_string) or not tomllib.loads(cfg.content_string)["imports"]


def test_handler_in_effective_config(host):
    runtimes = _runtimes(host)
    assert "runc" in runtimes and "nvidia" in runtimes
    nvidia, runc = runtimes["nvidia"], runtimes["runc"]
    assert nvidia["runtime_type"] == "io.containerd.runc.v2"
    assert nvidia["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    assert nvidia["options"].get("SystemdCgroup", False) == runc.get("options", {}).get("SystemdCgroup", False)
    assert checks.config_dump(host)["plugins"][CRI]["containerd"]["default_runtime_name"] == "runc"


def test_cri_plugin_ok(host):
    assert checks.cri_status(host) == "ok"


def test_restarted_exactly_once(host):
    """The module restarted containerd in converge; neither idempotence nor check mode did again."""
    checks.assert_restarted_exactly_once(host)


def test_toolkit_config(host):
    cfg = host.file("/etc/nvidia-container-runtime/config.toml")
    assert cfg.is_file
    assert tomllib.loads(cfg.content_string)["nvidia-container-runtime"]["runtimes"][0] in ("docker-runc", "runc")


def test_standin_runtime_log_empty(host):
    """Nothing ran through the NVIDIA runtime yet: configuring it must not start containers."""
    assert checks.runtime_calls(host) == []


def test_pod_sandbox_before_the_role_failed_like_kubelet(host):
    """prepare.yml asked CRI for a sandbox through the nvidia handler before the role: the seed error."""
    checks.assert_seed_failure(checks.cri_before(host),
                               r'failed to get sandbox runtime: no runtime for "nvidia" is configured')


def test_pod_sandbox_through_the_nvidia_handler(host):
    """Now kubelet's RunPodSandbox(nvidia) starts a sandbox, and the stand-in runtime is what ran it."""
    checks.assert_sandbox_through_standin(checks.cri_probe_now(host))


def test_container_runs_through_standin_runtime(host):
    """The live daemon starts a container through the stand-in runtime, which logs it (runs last)."""
    checks.assert_container_runs_through_standin(host, "default-probe")
