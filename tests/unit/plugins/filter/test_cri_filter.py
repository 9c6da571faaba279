"""The role's verify step and the module judge CRI health with one rule (gpuops.nvidia.cri_healthy calls
containerd.cri_healthy). The 2.x case the role used to accept -- the runtime plugin ok while the gRPC CRI
service kubelet talks to is missing -- is unhealthy for both."""
import pytest

from ansible_collections.gpuops.nvidia.plugins.filter.cri import FilterModule
from ansible_collections.gpuops.nvidia.plugins.module_utils import containerd, versions

HEAD = "TYPE                                   ID                       PLATFORMS      STATUS\n"
GRPC = "io.containerd.grpc.v1                  cri                      -              %s\n"
RUNTIME = "io.containerd.cri.v1                   runtime                  linux/amd64    %s\n"
OTHER = "io.containerd.snapshotter.v1           overlayfs                linux/amd64    ok\n"
cri_healthy = FilterModule().filters()["cri_healthy"]


@pytest.mark.parametrize("out,version,healthy", [
    (HEAD + OTHER + GRPC % "ok", "1.7.24", True),
    (HEAD + OTHER + GRPC % "error", "1.7.24", False),
    (HEAD + RUNTIME % "ok" + GRPC % "ok", "2.1.9", True),
    (HEAD + RUNTIME % "ok", "2.1.9", False),               # the role's old regex said ok
    (HEAD + RUNTIME % "ok" + GRPC % "skip", "2.3.4", False),
    (HEAD + RUNTIME % "error" + GRPC % "ok", "2.3.4", False),
    (HEAD + GRPC % "ok", "2.1.9", False),                  # 2.x without its runtime plugin row
    (HEAD + RUNTIME % "ok" + GRPC % "ok", None, True),
    (HEAD + RUNTIME % "ok", None, False),
    ("", "1.7.24", False),
])
def test_one_health_rule_for_module_and_role(out, version, healthy):
    assert cri_healthy(out, version) is healthy
    assert containerd.cri_healthy(containerd.parse_plugins_ls(out), versions.containerd(version)) is healthy
