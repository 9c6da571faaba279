"""A no-change containerd run asks each thing once (issue 11, "a lean no-change run").

* ``containerd_version`` (read earlier in the run, e.g. by the facts module): no ``containerd --version``;
* the dump of an EMPTY config (the build's built-in runtimes) is cached on the node per binary (real path
  and stat): a second real run dumps only the main file; check mode reads the cache, never writes it; a
  changed binary or a corrupt entry means a fresh dump;
* the main file is parsed once per plan (containerd and CRI-O engines).

The binary is a stand-in file (never executed): a fake runner answers for it and records every call.
The real builds judge the same in tests/integration/test_containerd_builtin_cache.py.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ansible_collections.gpuops.nvidia.plugins.module_utils import containerd as engine
from ansible_collections.gpuops.nvidia.plugins.module_utils import crio, fileops, tomledit
from ansible_run import REPO_ROOT

FIX = REPO_ROOT / "tests" / "fixtures" / "containerd"
EMPTY_DUMP = (FIX / "dump-2.2.7-empty.toml").read_text()
VERSION_OUT = "containerd github.com/containerd/containerd/v2 v2.2.7 0123456789abcdef\n"


class Runner:
    """Answers ``--version`` and ``config dump`` (with the 2.2.7 dump of an empty config) and records argv,
    and how many dumps were of an empty config (the built-in runtimes)."""

    def __init__(self):
        self.calls = []
        self.empty = 0

    def __call__(self, argv):
        self.calls.append(list(argv))
        if argv[1:] == ["--version"]:
            return 0, VERSION_OUT, ""
        if argv[-2:] == ["config", "dump"]:
            cfg = argv[argv.index("--config") + 1]
            if os.path.exists(cfg) and not Path(cfg).read_text().strip():
                self.empty += 1
            return 0, EMPTY_DUMP, ""
        return 1, "", "unexpected call %r" % (argv,)

    def count(self, what):
        return sum(1 for a in self.calls if (a[1:] == ["--version"] if what == "version" else a[-2:] == ["config", "dump"]))

    def empty_dumps(self):
        return self.empty


@pytest.fixture
def lockdir(tmp_path, monkeypatch):
    """The node's private run folder (fileops.LOCK_DIR), here under tmp_path; not created."""
    d = tmp_path / "run-lock"
    monkeypatch.setattr(fileops, "LOCK_DIR", str(d))
    monkeypatch.setattr(fileops.tempfile, "tempdir", str(tmp_path / "tmp"))   # its fallback, also ours
    (tmp_path / "tmp").mkdir()
    return d


@pytest.fixture
def node(tmp_path):
    """A stand-in containerd binary and a main config (the 2.2.7 default, our handler not in it yet)."""
    binary = tmp_path / "bin" / "containerd"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\nexit 99\n")
    binary.chmod(0o755)
    cfg = tmp_path / "etc" / "config.toml"
    cfg.parent.mkdir()
    cfg.write_text((FIX / "default-2.2.7.toml").read_text())
    return binary, cfg


def opts(node, **kw):
    binary, cfg = node
    o = dict(config=str(cfg), containerd_path=str(binary), config_source=["command"])
    o.update(kw)
    return o


def cache_files(lockdir):
    return sorted(p.name for p in lockdir.glob("*.json")) if lockdir.exists() else []


class Job:
    """What the module's flow hands the adapter (see _runtime_flow._Job)."""

    def __init__(self, params, runner, check_mode):
        self.params = dict(engine.DEFAULTS, socket="/nonexistent.sock", validate=False)
        self.params.update(params)
        self.run = runner
        self.check_mode = check_mode


def module_plan(node, check_mode, runner=None, **kw):
    runner = runner or Runner()
    p = engine.Adapter().plan(Job(opts(node, **kw), runner, check_mode))
    return p, runner


# -- containerd_version: read once per run ---------------------------------------------------------------
def test_given_version_means_no_version_call(lockdir, node):
    r = Runner()
    engine.plan(opts(node), runner=r)
    assert r.count("version") == 1                    # without it the binary is asked
    r = Runner()
    p = engine.plan(opts(node, containerd_version="2.2.7"), runner=r)
    assert r.count("version") == 0
    assert p.containerd_version == (2, 2, 7)
    assert p.config_version == 3


def test_given_version_through_the_module_adapter_and_query(lockdir, node):
    p, r = module_plan(node, check_mode=True, containerd_version="v2.2.7")
    assert r.count("version") == 0 and p.containerd_version == (2, 2, 7)


