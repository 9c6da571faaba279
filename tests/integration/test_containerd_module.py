"""nvidia_containerd_runtime run through Ansible, judged by the real containerd 1.6 / 1.7 / 2.1.

Every scenario is judged twice by the real program: ``containerd --config F config dump`` and a daemon
started on the result, asked over gRPC CRI ``Status`` (verbose) what its CRI plugin loaded.
"""
from __future__ import annotations

import os
import subprocess

import pytest
import tomlkit

import harness
from ansible_run import run_module, run_module_steps, run_playbook

MOD = "gpuops.nvidia.nvidia_containerd_runtime"
NCR = "/usr/bin/nvidia-container-runtime"
FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "containerd")


def fixture_text(name):
    """A sample config; its fixed metrics port is cleared so that daemons can run side by side."""
    with open(os.path.join(FIXTURES, name)) as f:
        return f.read().replace('"127.0.0.1:1338"', '""')


def module(build, cfg, check=False, diff=False, env=None, **args):
    a = dict(config=str(cfg), containerd_path=build.containerd, restart="none")
    a.update(args)
    return run_module(MOD, a, check=check, diff=diff, env=env)


def ok(result):
    assert not result["failed"], result.get("msg")
    return result


def dump(build, cfg):
    rc, out, err = harness.config_dump(build, cfg)
    assert rc == 0, err
    data = tomlkit.parse(out).unwrap()
    cri = data["plugins"]["io.containerd.cri.v1.runtime" if data.get("version") == 3 else "io.containerd.grpc.v1.cri"]
    return cri


def loaded(daemon_factory, build, cfg):
    """The CRI config the real daemon loaded from ``cfg`` (fails with the daemon's log if CRI did not load)."""
    d = daemon_factory(build, str(cfg))
    assert d.cri_ok(), "CRI plugin did not load:\n%s" % d.log_tail(20)
    return d.cri_config()


def handler(cri, name="nvidia"):
    return cri["containerd"]["runtimes"][name]


def assert_only_lines_added_or_marked(before, after):
    """Nothing lost: every original line is still there, in order, unless we marked it as replaced."""
    it = iter(after.splitlines())
    for line in before.splitlines():
        for cand in it:
            if cand == line or (cand.split("=")[0] == line.split("=")[0] and "# gpuops.nvidia: replaced" in cand):
                break
        else:
            raise AssertionError("line lost or reordered: %r" % line)


def present_again_absent(build, cfg, original, **args):
    """Idempotence and the exact absent round trip, through Ansible (one playbook, four runs)."""
    base = dict(config=str(cfg), containerd_path=build.containerd, restart="none")
    base.update(args)
    again, gone, gone_again = run_module_steps(MOD, [base, dict(base, state="absent"), dict(base, state="absent")])
    assert not ok(again)["changed"], again.get("diff")
    assert ok(gone)["changed"]
    if original is None:
        assert not cfg.exists()   # the module created it: absent deletes it again
    else:
        assert cfg.read_text() == original
    assert not ok(gone_again)["changed"]


# -- the seed failure: no config file -------------------------------------------------------------
def test_no_config_file(build, tmp_path, daemon_factory):
    cfg = tmp_path / "config.toml"
    r = ok(module(build, cfg))
    assert r["changed"] and r["files"] == [str(cfg)] and r["source"] == "command"
    cri = loaded(daemon_factory, build, cfg)
    assert handler(cri)["options"]["BinaryName"] == NCR
    assert cri["containerd"]["defaultRuntimeName"] == "runc" and "runc" in cri["containerd"]["runtimes"]
    assert r["low_level_runtime"] == "runc" and r["default_runtime"] == "runc"
    present_again_absent(build, cfg, None)


