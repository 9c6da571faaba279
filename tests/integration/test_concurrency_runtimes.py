"""The runtime modules under concurrent runs (issue 10, item 1): nvidia_containerd_runtime (like the CRI-O and
Docker modules, through the same fileops.locked) holds its files' locks from reading to the end of the restart, so
a second run at the same moment waits, then reads what the first wrote -- one run changes the file, the other reports no change, and
neither fails with "changed since it was read". Real processes started together on a signal (see
test_concurrency.py for the machinery); bounded waits, nothing timed.
"""
import pytest

from test_concurrency import result_of, start_module

pytestmark = pytest.mark.integration
TRIALS = 5

CONTAINERD_V2 = """version = 2

[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"

  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = true
"""


def race(collections_path, folder, module, args):
    procs = [start_module(collections_path, folder, "run%d" % i, args, module) for i in range(2)]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    return [result_of(p) for p in procs]


def test_containerd_module_two_runs_at_once(tmp_path, collections_path):
    single = None
    for trial in range(TRIALS):
        folder = tmp_path / ("trial%d" % trial)
        config = folder / "etc" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text(CONTAINERD_V2)
        args = {"config": str(config), "containerd_path": "/nonexistent/containerd", "config_source": ["file"],
                "validate": False, "restart": "none", "variants": ["cdi"], "set_as_default": True}
        results = race(collections_path, folder, "nvidia_containerd_runtime", args)
        assert not any(r.get("failed") for r in results), [r.get("msg") for r in results]
        assert sorted(r["changed"] for r in results) == [False, True], results
        text = config.read_text()
        single = single or text
        assert text == single and 'BinaryName = "/usr/bin/nvidia-container-runtime.cdi"' in text