@pytest.mark.parametrize("value", ["", "2.2", "latest", "containerd 2.2.7", "2.2.7 extra"])
def test_a_value_that_is_not_a_version_is_refused(lockdir, node, value):
    binary, cfg = node
    before = cfg.read_bytes()
    r = Runner()
    with pytest.raises(engine.EngineError, match="containerd_version must be a version"):
        engine.plan(opts(node, containerd_version=value), runner=r)
    assert r.calls == [] and cfg.read_bytes() == before


# -- the empty-config dump, cached per binary ---------------------------------------------------------------
def test_second_real_run_dumps_only_the_main_file(lockdir, node):
    p1, r1 = module_plan(node, check_mode=False)
    assert r1.count("dump") == 2 and r1.empty_dumps() == 1
    assert len(cache_files(lockdir)) == 1
    p2, r2 = module_plan(node, check_mode=False)
    assert r2.count("dump") == 1 and r2.empty_dumps() == 0
    assert [(f.path, f.before, f.after) for f in p1.files] == [(f.path, f.before, f.after) for f in p2.files]
    assert p1.diff() == p2.diff()


def test_the_cache_entry_is_private_and_names_the_binary(lockdir, node):
    module_plan(node, check_mode=False)
    (name,) = cache_files(lockdir)
    entry = lockdir / name
    assert oct(entry.stat().st_mode & 0o777) == "0o600"
    data = json.loads(entry.read_text())
    assert data["binary"] == os.path.realpath(node[0])
    assert "runc" in data["value"]
    assert not [p for p in lockdir.iterdir() if p.name.endswith(".tmp")]


def test_check_mode_reads_the_cache_and_never_writes_it(lockdir, node):
    _p, r = module_plan(node, check_mode=True)
    assert r.empty_dumps() == 1
    assert not lockdir.exists() and cache_files(lockdir) == []     # not even the folder
    lockdir.mkdir(mode=0o700)                                     # as earlier runs' locks leave it
    module_plan(node, check_mode=True)
    assert cache_files(lockdir) == []
    module_plan(node, check_mode=False)
    (name,) = cache_files(lockdir)
    before = (lockdir / name).stat()
    _p, r = module_plan(node, check_mode=True)
    assert r.count("dump") == 1 and r.empty_dumps() == 0          # read
    after = (lockdir / name).stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)   # not rewritten


def test_engine_default_neither_reads_nor_writes(lockdir, node):
    module_plan(node, check_mode=False)
    assert len(cache_files(lockdir)) == 1             # an entry the default leaves alone
    r = Runner()
    engine.plan(opts(node), runner=r)
    assert r.empty_dumps() == 1
    entries = cache_files(lockdir)
    for name in entries:
        (lockdir / name).unlink()
    engine.plan(opts(node), runner=Runner())
    assert cache_files(lockdir) == []


