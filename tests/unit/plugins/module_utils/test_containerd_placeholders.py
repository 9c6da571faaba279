"""The containerd engine's ``placeholders`` option: MicroK8s' real templates (tests/fixtures/microk8s), whose
``${NAME}`` placeholders the snap renders before containerd reads them. The engine reads, decides and validates
with the rendered values; the bytes it writes keep every placeholder."""
import os
import re
from pathlib import Path

import pytest
import tomlkit

from ansible_collections.gpuops.nvidia.plugins.module_utils import containerd as engine
from ansible_collections.gpuops.nvidia.plugins.module_utils.common import EngineError
from ansible_collections.gpuops.nvidia.plugins.module_utils.facts import microk8s_values
from ansible_run import run_module

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "microk8s"
NOBIN = "/nonexistent/containerd"
V17, V21 = (1, 7, 24), (2, 1, 9)
RT = ("plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes")
NCR = "/usr/bin/nvidia-container-runtime"
PLACEHOLDER = re.compile(r"\$\{[A-Z_]+\}")
VALUES = microk8s_values()   # ${RUNTIME} -> runc
GPU_VALUES = dict(VALUES, **{"${RUNTIME}": "nvidia-container-runtime"})   # the old GPU addon's lock file


def template(name, drop_gpu_handler=False):
    text = (FIXTURES / name).read_text()
    if drop_gpu_handler:   # the template without MicroK8s' own handler: ours is added
        start = text.index('    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia-container-runtime]')
        end = text.index("[plugins.", text.index("nvidia-container-runtime.options]") + 40)
        text = text[:start] + text[end - (len(text[:end]) - len(text[:end].rstrip(" "))):]
    return text


def plan(cfg, binver=V17, **opts):
    o = dict(config=str(cfg), containerd_path=NOBIN, config_source=["file"], runtime_path=NCR)
    o.update(opts)
    return engine.plan(o, binary_version=binver)


def write(p):
    for f in p.files:
        if f.after is None:
            os.unlink(f.path)
        else:
            Path(f.path).write_text(f.after)


def changed(p):
    return [f.path for f in p.files if f.before != f.after]


def placeholder_lines(text):
    return [line for line in text.splitlines() if PLACEHOLDER.search(line)]


def kept(original, text):
    """Every placeholder line of ``original`` is in ``text``, byte for byte and in order (ours may come between)."""
    it = iter(placeholder_lines(text))
    return all(any(line == x for x in it) for line in placeholder_lines(original))


def rendered(text, values=None):
    return tomlkit.parse(engine.render_placeholders(text, values or VALUES)).unwrap()


def runtimes(text, values=None):
    d = rendered(text, values)
    for k in RT:
        d = d[k]
    return d


CASES = [
    # fixture, drop MicroK8s' handler, handler name, containerd, placeholder values, default after
    ("containerd-template-v2-kata.toml", True, "nvidia", V17, VALUES, "runc"),
    ("containerd-template-v2-kata.toml", True, "nvidia", V21, VALUES, "runc"),
    ("containerd-template-v2-kata.toml", True, "nvidia", None, VALUES, "runc"),   # MicroK8s not installed yet
    ("containerd-template-v2-crun.toml", False, "nvidia-container-runtime", V17, VALUES, "runc"),
    ("containerd-template-v2-gpu.toml", True, "nvidia", V17, VALUES, "runc"),
    ("containerd-template-v2-kata.toml", False, "nvidia-container-runtime", V17, GPU_VALUES, "nvidia-container-runtime"),
]


