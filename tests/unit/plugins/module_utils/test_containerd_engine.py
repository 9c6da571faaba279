"""The containerd engine, called directly (no binary: config_source file, version given as input).

The real daemons judge the same behaviours in tests/integration.
"""
import copy
import os

import pytest
import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.gpuops.nvidia.plugins.module_utils import containerd as engine
from ansible_collections.gpuops.nvidia.plugins.module_utils.tomledit import TomlEditError

NOBIN = "/nonexistent/containerd"
V16, V17, V20, V21 = (1, 6, 20), (1, 7, 24), (2, 0, 5), (2, 1, 9)
CRI2 = ("plugins", "io.containerd.grpc.v1.cri")
CRI3 = ("plugins", "io.containerd.cri.v1.runtime")


def run(tmp_path, text=None, binver=V17, apply=True, name="config.toml", **opts):
    """Plan with ``opts`` for a config holding ``text`` (None: no file); write the result when asked."""
    cfg = tmp_path / name
    if text is not None and not cfg.exists():
        cfg.write_text(text)
    o = dict(config=str(cfg), containerd_path=NOBIN, config_source=["file"])
    o.update(opts)
    p = engine.plan(o, binary_version=binver)
    if apply:
        write_plan(p)
    return p


def write_plan(p):
    """Write (or delete) every file of a plan, as the module would (without its atomicity); any engine's plan."""
    for f in p.files:
        if f.after is None:
            if os.path.lexists(f.path):
                os.unlink(f.path)
        else:
            os.makedirs(os.path.dirname(f.path), exist_ok=True)
            with open(f.path, "w") as fh:
                fh.write(f.after)


def data(path):
    return tomlkit.parse(open(path).read()).unwrap()


def get(d, *path):
    for p in path:
        d = d[p]
    return d


def fixture(containerd_fixtures, name):
    return containerd_fixtures[name].read_text()


# -- versions ----------------------------------------------------------------------------------
@pytest.mark.parametrize("binver,version", [(V16, 2), (V17, 2), (V21, 3)])
def test_missing_file_gets_the_binary_version(tmp_path, binver, version):
    p = run(tmp_path, None, binver=binver)
    d = data(tmp_path / "config.toml")
    assert p.config_version == d["version"] == version
    cri = CRI3 if version == 3 else CRI2
    assert get(d, *cri, "containerd", "runtimes", "nvidia", "options", "BinaryName") == "/usr/bin/nvidia-container-runtime"


def test_no_version_key_in_a_non_empty_file_is_v1(tmp_path, containerd_fixtures):
    p = run(tmp_path, fixture(containerd_fixtures, "legacy-v1.toml"), binver=V16)
    assert p.config_version == 1
    d = data(tmp_path / "config.toml")
    assert get(d, "plugins", "cri", "containerd", "runtimes", "nvidia", "runtime_type") == "io.containerd.runc.v2"


@pytest.mark.parametrize("text,msg", [
    ("version = 4\n", "config version 4 needs a newer containerd: containerd 1.7.24 loads versions up to 2"),
    ("version = 5\n", "unknown config version 5 .*containerd 1.7.24"),
    ('version = "two"\n', "version must be an integer"),
    ("version = true\n", "version must be an integer"),
])
def test_bad_versions_are_refused(tmp_path, text, msg):
    with pytest.raises(engine.EngineError, match=msg):
        run(tmp_path, text)
    assert (tmp_path / "config.toml").read_text() == text


def test_v1_file_for_containerd_2_is_refused(tmp_path, containerd_fixtures):
    with pytest.raises(engine.EngineError, match="containerd config migrate"):
        run(tmp_path, fixture(containerd_fixtures, "legacy-v1.toml"), binver=V21)


def test_v3_for_containerd_1_is_refused(tmp_path, containerd_fixtures):
    with pytest.raises(engine.EngineError, match="config version 3 needs a newer containerd: containerd 1.7.24"):
        run(tmp_path, fixture(containerd_fixtures, "default-2.1.toml"), binver=V17)


