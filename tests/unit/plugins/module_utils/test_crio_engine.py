"""The CRI-O engine, called directly (no CRI-O binary exists for this machine: config_source file, or a
stand-in ``crio`` script for the command source).

The result is judged with an independent model of what CRI-O loads (``crio_effective`` below: the main
file, then every file under the drop-in folder in the order Go's filepath.Walk visits them, parsed with
the standard library's tomllib, runtime tables replaced whole), never with the engine's own merge.
"""
from __future__ import annotations

import copy
import os
import shutil
import stat
import tempfile
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.gpuops.nvidia.plugins.module_utils import crio as engine
from ansible_collections.gpuops.nvidia.plugins.module_utils import fileops
from ansible_collections.gpuops.nvidia.plugins.module_utils.tomledit import TomlEditError
from ansible_collections.gpuops.nvidia.tests.unit.plugins.module_utils.test_containerd_engine import write_plan as apply
from ansible_run import REPO_ROOT

FIX = REPO_ROOT / "tests" / "fixtures" / "crio"
NOBIN = "/nonexistent/crio"
V131 = (1, 31, 3)
NVIDIA = "/usr/bin/nvidia-container-runtime"
OURS = ("nvidia", "nvidia-cdi", "nvidia-legacy")


# -- an independent model of CRI-O's loading -------------------------------------------------------
def crio_files(cdir: Path) -> list[Path]:
    """Every file under ``cdir`` in CRI-O's order. Go's filepath.Walk sorts the names of each folder and
    descends where a folder sorts, which is the same as sorting by the tuple of path components."""
    if not cdir.exists():
        return []
    return sorted((p for p in cdir.rglob("*") if p.is_file()), key=lambda p: p.relative_to(cdir).parts)


def crio_effective(main: Path, cdir: Path, builtin: str = "crun") -> dict:
    """{'default', 'runtimes', 'rest'}: what CRI-O ends up with (``rest`` = everything but the runtime
    settings). Tables merge key by key; [crio.runtime.runtimes.X] replaces X whole."""
    default, runtimes, rest = builtin, {builtin: {"(built-in)": True}}, {}

    def merge(dst, src):
        for k, v in src.items():
            if isinstance(v, dict) and isinstance(dst.get(k), dict):
                merge(dst[k], v)
            else:
                dst[k] = copy.deepcopy(v)

    for path in ([main] if main.exists() else []) + crio_files(cdir):
        data = tomllib.loads(path.read_text())
        rt = data.get("crio", {}).get("runtime", {})
        if "default_runtime" in rt:
            default = rt.pop("default_runtime")
        for name, table in rt.pop("runtimes", {}).items():
            runtimes[name] = table
        merge(rest, data)
    return {"default": default, "runtimes": runtimes, "rest": rest}


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- helpers ---------------------------------------------------------------------------------------
class Node:
    """/etc/crio of a test node under tmp_path."""

    def __init__(self, tmp_path: Path, main: str | None = None, dropins: dict[str, str] | None = None):
        self.root = tmp_path
        self.etc = tmp_path / "etc" / "crio"
        self.cdir = self.etc / "crio.conf.d"
        self.main = self.etc / "crio.conf"
        self.etc.mkdir(parents=True, exist_ok=True)
        if main is not None:
            self.main.write_text(main)
        for name, text in (dropins or {}).items():
            p = self.cdir / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)

    def opts(self, **kw):
        o = dict(config=str(self.main), config_dir=str(self.cdir), drop_in=str(self.cdir / "99-nvidia.toml"),
                 crio_path=NOBIN, config_source=["file"])
        o.update(kw)
        return o

    def plan(self, version=V131, **kw):
        return engine.plan(self.opts(**kw), crio_version=version)

    def run(self, version=V131, **kw):
        p = self.plan(version, **kw)
        apply(p)
        return p

    def effective(self, builtin="crun"):
        return crio_effective(self.main, self.cdir, builtin)

    @property
    def drop(self) -> Path:
        return self.cdir / "99-nvidia.toml"


def fixture(name: str) -> str:
    return (FIX / name).read_text()


def dir_fixture(name: str) -> dict[str, str]:
    base = FIX / name
    return {str(p.relative_to(base)): p.read_text() for p in base.rglob("*") if p.is_file()}


def expected_handler(source: dict, path: str, root: str, default_type: str = "oci") -> dict:
    t = {k: v for k, v in source.items() if k not in ("inherit_default_runtime", "platform_runtime_paths")}
    t["runtime_path"] = path
    t["runtime_root"] = root
    if not t.get("runtime_type"):
        t["runtime_type"] = default_type
    return t


def same_except_ours(before: dict, after: dict) -> None:
    """Nothing but our handlers (and the default) changed in CRI-O's view."""
    assert after["rest"] == before["rest"]
    assert {k: v for k, v in after["runtimes"].items() if k not in OURS} == \
        {k: v for k, v in before["runtimes"].items() if k not in OURS}


