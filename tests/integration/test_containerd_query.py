"""nvidia_containerd_runtime ``state: query``, judged by the real containerd 1.7 / 2.1.

What the module returns (``view``: the handlers of the effective config; ``cri_health``: the CRI plugin of
the daemon on ``socket``) must match what the running daemon reports over gRPC CRI ``Status`` (verbose),
the same call as ``crictl info``. The role's verify step reads these keys instead of parsing configs itself.
"""
from __future__ import annotations

import pytest

from ansible_run import run_module_steps

MOD = "gpuops.nvidia.nvidia_containerd_runtime"
NCR = "/usr/bin/nvidia-container-runtime"


@pytest.fixture(params=["1.7", "2.1"])
def qbuild(request, builds):
    return builds[request.param]


def ok(result):
    assert not result["failed"], result.get("msg")
    return result


def binary_of(table):
    """A CRI Status runtime's BinaryName the way the view reports it (unset or empty -> None)."""
    return ((table or {}).get("options") or {}).get("BinaryName") or None


def test_query_matches_cri_status(qbuild, tmp_path, daemon_factory):
    """Handlers, their binaries, the default runtime and enable_cdi: as the running daemon loaded them."""
    cfg = tmp_path / "config.toml"
    cfg.write_text("version = %d\n" % qbuild.config_version)
    base = dict(config=str(cfg), containerd_path=qbuild.containerd, restart="none")
    present, = run_module_steps(MOD, [dict(base, set_as_default=True, variants=["cdi"], enable_cdi=True)])
    ok(present)
    written = cfg.read_text()
    d = daemon_factory(qbuild, str(cfg))
    status = d.cri_config()

    query, query_files, check_query = run_module_steps(MOD, [
        dict(base, state="query", socket=d.socket),
        dict(base, state="query", socket=d.socket, config_source=["file"]),
        dict(base, state="query", socket=d.socket, _check=True),
    ])
    view = ok(query)["view"]
    assert not query["changed"] and query["source"] == "command"
    assert set(view["runtimes"]) == set(status["containerd"]["runtimes"])
    for name, table in status["containerd"]["runtimes"].items():
        assert view["runtimes"][name] == binary_of(table), name
    assert view["runtimes"]["nvidia"] == NCR and view["runtimes"]["nvidia-cdi"] == NCR + ".cdi"
    assert view["default_runtime"] == status["containerd"]["defaultRuntimeName"] == "nvidia"
    assert view["enable_cdi"] is status["enableCDI"] is True
    assert view["config_version"] == qbuild.config_version and view["cri_disabled"] is False
    assert query["containerd_version"] == qbuild.version

    health = query["cri_health"]
    assert health["healthy"] is True and health["plugins"] and set(health["plugins"].values()) == {"ok"}
    assert ("io.containerd.cri.v1 runtime" in health["plugins"]) is (qbuild.major >= 2)

    # the file source reads the same handlers from the file itself
    fview = ok(query_files)["view"]
    assert query_files["source"] == "file"
    assert fview["default_runtime"] == "nvidia"
    assert fview["enable_cdi"] is ("enable_cdi = true" in written)   # 2.1's built-in default is not in the file
    for name in ("nvidia", "nvidia-cdi"):
        assert fview["runtimes"][name] == view["runtimes"][name]
    assert ok(check_query)["view"] == view
    assert cfg.read_text() == written     # read only


def test_query_reports_a_cri_plugin_that_did_not_load(qbuild, tmp_path, daemon_factory):
    """disabled_plugins names the CRI plugin: the view says so and the health is not ok, as the daemon shows."""
    cfg = tmp_path / "config.toml"
    cfg.write_text('version = %d\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n' % qbuild.config_version)
    d = daemon_factory(qbuild, str(cfg))
    assert not d.cri_ok(timeout=2)
    query, = run_module_steps(MOD, [dict(config=str(cfg), containerd_path=qbuild.containerd, state="query",
                                         socket=d.socket)])
    assert ok(query)["view"]["cri_disabled"] is True
    assert query["cri_health"]["healthy"] is False


def test_query_without_a_daemon_and_bad_input(qbuild, tmp_path):
    """Nothing on the socket: no health, the view still comes from config dump. A malformed file: the
    error names it, and nothing is written."""
    cfg = tmp_path / "config.toml"
    cfg.write_text("version = %d\n" % qbuild.config_version)
    bad = tmp_path / "bad.toml"
    bad.write_text("version = 2\n[plugins\n")
    base = dict(containerd_path=qbuild.containerd, state="query", socket=str(tmp_path / "none.sock"))
    idle, broken = run_module_steps(MOD, [dict(base, config=str(cfg)), dict(base, config=str(bad), config_source=["file"])])
    assert ok(idle)["cri_health"] is None
    assert idle["view"]["default_runtime"] == "runc" and "runc" in idle["view"]["runtimes"]
    assert broken["failed"] and str(bad) in broken["msg"]
    assert bad.read_text() == "version = 2\n[plugins\n"
