"""crio_layout: the CRI-O drop-in the role writes when CRI-O is not installed (its packaged config is)."""
import hashlib
import tomllib

import checks

CONF_D = "/etc/crio/crio.conf.d"
DROPIN = CONF_D + "/99-nvidia.toml"
PACKAGED = CONF_D + "/10-crio.conf"


def test_system_running(host):
    state = checks.system_state(host)
    assert state in ("running", "degraded"), (state, checks.failed_units(host))


def test_no_crio(host):
    assert not host.exists("crio")
    assert host.run("systemctl list-unit-files --no-legend 'crio*'").stdout.strip() == ""


def test_dropin_copies_default_runtime(host):
    f = host.file(DROPIN)
    assert f.is_file and f.user == "root" and f.mode & 0o022 == 0
    runtimes = tomllib.loads(f.content_string)["crio"]["runtime"]["runtimes"]
    crun = tomllib.loads(host.file(PACKAGED).content_string)["crio"]["runtime"]["runtimes"]["crun"]
    nvidia = runtimes["nvidia"]
    assert nvidia["runtime_path"] == "/usr/bin/nvidia-container-runtime"
    assert nvidia.get("runtime_type", "oci") == "oci"
    # a copy of the default runtime's whole table (crun: monitor, annotations...), in its own state folder
    assert nvidia["monitor_path"] == crun["monitor_path"]
    assert nvidia["allowed_annotations"] == crun["allowed_annotations"]
    assert nvidia["runtime_root"] != crun["runtime_root"]
    assert nvidia["runtime_root"].startswith("/run/crun")
    assert "inherit_default_runtime" not in nvidia
    # the default is untouched
    assert "default_runtime" not in tomllib.loads(f.content_string)["crio"].get("runtime", {})


def test_packaged_config_untouched(host):
    content = host.file(PACKAGED).content_string
    assert 'default_runtime = "crun"' in content and "nvidia" not in content


def test_nothing_else_in_conf_d(host):
    """CRI-O loads every file under crio.conf.d, recursively: no backup or temp file may be left there."""
    files = sorted(host.check_output("find %s -mindepth 1", CONF_D).split())
    assert files == [PACKAGED, DROPIN]
    assert not host.file("/etc/crio/crio.conf").exists or "nvidia" not in host.file("/etc/crio/crio.conf").content_string


def test_packaged_hash_stable(host):
    """Byte-identical to what prepare wrote."""
    out = host.check_output("sha256sum %s", PACKAGED).split()[0]
    assert out == hashlib.sha256(host.file(PACKAGED).content_string.encode()).hexdigest()


def test_standin_runtime_never_called(host):
    assert checks.runtime_calls(host) == []