# -- what CRI-O loads ------------------------------------------------------------------------------
def test_load_order_is_gos_walk_order(tmp_path):
    cdir = tmp_path / "d"
    for name in ["b.conf", "a-b/x.conf", "a/x.conf", "a.conf", ".hidden", "10-x", "9-x", "a/b/c", "a/a", "README",
                 "99-nvidia.toml", "99-nvidia.toml.bak", "99-nvidia.toml~"]:
        (cdir / name).parent.mkdir(parents=True, exist_ok=True)
        (cdir / name).write_text("")
    # hand-computed (byte order per folder, folders walked where they sort): note a/* before a-b/*,
    # although "a-b/x.conf" < "a/a" as plain strings
    expected = [".hidden", "10-x", "9-x", "99-nvidia.toml", "99-nvidia.toml.bak", "99-nvidia.toml~", "README",
                "a/a", "a/b/c", "a/x.conf", "a-b/x.conf", "a.conf", "b.conf"]
    got = [os.path.relpath(p, cdir) for p in engine.load_order(str(cdir))]
    assert got == expected
    assert [str(p.relative_to(cdir)) for p in crio_files(cdir)] == expected


def test_load_order_of_a_missing_folder_is_empty(tmp_path):
    assert engine.load_order(str(tmp_path / "none")) == []


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["a", "b", "a-b", "a.b", "10", "9", "99-n", ".h", "z~", "A"]),
                         min_size=1, max_size=3), min_size=1, max_size=8))
def test_load_order_matches_the_model(paths):
    with tempfile.TemporaryDirectory() as tmp:
        cdir = Path(tmp) / "d"
        cdir.mkdir()
        for parts in paths:
            target = cdir.joinpath(*parts)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    target.write_text("")
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                continue        # a file where a folder is wanted (or the reverse): not a valid tree
        assert engine.load_order(str(cdir)) == [str(p) for p in crio_files(cdir)]


def test_a_symlinked_folder_or_a_dangling_link_is_refused(tmp_path):
    node = Node(tmp_path, dropins=dir_fixture("pkgs-1.29"))
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", node.cdir / "50-linked")
    with pytest.raises(engine.EngineError, match="symlink to a folder"):
        node.plan()
    os.unlink(node.cdir / "50-linked")
    os.symlink(tmp_path / "missing.conf", node.cdir / "50-dangling.conf")
    with pytest.raises(engine.EngineError, match="dangling symlink"):
        node.plan()


def test_a_symlink_to_a_file_is_loaded(tmp_path):
    node = Node(tmp_path, dropins=dir_fixture("pkgs-1.29"))
    (tmp_path / "site.conf").write_text('[crio.runtime]\ndefault_runtime = "runc"\n')
    os.symlink(tmp_path / "site.conf", node.cdir / "50-site.conf")
    p = node.plan()
    assert p.default_runtime == "runc" and p.copied_from == "runc"


def test_merge_replaces_whole_runtime_tables(tmp_path):
    node = Node(tmp_path, main='[crio.runtime]\ndefault_runtime = "crun"\ncgroup_manager = "systemd"\n'
                               '[crio.runtime.runtimes.crun]\nruntime_path = "/a"\nmonitor_path = "/m"\n',
                dropins={"10-x.conf": '[crio.runtime]\npids_limit = 5\n[crio.runtime.runtimes.crun]\nruntime_path = "/b"\n'})
    view = engine.files_view(str(node.main), str(node.cdir), "crun")
    # hand-computed: crun is the later file's table only (monitor_path is gone); [crio.runtime] merged
    assert view.runtimes["crun"] == {"runtime_path": "/b"}
    assert view.origin["crun"] == str(node.cdir / "10-x.conf")
    assert view.data["crio"]["runtime"]["cgroup_manager"] == "systemd"
    assert view.data["crio"]["runtime"]["pids_limit"] == 5
    assert view.default == "crun" and view.default_origin == str(node.main)
    model = node.effective()
    assert model["runtimes"]["crun"] == view.runtimes["crun"]


# -- present / absent with the module's own drop-in -------------------------------------------------
@pytest.mark.parametrize("layout,rtype", [("pkgs-1.29", "oci"), ("pkgs-main", "pod")])
def test_packages_layout_gets_a_copy_of_crun(tmp_path, layout, rtype):
    """pkgs.k8s.io packages: no crio.conf, crun defined (and made default) by crio.conf.d/10-crio.conf."""
    node = Node(tmp_path, dropins=dir_fixture(layout))
    before = node.effective()
    files_before = snapshot(tmp_path)
    p = node.run()
    after = node.effective()
    crun = before["runtimes"]["crun"]
    assert after["runtimes"]["nvidia"] == expected_handler(crun, NVIDIA, "/run/crun-nvidia")
    assert after["runtimes"]["nvidia"]["runtime_type"] == rtype          # a pod runtime stays pod
    assert after["default"] == before["default"] == "crun" == p.default_runtime
    same_except_ours(before, after)
    assert p.copied_from == "crun" and p.low_level_runtime == "/usr/libexec/crio/crun"
    assert p.files[0].path == str(node.drop) and node.drop.read_text().startswith(engine.DROP_IN_HEADER)
    # idempotent, byte-identical second run
    text = node.drop.read_text()
    assert not node.plan().changed
    assert node.drop.read_text() == text
    # absent: exactly the bytes of before
    node.run(state="absent")
    assert snapshot(tmp_path) == files_before


def test_set_as_default_and_variants(tmp_path):
    node = Node(tmp_path, dropins=dir_fixture("pkgs-1.29"))
    before = node.effective()
    p = node.run(set_as_default=True, variants=["cdi", "legacy"])
    after = node.effective()
    assert after["default"] == "nvidia" == p.default_runtime
    crun = before["runtimes"]["crun"]
    assert after["runtimes"]["nvidia-cdi"] == expected_handler(crun, NVIDIA + ".cdi", "/run/crun-nvidia-cdi")
    assert after["runtimes"]["nvidia-legacy"] == expected_handler(crun, NVIDIA + ".legacy", "/run/crun-nvidia-legacy")
    same_except_ours(before, after)
    assert p.runtimes == ["nvidia", "nvidia-cdi", "nvidia-legacy"]
    # the default is ours now: the copy source stays crun
    p2 = node.plan(set_as_default=True, variants=["cdi", "legacy"])
    assert not p2.changed and p2.copied_from == "crun"
    # dropping a variant and the default
    node.run(variants=["cdi"])
    after = node.effective()
    assert "nvidia-legacy" not in after["runtimes"] and after["default"] == "crun"


