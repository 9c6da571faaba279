"""k0s_bootstrap: the k0s drop-in written before k0s exists; nothing restarted, no engine installed."""
import tomllib

import checks

TOOLKIT = ["nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
           "libnvidia-container1"]
DROPIN = "/etc/k0s/containerd.d/nvidia.toml"
CRI_V2 = "io.containerd.grpc.v1.cri"   # k0s 1.33 bundles containerd 1.7: version 2 snippets


def test_system_running(host):
    state = checks.system_state(host)
    assert state in ("running", "degraded"), (state, checks.failed_units(host))


def test_no_k0s_no_containerd(host):
    """The bootstrap case: neither k0s nor any containerd (unit or binary) is on the node."""
    assert not host.exists("k0s") and not host.file("/usr/local/bin/k0s").exists
    assert not host.exists("containerd")
    assert not host.file("/var/lib/k0s/bin/containerd").exists
    units = host.run("systemctl list-unit-files --no-legend 'containerd*' 'k0s*'").stdout
    assert units.strip() == ""


def test_dropin_at_k0s_133_version(host):
    f = host.file(DROPIN)
    assert f.is_file and f.user == "root" and f.mode & 0o022 == 0
    assert host.file("/etc/k0s/containerd.d").is_directory
    cfg = tomllib.loads(f.content_string)
    assert cfg["version"] == 2
    runtimes = cfg["plugins"][CRI_V2]["containerd"]["runtimes"]
    nvidia = runtimes["nvidia"]
    assert nvidia["runtime_type"] == "io.containerd.runc.v2"
    assert nvidia["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    # a k0s drop-in never carries imports (k0s merges the folder itself)
    assert "imports" not in cfg


def test_only_the_dropin_in_the_folder(host):
    """k0s loads every file in the folder: no backup or temp file may be left there; k0s's own config
    (/etc/k0s/containerd.toml) is k0s's to write."""
    assert host.check_output("ls -A /etc/k0s/containerd.d").split() == ["nvidia.toml"]
    assert not host.file("/etc/k0s/containerd.toml").exists


def test_toolkit_installed_and_pinned(host):
    assert checks.package_versions(host, TOOLKIT) == {p: "1.17.8-1" for p in TOOLKIT}


def test_no_toml_library_installed(host):
    """bookworm's Python 3.11 reads TOML with tomllib: the role installed no TOML library (no pip) for the modules."""
    assert host.run("python3 -c 'import tomllib'").rc == 0
    assert host.run("ls -d /usr/local/lib/python3*/dist-packages/tomlkit /usr/local/lib/python3*/dist-packages/tomli").rc != 0


def test_standin_runtime_never_called(host):
    assert checks.runtime_calls(host) == []
