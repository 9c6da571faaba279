"""containerd 2.0 -> 2.3 (config version 4), the rules table, k0s per release, and handler tables that keep
what their owner set.

No 2.0/2.2/2.3 build is in the Debian archive: these tests use the real outputs of 2.0.11, 2.2.7 and 2.3.4
(tests/fixtures/containerd/default-<v>.toml = `config default`, dump-<v>-*.toml = `config dump`), through a
runner that answers `--version` and `config dump` the way those builds did. The rules are checked against
those outputs first, so a wrong row in the table fails here. 1.6/1.7/2.1 are judged by the real daemons in
tests/integration.
"""
import glob
import os
import re
import stat

import pytest
import tomlkit

from ansible_collections.gpuops.nvidia.plugins.module_utils import containerd as engine
from ansible_collections.gpuops.nvidia.plugins.module_utils import versions
from ansible_collections.gpuops.nvidia.tests.unit.plugins.module_utils.test_containerd_engine import write_plan
from ansible_run import REPO_ROOT

CRI2 = ("plugins", "io.containerd.grpc.v1.cri")
CRI3 = ("plugins", "io.containerd.cri.v1.runtime")
NEW = ["2.0.11", "2.2.7", "2.3.4"]
FIXTURES = str(REPO_ROOT / "tests" / "fixtures" / "containerd")


def fx(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return f.read()


def data(text):
    return tomlkit.parse(text).unwrap()


def get(d, *path):
    for p in path:
        d = d.get(p) if isinstance(d, dict) else None
    return d


class FakeContainerd(object):
    """A binary on disk (so the engine finds it) and a runner answering as a real build did: ``--version``,
    and ``config dump`` from ``dumps`` (text of the config -> dump text; default: the build's empty dump)."""

    def __init__(self, tmp_path, version, dumps=None):
        self.version = version
        self.path = str(tmp_path / "bin" / "containerd")
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path, "w") as f:
            f.write("#!/bin/sh\nexit 1\n")
        os.chmod(self.path, stat.S_IRWXU)
        self.dumps = dumps or (lambda text: fx("dump-%s-empty.toml" % version))
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv)
        if argv[1:] == ["--version"]:
            return 0, "containerd github.com/containerd/containerd/v2 v%s 0123abcd\n" % self.version, ""
        if argv[-2:] == ["config", "dump"]:
            with open(argv[argv.index("--config") + 1]) as f:
                text = f.read()
            for entry in data(text).get("imports") or []:     # what the build would load with it
                for path in sorted(glob.glob(entry)):
                    with open(path) as f:
                        text += "\n" + f.read()
            return 0, self.dumps(text), ""
        return 1, "", "unexpected call %r" % (argv,)


def plan(tmp_path, binary, text=None, apply=True, **opts):
    cfg = tmp_path / "etc" / "config.toml"
    os.makedirs(str(cfg.parent), exist_ok=True)
    if text is not None and not cfg.exists():
        cfg.write_text(text)
    o = dict(config=str(cfg), containerd_path=binary.path, config_source=["command", "file"])
    o.update(opts)
    p = engine.plan(o, runner=binary)
    if apply:
        write_plan(p)
    return p


# -- the rules table, checked against the real outputs ------------------------------------------
@pytest.mark.parametrize("version", NEW)
def test_rules_match_what_each_build_writes(version):
    default = data(fx("default-%s.toml" % version))
    rules = versions.containerd(version)
    assert rules.default_config_version == default["version"]
    assert rules.default_imports == default["imports"]
    assert rules.imports_deep_merge is True and rules.file_runtimes_replace_builtin is False
    # the CRI runtime tables are where the rules say for the version this build writes
    assert get(default, *versions.CRI_PATHS[default["version"]], "containerd", "runtimes", "runc", "runtime_type")