def test_runtime_root_option(tmp_path):
    node = Node(tmp_path, dropins=dir_fixture("pkgs-1.29"))
    node.run(runtime_root="/run/nvidia-runtime", variants=["cdi"])
    eff = node.effective()
    assert eff["runtimes"]["nvidia"]["runtime_root"] == "/run/nvidia-runtime"
    assert eff["runtimes"]["nvidia-cdi"]["runtime_root"] == "/run/nvidia-runtime-cdi"


def test_runtime_root_never_collides_with_another_runtime(tmp_path):
    node = Node(tmp_path, dropins=dir_fixture("pkgs-1.29"))
    with pytest.raises(engine.EngineError, match="already the state folder of the runc runtime"):
        node.plan(runtime_root="/run/runc")


def test_keys_that_would_override_runtime_path_are_not_copied(tmp_path):
    node = Node(tmp_path, dropins={"10-crio.conf": (
        '[crio.runtime]\ndefault_runtime = "hp"\n[crio.runtime.runtimes.hp]\ninherit_default_runtime = true\n'
        'platform_runtime_paths = { "linux/amd64" = "/usr/bin/crun" }\nmonitor_path = "/usr/libexec/crio/conmon"\n')})
    node.run()
    t = node.effective()["runtimes"]["nvidia"]
    assert t == {"runtime_path": NVIDIA, "runtime_type": "oci", "runtime_root": "/run/hp-nvidia",
                 "monitor_path": "/usr/libexec/crio/conmon"}


def test_drop_in_renamed_removes_the_old_one(tmp_path):
    node = Node(tmp_path, dropins=dir_fixture("pkgs-1.29"))
    node.run()
    new = node.cdir / "zz-nvidia.conf"
    p = node.run(drop_in=str(new))
    assert [f.path for f in p.files if f.changed] == [str(new), str(node.drop)]
    assert not node.drop.exists() and new.exists()
    node.run(drop_in=str(new), state="absent")
    assert sorted(os.listdir(node.cdir)) == ["10-crio.conf"]


def test_no_files_at_all_uses_the_built_in_default(tmp_path):
    node = Node(tmp_path)
    p = node.run(version=None)
    assert p.copied_from == "crun"
    assert any("assuming the built-in default handler is crun" in w for w in p.warnings)
    assert node.effective()["runtimes"]["nvidia"] == {"runtime_path": NVIDIA, "runtime_type": "oci",
                                                      "runtime_root": "/run/crun-nvidia"}
    p = Node(tmp_path / "old").plan(version=(1, 29, 1))
    assert p.copied_from == "runc" and p.low_level_runtime == "runc"


# -- in place ----------------------------------------------------------------------------------------
def test_in_place_minimal_edit_and_exact_round_trip(tmp_path):
    original = fixture("crio.conf")
    node = Node(tmp_path, main=original)
    before = node.effective()
    p = node.run(drop_in=None, set_as_default=True, variants=["cdi"])
    text = node.main.read_text()
    old_lines, new_lines = original.splitlines(), text.splitlines()
    removed = [line for line in old_lines if line not in new_lines]
    assert removed == ['default_runtime = "crun"']
    assert 'default_runtime = "nvidia"  # gpuops.nvidia: replaced "crun"' in new_lines
    after = node.effective()
    assert after["default"] == "nvidia" == p.default_runtime
    assert after["runtimes"]["nvidia"] == expected_handler(before["runtimes"]["crun"], NVIDIA, "/run/crun-nvidia")
    same_except_ours(before, after)
    assert not node.plan(drop_in=None, set_as_default=True, variants=["cdi"]).changed
    # a variant dropped in place: its marked table goes
    node.run(drop_in=None, set_as_default=True)
    assert "nvidia-cdi" not in node.effective()["runtimes"]
    node.run(drop_in=None, state="absent")
    assert node.main.read_text() == original


def test_in_place_on_a_missing_file_creates_and_removes_it(tmp_path):
    node = Node(tmp_path)
    node.run(drop_in="")
    assert node.main.exists() and "nvidia" in node.effective()["runtimes"]
    node.run(drop_in="", state="absent")
    assert not node.main.exists()


def test_in_place_loses_against_the_drop_in_folder(tmp_path):
    """Every drop-in loads after the main file: 10-crio.conf's default_runtime wins over ours."""
    node = Node(tmp_path, main="", dropins=dir_fixture("pkgs-1.29"))
    with pytest.raises(engine.EngineError, match=r"10-crio\.conf loads after .*crio\.conf and sets default_runtime"):
        node.plan(drop_in=None, set_as_default=True)
    p = node.run(drop_in=None)
    assert p.default_runtime == "crun" and "nvidia" in node.effective()["runtimes"]


