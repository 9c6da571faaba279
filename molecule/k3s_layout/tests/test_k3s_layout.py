"""k3s_layout: the k3s files the role writes when k3s is not installed yet."""
import hashlib

import yaml

import checks

DROPIN = "/etc/rancher/k3s/config.yaml.d/99-nvidia.yaml"
USER_FILES = {
    "/etc/rancher/k3s/config.yaml": "# the user's k3s config (gpuops molecule k3s_layout)\n"
                                    "write-kubeconfig-mode: \"0644\"\nnode-label:\n  - gpu=true\n",
    "/etc/rancher/k3s/config.yaml.d/50-user.yaml": "# the user's k3s drop-in (gpuops molecule k3s_layout)\n"
                                                   "kubelet-arg:\n  - max-pods=150\n",
}
SEARCH_DIRS = ["/usr/local/nvidia/toolkit", "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin",
               "/sbin", "/bin"]


def test_system_running(host):
    state = checks.system_state(host)
    assert state in ("running", "degraded"), (state, checks.failed_units(host))


def test_no_k3s(host):
    assert not host.exists("k3s")
    assert host.run("systemctl list-unit-files --no-legend 'k3s*' 'containerd*'").stdout.strip() == ""


def test_default_runtime_dropin(host):
    f = host.file(DROPIN)
    assert f.is_file and f.user == "root" and f.mode & 0o022 == 0
    assert yaml.safe_load(f.content_string) == {"default-runtime": "nvidia"}


def test_user_files_untouched(host):
    for path, content in USER_FILES.items():
        f = host.file(path)
        assert f.sha256sum == hashlib.sha256(content.encode()).hexdigest(), path
        assert f.mode == 0o600
    names = sorted(host.check_output("ls -A /etc/rancher/k3s/config.yaml.d").split())
    assert names == ["50-user.yaml", "99-nvidia.yaml"]   # no backup / temp file that k3s would read


def test_no_containerd_template(host):
    """No nvidia_runtime_k3s_template_extra: no config[-v3].toml.tmpl (k3s renders the handlers itself)."""
    d = "/var/lib/rancher/k3s/agent/etc/containerd"
    assert not host.file(d + "/config.toml.tmpl").exists
    assert not host.file(d + "/config-v3.toml.tmpl").exists


def test_runtime_on_k3s_search_path(host):
    """k3s adds the nvidia handler only if it finds the binary in one of its search folders."""
    found = [d for d in SEARCH_DIRS if host.file(d + "/nvidia-container-runtime").exists]
    assert found, "nvidia-container-runtime in none of " + str(SEARCH_DIRS)
    assert host.file(found[0] + "/nvidia-container-runtime").is_executable or \
        host.file(found[0] + "/nvidia-container-runtime").is_symlink


def test_standin_runtime_never_called(host):
    assert checks.runtime_calls(host) == []