def test_config_version_option_wins(tmp_path):
    p = run(tmp_path, None, binver=None, config_version="3")
    assert p.config_version == 3
    assert "io.containerd.cri.v1.runtime" in (tmp_path / "config.toml").read_text()


# -- copy rules --------------------------------------------------------------------------------
@pytest.mark.parametrize("fx,binver,cri", [
    ("default-1.6-systemd.toml", V16, CRI2), ("default-1.7-systemd.toml", V17, CRI2), ("default-2.1-systemd.toml", V21, CRI3)])
def test_handler_copies_the_whole_default_runtime_table(tmp_path, containerd_fixtures, fx, binver, cri):
    run(tmp_path, fixture(containerd_fixtures, fx), binver=binver)
    rts = get(data(tmp_path / "config.toml"), *cri, "containerd", "runtimes")
    runc, nv = rts["runc"], rts["nvidia"]
    assert nv["options"]["SystemdCgroup"] is True
    assert nv["options"].pop("BinaryName") == "/usr/bin/nvidia-container-runtime"
    runc["options"].pop("BinaryName", None)
    assert nv == runc


def test_crun_default_is_copied_and_reported_as_low_level_runtime(tmp_path, containerd_fixtures):
    p = run(tmp_path, fixture(containerd_fixtures, "crun-default-v2.toml"), runtime_name="gpu", runtime_path="/opt/nv/ncr")
    rts = get(data(tmp_path / "config.toml"), *CRI2, "containerd", "runtimes")
    assert rts["gpu"]["options"]["BinaryName"] == "/opt/nv/ncr"
    crun_opts = {k: v for k, v in rts["crun"]["options"].items() if k != "BinaryName"}
    assert {k: v for k, v in rts["gpu"]["options"].items() if k != "BinaryName"} == crun_opts
    assert p.low_level_runtime == rts["crun"]["options"]["BinaryName"]
    assert p.default_runtime == "crun"


def test_copy_options_from_explicit_and_errors(tmp_path, containerd_fixtures):
    text = fixture(containerd_fixtures, "crun-default-v2.toml")
    # containerd 2.x keeps its built-in runc beside the file's crun: it can be copied
    text3 = text.replace("version = 2", "version = 3").replace("io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime")
    run(tmp_path, text3, binver=V21, copy_options_from="runc")
    rts = get(data(tmp_path / "config.toml"), *CRI3, "containerd", "runtimes")
    assert rts["nvidia"] == {"runtime_type": "io.containerd.runc.v2", "options": {"BinaryName": "/usr/bin/nvidia-container-runtime"}}
    # on 1.7 the file's map (crun only) replaced the built-in one: there is no runc to copy
    with pytest.raises(engine.EngineError, match="'runc' is not configured"):
        run(tmp_path / "..", text, binver=V17, copy_options_from="runc", name="other.toml")
    with pytest.raises(engine.EngineError, match="'kata' is not configured"):
        run(tmp_path, None, copy_options_from="kata", name="fresh.toml")
    with pytest.raises(engine.EngineError, match="other than ours"):
        run(tmp_path, None, copy_options_from="nvidia", name="fresh.toml")


def test_a_default_that_is_ours_copies_runc_instead(tmp_path):
    text = ('version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  default_runtime_name = "nvidia"\n'
            '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n'
            '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]\n  BinaryName = "/old"\n')
    p = run(tmp_path, text, set_as_default=True)
    nv = get(data(tmp_path / "config.toml"), *CRI2, "containerd", "runtimes", "nvidia")
    assert nv["options"] == {"SystemdCgroup": True, "BinaryName": "/usr/bin/nvidia-container-runtime"}
    assert nv["runtime_type"] == "io.containerd.runc.v2"
    assert p.default_runtime == "nvidia"


def test_runtime_type_kept_when_the_source_has_one(tmp_path):
    text = ('version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n'
            '  runtime_type = "io.containerd.runc.v1"\n')
    run(tmp_path, text, runtime_type="io.example.v9")
    assert get(data(tmp_path / "config.toml"), *CRI2, "containerd", "runtimes", "nvidia", "runtime_type") == "io.containerd.runc.v1"