def test_switching_from_in_place_to_drop_in_restores_the_main_file(tmp_path):
    original = fixture("crio.conf")
    node = Node(tmp_path, main=original)
    node.run(drop_in=None, set_as_default=True)
    p = node.run(set_as_default=True)
    assert node.main.read_text() == original
    assert node.effective()["default"] == "nvidia" and p.copied_from == "crun"
    node.run(state="absent")
    assert node.main.read_text() == original and not node.drop.exists()


def test_a_foreign_drop_in_is_edited_reversibly(tmp_path):
    """drop_in names a file without our header (here the package's own): marked edits, exact absent."""
    node = Node(tmp_path, dropins=dir_fixture("pkgs-1.29"))
    target = node.cdir / "10-crio.conf"
    original = target.read_text()
    node.run(drop_in=str(target), set_as_default=True)
    assert "# gpuops.nvidia: added" in target.read_text()
    assert node.effective()["default"] == "nvidia"
    assert not node.plan(drop_in=str(target), set_as_default=True).changed
    node.run(drop_in=str(target), state="absent")
    assert target.read_text() == original


# -- other runtimes, other tools ---------------------------------------------------------------------
def test_kata_as_second_runtime_is_not_copied(tmp_path):
    node = Node(tmp_path, main=fixture("crio-kata.conf"), dropins=dir_fixture("kata-deploy"))
    before = node.effective()
    p = node.run()
    after = node.effective()
    assert p.copied_from == "crun"
    assert after["runtimes"]["nvidia"] == expected_handler(before["runtimes"]["crun"], NVIDIA, "/run/crun-nvidia")
    same_except_ours(before, after)
    with pytest.raises(engine.EngineError, match="VM runtime"):
        node.plan(copy_options_from="kata-qemu")
    with pytest.raises(engine.EngineError, match="not configured"):
        node.plan(copy_options_from="youki")
    with pytest.raises(engine.EngineError, match="other than ours"):
        node.plan(copy_options_from="nvidia")


def test_copy_options_from_the_built_in_runc_of_an_older_crio(tmp_path):
    node = Node(tmp_path, main=fixture("crio-kata.conf"))
    p = node.plan(version=(1, 29, 0), copy_options_from="runc")
    assert p.copied_from == "runc"


def test_gpu_operator_drop_in_is_reported_and_ours_wins(tmp_path):
    node = Node(tmp_path, dropins={**dir_fixture("pkgs-1.29"), **dir_fixture("gpu-operator")})
    operator_file = str(node.cdir / "99-nvidia.conf")
    theirs = tomllib.loads(fixture("gpu-operator/99-nvidia.conf"))["crio"]["runtime"]["runtimes"]
    p = node.run(variants=["cdi"])
    warned = [w for w in p.warnings if operator_file in w and "also defines" in w]
    assert warned and "nvidia, nvidia-cdi" in warned[0] and "before" in warned[0]
    eff = node.effective()
    assert eff["runtimes"]["nvidia"]["runtime_path"] == NVIDIA        # 99-nvidia.conf < 99-nvidia.toml
    # their tables keep what they set; only runtime_path is ours, and crun's state folder is not shared
    assert eff["runtimes"]["nvidia"] == {**theirs["nvidia"], "runtime_path": NVIDIA, "runtime_root": "/run/crun-nvidia"}
    assert eff["runtimes"]["nvidia-cdi"] == {**theirs["nvidia-cdi"], "runtime_path": NVIDIA + ".cdi",
                                             "runtime_root": "/run/crun-nvidia-cdi"}
    assert any(operator_file in w and "runtime_root /run/crun, the state folder of crun" in w for w in p.warnings)
    assert eff["runtimes"]["nvidia-legacy"]["runtime_path"].startswith("/usr/local/nvidia")   # theirs, untouched
    # the operator made nvidia the default: we copy crun, not its nvidia
    assert p.copied_from == "crun" and p.default_runtime == "nvidia"
    p = node.run(variants=["cdi"], state="absent")
    assert any(operator_file in w and "stays configured" in w for w in p.warnings)
    assert (node.cdir / "99-nvidia.conf").read_text() == fixture("gpu-operator/99-nvidia.conf")


def test_gpu_operator_drop_in_sorting_after_ours_is_an_error(tmp_path):
    node = Node(tmp_path, dropins={**dir_fixture("pkgs-1.29"), **dir_fixture("gpu-operator")})
    with pytest.raises(engine.EngineError, match=r"99-nvidia\.conf loads after .*90-nvidia\.toml and defines the nvidia"):
        node.plan(drop_in=str(node.cdir / "90-nvidia.toml"))
    assert not (node.cdir / "90-nvidia.toml").exists()


def test_a_backup_left_in_the_folder_overrides_us(tmp_path):
    """crio.conf.d/99-nvidia.toml.bak sorts after 99-nvidia.toml and is loaded: it would win."""
    node = Node(tmp_path, dropins=dir_fixture("later"))
    with pytest.raises(engine.EngineError, match=r"99-nvidia\.toml\.bak loads after .*99-nvidia\.toml and defines"):
        node.plan()


def test_a_later_default_runtime_blocks_set_as_default(tmp_path):
    layout = dir_fixture("later")
    del layout["99-nvidia.toml.bak"]
    node = Node(tmp_path, dropins=layout)
    with pytest.raises(engine.EngineError, match=r"zz-site/50-default-runtime\.conf loads after .* sets default_runtime = 'crun'"):
        node.plan(set_as_default=True)
    p = node.run()                                      # not asking to be the default: fine
    assert p.default_runtime == "crun"
    # a drop-in that sorts after the site file wins
    node.run(state="absent")
    p = node.run(drop_in=str(node.cdir / "zz-site" / "99-nvidia.toml"), set_as_default=True)
    assert node.effective()["default"] == "nvidia" == p.default_runtime


