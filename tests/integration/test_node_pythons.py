"""Issue 13, item 1: the containerd module on the Pythons and TOML packages the distributions ship, through
Ansible (ad-hoc ``ansible -m``, connection local, ``ansible_python_interpreter`` = the node's Python).

Each node is a CACHED venv under ~/.cache/gpuops-nvidia/nodepy/<python>-<combo>/ (built once with
``python -m venv`` from ~/.pyenv, the distribution's package versions pip-installed from PyPI, built in a
temporary folder and renamed into place). Python 3.6/3.7 cannot be managed by ansible-core 2.19: those
nodes are driven by a cached ansible-core 2.16 controller (~/.cache/gpuops-nvidia/ansible-core-2.16/).

Per node: present (changed), present again (unchanged, zero bytes), absent (the original bytes), on a copy
of a real ``containerd config default``; one node also validates with the real cached containerd 1.7.
A node without any reader fails with the one message and changes nothing.

    python -m tests.integration.test_node_pythons   # build the caches only (what the tests do first)
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("GPUOPS_CACHE", Path.home() / ".cache" / "gpuops-nvidia"))
PYENV = Path.home() / ".pyenv" / "versions"
NODEPY = CACHE / "nodepy"
CONTROLLER_216 = CACHE / "ansible-core-2.16"
CONTAINERD_17 = CACHE / "containerd" / "trixie" / "usr" / "bin" / "containerd"
FIXTURE = REPO / "tests" / "fixtures" / "containerd" / "default-1.7.toml"
FIXTURE_V1 = REPO / "tests" / "fixtures" / "containerd" / "legacy-v1.toml"

# (id, Python major.minor (the newest pyenv build of it), packages as the distribution ships them, the reader the module must pick)
NODES = [
    ("ubuntu2204-tomlkit", "3.10", ["tomlkit==0.9.2"], "tomlkit"),        # python3-tomlkit 0.9.2 (no unwrap)
    ("ubuntu2204-tomli", "3.10", ["tomli==1.2.2"], "tomli"),              # python3-tomli 1.2.2
    ("ubuntu2204-toml", "3.10", ["toml==0.10.2"], "toml"),                # python3-toml 0.10.2
    ("ubuntu2204-tomlkit0117", "3.10", ["tomlkit==0.11.7"], "tomlkit"),    # Debian 12's tomlkit, without tomllib
    ("debian12", "3.11", ["tomlkit==0.11.7"], "tomllib"),                  # bookworm: python3-tomlkit 0.11.7
    ("rhel8", "3.6", ["toml==0.10.0"], "toml"),                           # RHEL 8 AppStream python3-toml 0.10.0
    ("rhel8-tomli", "3.6", ["tomli==1.2.2"], "tomli"),                    # EPEL's python3-tomli on 3.6
    ("rhel9", "3.9", ["toml==0.10.2"], "toml"),                           # RHEL 9 AppStream python3-toml 0.10.2
    ("ubuntu2404", "3.12", ["tomlkit==0.12.4"], "tomllib"),
    ("debian13", "3.13", ["tomlkit==0.13.2"], "tomllib"),
]
BARE = [("rhel8-bare", "3.6", [], None), ("el-3.9-bare", "3.9", [], None)]
# the module through Ansible on the distributions' own combos (the reader test covers every node)
MODULE_NODES = [n for n in NODES if n[0] not in ("ubuntu2204-tomlkit0117", "rhel8-tomli")]
OLD_PYTHONS = ("3.6", "3.7")   # ansible-core 2.19 does not manage them


def _atomic_build(final: Path, build) -> Path:
    """Build into a temporary sibling, then rename: an interrupted build never looks finished."""
    if (final / ".complete").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".tmp-", dir=final.parent))
    try:
        build(tmp)
        (tmp / ".complete").write_text("ok\n")
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _venv(python: Path, packages: list[str]):
    def build(tmp: Path):
        subprocess.run([str(python), "-m", "venv", str(tmp)], check=True)
        if packages:
            subprocess.run([str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            *packages], check=True)
    return build


def pyenv_python(minor: str) -> Path:
    """The newest ~/.pyenv/versions/<minor>.N interpreter (whatever patch release the machine has)."""
    found = sorted(PYENV.glob(minor + ".*/bin/python"),
                   key=lambda p: [int(x) for x in p.parent.parent.name.split(".") if x.isdigit()])
    found = [p for p in found if p.parent.parent.name.count(".") == 2]
    if not found:
        pytest.skip("no Python %s under ~/.pyenv" % minor)
    return found[-1]


def node_python(node) -> Path:
    name, minor, packages, _reader = node
    python = pyenv_python(minor)
    venv = _atomic_build(NODEPY / ("%s-%s" % (python.parent.parent.name, name)), _venv(python, packages))
    return venv / "bin" / "python"


def controller(version: str) -> list[str]:
    """The argv start of ``ansible`` that can manage a node running Python ``version``."""
    if ".".join(version.split(".")[:2]) not in OLD_PYTHONS:
        return [sys.executable, str(Path(sys.executable).parent / "ansible")]
    python = pyenv_python("3.11")   # ansible-core 2.16 runs on a 3.10-3.12 controller
    venv = _atomic_build(CONTROLLER_216, _venv(python, ["ansible-core>=2.16,<2.17"]))
    return [str(venv / "bin" / "python"), str(venv / "bin" / "ansible")]


def run_module(node, args: dict, python: Path, module: str = "gpuops.nvidia.nvidia_containerd_runtime") -> dict:
    """``ansible localhost -m <module>`` (the containerd module by default) on the node's Python; its result."""
    env = dict(os.environ, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="minimal",
               ANSIBLE_PYTHON_INTERPRETER=str(python), ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="0")
    env.pop("ANSIBLE_CONFIG", None)
    cmd = controller(node[1]) + ["localhost", "-i", "localhost,", "-c", "local",
                                 "-e", "ansible_python_interpreter=%s" % python,
                                 "-m", module, "-a", json.dumps(args)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    try:   # minimal callback (ansible-core's own in 2.16 and 2.19): "localhost | CHANGED => {json}", "| FAILED! =>"
        at = res.stdout.index("=> {")
        result = json.loads(res.stdout[at + 3:])
        result["failed"] = "| FAILED!" in res.stdout[:at]
        return result
    except ValueError:
        raise AssertionError("ansible gave no result (rc %s):\n%s\n%s" % (res.returncode, res.stdout, res.stderr))


def reader_of(python: Path) -> str | None:
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from ansible_collections.gpuops.nvidia.plugins.module_utils import tomledit\n"
            "print(tomledit.READER[0] if tomledit.READER else 'none')" % str(REPO / ".build"))
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    return None if out == "none" else out


