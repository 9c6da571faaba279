"""containerd2: containerd 2.1 (Debian sid's package on trixie) under systemd, the role's drop-in."""
import tomllib

import checks

TOOLKIT = ["nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
           "libnvidia-container1"]
PINNED = "1.17.8-1"
CONFIG = "/etc/containerd/config.toml"
DROPIN = "/etc/containerd/conf.d/99-nvidia.toml"
CRI_RUNTIME = "io.containerd.cri.v1.runtime"   # the v3 (containerd 2.x) path of the runtimes


def _runtimes(host):
    return checks.config_dump(host)["plugins"][CRI_RUNTIME]["containerd"]["runtimes"]


def test_system_running(host):
    state = checks.system_state(host)
    assert state in ("running", "degraded"), (state, checks.failed_units(host))


def test_containerd_is_2x_from_sid_only(host):
    assert host.package("containerd").version.startswith("2."), host.package("containerd").version
    assert host.check_output("containerd --version").split()[2].lstrip("v").startswith("2.")
    # only containerd came from sid (the pin): runc is trixie's
    madison = [[c.strip() for c in line.split("|")] for line in host.check_output("apt-cache madison runc").splitlines()]
    sid_versions = {row[1] for row in madison if " sid/" in row[2]}
    assert host.package("runc").version not in sid_versions


def test_containerd_active(host):
    svc = host.service("containerd")
    assert svc.is_running and svc.is_enabled


def test_toolkit_pinned(host):
    assert checks.package_versions(host, TOOLKIT) == {p: PINNED for p in TOOLKIT}


def test_dropin_written_and_imported(host):
    dropin = host.file(DROPIN)
    assert dropin.is_file and dropin.user == "root" and dropin.mode & 0o022 == 0
    main = tomllib.loads(host.file(CONFIG).content_string)
    drop = tomllib.loads(dropin.content_string)
    assert DROPIN in main.get("imports", [])
    # an imported file's version may not be above the main file's
    assert drop.get("version", main.get("version")) <= main.get("version", 3)
    assert "nvidia" in dropin.content_string
    # the main file holds no nvidia table of its own
    assert "nvidia-container-runtime" not in host.file(CONFIG).content_string


def test_handler_in_effective_config(host):
    runtimes = _runtimes(host)
    assert "runc" in runtimes and "nvidia" in runtimes
    nvidia, runc = runtimes["nvidia"], runtimes["runc"]
    assert nvidia["runtime_type"] == "io.containerd.runc.v2"
    assert nvidia["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    assert nvidia["options"].get("SystemdCgroup", False) == runc.get("options", {}).get("SystemdCgroup", False)


def test_cri_plugin_ok(host):
    assert checks.cri_status(host) == "ok"


def test_restarted_exactly_once(host):
    """The module restarted containerd in converge; neither idempotence nor check mode did again."""
    checks.assert_restarted_exactly_once(host)


def test_standin_runtime_log_empty(host):
    """Nothing ran through the NVIDIA runtime yet: configuring it must not start containers."""
    assert checks.runtime_calls(host) == []


def test_pod_sandbox_before_the_role_failed_like_kubelet(host):
    """prepare.yml asked CRI for a sandbox through the nvidia handler before the role: the seed error
    (2.x has picked a sandbox id already and words it differently from 1.x)."""
    checks.assert_seed_failure(
        checks.cri_before(host),
        r'unable to get OCI runtime for sandbox "[0-9a-f]{64}": no runtime for "nvidia" is configured')


def test_pod_sandbox_through_the_nvidia_handler(host):
    """Now kubelet's RunPodSandbox(nvidia) starts a sandbox, and the stand-in runtime is what ran it."""
    checks.assert_sandbox_through_standin(checks.cri_probe_now(host))


def test_container_runs_through_standin_runtime(host):
    """The live daemon starts a container through the stand-in runtime, which logs it (runs last)."""
    checks.assert_container_runs_through_standin(host, "c2-probe")