# -- each version's own default config, runc with SystemdCgroup = true ------------------------------
def test_config_default_with_systemd_cgroup(build, tmp_path, daemon_factory):
    original = fixture_text("default-%s-systemd.toml" % build.key)
    cfg = tmp_path / "config.toml"
    cfg.write_text(original)
    check = ok(module(build, cfg, check=True, diff=True))
    assert check["changed"] and cfg.read_text() == original          # check mode writes nothing
    r = ok(module(build, cfg, diff=True))
    assert r["diff"][0]["after"] == check["diff"][0]["after"] == cfg.read_text()   # the true diff
    assert_only_lines_added_or_marked(original, cfg.read_text())
    for cri in (dump(build, cfg), loaded(daemon_factory, build, cfg)):
        key = "SystemdCgroup"
        nv, runc = handler(cri), cri["containerd"]["runtimes"]["runc"]
        assert nv["options"][key] is True and runc["options"][key] is True
        assert nv["options"]["BinaryName"] == NCR
        assert (nv.get("runtime_type") or nv.get("runtimeType")) == "io.containerd.runc.v2"
    present_again_absent(build, cfg, original)


# -- a hand-written, commented version 2 config ------------------------------------------------------
def test_handwritten_commented_v2(build, tmp_path, daemon_factory):
    original = fixture_text("handwritten-v2.toml")
    cfg = tmp_path / "config.toml"
    cfg.write_text(original)
    ok(module(build, cfg))
    after = cfg.read_text()
    assert_only_lines_added_or_marked(original, after)
    assert [x for x in after.splitlines() if x.lstrip().startswith("#")] == \
        [x for x in original.splitlines() if x.lstrip().startswith("#")]
    cri = loaded(daemon_factory, build, cfg)
    assert cri["cni"]["confDir"] == "/etc/kubernetes/cni/net.d"
    assert handler(cri)["options"]["SystemdCgroup"] is True
    present_again_absent(build, cfg, original)


# -- drop-in on containerd < 2.1 keeps the main file's CRI settings --------------------------------------
@pytest.mark.parametrize("key", ["1.6", "1.7"])
def test_drop_in_on_1x_keeps_main_cri_settings(builds, key, tmp_path, daemon_factory):
    build = builds[key]
    original = fixture_text("handwritten-v2.toml")
    cfg = tmp_path / "config.toml"
    cfg.write_text(original)
    drop = tmp_path / "conf.d" / "99-nvidia.toml"

    # what a naive drop-in does (only our table): containerd < 2.1 drops the main file's CRI section
    naive = tmp_path / "naive" / "config.toml"
    naive.parent.mkdir()
    naive.write_text(original.replace("version = 2", 'version = 2\nimports = ["%s"]' % (tmp_path / "naive" / "d.toml"), 1))
    (tmp_path / "naive" / "d.toml").write_text(
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]\n  BinaryName = "%s"\n' % NCR)
    naive_daemon = daemon_factory(build, str(naive))
    assert not naive_daemon.cri_ok(), "a naive drop-in must break CRI on %s (field notes)" % key

    r = ok(module(build, cfg, drop_in=str(drop), set_as_default=True))
    assert any("shadowed" in w for w in r.get("warnings", []))
    assert set(r["files"]) == {str(cfg), str(drop)}
    cri = loaded(daemon_factory, build, cfg)
    assert cri["cni"]["confDir"] == "/etc/kubernetes/cni/net.d"          # main file's CRI settings kept
    assert cri["sandboxImage"] == "registry.k8s.io/pause:3.9"
    assert cri["containerd"]["defaultRuntimeName"] == "nvidia"
    assert handler(cri)["options"]["SystemdCgroup"] is True
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    present_again_absent(build, cfg, original, drop_in=str(drop), set_as_default=True)
    assert not drop.exists()