def test_variants(tmp_path):
    run(tmp_path, None, variants=["cdi", "legacy"], runtime_path="/usr/local/bin/ncr")
    rts = get(data(tmp_path / "config.toml"), *CRI2, "containerd", "runtimes")
    assert rts["nvidia-cdi"]["options"]["BinaryName"] == "/usr/local/bin/ncr.cdi"
    assert rts["nvidia-legacy"]["options"]["BinaryName"] == "/usr/local/bin/ncr.legacy"
    # dropping a variant removes the table we wrote for it
    run(tmp_path, None, variants=["cdi"], runtime_path="/usr/local/bin/ncr")
    rts = get(data(tmp_path / "config.toml"), *CRI2, "containerd", "runtimes")
    assert "nvidia-legacy" not in rts and "nvidia-cdi" in rts


# -- the runtimes map of containerd < 2.0 -------------------------------------------------------
@pytest.mark.parametrize("binver,runc_written", [(V16, True), (V17, True), (V20, False), (V21, False)])
def test_default_runtime_written_when_the_file_map_replaces_the_builtin(tmp_path, binver, runc_written):
    run(tmp_path, None if binver < (2,) else None, binver=binver)
    d = data(tmp_path / "config.toml")
    cri = CRI3 if binver >= (2,) else CRI2
    assert ("runc" in get(d, *cri, "containerd", "runtimes")) is runc_written


# -- drop-ins ----------------------------------------------------------------------------------
def test_drop_in_on_1x_carries_the_main_cri_section(tmp_path, containerd_fixtures):
    main = fixture(containerd_fixtures, "handwritten-v2.toml")
    drop = tmp_path / "conf.d" / "99-nvidia.toml"
    p = run(tmp_path, main, binver=V17, drop_in=str(drop))
    assert p.copies_cri_section
    assert any("shadowed" in w for w in p.warnings)
    main_cri = get(tomlkit.parse(main).unwrap(), *CRI2)
    drop_cri = get(data(drop), *CRI2)
    for key, value in main_cri.items():
        if key != "containerd":
            assert drop_cri[key] == value
    assert drop_cri["containerd"]["runtimes"]["nvidia"]["options"]["BinaryName"]
    assert data(tmp_path / "config.toml")["imports"][-1] == str(drop)
    # the main file only gained the import
    after = (tmp_path / "config.toml").read_text()
    assert [x for x in after.splitlines() if x not in main.splitlines()] == [
        x for x in after.splitlines() if "imports" in x and "gpuops.nvidia" in x]


def test_drop_in_on_21_holds_only_our_tables(tmp_path, containerd_fixtures):
    main = fixture(containerd_fixtures, "v3-conf-d.toml")
    drop = tmp_path / "conf.d" / "99-nvidia.toml"
    run(tmp_path, main, binver=V21, drop_in=str(drop), config="%s/config.toml" % tmp_path)
    d = data(drop)
    assert d["version"] == 3
    assert set(get(d, *CRI3, "containerd", "runtimes")) == {"nvidia"}
    assert set(get(d, *CRI3)) == {"containerd"}


def test_existing_glob_import_is_reused(tmp_path):
    main = 'version = 3\nimports = ["%s/conf.d/*.toml"]\n' % tmp_path
    p = run(tmp_path, main, binver=V21, drop_in=str(tmp_path / "conf.d" / "99-nvidia.toml"))
    assert (tmp_path / "config.toml").read_text() == main
    assert [f.path for f in p.files if f.changed] == [str(tmp_path / "conf.d" / "99-nvidia.toml")]