@pytest.mark.parametrize("fixture, drop, name, binver, values, default", CASES)
def test_present_second_run_absent_keep_every_placeholder(tmp_path, fixture, drop, name, binver, values, default):
    """The ${RUNTIME} default resolves to what the snap renders: no table named after the placeholder is added
    (the snap would render it into a second runc table), the handler copies runc (its "${RUNTIME_TYPE}" kept as
    written), the default stays the placeholder; a second run changes nothing, absent restores the bytes."""
    cfg = tmp_path / "containerd-template.toml"
    original = template(fixture, drop)
    cfg.write_text(original)

    p = plan(cfg, binver, runtime_name=name, placeholders=values)
    assert changed(p) == [str(cfg)] and p.default_runtime == default and p.low_level_runtime == "runc"
    write(p)
    text = cfg.read_text()
    assert '"${RUNTIME}"]' not in text and "runtimes.runc-" not in text
    assert kept(original, text)
    assert 'default_runtime_name = "${RUNTIME}"' in text
    rts = runtimes(text, values)
    assert rts[name]["options"]["BinaryName"] == NCR
    assert rts[name]["runtime_type"] == rts["runc"]["runtime_type"]   # runc's, "${RUNTIME_TYPE}" rendered
    assert sorted(rts) == sorted(list(runtimes(original, values)) + ([name] if drop else []))
    if drop and "${RUNTIME_TYPE}" in original:   # a copy of runc as written: the placeholder stays for the snap
        assert ('[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.%s]  # gpuops.nvidia: added\n'
                '      runtime_type = "${RUNTIME_TYPE}"\n' % name) in text

    again = plan(cfg, binver, runtime_name=name, placeholders=values)
    assert changed(again) == [] and again.default_runtime == default

    back = plan(cfg, binver, runtime_name=name, placeholders=values, state="absent")
    write(back)
    assert cfg.read_text() == original


def test_set_as_default_records_the_placeholder_and_absent_restores_it(tmp_path):
    cfg = tmp_path / "containerd-template.toml"
    original = template("containerd-template-v2-kata.toml")
    cfg.write_text(original)
    opts = dict(runtime_name="nvidia-container-runtime", placeholders=VALUES, set_as_default=True)
    write(plan(cfg, **opts))
    text = cfg.read_text()
    assert 'default_runtime_name = "nvidia-container-runtime"  # gpuops.nvidia: replaced "${RUNTIME}"' in text
    assert changed(plan(cfg, **opts)) == []
    opts["set_as_default"] = False
    p = plan(cfg, **opts)   # back to the snap's default: runc once rendered
    assert p.default_runtime == "runc"
    write(p)
    assert 'default_runtime_name = "${RUNTIME}"\n' in cfg.read_text()
    write(plan(cfg, state="absent", **opts))
    assert cfg.read_text() == original