# -- version 3: a drop-in into an existing conf.d import ---------------------------------------------
def test_v3_drop_in_into_existing_conf_d(builds, tmp_path, daemon_factory):
    build = builds["2.1"]
    original = fixture_text("v3-conf-d.toml").replace("/etc/containerd/conf.d", str(tmp_path / "conf.d"))
    cfg = tmp_path / "config.toml"
    cfg.write_text(original)
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-mirrors.toml").write_text(
        'version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = "/etc/containerd/certs.d"\n')
    drop = tmp_path / "conf.d" / "99-nvidia.toml"
    r = ok(module(build, cfg, drop_in=str(drop)))
    assert r["files"] == [str(drop)] and cfg.read_text() == original     # the glob import already covers it
    d = tomlkit.parse(drop.read_text()).unwrap()
    assert d["version"] == 3 and list(d["plugins"]) == ["io.containerd.cri.v1.runtime"]
    cri = loaded(daemon_factory, build, cfg)
    assert handler(cri)["options"]["SystemdCgroup"] is True               # copied from the main file's runc
    assert cri["cdiSpecDirs"] == ["/etc/cdi", "/var/run/cdi"] and cri["enableCDI"] is True
    assert cri["cni"]["binDirs"] == ["/usr/lib/cni", "/opt/cni/bin"]      # deep merge kept the main file
    present_again_absent(build, cfg, original, drop_in=str(drop))


# -- default runtime and CDI ---------------------------------------------------------------------------
def test_set_as_default_and_enable_cdi(build, tmp_path, daemon_factory):
    original = fixture_text("default-%s.toml" % build.key)
    cfg = tmp_path / "config.toml"
    cfg.write_text(original)
    r = ok(module(build, cfg, set_as_default=True, enable_cdi=True, cdi_spec_dirs=["/etc/cdi", "/run/cdi"]))
    assert r["default_runtime"] == "nvidia"
    cri = loaded(daemon_factory, build, cfg)
    assert cri["containerd"]["defaultRuntimeName"] == "nvidia"
    if build.key == "1.6":
        assert "enableCDI" not in cri                                       # 1.6 has no CDI: said, not hidden
        assert any("CDI" in w for w in r.get("warnings", []))
    else:
        assert cri["enableCDI"] is True and cri["cdiSpecDirs"] == ["/etc/cdi", "/run/cdi"]
    # turning the default off again restores the original line, not just any value
    ok(module(build, cfg))
    assert loaded(daemon_factory, build, cfg)["containerd"]["defaultRuntimeName"] == "runc"
    present_again_absent(build, cfg, original)


# -- legacy version 1 ---------------------------------------------------------------------------------
def test_legacy_v1_file(build, tmp_path, daemon_factory):
    original = fixture_text("legacy-v1.toml")
    cfg = tmp_path / "config.toml"
    cfg.write_text(original)
    r = module(build, cfg)
    if build.major >= 2:
        assert r["failed"] and "containerd config migrate" in r["msg"]
        assert cfg.read_text() == original
        return
    ok(r)
    assert r["config_version"] == 1
    assert "[plugins.cri.containerd.runtimes.nvidia]" in cfg.read_text().replace('"', "")
    cri = loaded(daemon_factory, build, cfg)
    assert handler(cri)["options"]["BinaryName"] == NCR
    present_again_absent(build, cfg, original)


# -- custom name and path, crun as the default ----------------------------------------------------------
def test_custom_name_and_path_with_crun_default(build, tmp_path, daemon_factory):
    original = fixture_text("crun-default-v2.toml")
    cfg = tmp_path / "config.toml"
    cfg.write_text(original)
    args = dict(runtime_name="gpu", runtime_path="/opt/nvidia/bin/ncr", variants=["cdi", "legacy"])
    r = ok(module(build, cfg, **args))
    assert r["runtimes"] == ["gpu", "gpu-cdi", "gpu-legacy"]
    assert r["low_level_runtime"] == "/usr/bin/crun"
    cri = loaded(daemon_factory, build, cfg)
    assert cri["containerd"]["defaultRuntimeName"] == "crun"
    crun = cri["containerd"]["runtimes"]["crun"]
    for name, suffix in (("gpu", ""), ("gpu-cdi", ".cdi"), ("gpu-legacy", ".legacy")):
        h = handler(cri, name)
        assert h["options"]["BinaryName"] == "/opt/nvidia/bin/ncr" + suffix
        assert h["options"]["SystemdCgroup"] == crun["options"]["SystemdCgroup"]
        assert crun["options"]["SystemdCgroup"] is True
        assert h["PodAnnotations"] == crun["PodAnnotations"] == ["run.oci.*"]
    present_again_absent(build, cfg, original, **args)


