"""microk8s_layout: MicroK8s' containerd template as the role leaves it when MicroK8s is not installed yet."""
import pathlib
import re
import tomllib

import checks

TEMPLATE = "/var/snap/microk8s/current/args/containerd-template.toml"
FIXTURE = pathlib.Path(__file__).resolve().parents[3] / "tests/fixtures/microk8s/containerd-template-v2-kata.toml"
CRI = 'plugins."io.containerd.grpc.v1.cri"'
PLACEHOLDER = re.compile(r"\$\{[A-Z_]+\}")


def test_system_running(host):
    state = checks.system_state(host)
    assert state in ("running", "degraded"), (state, checks.failed_units(host))


def test_no_microk8s(host):
    assert not host.file("/snap/microk8s").exists
    assert host.run("systemctl list-unit-files --no-legend 'snap.microk8s*' 'containerd*'").stdout.strip() == ""


def test_own_handler_reused_as_default(host):
    cfg = tomllib.loads(host.file(TEMPLATE).content_string)
    cri = cfg["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]
    assert cri["default_runtime_name"] == "nvidia-container-runtime"
    assert set(cri["runtimes"]) == {"runc", "nvidia-container-runtime", "kata"}   # no second handler
    binary = cri["runtimes"]["nvidia-container-runtime"]["options"]["BinaryName"]
    assert binary.endswith("/nvidia-container-runtime") and host.file(binary).exists


def test_placeholders_kept(host):
    """Every placeholder line but the default (which now names the handler) is byte for byte the fixture's."""
    text = host.file(TEMPLATE).content_string
    want = [line for line in FIXTURE.read_text().splitlines()
            if PLACEHOLDER.search(line) and "default_runtime_name" not in line]
    assert [line for line in text.splitlines() if PLACEHOLDER.search(line) and "default_runtime_name" not in line] == want
    assert '# gpuops.nvidia: replaced "${RUNTIME}"' in text
    assert "[%s.containerd.runtimes.nvidia]" % CRI not in text


def test_nothing_else_in_args(host):
    assert host.check_output("ls -A /var/snap/microk8s/current/args").split() == ["containerd-template.toml"]


def test_standin_runtime_never_called(host):
    assert checks.runtime_calls(host) == []
