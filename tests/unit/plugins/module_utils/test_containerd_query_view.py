"""containerd.query with the file source (no binary, no daemon): the view reads each config version's CRI
path from the rules table, follows imports, and reports a disabled CRI plugin; nothing is written."""
from __future__ import annotations

import pytest

from ansible_collections.gpuops.nvidia.plugins.module_utils import containerd as engine
from ansible_collections.gpuops.nvidia.plugins.module_utils.versions import CRI_PATHS

NCR = "/usr/bin/nvidia-container-runtime"


def handler_toml(version: int, name: str = "nvidia", default: str | None = None) -> str:
    cri = ".".join('"%s"' % p if "." in p else p for p in CRI_PATHS[version])
    text = "version = %d\n[%s.containerd]\n" % (version, cri) if version > 1 else "[%s.containerd]\n" % cri
    if default:
        text += 'default_runtime_name = "%s"\n' % default
    return text + '[%s.containerd.runtimes.%s]\nruntime_type = "io.containerd.runc.v2"\n' \
                  '[%s.containerd.runtimes.%s.options]\nBinaryName = "%s"\n' % (cri, name, cri, name, NCR)


def query(cfg, **kw):
    return engine.query(dict(config=str(cfg), config_source=["file"], containerd_path="/nonexistent/containerd", **kw))


@pytest.mark.parametrize("version", sorted(CRI_PATHS))
def test_file_view_of_each_config_version(tmp_path, version):
    cfg = tmp_path / "config.toml"
    cfg.write_text(handler_toml(version, default="nvidia"))
    before = cfg.read_bytes()
    out = query(cfg)
    view = out["view"]
    assert out["source"] == "file" and out["cri_health"] is None
    assert view["config_version"] == version and view["runtimes"]["nvidia"] == NCR
    assert view["default_runtime"] == "nvidia" and view["cri_disabled"] is False
    assert view["handlers"]["nvidia"]["options"]["BinaryName"] == NCR
    assert cfg.read_bytes() == before


def test_file_view_follows_imports_and_reports_a_disabled_cri(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "99-nvidia.toml").write_text(handler_toml(3))
    cfg = tmp_path / "config.toml"
    cfg.write_text('version = 3\nimports = ["conf.d/*.toml"]\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n')
    view = query(cfg)["view"]
    assert view["runtimes"]["nvidia"] == NCR and "runc" in view["runtimes"]   # 2.x merges the built-in runc
    assert view["default_runtime"] == "runc" and view["cri_disabled"] is True


def test_bad_version_and_no_source_are_errors_naming_the_file(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('version = "2"\n')
    with pytest.raises(engine.EngineError, match=str(cfg)):
        query(cfg)
    cfg.write_text("version = 9\n")
    with pytest.raises(engine.EngineError, match="unknown config version 9"):
        query(cfg)
    with pytest.raises(engine.EngineError, match="containerd binary"):
        engine.query(dict(config=str(cfg), config_source=["command"], containerd_path="/nonexistent/containerd"))


def test_import_patterns_one_rule_for_engine_and_facts(tmp_path):
    """Relative entries are relative to the config's folder; placeholders (MicroK8s) are replaced first."""
    cfg = str(tmp_path / "etc" / "config.toml")
    got = engine.import_patterns(["conf.d/*.toml", "/abs/x.toml", "${SNAP_DATA}/args/y.toml", 7], cfg,
                                 {"${SNAP_DATA}": "/var/snap/microk8s/current"})
    assert got == [str(tmp_path / "etc" / "conf.d" / "*.toml"), "/abs/x.toml", "/var/snap/microk8s/current/args/y.toml"]