# -- a stale nvidia entry ---------------------------------------------------------------------------------
def test_stale_nvidia_entry_is_updated_in_place(build, tmp_path, daemon_factory):
    original = fixture_text("stale-nvidia-v2.toml")
    cfg = tmp_path / "config.toml"
    cfg.write_text(original)
    before = loaded(daemon_factory, build, cfg)
    assert handler(before)["options"]["BinaryName"] != NCR
    ok(module(build, cfg))
    # the operator's table is patched key by key, each edit recording what it replaced
    assert 'BinaryName = "/usr/bin/nvidia-container-runtime"  # gpuops.nvidia: replaced "/usr/local/nvidia/' in cfg.read_text()
    cri = loaded(daemon_factory, build, cfg)
    runc = cri["containerd"]["runtimes"]["runc"]
    assert handler(cri)["options"]["BinaryName"] == NCR
    assert handler(cri)["options"]["SystemdCgroup"] == runc["options"]["SystemdCgroup"]
    assert cri["containerd"]["defaultRuntimeName"] in cri["containerd"]["runtimes"]
    assert not ok(module(build, cfg))["changed"]
    ok(module(build, cfg, state="absent"))
    assert cfg.read_text() == original       # absent gives the table back as it was
    cri = loaded(daemon_factory, build, cfg)
    assert handler(cri)["options"]["BinaryName"] == handler(before)["options"]["BinaryName"]
    assert cri["containerd"]["defaultRuntimeName"] in cri["containerd"]["runtimes"]
    assert not ok(module(build, cfg, state="absent"))["changed"]


# -- Docker's containerd.io: CRI disabled --------------------------------------------------------------
def test_docker_containerd_io_without_and_with_enable_cri(build, tmp_path, daemon_factory):
    original = fixture_text("docker-containerd-io.toml")
    cfg = tmp_path / "config.toml"
    cfg.write_text(original)
    if build.major >= 2:
        r = module(build, cfg)
        assert r["failed"] and "containerd config migrate" in r["msg"]      # a version 1 file
        return
    r = ok(module(build, cfg))
    assert any("enable_cri: true" in w for w in r.get("warnings", []))
    assert not daemon_factory(build, str(cfg)).cri_ok()                     # still disabled, as warned
    r = ok(module(build, cfg, enable_cri=True))
    assert not any("enable_cri" in w for w in r.get("warnings", []))
    cri = loaded(daemon_factory, build, cfg)
    assert handler(cri)["options"]["BinaryName"] == NCR
    present_again_absent(build, cfg, original, enable_cri=True)


# -- bad input: a clear error and not a byte changed -------------------------------------------------------
@pytest.mark.parametrize("text,msg", [
    ("version = 2\n[plugins\n", r"malformed TOML in .*config\.toml:2"),
    ('version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  runtimes = "runc"\n', "must be a table"),
    ("version = 9\n", "unknown config version 9"),
    ('version = "2"\n', "version must be an integer"),
])
def test_bad_input_through_ansible(builds, tmp_path, text, msg):
    import re
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    r = module(builds["1.7"], cfg)
    assert r["failed"] and re.search(msg, r["msg"]), r["msg"]
    assert cfg.read_text() == text and os.listdir(tmp_path) == ["config.toml"]


def test_validation_rejected_by_containerd_shows_its_message(builds, tmp_path):
    text = 'version = 2\noom_score = "high"\n'      # valid TOML, not a valid containerd config
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    r = module(builds["1.7"], cfg)
    assert r["failed"] and "containerd rejected the new config" in r["msg"]
    assert "oom_score" in r["msg"] or "int" in r["msg"]
    assert cfg.read_text() == text