def test_backup_looking_files_are_reported(tmp_path):
    node = Node(tmp_path, dropins={**dir_fixture("pkgs-1.29"), "10-crio.conf.dpkg-old": "", ".#edit": ""})
    p = node.plan()
    assert sum("looks like a backup" in w for w in p.warnings) == 2


# -- errors: nothing is planned ----------------------------------------------------------------------
@pytest.mark.parametrize("text,msg", [
    ("[crio.runtime\n", r"malformed TOML in .*50-bad\.conf:1"),
    ('[crio]\nruntime = "crun"\n', "crio.runtime must be a table"),
    ("[crio.runtime]\nruntimes = 3\n", "crio.runtime.runtimes must be a table"),
    ('[crio.runtime.runtimes]\nnvidia = "x"\n', "crio.runtime.runtimes.nvidia must be a table"),
    ("[crio.runtime]\ndefault_runtime = 5\n", "default_runtime must be a string"),
    ('[crio.runtime]\ndefault_runtime = "youki"\n', "names no configured runtime"),
])
def test_bad_drop_ins_are_refused(tmp_path, text, msg):
    node = Node(tmp_path, dropins={**dir_fixture("pkgs-1.29"), "50-bad.conf": text})
    before = snapshot(tmp_path)
    with pytest.raises((engine.EngineError, TomlEditError), match=msg):
        node.plan()
    assert snapshot(tmp_path) == before


def test_malformed_main_file_names_file_and_line(tmp_path):
    node = Node(tmp_path, main='[crio]\nlog_dir = "/x"\n\n[crio.runtime\n')
    with pytest.raises(TomlEditError, match=r"crio\.conf:4"):
        node.plan()


@pytest.mark.parametrize("kw,msg", [
    (lambda n: {"drop_in": str(n.etc / "99-nvidia.toml")}, "not inside config_dir"),
    (lambda n: {"drop_in": str(n.cdir)}, "is a directory|not inside"),
    (lambda n: {"config": str(n.cdir / "crio.conf")}, "inside config_dir"),
    (lambda n: {"backup": True, "backup_dir": str(n.cdir / "bak")}, "backups cannot go to"),
    (lambda n: {"variants": ["gpu"]}, "unknown variant"),
    (lambda n: {"runtime_path": "nvidia-container-runtime"}, "absolute path"),
    (lambda n: {"runtime_name": ""}, "runtime_name '' is not a valid handler name"),
    (lambda n: {"runtime_name": "nv\nidia"}, "runtime_name 'nv\\\\nidia' is not a valid handler name"),
    (lambda n: {"runtime_root": "run/nvidia"}, "runtime_root 'run/nvidia' must be an absolute path"),
    (lambda n: {"config_source": ["dump"]}, "unknown source"),
])
def test_bad_options_are_refused(tmp_path, kw, msg):
    node = Node(tmp_path, dropins=dir_fixture("pkgs-1.29"))
    with pytest.raises(engine.EngineError, match=msg):
        node.plan(**kw(node))


def test_backups_never_go_to_the_drop_in_folder(tmp_path):
    node = Node(tmp_path, main=fixture("crio.conf"), dropins=dir_fixture("pkgs-1.29"))
    p = node.plan(backup=True, drop_in=str(node.cdir / "10-crio.conf"))
    assert p.backup_dir == str(node.etc)
    changes = [(f.path, f.before, f.after) for f in p.files if f.changed]
    _written, made = fileops.apply_changes(changes, backup=True, outside=str(node.cdir), backup_dir=p.backup_dir)
    assert made and all(os.path.dirname(b) == str(node.etc) and b.endswith("~") for b in made)
    assert not [x for x in os.listdir(str(node.cdir)) if x.endswith("~")]
    assert fileops.backup_file(str(node.main), backup_dir=p.backup_dir) != fileops.backup_file(str(node.main), backup_dir=p.backup_dir)


def test_a_concurrent_change_is_refused(tmp_path):
    node = Node(tmp_path, main=fixture("crio.conf"))
    p = node.plan(drop_in=None)
    node.main.write_text(fixture("crio.conf") + "# edited meanwhile\n")
    with pytest.raises(fileops.FileOpError, match="changed since it was read"):
        fileops.apply_changes([(f.path, f.before, f.after) for f in p.files])
    assert node.main.read_text().endswith("# edited meanwhile\n")


# -- the command source and the health check ---------------------------------------------------------
RUNNING = """[crio]
  root = "/var/lib/containers/storage"
  [crio.runtime]
    default_runtime = "runc"
    [crio.runtime.runtimes]
      [crio.runtime.runtimes.runc]
        runtime_config_path = ""
        runtime_path = "/usr/bin/runc"
        runtime_type = "oci"
        runtime_root = "/run/runc"
        monitor_path = "/usr/libexec/crio/conmon"
        monitor_env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        monitor_cgroup = "system.slice"
        privileged_without_host_devices = false
        allowed_annotations = []
"""