OUT_OF_ORDER = [   # tables out of order: tomlkit 0.9/0.11 lose keys in their mapping view, 0.11.7 raises on some
    'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\nruntime_type = "x"\n[plugins.other]\n'
    'a = 1\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\nSystemdCgroup = true\n'
    '[plugins."io.containerd.grpc.v1.cri".containerd]\ndefault_runtime_name = "runc"\n',
    '[a.b]\nx = 1\n[c]\ny = 2\n[a.d]\nz = 3\n[a]\nw = 4\n',
    'a.b.c = 1\na.d = "x"\n[t]\nx.y = [1, {p = 2, q.r = 3}]\n[[arr]]\nk = 1\n[[arr]]\nk = 2\n[arr.sub]\ns = true\n',
]


def _fixture_texts() -> list[str]:
    shared = Path("/work/shared/fixtures")
    files = sorted((REPO / "tests" / "fixtures").rglob("*.toml")) + (sorted(shared.rglob("*.toml")) if shared.is_dir() else [])
    return [p.read_text(encoding="utf-8") for p in files] + OUT_OF_ORDER


@pytest.mark.parametrize("node", NODES, ids=[n[0] for n in NODES])
def test_the_node_reader_reads_every_fixture_like_tomllib(node):
    """Every fixture and the out-of-order tables, read by the node's reader (whichever it is), equal tomllib's
    data (types included: JSON tells true from 1 and 1.0 from 1)."""
    import tomllib
    python = node_python(node)
    texts = _fixture_texts()
    code = ("import json, sys; sys.path.insert(0, %r)\n"
            "from ansible_collections.gpuops.nvidia.plugins.module_utils import tomledit\n"
            "def read(t):\n"
            "    try:\n"
            "        return tomledit.load(t)\n"
            "    except tomledit.TomlEditError as e:\n"
            "        return {'refused': str(e)}\n"
            "print(json.dumps([read(t) for t in json.load(sys.stdin)], sort_keys=True, default=repr))"
            % str(REPO / ".build"))
    res = subprocess.run([str(python), "-c", code], input=json.dumps(texts), capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    want = [json.loads(json.dumps(tomllib.loads(t.lstrip("\ufeff")), sort_keys=True, default=repr)) for t in texts]
    got = json.loads(res.stdout)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        if node[3] == "toml" and texts[i] == OUT_OF_ORDER[-1]:
            # toml 0.10 reads TOML 0.5: an array of mixed types (TOML 1.0) is refused, never misread
            assert g["refused"].startswith("malformed TOML in <string>:"), g
            continue
        assert g == w, "text %d read differently by %s" % (i, node[3])


def _args(cfg: Path, **kw) -> dict:
    a = dict(config=str(cfg), containerd_path="/nonexistent/containerd", config_source=["file"], config_version=2,
             validate=False, restart="none")
    a.update(kw)
    return a


@pytest.mark.parametrize("node", MODULE_NODES, ids=[n[0] for n in MODULE_NODES])
def test_containerd_module_on_the_distributions_python(node, tmp_path):
    python = node_python(node)
    assert reader_of(python) == node[3]
    cfg = tmp_path / "config.toml"
    original = FIXTURE.read_bytes()
    cfg.write_bytes(original)

    first = run_module(node, _args(cfg, set_as_default=True), python)
    assert not first.get("failed"), first
    assert first["changed"] is True
    written = cfg.read_bytes()
    assert b'[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]' in written
    assert b'default_runtime_name = "nvidia"  # gpuops.nvidia: replaced "runc"' in written

    second = run_module(node, _args(cfg, set_as_default=True), python)
    assert not second.get("failed") and second["changed"] is False, second
    assert cfg.read_bytes() == written

    gone = run_module(node, _args(cfg, state="absent"), python)
    assert not gone.get("failed") and gone["changed"] is True, gone
    assert cfg.read_bytes() == original


@pytest.mark.parametrize("node", [n for n in NODES if n[0] in ("rhel8", "ubuntu2204-tomlkit")], ids=lambda n: n[0])
def test_v1_drop_in_copies_the_cri_section_without_tomlkit_rendering(node, tmp_path):
    """containerd 1.6 replaces whole plugin sections from imports: the drop-in carries a copy of the CRI
    section (the hand-written table renderer); a second run changes nothing, absent gives the bytes back."""
    python = node_python(node)
    cfg, drop = tmp_path / "config.toml", tmp_path / "conf.d" / "99-nvidia.toml"
    original = FIXTURE.read_bytes()
    cfg.write_bytes(original)
    args = _args(cfg, drop_in=str(drop), config_version=None)
    args.pop("config_version")
    args["containerd_path"] = str(_fake_containerd(tmp_path, "1.6.20"))
    first = run_module(node, args, python)
    assert not first.get("failed") and first["changed"] is True, first
    written = (cfg.read_bytes(), drop.read_bytes())
    assert b'\n[plugins."io.containerd.grpc.v1.cri"]\n' in written[1] and b"\nsandbox_image = " in written[1], written[1]
    again = run_module(node, args, python)
    assert not again.get("failed") and again["changed"] is False, again
    assert (cfg.read_bytes(), drop.read_bytes()) == written
    gone = run_module(node, dict(args, state="absent"), python)
    assert not gone.get("failed"), gone
    assert cfg.read_bytes() == original and not drop.exists()


def _fake_containerd(tmp_path: Path, version: str) -> Path:
    """A stand-in that only answers ``--version`` (the version decides the drop-in layout)."""
    p = tmp_path / "bin" / "containerd"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("#!/bin/sh\necho 'containerd github.com/containerd/containerd v%s deadbeef'\n" % version)
    p.chmod(0o755)
    return p


@pytest.mark.parametrize("node", BARE, ids=[n[0] for n in BARE])
def test_a_node_without_a_reader_fails_with_the_one_message(node, tmp_path):
    python = node_python(node)
    assert reader_of(python) is None
    cfg = tmp_path / "config.toml"
    cfg.write_bytes(FIXTURE.read_bytes())
    res = run_module(node, _args(cfg, set_as_default=True), python)
    assert res.get("failed") is True and res.get("changed") is False, res
    msg = res["msg"]
    assert msg.startswith("no TOML reader in the node's Python %s" % node[1]), msg
    assert "Python >= 3.11 (tomllib)" in msg and "python3-toml" in msg and "pip install tomli" in msg
    assert cfg.read_bytes() == FIXTURE.read_bytes()


def test_validate_with_the_real_containerd_on_a_tomlkit_0_9_node(tmp_path):
    """Ubuntu 22.04's reader (tomlkit 0.9.2 on 3.10) and the real containerd 1.7 judging the result."""
    if not CONTAINERD_17.is_file():
        pytest.skip("no cached containerd 1.7 at %s" % CONTAINERD_17)
    node = NODES[0]
    python = node_python(node)
    cfg = tmp_path / "config.toml"
    original = FIXTURE.read_bytes()
    cfg.write_bytes(original)
    args = _args(cfg, containerd_path=str(CONTAINERD_17), validate=True, set_as_default=True)
    args.pop("config_version")
    first = run_module(node, args, python)
    assert not first.get("failed") and first["changed"] is True, first
    again = run_module(node, args, python)
    assert not again.get("failed") and again["changed"] is False, again
    gone = run_module(node, dict(args, state="absent"), python)
    assert not gone.get("failed"), gone
    assert cfg.read_bytes() == original


if __name__ == "__main__":   # warm the caches
    for n in NODES + BARE:
        print(node_python(n))
    print(controller("3.6.15"))


HOST_FACTS = ("os_family", "distribution", "distribution_version", "distribution_major_version", "architecture",
              "kernel", "pkg_mgr")


@pytest.mark.parametrize("node", [n for n in NODES if n[0] in ("rhel8", "rhel9", "ubuntu2204-toml", "debian13")],
                         ids=lambda n: n[0])
def test_host_facts_match_a_min_gathering_on_the_distributions_python(node):
    """The facts module's host facts (ansible-core's four collectors, imported without the facts package's
    __init__) are what setup's min gathering gives, on each Python the role manages (3.6 through ansible-core 2.16)."""
    python = node_python(node)
    got = run_module(node, {"host_facts": True}, python, module="gpuops.nvidia.nvidia_runtime_facts")
    assert not got["failed"], got
    want = run_module(node, {"gather_subset": ["min"]}, python, module="ansible.builtin.setup")
    assert not want["failed"], want
    for key in HOST_FACTS:
        assert got["ansible_facts"][key] == want["ansible_facts"]["ansible_" + key], key
    assert got["ansible_facts"]["python"]["executable"] == want["ansible_facts"]["ansible_python"]["executable"]