@pytest.mark.parametrize("change", ["touch", "replace", "grow"])
def test_a_changed_binary_is_dumped_again(lockdir, node, change):
    binary = node[0]
    module_plan(node, check_mode=False)
    st = binary.stat()
    if change == "touch":
        os.utime(binary, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    elif change == "replace":   # a package upgrade: a new file renamed over the old one
        new = binary.with_name("containerd.new")
        new.write_bytes(binary.read_bytes())
        new.chmod(0o755)
        os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.rename(new, binary)
    else:
        with open(binary, "a") as f:
            f.write("# more\n")
        os.utime(binary, ns=(st.st_atime_ns, st.st_mtime_ns))
    _p, r = module_plan(node, check_mode=True)
    assert r.empty_dumps() == 1                                   # stale entry not used
    _p, r = module_plan(node, check_mode=False)
    assert r.empty_dumps() == 1                                   # and replaced
    _p, r = module_plan(node, check_mode=False)
    assert r.empty_dumps() == 0


def test_a_symlinked_binary_shares_the_entry_of_its_target(lockdir, node, tmp_path):
    link = tmp_path / "bin" / "containerd-link"
    link.symlink_to(node[0])
    module_plan(node, check_mode=False)
    _p, r = module_plan(node, check_mode=False, containerd_path=str(link))
    assert r.empty_dumps() == 0
    assert len(cache_files(lockdir)) == 1


@pytest.mark.parametrize("garbage", [b"", b"{not json", b"\xff\xfe", b"[]", b'{"binary": "x"}', b"null"])
def test_a_corrupt_entry_is_ignored_and_rewritten(lockdir, node, garbage):
    p1, _r = module_plan(node, check_mode=False)
    (name,) = cache_files(lockdir)
    (lockdir / name).write_bytes(garbage)
    p2, r = module_plan(node, check_mode=False)
    assert r.empty_dumps() == 1
    assert p2.diff() == p1.diff()
    assert json.loads((lockdir / name).read_text())["binary"] == os.path.realpath(node[0])


def test_an_entry_with_other_stat_or_another_binary_is_ignored(lockdir, node):
    module_plan(node, check_mode=False)
    (name,) = cache_files(lockdir)
    entry = json.loads((lockdir / name).read_text())
    poisoned = dict(entry, value={"runc": {"runtime_type": "poisoned"}})
    for bad in (dict(poisoned, stat=[0, 0, 0, 0, 0]), dict(poisoned, binary="/usr/bin/other"),
                dict(poisoned, kind="something-else")):
        (lockdir / name).write_text(json.dumps(bad))
        _p, r = module_plan(node, check_mode=True)
        assert r.empty_dumps() == 1


def test_a_symlink_as_entry_is_not_followed(lockdir, node, tmp_path):
    module_plan(node, check_mode=False)
    (name,) = cache_files(lockdir)
    elsewhere = tmp_path / "elsewhere.json"
    os.rename(lockdir / name, elsewhere)
    (lockdir / name).symlink_to(elsewhere)
    _p, r = module_plan(node, check_mode=True)
    assert r.empty_dumps() == 1


def test_missing_main_file_dump_fills_the_cache(lockdir, node):
    node[1].unlink()
    _p, r = module_plan(node, check_mode=False)
    assert r.count("dump") == 1
    assert len(cache_files(lockdir)) == 1
    node[1].write_text((FIX / "default-2.2.7.toml").read_text())
    _p, r = module_plan(node, check_mode=False)
    assert r.count("dump") == 1 and r.empty_dumps() == 0


# -- the main file is parsed once -----------------------------------------------------------------------------
@pytest.fixture
def reads(monkeypatch):
    """Every TomlText built and every load by an engine, by text (the parse cache cleared first)."""
    seen = []
    real_init = tomledit.TomlText.__init__

    def init(self, text, name="<string>"):
        seen.append(text)
        real_init(self, text, name)
    monkeypatch.setattr(tomledit.TomlText, "__init__", init)
    for mod in (crio, engine):     # the engines' own loads (TomlText's parse is counted as the TomlText)
        real_load = getattr(mod, "load")

        def load(text, name="<string>", _real=real_load):
            seen.append(text)
            return _real(text, name)
        monkeypatch.setattr(mod, "load", load)
    tomledit.clear_cache()
    return seen


@pytest.mark.parametrize("layout", ["in_place", "drop_in"])
def test_containerd_plan_reads_the_main_file_once(tmp_path, reads, layout):
    cfg = tmp_path / "config.toml"
    text = (FIX / "default-1.7.toml").read_text()
    cfg.write_text(text)
    o = dict(config=str(cfg), containerd_path="/nonexistent/containerd", config_source=["file"], layout=layout)
    if layout == "drop_in":
        o["drop_in"] = str(tmp_path / "conf.d" / "99-nvidia.toml")
    p = engine.plan(o, binary_version=(1, 7, 24))
    assert p.changed
    assert reads.count(text) == 1


@pytest.mark.parametrize("drop_in", [False, True])
def test_crio_plan_reads_the_main_file_once(tmp_path, reads, drop_in):
    etc = tmp_path / "etc" / "crio"
    etc.mkdir(parents=True)
    text = (REPO_ROOT / "tests" / "fixtures" / "crio" / "crio.conf").read_text()
    (etc / "crio.conf").write_text(text)
    o = dict(config=str(etc / "crio.conf"), config_dir=str(etc / "crio.conf.d"),
             drop_in=str(etc / "crio.conf.d" / "99-nvidia.toml") if drop_in else None,
             crio_path="/nonexistent/crio", config_source=["file"])
    p = crio.plan(o, crio_version=(1, 31, 3))
    assert p.changed
    assert reads.count(text) == 1


def test_editor_from_tomltext_reuses_the_parse_and_leaves_it_alone():
    tt = tomledit.TomlText("a = 1\n[t]\nb = 2\n", "x.toml")
    ed = tomledit.Editor.from_tomltext(tt)
    assert ed.tt is tt and ed.name == "x.toml"
    ed.set_value(("t",), "c", 3)
    assert tt.text == "a = 1\n[t]\nb = 2\n" and tt.data == {"a": 1, "t": {"b": 2}}
    assert tomledit.Editor("other = 1\n", "y", tt=tt).tt.data == {"other": 1}   # a tt of another text is not used