def test_k0s_drop_in_without_imports_and_without_k0s(tmp_path):
    """Bootstrap: no k0s, no main file, no binary; the drop-in is written at the asked version."""
    drop = tmp_path / "containerd.d" / "nvidia.toml"
    p = run(tmp_path, None, binver=None, drop_in=str(drop), manage_imports=False, config_version="3",
            config=str(tmp_path / "k0s" / "containerd.toml"))
    assert not (tmp_path / "k0s" / "containerd.toml").exists()
    d = data(drop)
    assert d["version"] == 3 and set(get(d, *CRI3, "containerd", "runtimes")) == {"nvidia"}
    assert [f.path for f in p.files] == [str(drop)]
    again = run(tmp_path, None, binver=None, drop_in=str(drop), manage_imports=False, config_version="3",
                config=str(tmp_path / "k0s" / "containerd.toml"), apply=False)
    assert not again.changed
    gone = run(tmp_path, None, binver=None, drop_in=str(drop), manage_imports=False, config_version="3",
               config=str(tmp_path / "k0s" / "containerd.toml"), state="absent")
    assert gone.changed and not drop.exists()


def test_foreign_drop_in_on_legacy_containerd_is_refused(tmp_path):
    drop = tmp_path / "99-nvidia.toml"
    drop.write_text("version = 2\n")
    with pytest.raises(engine.EngineError, match="not managed by this module"):
        run(tmp_path, "version = 2\n", binver=V17, drop_in=str(drop))
    assert drop.read_text() == "version = 2\n"


def test_switching_from_in_place_to_drop_in_moves_the_handler(tmp_path, containerd_fixtures):
    main = fixture(containerd_fixtures, "default-2.1-systemd.toml")
    run(tmp_path, main, binver=V21)
    run(tmp_path, main, binver=V21, drop_in=str(tmp_path / "conf.d" / "99-nvidia.toml"))
    text = (tmp_path / "config.toml").read_text()
    assert "runtimes.nvidia" not in text
    assert "nvidia" in get(data(tmp_path / "conf.d" / "99-nvidia.toml"), *CRI3, "containerd", "runtimes")


# -- default runtime, CDI, CRI enablement -----------------------------------------------------------
def test_set_as_default_then_not_restores_the_original_line(tmp_path, containerd_fixtures):
    main = fixture(containerd_fixtures, "handwritten-v2.toml")
    run(tmp_path, main, set_as_default=True, enable_cdi=True, cdi_spec_dirs=["/etc/cdi"])
    d = get(data(tmp_path / "config.toml"), *CRI2)
    assert d["containerd"]["default_runtime_name"] == "nvidia"
    assert d["enable_cdi"] is True and d["cdi_spec_dirs"] == ["/etc/cdi"]
    p = run(tmp_path, main)
    d = get(data(tmp_path / "config.toml"), *CRI2)
    assert d["containerd"].get("default_runtime_name", "runc") == get(tomlkit.parse(main).unwrap(), *CRI2, "containerd").get("default_runtime_name", "runc")
    assert d.get("enable_cdi") == get(tomlkit.parse(main).unwrap(), *CRI2).get("enable_cdi")
    assert p.default_runtime != "nvidia"
    run(tmp_path, main, state="absent")
    assert (tmp_path / "config.toml").read_text() == main