def test_no_placeholders_option_leaves_a_plain_template_alone(tmp_path):
    """Absent option (the default): a template without placeholders plans exactly as before."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(engine.render_placeholders(template("containerd-template-v2-kata.toml"), VALUES))
    a = plan(cfg, runtime_name="nvidia")
    b = plan(cfg, runtime_name="nvidia", placeholders={})
    assert [f.after for f in a.files] == [f.after for f in b.files] and a.default_runtime == "runc"


def test_validate_loads_a_rendered_copy_in_the_scratch_dir(tmp_path):
    """validate runs ``config dump`` on the candidate rendered (in the module's scratch folder), never on the
    template itself; without the values the candidate's default names no runtime and is refused."""
    cfg = tmp_path / "containerd-template.toml"
    original = template("containerd-template-v2-kata.toml", True)
    cfg.write_text(original)
    seen = []

    def runner(argv):
        path = argv[argv.index("--config") + 1]
        text = Path(path).read_text()
        seen.append((path, text))
        return 0, text, ""   # a dump of a version 2 file reads like the file

    opts = dict(engine.DEFAULTS, config=str(cfg), containerd_path=NOBIN, config_source=["file"], runtime_path=NCR,
                runtime_name="nvidia", placeholders=VALUES)
    p = engine.plan(opts, binary_version=V17)
    engine.validate(p, opts, "/fake/containerd", runner=runner)
    (path, text), = seen
    assert os.path.dirname(path) != str(tmp_path) and not os.path.exists(path)   # scratch, removed
    assert not PLACEHOLDER.search(text) and 'default_runtime_name = "runc"' in text
    assert PLACEHOLDER.search(p.files[0].after) and cfg.read_text() == original   # bytes to write keep them

    with pytest.raises(EngineError, match=r"default_runtime_name = '\$\{RUNTIME\}' is not among its runtimes"):
        engine.validate(p, dict(opts, placeholders=None), "/fake/containerd", runner=runner)


@pytest.mark.parametrize("value, message", [
    (["${RUNTIME}"], "placeholders must be a dict"),
    ({"${RUNTIME}": 1}, r"placeholders: the value of \$\{RUNTIME\} must be a string"),
    ({"": "x"}, "is not a placeholder name"),
])
def test_bad_placeholders_are_refused(tmp_path, value, message):
    cfg = tmp_path / "containerd-template.toml"
    cfg.write_text(template("containerd-template-v2-kata.toml"))
    with pytest.raises(EngineError, match=message):
        plan(cfg, placeholders=value)


def test_placeholders_need_in_place(tmp_path):
    cfg = tmp_path / "containerd-template.toml"
    cfg.write_text(template("containerd-template-v2-kata.toml"))
    with pytest.raises(EngineError, match="placeholders need layout in_place"):
        plan(cfg, placeholders=VALUES, drop_in=str(tmp_path / "conf.d/99-nvidia.toml"))


def test_module_check_mode_then_run_then_check(tmp_path):
    """Through the module: check mode reports the change and writes nothing, the run writes it (placeholders
    kept), a second check-mode run reports nothing. MicroK8s not installed (containerd unknown)."""
    cfg = tmp_path / "containerd-template.toml"
    original = template("containerd-template-v2-kata.toml", True)
    cfg.write_text(original)
    args = dict(config=str(cfg), containerd_path=NOBIN, config_source=["file"], layout="in_place",
                runtime_name="nvidia", runtime_path=NCR, placeholders=VALUES, validate=False, restart="none",
                socket=str(tmp_path / "none.sock"))

    r = run_module("gpuops.nvidia.nvidia_containerd_runtime", args, check=True, diff=True)
    assert not r["failed"], r.get("msg")
    assert r["changed"] is True and r["default_runtime"] == "runc" and cfg.read_text() == original
    after = r["diff"][0]["after"] if isinstance(r["diff"], list) else r["diff"]["after"]
    assert 'runtimes.nvidia]' in after and '"${RUNTIME}"]' not in after

    r = run_module("gpuops.nvidia.nvidia_containerd_runtime", args)
    assert not r["failed"] and r["changed"] is True, r.get("msg")
    text = cfg.read_text()
    assert text == after and kept(original, text)

    r = run_module("gpuops.nvidia.nvidia_containerd_runtime", args, check=True)
    assert not r["failed"] and r["changed"] is False, r.get("msg")
    assert cfg.read_text() == text


@pytest.mark.parametrize("source", ["file", "command"])
def test_query_reads_the_template_as_rendered(tmp_path, source):
    """state=query with placeholders: the view (file source) and the config dump (command source: a rendered
    temp copy, never the template itself) see the rendered values; the template keeps its bytes."""
    cfg = tmp_path / "containerd-template.toml"
    cfg.write_text(template("containerd-template-v2-kata.toml"))
    before = cfg.read_bytes()
    binary = tmp_path / "containerd"
    binary.write_text("#!/bin/sh\nexit 1\n")
    binary.chmod(0o755)
    dumped = []

    def runner(argv):   # a config dump that answers with the file it was given
        assert argv[1:2] == ["--config"] and argv[3:] == ["config", "dump"], argv
        dumped.append((argv[2], Path(argv[2]).read_text()))
        return 0, dumped[-1][1], ""

    out = engine.query(dict(config=str(cfg), containerd_path=str(binary), config_source=[source],
                            placeholders=VALUES), runner=runner)
    assert out["source"] == source
    assert out["view"]["default_runtime"] == VALUES["${RUNTIME}"]
    assert cfg.read_bytes() == before
    if source == "command":
        assert len(dumped) == 1 and dumped[0][0] != str(cfg) and not PLACEHOLDER.search(dumped[0][1])
    else:
        assert dumped == []