@pytest.mark.parametrize("version", NEW)
def test_deep_merge_rule_matches_the_real_dump(version):
    """The real dump of a v3 main file (runc SystemdCgroup = true) plus a drop-in holding only the nvidia
    table: both runtimes served, the main file's settings kept -- what `imports_deep_merge` says."""
    dump = data(fx("dump-%s-v3-main-plus-nvidia-dropin.toml" % version))
    rt = get(dump, *versions.CRI_PATHS[dump["version"]], "containerd", "runtimes")
    assert rt["nvidia"]["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    assert rt["runc"]["options"]["SystemdCgroup"] is True
    assert versions.containerd(version).imports_deep_merge


def test_rules_before_2_0_and_unknown():
    for v in ("1.6.20", "1.7.24"):
        r = versions.containerd(v)
        assert (r.max_config_version, r.imports_deep_merge, r.file_runtimes_replace_builtin) == (2, False, True)
        assert r.auto_layout() == "in_place"
    assert versions.containerd("2.0.0").auto_layout() == "drop_in"
    assert not versions.containerd("1.6.20").cdi and versions.containerd("1.7.0").cdi
    unknown = versions.containerd(None)
    assert unknown.check_config_version(4, "f") is None and unknown.guess_for_file(4).max_config_version == 4
    assert "unknown config version 5" in unknown.check_config_version(5, "f")


# -- config version 4 (containerd 2.3) -----------------------------------------------------------
@pytest.mark.parametrize("version,cv", [("2.0.11", 3), ("2.2.7", 3), ("2.3.4", 4)])
def test_missing_file_gets_what_config_default_writes(tmp_path, version, cv):
    b = FakeContainerd(tmp_path, version)
    p = plan(tmp_path, b, None)
    after = data(p.files[0].after)
    assert p.config_version == after["version"] == cv
    assert get(after, *CRI3, "containerd", "runtimes", "nvidia", "options", "BinaryName") == "/usr/bin/nvidia-container-runtime"
    # absent removes what it created (nothing was there)
    p = plan(tmp_path, b, None, state="absent")
    assert not os.path.exists(p.main_path)


@pytest.mark.parametrize("layout", ["in_place", "auto"])
def test_2_3_config_default_round_trip(tmp_path, layout):
    """present -> second run changes nothing -> absent gives the original bytes, on 2.3.4's own
    `config default` (version 4), in place and with layout auto (a drop-in on 2.3)."""
    drop = str(tmp_path / "etc" / "conf.d" / "99-nvidia.toml")
    original = fx("default-2.3.4.toml").replace("/etc/containerd/conf.d/", str(tmp_path / "etc" / "conf.d") + "/")
    b = FakeContainerd(tmp_path, "2.3.4")
    p = plan(tmp_path, b, original, layout=layout, drop_in=drop)
    assert p.changed and p.config_version == 4
    assert p.layout == ("drop_in" if layout == "auto" else "in_place")
    if layout == "auto":
        text = open(drop).read()
        d = data(text)
        # the main file's version, only our tables, no copy of the CRI section and no shadowing warning
        assert d["version"] == 4 and p.copies_cri_section is False
        assert set(get(d, *CRI3, "containerd", "runtimes")) == {"nvidia"}
        assert not any("shadowed" in w for w in p.warnings)
        # the main file's glob already covers the drop-in: the main file is not touched
        assert open(p.main_path).read() == original
    else:
        d = data(open(p.main_path).read())
        assert get(d, *CRI3, "containerd", "runtimes", "nvidia", "options", "BinaryName")
    again = plan(tmp_path, b, original, layout=layout, drop_in=drop)
    assert not again.changed
    plan(tmp_path, b, original, layout=layout, drop_in=drop, state="absent")
    assert open(p.main_path).read() == original
    assert not os.path.exists(drop)


@pytest.mark.parametrize("version", NEW)
def test_validation_reads_the_dump_with_its_own_version(tmp_path, version):
    """The real dump of main + nvidia drop-in (2.3.4 prints version 4): validation finds the handler."""
    dump = fx("dump-%s-v3-main-plus-nvidia-dropin.toml" % version)
    b = FakeContainerd(tmp_path, version, dumps=lambda text: dump if "nvidia-container-runtime" in text else fx("dump-%s-empty.toml" % version))
    main = fx("default-%s.toml" % version).replace("version = 4", "version = 3") if version == "2.3.4" else fx("default-%s.toml" % version)
    p = plan(tmp_path, b, main, apply=False, drop_in=str(tmp_path / "etc" / "conf.d" / "99-nvidia.toml"))
    engine.validate(p, dict(engine.DEFAULTS, config=p.main_path, drop_in=str(tmp_path / "etc" / "conf.d" / "99-nvidia.toml")),
                    b.path, runner=b)


def test_v4_file_on_2_2_is_refused_naming_file_and_binary(tmp_path):
    b = FakeContainerd(tmp_path, "2.2.7")
    text = fx("default-2.3.4.toml")
    with pytest.raises(engine.EngineError, match=r"config\.toml: config version 4 needs a newer containerd: containerd 2\.2\.7 loads versions up to 3"):
        plan(tmp_path, b, text)
    assert open(str(tmp_path / "etc" / "config.toml")).read() == text


def test_unknown_future_version_names_file_and_binary(tmp_path):
    b = FakeContainerd(tmp_path, "2.3.4")
    with pytest.raises(engine.EngineError, match=r"config\.toml: unknown config version 5 .*containerd 2\.3\.4"):
        plan(tmp_path, b, "version = 5\n")
    with pytest.raises(engine.EngineError, match="config_version must be auto or one of 1, 2, 3, 4"):
        plan(tmp_path, b, "version = 3\n", config_version="5")


@pytest.mark.parametrize("version", NEW)
def test_drop_in_carries_the_main_file_version(tmp_path, version):
    """A v2 main file (Debian's packaged config) on 2.x: the drop-in says version 2 too -- a v3 drop-in
    there is refused by 2.3.0-2.3.4 and silently drops the main file's CRI settings on 2.0/2.2."""
    b = FakeContainerd(tmp_path, version)
    main = 'version = 2\n\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n'
    drop = str(tmp_path / "etc" / "conf.d" / "99-nvidia.toml")
    p = plan(tmp_path, b, main, layout="auto", drop_in=drop, config_source=["file"])
    d = data(open(drop).read())
    assert d["version"] == 2 and p.layout == "drop_in"
    nvidia = get(d, *CRI2, "containerd", "runtimes", "nvidia")
    assert nvidia["options"]["SystemdCgroup"] is True     # copied from the main file's runc
    assert not any("shadowed" in w for w in p.warnings)


def test_2_0_drop_in_holds_only_our_tables(tmp_path):
    """Imports deep-merge since 2.0.0 (not 2.1): no copy of the CRI section, no warning."""
    b = FakeContainerd(tmp_path, "2.0.11")
    main = fx("default-2.0.11.toml")
    drop = str(tmp_path / "etc" / "conf.d" / "99-nvidia.toml")
    p = plan(tmp_path, b, main, drop_in=drop)
    d = data(open(drop).read())
    assert list(get(d, *CRI3)) == ["containerd"] and list(get(d, *CRI3, "containerd", "runtimes")) == ["nvidia"]
    assert p.copies_cri_section is False and not p.warnings
    assert data(open(p.main_path).read())["imports"] == [drop]   # 2.0's default has imports = []


def test_1_x_drop_in_still_copies_the_cri_section(tmp_path):
    b = FakeContainerd(tmp_path, "1.7.24", dumps=lambda text: fx("default-1.7.toml"))
    drop = str(tmp_path / "etc" / "conf.d" / "99-nvidia.toml")
    p = plan(tmp_path, b, fx("default-1.7.toml"), drop_in=drop, config_source=["file"])
    assert p.copies_cri_section is True and any("shadowed" in w for w in p.warnings)
    assert plan(tmp_path, b, fx("default-1.7.toml"), drop_in=drop, layout="auto", apply=False, config_source=["file"]).layout == "in_place"


def test_cri_health_rule_per_major():
    r1, r2 = versions.containerd("1.7.24"), versions.containerd("2.3.4")
    ok1 = {"io.containerd.grpc.v1 cri": "ok"}
    ok2 = {"io.containerd.grpc.v1 cri": "ok", "io.containerd.cri.v1 runtime": "ok"}
    assert engine.cri_healthy(ok1, r1) and engine.cri_healthy(ok2, r2)
    # 2.x: the runtime plugin ok alone is not healthy (the gRPC service kubelet talks to is missing)
    assert not engine.cri_healthy({"io.containerd.cri.v1 runtime": "ok"}, r2)
    assert not engine.cri_healthy({"io.containerd.grpc.v1 cri": "ok", "io.containerd.cri.v1 runtime": "error"}, r2)
    assert not engine.cri_healthy({}, r1) and not engine.cri_healthy(None, r1)


# -- handler tables keep what their owner set ---------------------------------------------------
TUNED = {
    "1.7.24": ("default-1.7.toml", CRI2),
    "2.1.9": ("default-2.1.toml", CRI3),
    "2.3.4": ("default-2.3.4.toml", CRI3),
}


def tuned_config(name, cri):
    text = fx(name)
    q = '"' if cri == CRI2 else "'"
    head = "[plugins.%s%s%s.containerd.runtimes.nvidia]" % (q, cri[1], q)
    return text + ("\n# the operator's GPU handler\n%s\n  runtime_type = %sio.containerd.runc.v2%s\n"
                   "  privileged_without_host_devices = true\n  pod_annotations = [%snvidia.cdi.k8s.io/*%s]\n"
                   "  base_runtime_spec = %s/etc/containerd/gpu-spec.json%s\n\n%s\n"
                   "  [plugins.%s%s%s.containerd.runtimes.nvidia.options]\n    BinaryName = %s/usr/local/bin/nvidia-container-runtime%s\n"
                   "    Root = %s/run/gpu-runc%s  # operator's\n"
                   % (head, q, q, q, q, q, q, "", q, cri[1], q, q, q, q, q))


@pytest.mark.parametrize("version", sorted(TUNED))
def test_tuned_handler_keeps_owner_keys_and_absent_restores_it(tmp_path, version):
    name, cri = TUNED[version]
    text = tuned_config(name, cri)
    b = FakeContainerd(tmp_path, version)
    p = plan(tmp_path, b, text, config_source=["file"], set_as_default=False)
    after = open(p.main_path).read()
    nv = get(data(after), *cri, "containerd", "runtimes", "nvidia")
    assert nv["privileged_without_host_devices"] is True
    assert nv["pod_annotations"] == ["nvidia.cdi.k8s.io/*"]
    assert nv["base_runtime_spec"] == "/etc/containerd/gpu-spec.json"
    assert nv["options"]["Root"] == "/run/gpu-runc"
    assert nv["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    runc = get(data(after), *cri, "containerd", "runtimes", "runc")
    assert nv["options"].get("SystemdCgroup", False) == runc["options"].get("SystemdCgroup", False)
    # only the lines we own changed, and each says what it was
    changed = [x for x in after.splitlines() if x not in text.splitlines()]
    assert changed and all("gpuops.nvidia:" in x for x in changed), changed
    assert not plan(tmp_path, b, text, config_source=["file"]).changed
    plan(tmp_path, b, text, config_source=["file"], state="absent")
    assert open(p.main_path).read() == text


def test_tuned_handler_systemd_cgroup_follows_the_wrapped_runtime(tmp_path):
    text = tuned_config("default-1.7-systemd.toml", CRI2)
    b = FakeContainerd(tmp_path, "1.7.24")
    p = plan(tmp_path, b, text, config_source=["file"])
    nv = get(data(open(p.main_path).read()), *CRI2, "containerd", "runtimes", "nvidia", "options")
    assert nv["SystemdCgroup"] is True and nv["Root"] == "/run/gpu-runc"
    plan(tmp_path, b, text, config_source=["file"], state="absent")
    assert open(p.main_path).read() == text


def test_tuned_handler_in_main_file_drop_in_carries_only_the_difference(tmp_path):
    """2.x deep-merges the drop-in over the main file's table: the drop-in must not reset the operator's keys."""
    text = tuned_config("default-2.1.toml", CRI3).replace("imports = []", "imports = []")
    b = FakeContainerd(tmp_path, "2.1.9", dumps=lambda t: fx("default-2.1.toml"))
    drop = str(tmp_path / "etc" / "conf.d" / "99-nvidia.toml")
    plan(tmp_path, b, text, drop_in=drop, config_source=["file"])
    nv = get(data(open(drop).read()), *CRI3, "containerd", "runtimes", "nvidia")
    assert nv["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    for key in ("privileged_without_host_devices", "pod_annotations", "base_runtime_spec", "runtime_type"):
        assert key not in nv, key
    assert "Root" not in nv["options"]
    merged = engine.deep_merge(data(open(str(tmp_path / "etc" / "config.toml")).read()), data(open(drop).read()))
    owner = get(merged, *CRI3, "containerd", "runtimes", "nvidia")
    assert owner["privileged_without_host_devices"] is True and owner["pod_annotations"] == ["nvidia.cdi.k8s.io/*"]
    assert owner["options"]["Root"] == "/run/gpu-runc"


def test_dotted_key_handler_absent_fails_saying_why(tmp_path):
    text = ('version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes]\n'
            'nvidia.runtime_type = "io.containerd.runc.v2"\nnvidia.options.BinaryName = "/usr/bin/nvidia-container-runtime"\n')
    b = FakeContainerd(tmp_path, "1.7.24")
    with pytest.raises(engine.EngineError, match="dotted keys or an inline table"):
        plan(tmp_path, b, text, config_source=["file"], state="absent")
    inline = ('version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes]\n'
              'nvidia = { runtime_type = "io.containerd.runc.v2" }\n')
    (tmp_path / "etc" / "config.toml").write_text(inline)
    with pytest.raises(engine.EngineError, match="dotted keys or an inline table"):
        plan(tmp_path, b, inline, config_source=["file"], state="absent")


# -- argument checks name the option ------------------------------------------------------------
@pytest.mark.parametrize("opts,msg", [
    ({"runtime_name": ""}, "runtime_name '' is not a valid handler name"),
    ({"runtime_name": "nv\nidia"}, "runtime_name 'nv\\\\nidia' is not a valid handler name"),
    ({"runtime_name": "Nvidia"}, "runtime_name 'Nvidia'"),
    ({"runtime_path": "nvidia-container-runtime"}, "runtime_path .* must be an absolute path"),
    ({"drop_in": "/tmp/x\ny.toml"}, "drop_in .* not a usable path"),
    ({"layout": "auto"}, "layout: auto needs drop_in"),
])
def test_bad_arguments_name_the_option(tmp_path, opts, msg):
    b = FakeContainerd(tmp_path, "2.1.9")
    with pytest.raises(engine.EngineError, match=msg):
        plan(tmp_path, b, "version = 3\n", **opts)
    assert b.calls == []    # refused before anything ran


def test_drop_in_equal_to_config_is_refused(tmp_path):
    b = FakeContainerd(tmp_path, "2.1.9")
    cfg = str(tmp_path / "etc" / "config.toml")
    with pytest.raises(engine.EngineError, match=re.escape("drop_in (%s) and config (%s) are the same file" % (cfg, cfg))):
        plan(tmp_path, b, "version = 3\n", drop_in=cfg)


# -- k0s per release --------------------------------------------------------------------------------
@pytest.mark.parametrize("release,refused", [
    ("v1.26.15+k0s.0", "no /etc/k0s/containerd.d drop-in support"),
    ("v1.27.1+k0s.0", "1.27.5"), ("v1.27.4+k0s.0", "1.27.5"), ("v1.28.1+k0s.0", "1.28.2"),
    ("v1.27.5+k0s.0", None), ("v1.28.2+k0s.0", None), ("v1.35.2+k0s.0", None), ("v1.36.3+k0s.0", None),
])
def test_k0s_releases_that_cannot_load_a_drop_in_are_refused(tmp_path, release, refused):
    rules = versions.k0s(release)
    if refused:
        assert refused in rules.refusal()
        with pytest.raises(engine.EngineError, match=re.escape(refused)):
            engine.plan(dict(config=str(tmp_path / "containerd.toml"), drop_in=str(tmp_path / "d" / "nvidia.toml"),
                             manage_imports=False, containerd_path="/nonexistent", k0s_version=release,
                             config_source=["file"]))
    else:
        assert rules.refusal() is None


@pytest.mark.parametrize("release,cv,ctd", [("v1.27.5+k0s.0", 2, (1, 7)), ("v1.35.2+k0s.0", 2, (1, 7)),
                                            ("v1.36.1+k0s.0", 3, (2, 3)), ("v1.36.3+k0s.0", 3, (2, 3))])
def test_k0s_bootstrap_drop_in_version_per_release(tmp_path, release, cv, ctd):
    p = engine.plan(dict(config=str(tmp_path / "containerd.toml"), drop_in=str(tmp_path / "d" / "nvidia.toml"),
                         manage_imports=False, containerd_path="/nonexistent", k0s_version=release, config_source=["file"]))
    drop = data(p.files[0].after)
    assert p.config_version == drop["version"] == cv
    assert versions.k0s(release).containerd[:2] == ctd
    assert versions.k0s(release).drop_in_problem(drop, "nvidia.toml") is None
    assert get(drop, *versions.CRI_PATHS[cv], "containerd", "runtimes", "nvidia", "options", "BinaryName")


def test_k0s_1_36_worker_installed_with_containerd_2_3(tmp_path):
    """An installed k0s 1.36 worker: its containerd (2.3) dumps version 4; the drop-in stays version 3."""
    k0s_toml = ("# k0s_managed=true\nversion = 3\nimports = [\"%s/*.toml\"]\n\n"
                "[plugins.\"io.containerd.cri.v1.images\".pinned_images]\n  sandbox = \"quay.io/k0sproject/pause:3.10.1\"\n\n"
                "[plugins.\"io.containerd.cri.v1.runtime\"]\n" % str(tmp_path / "etc" / "containerd.d"))
    dump_nv = fx("dump-2.3.4-v3-main-plus-nvidia-dropin.toml")
    b = FakeContainerd(tmp_path, "2.3.4", dumps=lambda t: dump_nv if "nvidia-container-runtime" in t else fx("dump-2.3.4-empty.toml"))
    drop = str(tmp_path / "etc" / "containerd.d" / "nvidia.toml")
    o = dict(drop_in=drop, manage_imports=False, k0s_version="v1.36.3+k0s.0")
    p = plan(tmp_path, b, k0s_toml, **o)
    assert p.config_version == 3 and data(open(drop).read())["version"] == 3 and p.validate_with_binary
    engine.validate(p, dict(engine.DEFAULTS, config=p.main_path, drop_in=drop, manage_imports=False), b.path, runner=b)
    assert versions.k0s("v1.36.3+k0s.0").drop_in_problem(data(open(drop).read()), drop) is None
    again = plan(tmp_path, b, k0s_toml, apply=False, **o)
    assert not again.changed, again.diff()


def test_k0s_upgrade_1_35_to_1_36_rewrites_the_drop_in_first(tmp_path):
    """1.35 installed (containerd 1.7, v2 drop-in); the operator states 1.36: the drop-in becomes v3 before the
    upgrade, validation with the old binary is skipped with a warning; 1.36's pre-flight accepts the result."""
    b = FakeContainerd(tmp_path, "1.7.24", dumps=lambda t: fx("default-1.7.toml"))
    drop = str(tmp_path / "etc" / "containerd.d" / "nvidia.toml")
    o = dict(drop_in=drop, manage_imports=False, config_source=["file"])
    plan(tmp_path, b, None, k0s_version="v1.35.2+k0s.0", **o)
    v2 = data(open(drop).read())
    assert v2["version"] == 2
    assert "accepts only version 3" in versions.k0s("v1.36.3+k0s.0").drop_in_problem(v2, drop)
    p = plan(tmp_path, b, None, k0s_version="v1.36.3+k0s.0", **o)
    v3 = data(open(drop).read())
    assert v3["version"] == 3 and not p.validate_with_binary
    assert any("bundles containerd 2.3" in w for w in p.warnings)
    assert versions.k0s("v1.36.3+k0s.0").drop_in_problem(v3, drop) is None
    with pytest.raises(engine.EngineError, match="config_version 2 does not fit k0s 1.36.3"):
        plan(tmp_path, b, None, k0s_version="v1.36.3+k0s.0", config_version="2", **o)


@pytest.mark.parametrize("release,text,managed", [
    ("v1.28.5+k0s.0", "version = 2\n# see: # k0s_managed=true (kept)\n", True),     # 1.27-1.29: contains
    ("v1.31.1+k0s.0", "version = 2\n# see: # k0s_managed=true (kept)\n", False),    # 1.30-1.35: equal line
    ("v1.31.1+k0s.0", "version = 2\n# k0s_managed=true\n", True),
    ("v1.36.3+k0s.0", "version = 2\n# k0s_managed=true\n", False),                  # 1.36: first line only
    ("v1.36.3+k0s.0", "\n# k0s_managed=true\nversion = 3\n", True),
    ("v1.36.3+k0s.0", None, True),
])
def test_k0s_managed_marker_rule_per_release(release, text, managed):
    assert versions.k0s(release).is_managed(text) is managed


def test_low_level_runtime_of_a_runc_shim_without_binary_name_is_runc(tmp_path):
    """A runtime named crun whose runc.v2 table names no BinaryName runs runc: the toolkit must be told runc."""
    text = ('version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  default_runtime_name = "crun"\n'
            '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun]\n  runtime_type = "io.containerd.runc.v2"\n'
            '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun.options]\n  SystemdCgroup = true\n')
    b = FakeContainerd(tmp_path, "1.7.24")
    assert plan(tmp_path, b, text, apply=False, config_source=["file"]).low_level_runtime == "runc"
    named = text.replace("SystemdCgroup = true", 'SystemdCgroup = true\n  BinaryName = "/usr/bin/crun"')
    (tmp_path / "etc" / "config.toml").write_text(named)
    assert plan(tmp_path, b, named, apply=False, config_source=["file"]).low_level_runtime == "/usr/bin/crun"