def test_foreign_default_naming_ours_is_unset_when_not_wanted(tmp_path, containerd_fixtures):
    text = fixture(containerd_fixtures, "stale-nvidia-v2.toml")
    assert "nvidia" in text
    p = run(tmp_path, text, binver=V17)
    d = get(data(tmp_path / "config.toml"), *CRI2, "containerd")
    assert d.get("default_runtime_name", "runc") != "nvidia"
    assert p.default_runtime in d["runtimes"]
    assert d["runtimes"]["nvidia"]["options"]["SystemdCgroup"] == d["runtimes"]["runc"]["options"]["SystemdCgroup"]
    assert d["runtimes"]["nvidia"]["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    # the stale table is the operator's: patched key by key, each edit recorded, and absent brings it back
    after = (tmp_path / "config.toml").read_text()
    assert 'BinaryName = "/usr/bin/nvidia-container-runtime"  # gpuops.nvidia: replaced "/usr/local/nvidia/' in after
    assert "SystemdCgroup = true  # gpuops.nvidia: replaced false" in after
    assert d["runtimes"]["nvidia"]["runtime_engine"] == "" and d["runtimes"]["nvidia"]["privileged_without_host_devices"] is False
    run(tmp_path, text, binver=V17, state="absent")
    assert (tmp_path / "config.toml").read_text() == text


def test_docker_containerd_io_warns_and_enable_cri_fixes(tmp_path, containerd_fixtures):
    text = fixture(containerd_fixtures, "docker-containerd-io.toml")
    p = run(tmp_path, text, binver=V17, apply=False)
    assert any("enable_cri: true" in w for w in p.warnings)
    p = run(tmp_path, text, binver=V17, enable_cri=True)
    d = data(tmp_path / "config.toml")
    assert not any(x in engine.CRI_PLUGIN_IDS for x in d.get("disabled_plugins", []))
    assert not any("enable_cri" in w for w in p.warnings)
    run(tmp_path, text, binver=V17, enable_cri=True, state="absent")
    assert (tmp_path / "config.toml").read_text() == text


# -- idempotence and absent over every sample ------------------------------------------------------
SAMPLES = {
    "default-1.6.toml": V16, "default-1.6-systemd.toml": V16, "default-1.7.toml": V17, "default-1.7-systemd.toml": V17,
    "default-2.1.toml": V21, "default-2.1-systemd.toml": V21, "handwritten-v2.toml": V17, "legacy-v1.toml": V16,
    "docker-containerd-io.toml": V17, "v3-conf-d.toml": V21, "crun-default-v2.toml": V17,
}
OPTION_SETS = [{}, {"set_as_default": True, "enable_cdi": True, "variants": ["cdi", "legacy"]}, {"enable_cri": True}]


@pytest.mark.parametrize("fx", sorted(SAMPLES))
@pytest.mark.parametrize("opts", OPTION_SETS, ids=["plain", "default+cdi+variants", "enable_cri"])
@pytest.mark.parametrize("mode", ["in-place", "drop-in"])
def test_second_run_changes_nothing_and_absent_restores_bytes(tmp_path, containerd_fixtures, fx, opts, mode):
    text = fixture(containerd_fixtures, fx)
    extra = dict(opts)
    if mode == "drop-in":
        extra["drop_in"] = str(tmp_path / "conf.d" / "99-nvidia.toml")
    first = run(tmp_path, text, binver=SAMPLES[fx], **extra)
    assert first.changed
    second = run(tmp_path, text, binver=SAMPLES[fx], apply=False, **extra)
    assert not second.changed, [(f.path, f.before, f.after) for f in second.files if f.changed]
    run(tmp_path, text, binver=SAMPLES[fx], state="absent", **extra)
    assert (tmp_path / "config.toml").read_text() == text
    assert not (tmp_path / "conf.d" / "99-nvidia.toml").exists()
    third = run(tmp_path, text, binver=SAMPLES[fx], state="absent", apply=False, **extra)
    assert not third.changed


def test_absent_on_a_missing_file_changes_nothing(tmp_path):
    p = run(tmp_path, None, state="absent")
    assert not p.changed and not (tmp_path / "config.toml").exists()


@pytest.mark.parametrize("binver", [V17, V21])
@pytest.mark.parametrize("drop_in", [False, True])
def test_a_file_the_module_created_is_deleted_by_absent(tmp_path, binver, drop_in):
    """No config existed: present creates one, absent deletes it again (not a `version = N` stub)."""
    extra = {"drop_in": str(tmp_path / "conf.d" / "99-nvidia.toml")} if drop_in else {}
    run(tmp_path, None, binver=binver, set_as_default=True, **extra)
    assert (tmp_path / "config.toml").exists()
    run(tmp_path, None, binver=binver, state="absent", **extra)
    assert not (tmp_path / "config.toml").exists()
    assert not (tmp_path / "conf.d" / "99-nvidia.toml").exists()


def test_a_created_file_someone_else_added_to_is_kept(tmp_path):
    run(tmp_path, None, binver=V17)
    path = tmp_path / "config.toml"
    head, rest = path.read_text().split("\n", 1)
    path.write_text(head + "\noom_score = -999\n" + rest)
    run(tmp_path, None, binver=V17, state="absent")
    assert "oom_score = -999" in path.read_text()


def test_empty_existing_file_comes_back_empty(tmp_path):
    run(tmp_path, "", binver=V21)
    assert data(tmp_path / "config.toml")["version"] == 3
    run(tmp_path, "", binver=V21, state="absent")
    assert (tmp_path / "config.toml").read_text() == ""


# -- bad input: a clear error and no change -------------------------------------------------------
@pytest.mark.parametrize("text,msg", [
    ('version = 2\n[plugins\nx = 1\n', r"malformed TOML in .*config\.toml:2"),
    ('version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\nruntimes = "runc"\n', "must be a table"),
    ('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\ncontainerd = 5\n', "must be a table"),
    ('version = 2\nimports = "x.toml"\n', "imports must be a list"),
])
def test_bad_input_is_refused_without_change(tmp_path, text, msg):
    opts = {"drop_in": str(tmp_path / "d.toml")} if "imports" in text else {}
    with pytest.raises((engine.EngineError, TomlEditError), match=msg):
        run(tmp_path, text, **opts)
    assert (tmp_path / "config.toml").read_text() == text
    assert not (tmp_path / "d.toml").exists()


def test_default_naming_no_runtime_is_refused(tmp_path):
    text = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  default_runtime_name = "kata"\n'
    with pytest.raises(engine.EngineError, match="names no configured runtime"):
        run(tmp_path, text)
    assert (tmp_path / "config.toml").read_text() == text


def test_config_that_is_a_directory_is_refused(tmp_path):
    with pytest.raises(engine.EngineError, match="is a directory"):
        engine.plan({"config": str(tmp_path), "containerd_path": NOBIN, "config_source": ["file"]})


def test_no_working_source_says_why(tmp_path):
    with pytest.raises(engine.EngineError, match="command: containerd binary"):
        engine.plan({"config": str(tmp_path / "c.toml"), "containerd_path": NOBIN, "config_source": ["command"]})


# -- property: whatever the config, nothing but our tables changes meaning, and absent restores bytes --
_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
_scalars = st.one_of(st.booleans(), st.integers(-5, 5000), st.text(alphabet="abc /._-", max_size=10),
                     st.lists(st.text(alphabet="abc", max_size=3), max_size=3))


@st.composite
def configs(draw):
    """A version 2 config written the way people write them: comments, odd spacing, extra tables."""
    out = []
    if draw(st.booleans()):
        out.append("# %s\n" % draw(st.text(alphabet="abc xyz", max_size=20)))
    out.append("version = 2%s\n" % draw(st.sampled_from(["", "  # v2", " "])))
    for dummy in range(draw(st.integers(0, 2))):
        out.append("%s = %s\n" % (draw(_names.filter(lambda n: n not in ("version", "imports", "disabled_plugins"))),
                                  tomlkit.item(draw(_scalars)).as_string()))
    cri = '[plugins."io.containerd.grpc.v1.cri"'
    ind = draw(st.sampled_from(["", "  ", "    "]))
    if draw(st.booleans()):
        out.append("\n%s]\n" % cri)
        out.append("%ssandbox_image = %s\n" % (ind, tomlkit.item(draw(st.text(alphabet="abc:/.", max_size=12))).as_string()))
        if draw(st.booleans()):
            out.append("%senable_cdi = %s\n" % (ind, "true" if draw(st.booleans()) else "false"))
    runtimes = draw(st.lists(st.sampled_from(["runc", "crun", "kata"]), unique=True, max_size=3))
    if draw(st.booleans()):
        out.append("\n%s.containerd]\n" % cri)
        if draw(st.booleans()):
            out.append("%sdefault_runtime_name = \"%s\"%s\n" % (
                ind, draw(st.sampled_from(sorted(set(runtimes) | {"runc"}))), draw(st.sampled_from(["", "  # the default"]))))
        out.append("%ssnapshotter = \"overlayfs\"\n" % ind)
    for rt in runtimes:
        out.append("\n%s.containerd.runtimes.%s]\n" % (cri, rt))
        out.append("%sruntime_type = \"io.containerd.%s.v2\"\n" % (ind, rt))
        if draw(st.booleans()):
            out.append("%s.containerd.runtimes.%s.options]\n" % (cri, rt))
            out.append("%sSystemdCgroup = %s\n" % (ind, "true" if draw(st.booleans()) else "false"))
    for dummy in range(draw(st.integers(0, 2))):
        out.append("\n[%s]\n%s%s = %s\n" % (draw(_names), ind, draw(_names), tomlkit.item(draw(_scalars)).as_string()))
    text = "".join(out)
    return text


def _without_ours(d):
    d = copy.deepcopy(d)
    c = d.get("plugins", {}).get("io.containerd.grpc.v1.cri", {}).get("containerd", {})
    for name in ("nvidia", "nvidia-cdi"):
        c.get("runtimes", {}).pop(name, None)
    for key in ("default_runtime_name",):
        c.pop(key, None)
    cri = d.get("plugins", {}).get("io.containerd.grpc.v1.cri", {})
    cri.pop("enable_cdi", None)
    return d


def _valid(text):
    try:
        tomlkit.parse(text)
        return True
    except Exception:
        return False


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=configs().filter(_valid), set_default=st.booleans(), cdi=st.booleans(), binver=st.sampled_from([V16, V17, V21]))
def test_property_only_our_tables_change_and_absent_restores_bytes(tmp_path_factory, text, set_default, cdi, binver):
    tmp = tmp_path_factory.mktemp("prop")
    before = tomlkit.parse(text).unwrap()
    opts = dict(set_as_default=set_default, enable_cdi=cdi, variants=["cdi"])
    p = run(tmp, text, binver=binver, **opts)
    after = data(tmp / "config.toml")
    added = set(after.get("plugins", {}).get("io.containerd.grpc.v1.cri", {}).get("containerd", {}).get("runtimes", {})) - \
        set(before.get("plugins", {}).get("io.containerd.grpc.v1.cri", {}).get("containerd", {}).get("runtimes", {}))
    # everything but our tables, the default, enable_cdi and runtimes we had to add is identical
    stripped = _without_ours(after)
    for name in added - {"nvidia", "nvidia-cdi"}:
        stripped["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"].pop(name)
        assert binver < (2,) and name == p.default_runtime or name == "runc"
    assert stripped == _without_ours(before) or _prune_empty(stripped) == _prune_empty(_without_ours(before))
    nv = after["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["nvidia"]
    assert nv["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    default = after["plugins"]["io.containerd.grpc.v1.cri"]["containerd"].get("default_runtime_name", "runc")
    assert (default == "nvidia") is set_default
    if binver < (2,):
        assert default in after["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    assert not run(tmp, text, binver=binver, apply=False, **opts).changed
    run(tmp, text, binver=binver, state="absent", **opts)
    assert (tmp / "config.toml").read_text() == text


def _prune_empty(d):
    if isinstance(d, dict):
        return {k: _prune_empty(v) for k, v in d.items() if not (isinstance(v, dict) and not _prune_empty(v))}
    return d


def test_own_drop_in_is_not_mistaken_for_the_original_state(tmp_path, containerd_fixtures):
    """Regression: with the default set in our drop-in, a second run must still copy the real default."""
    text = fixture(containerd_fixtures, "crun-default-v2.toml").replace("version = 2", "version = 3").replace(
        "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime")
    text += '\nimports = ["conf.d/*.toml"]\n' if "imports" not in text else ""
    text = 'imports = ["%s/conf.d/*.toml"]\n' % tmp_path + text
    drop = tmp_path / "conf.d" / "99-nvidia.toml"
    opts = dict(binver=V21, drop_in=str(drop), set_as_default=True, enable_cdi=True)
    run(tmp_path, text, **opts)
    nv = get(data(drop), *CRI3, "containerd", "runtimes", "nvidia")
    assert nv["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    assert nv["pod_annotations"] == ["run.oci.*"]          # copied from crun, the real default
    assert not run(tmp_path, text, apply=False, **opts).changed