def fake_crio(tmp_path: Path, status_rc: int = 0, status=RUNNING, version="1.29.1") -> str:
    """A stand-in crio: --version, and `status --socket S config` printing ``status``."""
    out = tmp_path / "status.toml"
    out.write_text(status)
    script = tmp_path / "crio"
    script.write_text(f"""#!/bin/sh
if [ "$1" = "--version" ]; then echo "crio version {version}"; exit 0; fi
if [ "$1" = "status" ] && [ "$2" = "--socket" ] && [ "$4" = "config" ]; then
  [ {status_rc} -eq 0 ] || {{ echo "connect: no such file" >&2; exit {status_rc}; }}
  cat {out}; exit 0
fi
echo "unexpected: $*" >&2; exit 2
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_command_source_reads_the_running_daemon(tmp_path):
    node = Node(tmp_path / "node")
    crio = fake_crio(tmp_path)
    p = engine.plan(node.opts(crio_path=crio, config_source=["command", "file"]))
    assert p.source == "command" and p.crio_version == (1, 29, 1)
    assert p.copied_from == "runc" and p.low_level_runtime == "/usr/bin/runc"
    apply(p)
    t = node.effective(builtin="runc")["runtimes"]["nvidia"]
    # as the daemon reports it, its zero values left out
    assert t == {"runtime_path": NVIDIA, "runtime_type": "oci", "runtime_root": "/run/runc-nvidia",
                 "monitor_path": "/usr/libexec/crio/conmon",
                 "monitor_env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                 "monitor_cgroup": "system.slice"}


def test_command_source_falls_back_to_the_files(tmp_path):
    node = Node(tmp_path / "node", dropins=dir_fixture("pkgs-1.29"))
    p = engine.plan(node.opts(crio_path=fake_crio(tmp_path, status_rc=1), config_source=["command", "file"]))
    assert p.source == "file" and p.copied_from == "crun"
    with pytest.raises(engine.EngineError, match="could not read the effective config: command: .*no such file"):
        engine.plan(node.opts(crio_path=fake_crio(tmp_path, status_rc=1), config_source=["command"]))


def test_files_win_over_the_running_daemon_for_the_table_and_divergence_is_reported(tmp_path):
    node = Node(tmp_path / "node", dropins=dir_fixture("pkgs-1.29"))
    p = engine.plan(node.opts(crio_path=fake_crio(tmp_path), config_source=["command", "file"]))
    assert p.copied_from == "runc"          # what the daemon runs with
    assert any("running CRI-O uses default_runtime 'runc' but its files say 'crun'" in w for w in p.warnings)
    # runc as written in 10-crio.conf, not as the daemon reports it
    apply(p)
    assert node.effective()["runtimes"]["nvidia"]["runtime_path"] == NVIDIA
    assert node.effective()["runtimes"]["nvidia"]["monitor_path"] == "/usr/libexec/crio/conmon"
    assert "monitor_env" not in node.effective()["runtimes"]["nvidia"]


def test_loaded_mismatch(tmp_path):
    node = Node(tmp_path, dropins=dir_fixture("pkgs-1.29"))
    p = node.plan(set_as_default=True)
    ok = {"crio": {"runtime": {"default_runtime": "nvidia", "runtimes": {"nvidia": {"runtime_path": NVIDIA}}}}}
    assert engine.loaded_mismatch(p, ok) is None
    stale = copy.deepcopy(ok)
    stale["crio"]["runtime"]["default_runtime"] = "crun"
    assert "default_runtime 'crun'" in engine.loaded_mismatch(p, stale)
    del stale["crio"]["runtime"]["runtimes"]["nvidia"]
    assert "runtime_path None for the nvidia handler" in engine.loaded_mismatch(p, stale)
    apply(p)
    gone = node.plan(state="absent")
    assert engine.loaded_mismatch(gone, ok) == "crio still reports the nvidia handler"
    assert engine.loaded_mismatch(gone, {"crio": {"runtime": {"runtimes": {}}}}) is None


def test_missing_runtime_binary_is_reported(tmp_path):
    node = Node(tmp_path, dropins=dir_fixture("pkgs-1.29"))
    binary = tmp_path / "nvidia-container-runtime"
    p = node.plan(runtime_path=str(binary))
    assert any(str(binary) in w and "refuses" in w for w in p.warnings)
    binary.write_text("")
    assert not any("refuses" in w for w in node.plan(runtime_path=str(binary)).warnings)


def test_fixtures_are_what_the_readme_says(tmp_path):
    """Guard against editor "fix-ups" of the byte-exact fixtures."""
    assert (FIX / "pkgs-main" / "10-crio.conf").stat().st_size == 482
    assert (FIX / "kata-deploy" / "100-debug").stat().st_size == 0
    assert "\t" in fixture("kata-deploy/99-kata-deploy") and "\t" in fixture("crio.conf")
    for p in FIX.rglob("*"):
        if p.is_file() and p.name != "README.md":
            tomllib.loads(p.read_text())
    shutil.rmtree(tmp_path)


# -- CRI-O's built-in default handler, as the real `crio config` of 1.36.3 prints it ------------------
V136 = (1, 36, 3)


def builtin_from_crio_config(text: str, name: str) -> dict:
    """The commented-out ``[crio.runtime.runtimes.NAME]`` block of `crio config` output (the built-in
    handler), parsed. Zero values are left out, and monitor_cgroup: CRI-O fills an empty one for the
    cgroup manager in use ("system.slice" with systemd, "" with cgroupfs, where "system.slice" is invalid)."""
    lines = text.splitlines()
    start = lines.index(f"# [crio.runtime.runtimes.{name}]")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line[2:])
    table = tomllib.loads("\n".join(block))["crio"]["runtime"]["runtimes"][name]
    return {k: v for k, v in table.items() if v not in ("", False, [], 0) and k != "monitor_cgroup"}


def test_the_copy_of_the_built_in_crun_of_1_36_is_a_copy(tmp_path):
    """Issue 10 item 16/17: no file defines crun, so the handler copies CRI-O's built-in one, whole."""
    text = fixture("1.36.3-crio-config-default.toml")
    assert '# default_runtime = "crun"' in text and engine.builtin_default(V136) == "crun"
    crun = builtin_from_crio_config(text, "crun")
    assert crun["allowed_annotations"] == ["io.containers.trace-syscall", "devices.crio.io"]
    for main in (None, '[crio.runtime]\ndefault_runtime = "crun"\n'):
        node = Node(tmp_path / ("named" if main else "none"), main=main)
        p = node.run(version=V136)
        t = node.effective()["runtimes"]["nvidia"]
        assert t == expected_handler(crun, NVIDIA, "/run/crun-nvidia")
        assert t["allowed_annotations"] == crun["allowed_annotations"]
        assert t["monitor_env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        assert t["container_min_memory"] == "500KiB"
        assert p.copied_from == "crun" and not any("known here only" in w for w in p.warnings)
    # a later CRI-O: the newest known table still applies
    assert Node(tmp_path / "later").plan(version=(1, 37, 0)).files[0].after == node.drop.read_text()


@pytest.mark.parametrize("version,name", [((1, 31, 3), "crun"), ((1, 29, 1), "runc"), (None, "crun")])
def test_a_built_in_handler_not_seen_is_not_guessed(tmp_path, version, name):
    """Where no `crio config` output of that version was seen, only type and root are written (a wrong
    allowed_annotations entry makes CRI-O ignore the handler), and the module says so."""
    node = Node(tmp_path)
    p = node.run(version=version)
    assert p.copied_from == name
    assert node.effective(builtin=name)["runtimes"]["nvidia"] == {
        "runtime_path": NVIDIA, "runtime_type": "oci", "runtime_root": "/run/%s-nvidia" % name}
    assert any("built-in %s handler, whose table is known here only for CRI-O >= 1.36" % name in w for w in p.warnings)


# -- an existing handler table keeps what its owner set ----------------------------------------------
TUNED = """[crio.runtime.runtimes.nvidia]
runtime_path = "/usr/local/old/nvidia-container-runtime"   # before the toolkit moved
runtime_type = "oci"
allowed_annotations = [
\t"io.kubernetes.cri-o.Devices",
\t"io.kubernetes.cri-o.ShmSize",
]
monitor_env = ["PATH=/opt/bin:/usr/bin", "LOG_LEVEL=debug"]
privileged_without_host_devices = true
container_min_memory = "1MiB"
site_note = "kept"

"""


def adopted(theirs: dict, source: dict, path: str, root: str) -> dict:
    """The issue's rule, written independently: runtime_path is ours, everything the owner set stays,
    runtime_type/runtime_root only when missing, the other missing keys from the wrapped runtime."""
    t = dict(theirs, runtime_path=path)
    t.setdefault("runtime_root", root)
    t.setdefault("runtime_type", source.get("runtime_type") or "oci")
    for k, v in source.items():
        if k not in ("inherit_default_runtime", "platform_runtime_paths", "runtime_root"):
            t.setdefault(k, v)
    return t


def test_an_existing_handler_in_place_keeps_its_keys_and_comes_back_byte_for_byte(tmp_path):
    original = fixture("crio.conf").replace("[crio.image]", TUNED + "[crio.image]", 1)
    node = Node(tmp_path, main=original)
    before = node.effective()
    theirs = before["runtimes"]["nvidia"]
    p = node.run(drop_in=None)
    after = node.effective()
    assert after["runtimes"]["nvidia"] == adopted(theirs, before["runtimes"]["crun"], NVIDIA, "/run/crun-nvidia")
    same_except_ours(before, after)
    # every line the owner wrote is still there, but the runtime_path one (now recorded)
    new_lines = node.main.read_text().splitlines()
    assert [line for line in original.splitlines() if line not in new_lines] == [
        'runtime_path = "/usr/local/old/nvidia-container-runtime"   # before the toolkit moved']
    assert ('runtime_path = "%s"  # gpuops.nvidia: replaced "/usr/local/old/nvidia-container-runtime"   '
            '# before the toolkit moved' % NVIDIA) in new_lines
    assert p.restart_reason and "cri-o/cri-o#10202" in p.restart_reason
    assert not node.plan(drop_in=None).changed
    node.run(drop_in=None, state="absent")
    assert node.main.read_text() == original


def test_an_existing_handler_elsewhere_is_the_base_of_our_drop_in(tmp_path):
    original = fixture("crio.conf").replace("[crio.image]", TUNED + "[crio.image]", 1)
    node = Node(tmp_path, main=original, dropins=dir_fixture("pkgs-1.29"))
    files_before = snapshot(tmp_path)
    before = node.effective()
    p = node.run()
    after = node.effective()
    assert after["runtimes"]["nvidia"] == adopted(before["runtimes"]["nvidia"], before["runtimes"]["crun"], NVIDIA,
                                                  "/run/crun-nvidia")
    assert after["runtimes"]["nvidia"]["site_note"] == "kept"
    assert node.main.read_text() == original and p.files[0].path == str(node.drop)
    assert not node.plan().changed
    node.run(state="absent")
    assert snapshot(tmp_path) == files_before


def test_an_existing_handler_and_variant_in_a_foreign_drop_in(tmp_path):
    cdi = TUNED.replace("runtimes.nvidia]", "runtimes.nvidia-cdi]").replace(
        '"/usr/local/old/nvidia-container-runtime"', '"/usr/local/old/nvidia-container-runtime.cdi"') \
        .replace('runtime_type = "oci"\n', 'runtime_type = "oci"\nruntime_root = "/run/nvidia-cdi-state"\n')
    node = Node(tmp_path, dropins=dir_fixture("pkgs-1.29"))
    target = node.cdir / "10-crio.conf"
    original = target.read_text() + "\n" + TUNED + cdi
    target.write_text(original)
    before = node.effective()
    node.run(drop_in=str(target), variants=["cdi"])
    after = node.effective()
    crun = before["runtimes"]["crun"]
    assert after["runtimes"]["nvidia"] == adopted(before["runtimes"]["nvidia"], crun, NVIDIA, "/run/crun-nvidia")
    assert after["runtimes"]["nvidia-cdi"] == adopted(before["runtimes"]["nvidia-cdi"], crun, NVIDIA + ".cdi", "-")
    assert after["runtimes"]["nvidia-cdi"]["runtime_root"] == "/run/nvidia-cdi-state"      # theirs, kept
    assert not node.plan(drop_in=str(target), variants=["cdi"]).changed
    # the variant no longer wanted: its owner's table comes back (it is not removed: we did not write it)
    node.run(drop_in=str(target))
    assert node.effective()["runtimes"]["nvidia-cdi"] == before["runtimes"]["nvidia-cdi"]
    node.run(drop_in=str(target), state="absent")
    assert target.read_text() == original


def test_an_existing_handlers_root_yields_to_the_option_only(tmp_path):
    node = Node(tmp_path, main=TUNED.replace('runtime_type = "oci"\n', 'runtime_type = "oci"\nruntime_root = "/run/mine"\n'))
    assert node.plan(drop_in=None, version=V136).after.runtimes["nvidia"]["runtime_root"] == "/run/mine"
    p = node.plan(drop_in=None, version=V136, runtime_root="/run/gpu")
    assert p.after.runtimes["nvidia"]["runtime_root"] == "/run/gpu"


def test_an_existing_handler_that_inherits_the_default_is_refused(tmp_path):
    node = Node(tmp_path, main='[crio.runtime.runtimes.nvidia]\ninherit_default_runtime = true\n')
    before = snapshot(tmp_path)
    with pytest.raises(engine.EngineError, match=r"crio\.conf: crio\.runtime\.runtimes\.nvidia has inherit_default_runtime"):
        node.plan(version=V136)
    assert snapshot(tmp_path) == before


# -- the restart rule (cri-o/cri-o#10202) --------------------------------------------------------------
def test_handler_or_default_changes_need_a_restart(tmp_path):
    node = Node(tmp_path, dropins=dir_fixture("pkgs-1.29"))
    for kw, what in [({}, "crio.runtime.runtimes changed"),
                     ({"set_as_default": True}, "crio.runtime.runtimes and crio.runtime.default_runtime changed")]:
        p = node.plan(**kw)
        assert what in p.restart_reason and "cri-o/cri-o#10202" in p.restart_reason
        assert engine.restart_method("auto", p, True) == ("systemd", None)
        method, warning = engine.restart_method("reload", p, True)
        assert method == "systemd" and "restart: reload cannot apply" in warning and "cri-o/cri-o#10202" in warning
        assert engine.restart_method("systemd", p, True) == ("systemd", None)
    node.run(set_as_default=True)
    p = node.plan(state="absent")
    assert "crio.runtime.default_runtime changed" in p.restart_reason


def test_other_changes_may_still_reload(tmp_path):
    """The rule names the settings SIGHUP does not apply; a change that leaves them alone may reload."""
    base = {"crio": {"runtime": {"log_level": "info", "default_runtime": "crun", "runtimes": {"crun": {}}}}}
    other = copy.deepcopy(base)
    other["crio"]["runtime"]["log_level"] = "debug"
    assert engine.reload_is_not_enough(base, other) is None
    # files change (in place -> drop-in) but CRI-O's handlers and default stay the same
    node = Node(tmp_path, main=fixture("crio.conf"))
    node.run(drop_in=None, set_as_default=True)
    p = node.plan(set_as_default=True)
    assert p.changed and p.restart_reason is None
    assert engine.restart_method("auto", p, True) == ("reload", None)
    assert engine.restart_method("auto", p, False) == ("systemd", None)


def test_a_handler_the_running_crio_left_out_needs_a_restart(tmp_path):
    """Files unchanged, but CRI-O started before the handler's binary existed (it then ignores the handler)."""
    node = Node(tmp_path / "node", dropins=dir_fixture("pkgs-1.29"))
    binary = tmp_path / "nvidia-container-runtime"
    node.run(runtime_path=str(binary))
    crio = fake_crio(tmp_path, status=fixture("pkgs-1.29/10-crio.conf"), version="1.36.3")
    opts = node.opts(crio_path=crio, config_source=["command", "file"], runtime_path=str(binary))
    p = engine.plan(opts)
    assert not p.changed and not p.restart_pending          # the binary is still missing: a restart would not help
    binary.write_text("")
    p = engine.plan(opts)
    assert p.source == "command" and not p.changed and p.restart_pending
    assert "the files define nvidia but the running CRI-O does not use it" in p.restart_reason and "cri-o/cri-o#10202" in p.restart_reason
    assert engine.restart_method("reload", p, True)[0] == "systemd"