def test_missing_binary(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("version = 2\n")
    r = run_module(MOD, dict(config=str(cfg), containerd_path="/nonexistent/containerd", restart="none"))
    assert r["failed"] and "not found" in r["msg"] and "validate: false" in r["msg"]
    assert cfg.read_text() == "version = 2\n"
    # bootstrap: no binary and no file yet -> written, validation skipped with a warning
    fresh = tmp_path / "fresh" / "config.toml"
    r = run_module(MOD, dict(config=str(fresh), containerd_path="/nonexistent/containerd", restart="none"))
    assert not r["failed"] and r["changed"] and fresh.exists()
    assert any("validation skipped" in w for w in r.get("warnings", []))


def test_unwritable_path(builds, tmp_path):
    d = tmp_path / "etc"
    d.mkdir()
    cfg = d / "config.toml"
    cfg.write_text("version = 2\n")
    subprocess.run(["chattr", "+i", str(d)], check=True)
    try:
        check = module(builds["1.7"], cfg, check=True)
        r = module(builds["1.7"], cfg)
    finally:
        subprocess.run(["chattr", "-i", str(d)], check=True)
    assert r["failed"] and "not writable" in r["msg"]
    # check mode promises nothing the real run cannot do: the same error, not "changed"
    assert check["failed"] and check["msg"] == r["msg"] and not check["changed"]
    assert cfg.read_text() == "version = 2\n" and os.listdir(d) == ["config.toml"]


def test_immutable_file_check_mode_reports_the_real_error(builds, tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("version = 2\n")
    subprocess.run(["chattr", "+i", str(cfg)], check=True)
    try:
        check = module(builds["1.7"], cfg, check=True)
        r = module(builds["1.7"], cfg)
    finally:
        subprocess.run(["chattr", "-i", str(cfg)], check=True)
    assert r["failed"] and check["failed"] and check["msg"] == r["msg"], (check.get("msg"), r.get("msg"))
    assert cfg.read_text() == "version = 2\n"


def test_symlink_mode_and_owner_are_kept(builds, tmp_path, daemon_factory):
    real = tmp_path / "real" / "config.toml"
    real.parent.mkdir()
    real.write_text(fixture_text("default-1.7-systemd.toml"))
    os.chmod(real, 0o600)
    os.chown(real, 0, 4)
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    ok(module(builds["1.7"], link))
    assert link.is_symlink() and os.readlink(link) == str(real)
    st = os.stat(real)
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o600, 0, 4)
    assert handler(loaded(daemon_factory, builds["1.7"], link))["options"]["BinaryName"] == NCR


def test_a_node_python_without_tomlkit_runs_the_module(tmp_path):
    """No module needs tomlkit (issue 13): the system Python (3.11+: tomllib) without it configures the file.
    Nodes without any TOML reader, and the distributions' readers: test_node_pythons.py."""
    if subprocess.run(["/usr/bin/python3", "-c", "import tomlkit"], capture_output=True, check=False).returncode == 0:
        pytest.skip("/usr/bin/python3 has tomlkit")
    cfg = tmp_path / "config.toml"
    playbook = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: /usr/bin/python3
  tasks:
    - gpuops.nvidia.nvidia_containerd_runtime:
        config: %s
        config_source: [file]
        config_version: 2
        containerd_path: /nonexistent/containerd
        validate: false
        restart: none
""" % cfg
    rc, out, err = run_playbook(playbook)
    assert rc == 0, out + err
    assert 'runtimes.nvidia]' in cfg.read_text()


def test_signal_restart_with_nothing_running_writes_nothing(builds, tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("version = 2\n")
    r = module(builds["1.7"], cfg, restart="signal", socket=str(tmp_path / "nothing.sock"))
    assert r["failed"] and "nothing listens" in r["msg"] and "nothing was written" in r["msg"]
    assert cfg.read_text() == "version = 2\n"


@pytest.mark.parametrize("layout", ["k0s", "stock"])
def test_bootstrap_then_installed_changes_nothing(build, tmp_path, daemon_factory, layout):
    """Written before the runtime exists (no binary: the built-in runc is copied), then run again once it
    is installed (real binary and, for k0s, the files k0s generates): nothing may change, so nothing
    restarts."""
    from k0s_layout import K0sLayout
    version = "3" if build.major >= 2 else "2"
    if layout == "k0s":
        k0s = K0sLayout(build, pause_image="registry.k8s.io/pause:3.10")
        main, drop = k0s.config, k0s.dropin_dir / "nvidia.toml"
        args = dict(config=str(main), drop_in=str(drop), manage_imports=False, restart="none", config_version=version)
    else:
        main, drop = tmp_path / "config.toml", None
        args = dict(config=str(main), restart="none", config_version=version)
    try:
        first = run_module(MOD, dict(args, containerd_path="/nonexistent/containerd"))
        assert ok(first)["changed"]
        written = (drop or main).read_text()
        if layout == "k0s":
            k0s.setup_config()      # k0s installed: it writes its config from the drop-in folder
            assert not k0s.preflight()
        again = ok(run_module(MOD, dict(args, containerd_path=build.containerd)))
        assert not again["changed"], again.get("diff")
        assert (drop or main).read_text() == written
        if layout == "stock":
            assert handler(loaded(daemon_factory, build, main))["options"]["BinaryName"] == NCR
    finally:
        if layout == "k0s":
            k0s.cleanup()


# -- a handler the operator tuned keeps its settings (judged by the CRI plugin) -------------------------
def tuned(build):
    """The build's own `config default` (runc SystemdCgroup = true) plus the operator's GPU handler with
    privileged_without_host_devices and pod_annotations set, and an outdated BinaryName."""
    text = fixture_text("default-%s-systemd.toml" % build.key)
    cri = "'io.containerd.cri.v1.runtime'" if build.major >= 2 else '"io.containerd.grpc.v1.cri"'
    return text + (
        "\n# the operator's GPU handler\n"
        "[plugins.%s.containerd.runtimes.nvidia]\n"
        "  runtime_type = \"io.containerd.runc.v2\"\n"
        "  privileged_without_host_devices = true\n"
        "  pod_annotations = [\"nvidia.cdi.k8s.io/*\"]\n"
        "  [plugins.%s.containerd.runtimes.nvidia.options]\n"
        "    BinaryName = \"/usr/local/nvidia/toolkit/nvidia-container-runtime\"\n" % (cri, cri))


@pytest.mark.parametrize("mode", ["in-place", "drop-in"])
def test_tuned_handler_keeps_its_settings_in_the_cri_plugin(build, tmp_path, daemon_factory, mode):
    if build.major < 2 and mode == "drop-in":
        pytest.skip("1.x: a drop-in carries a copy of the CRI section; the in-place case is the one that matters")
    original = tuned(build)
    cfg = tmp_path / "config.toml"
    cfg.write_text(original)
    extra = {"drop_in": str(tmp_path / "conf.d" / "99-nvidia.toml")} if mode == "drop-in" else {}
    ok(module(build, cfg, **extra))
    cri = loaded(daemon_factory, build, cfg)
    nv = handler(cri)
    assert nv["options"]["BinaryName"] == NCR
    assert nv["options"]["SystemdCgroup"] is True                   # follows runc, as the kubelet needs
    assert nv.get("privileged_without_host_devices", nv.get("privilegedWithoutHostDevices")) is True
    assert (nv.get("PodAnnotations") or nv.get("podAnnotations") or nv.get("pod_annotations")) == ["nvidia.cdi.k8s.io/*"]
    present_again_absent(build, cfg, original, **extra)
    assert handler(loaded(daemon_factory, build, cfg))["options"]["BinaryName"] == "/usr/local/nvidia/toolkit/nvidia-container-runtime"


# -- a UTF-8 byte order mark: handled the way the target binary does --------------------------------------
def test_bom_kept_where_containerd_reads_it_and_named_where_it_does_not(build, tmp_path, daemon_factory):
    original = "\ufeff" + fixture_text("default-%s-systemd.toml" % build.key)
    cfg = tmp_path / "config.toml"
    cfg.write_text(original)
    r = module(build, cfg)
    if build.major >= 2:      # 2.x refuses a BOM (the real binary says so): the module names it, writes nothing
        assert r["failed"] and "byte order mark" in r["msg"], r.get("msg")
        assert cfg.read_text() == original
        return
    ok(r)
    assert cfg.read_text().startswith("\ufeff")
    assert handler(loaded(daemon_factory, build, cfg))["options"]["BinaryName"] == NCR
    present_again_absent(build, cfg, original)
