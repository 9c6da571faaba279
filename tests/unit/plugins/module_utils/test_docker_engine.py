"""plugins/module_utils/docker.py: daemon.json edits that keep every other byte, and their record.

The engine is driven through ``plan(opts, read=...)`` on an in-memory file system (``Node``): each run
applies its plan's files, like the module does after validation.
"""
from __future__ import annotations

import json
import random
from collections import OrderedDict
from pathlib import Path

import pytest

from ansible_collections.gpuops.nvidia.plugins.module_utils import docker as engine
from ansible_collections.gpuops.nvidia.plugins.module_utils.common import EngineError
from ansible_run import REPO_ROOT
from unix_server import unix_server

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "docker"
SAMPLES = sorted(p.name for p in FIXTURES.glob("*.json"))
CFG = "/etc/docker/daemon.json"
SIDE = CFG + ".gpuops-nvidia"

OPTION_SETS = {
    "plain": {},
    "everything": {"variants": ["cdi", "legacy"], "set_as_default": True, "enable_cdi": True,
                   "runtime_args": ["--debug"]},
    "default-only": {"set_as_default": True},
    "cdi": {"enable_cdi": True, "variants": ["cdi"]},
}


class Node:
    """A file system of {path: text}; ``run`` plans and applies like the module (after validation)."""

    def __init__(self, files=None):
        self.files = dict(files or {})

    def read(self, path):
        return self.files.get(path)

    def plan(self, **opts):
        o = {"config": CFG}
        o.update(opts)
        return engine.plan(o, read=self.read)

    def run(self, **opts):
        p = self.plan(**opts)
        for f in p.files:
            if f.after is None:
                self.files.pop(f.path, None)
            else:
                self.files[f.path] = f.after
        return p


def sample(name):
    return (FIXTURES / name).read_text()


def ordered(text):
    return json.loads(text.lstrip("\ufeff"), object_pairs_hook=OrderedDict)


# --------------------------------------------------------------------------- the contract on every sample

@pytest.mark.parametrize("options", list(OPTION_SETS))
@pytest.mark.parametrize("name", SAMPLES)
def test_present_twice_then_absent_gives_the_original_bytes(name, options):
    original = sample(name)
    node = Node({CFG: original})
    first = node.run(**OPTION_SETS[options])
    written = node.files[CFG]
    assert first.changed and written != original
    assert node.run(**OPTION_SETS[options]).changed is False        # second run: zero bytes
    assert node.files[CFG] == written
    gone = node.run(state="absent", **OPTION_SETS[options])
    assert gone.changed
    if name in ("nvidia-ctk.json", "tuned-nvidia.json"):
        # a runtime named nvidia that another tool wrote is removed too, and the default follows
        data = ordered(node.files[CFG])
        assert "nvidia" not in data.get("runtimes", {}) and data.get("default-runtime") != "nvidia"
    else:
        assert node.files[CFG] == original
    assert SIDE not in node.files
    assert node.run(state="absent", **OPTION_SETS[options]).changed is False


@pytest.mark.parametrize("name", SAMPLES)
def test_every_other_key_keeps_its_value_and_order(name):
    original = sample(name)
    node = Node({CFG: original})
    node.run(**OPTION_SETS["everything"])
    after = ordered(node.files[CFG])
    before = ordered(original)
    ours = {"runtimes", "default-runtime", "features"}
    assert [k for k in after if k in before] == list(before)         # old keys, old order, new ones after
    for k, v in before.items():
        if k not in ours:
            assert after[k] == v
    for k, v in before.get("runtimes", {}).items():
        if k != "nvidia":
            assert after["runtimes"][k] == v
    for k, v in before.get("features", {}).items():
        if k != "cdi":
            assert after["features"][k] == v
    assert after["runtimes"]["nvidia"]["path"] == "/usr/bin/nvidia-container-runtime"
    assert after["runtimes"]["nvidia-cdi"]["path"] == "/usr/bin/nvidia-container-runtime.cdi"
    assert after["runtimes"]["nvidia-legacy"]["runtimeArgs"] == ["--debug"]
    assert after["default-runtime"] == "nvidia" and after["features"]["cdi"] is True


def test_new_members_copy_the_files_layout():
    node = Node({CFG: sample("handwritten.json")})
    node.run(enable_cdi=True)
    text = node.files[CFG]
    assert '    "containerd-snapshotter": false,\n    "cdi": true\n  },' in text
    assert ('    "crun": {\n      "path": "/usr/bin/crun"\n    },\n    "nvidia": {\n'
            '      "path": "/usr/bin/nvidia-container-runtime"\n    }\n  },') in text

    node = Node({CFG: sample("tabs-no-final-newline.json")})
    node.run()
    assert node.files[CFG].endswith('],\n\t"runtimes": {\n\t\t"nvidia": {\n\t\t\t"path": '
                                    '"/usr/bin/nvidia-container-runtime"\n\t\t}\n\t}\n}')

    node = Node({CFG: sample("one-line.json")})
    node.run(set_as_default=True)
    assert node.files[CFG] == ('{"debug":true,"runtimes":{"nvidia":{"path":"/usr/bin/nvidia-container-runtime"}},'
                               '"max-concurrent-downloads":3,"default-runtime":"nvidia"}\n')
    node = Node({CFG: sample("one-line.json")})
    node.run(variants=["cdi"], runtime_args=["-a", "-b"])
    assert '"runtimes":{"nvidia":{"path":"/usr/bin/nvidia-container-runtime","runtimeArgs":["-a","-b"]},' \
           '"nvidia-cdi":{' in node.files[CFG]


def test_crlf_and_bom_are_kept():
    original = "\ufeff" + sample("handwritten.json").replace("\n", "\r\n")
    node = Node({CFG: original})
    node.run(**OPTION_SETS["everything"])
    text = node.files[CFG]
    assert text.startswith("\ufeff{\r\n") and "\n" not in text.replace("\r\n", "")
    node.run(state="absent")
    assert node.files[CFG] == original


# --------------------------------------------------------------------------- a missing file, the record

@pytest.mark.parametrize("before", [None, "", "\n  \n"])
def test_a_file_the_module_creates_goes_away_with_absent(before):
    node = Node({} if before is None else {CFG: before})
    node.run(set_as_default=True)
    assert node.files[CFG] == ('{\n    "runtimes": {\n        "nvidia": {\n            "path": '
                               '"/usr/bin/nvidia-container-runtime"\n        }\n    },\n'
                               '    "default-runtime": "nvidia"\n}\n')
    record = json.loads(node.files[SIDE])
    assert record["file_before"] == before
    assert node.run(set_as_default=True).changed is False
    node.run(state="absent")
    assert node.files.get(CFG) == before and SIDE not in node.files


def test_the_record_holds_the_exact_text_replaced():
    node = Node({CFG: sample("handwritten.json")})
    node.run(set_as_default=True, enable_cdi=True)
    record = json.loads(node.files[SIDE])
    assert record["managed_by"] == "gpuops.nvidia nvidia_docker_runtime" and record["config"] == CFG
    by_path = {(tuple(e["path"]), e["op"]): e for e in record["edits"]}
    assert by_path[(("default-runtime",), "value")]["before"] == '"runc"'
    assert by_path[(("default-runtime",), "value")]["after"] == '"nvidia"'
    ins = by_path[(("runtimes",), "insert")]
    assert ins["keys"] == ["nvidia"] and ins["before"] == "" and ins["after"].startswith(',\n    "nvidia": {')
    assert by_path[(("features",), "insert")]["after"] == ',\n    "cdi": true'


def test_a_changed_option_set_still_restores_the_original():
    original = sample("handwritten.json")
    node = Node({CFG: original})
    node.run()
    node.run(variants=["cdi"], set_as_default=True)
    node.run(variants=["cdi", "legacy"], enable_cdi=True, runtime_args=["-v"], runtime_path="/opt/ncr")
    assert node.run(variants=["cdi", "legacy"], enable_cdi=True, runtime_args=["-v"],
                    runtime_path="/opt/ncr").changed is False
    data = ordered(node.files[CFG])
    assert data["default-runtime"] == "runc"     # set_as_default false again: the value it replaced
    assert data["runtimes"]["nvidia-legacy"] == {"path": "/opt/ncr.legacy", "runtimeArgs": ["-v"]}
    node.run(state="absent", variants=["cdi", "legacy"])
    assert node.files[CFG] == original and SIDE not in node.files


def test_set_as_default_false_unsets_a_default_naming_ours():
    node = Node({CFG: sample("nvidia-ctk.json")})
    p = node.run()
    assert "default-runtime" not in ordered(node.files[CFG]) and p.default_runtime == "runc"


def test_operator_edits_after_the_module_survive_absent():
    original = sample("handwritten.json")
    node = Node({CFG: original})
    node.run(enable_cdi=True)
    # the operator adds a runtime after ours and a key at the end
    text = node.files[CFG].replace('      "path": "/usr/bin/nvidia-container-runtime"\n    }\n',
                                   '      "path": "/usr/bin/nvidia-container-runtime"\n    },\n'
                                   '    "runsc": {"path": "/usr/bin/runsc"}\n')
    text = text.replace('"exec-opts": ["native.cgroupdriver=systemd"]\n',
                        '"exec-opts": ["native.cgroupdriver=systemd"],\n  "debug": true\n')
    node.files[CFG] = text
    p = node.run(state="absent")
    # our spans are still as written: they go exactly, the operator's lines stay exactly
    assert node.files[CFG] == original.replace(
        '      "path": "/usr/bin/crun"\n    }\n',
        '      "path": "/usr/bin/crun"\n    },\n    "runsc": {"path": "/usr/bin/runsc"}\n').replace(
        '"exec-opts": ["native.cgroupdriver=systemd"]\n', '"exec-opts": ["native.cgroupdriver=systemd"],\n  "debug": true\n')
    assert p.warnings == []


def test_an_insert_changed_inside_falls_back_to_removing_our_members():
    node = Node({CFG: sample("empty-object.json")})
    node.run()
    # the operator adds a runtime inside the runtimes object the module created
    node.files[CFG] = node.files[CFG].replace('"runtimes": {\n', '"runtimes": {\n        "crun": {"path": "/usr/bin/crun"},\n')
    p = node.run(state="absent")
    assert ordered(node.files[CFG]) == {"runtimes": {"crun": {"path": "/usr/bin/crun"}}}
    assert any("changed since" in w for w in p.warnings)


def test_a_path_changed_by_the_operator_is_not_put_back_by_absent_but_the_runtime_goes():
    node = Node({CFG: sample("handwritten.json")})
    node.run()
    node.files[CFG] = node.files[CFG].replace('"/usr/bin/nvidia-container-runtime"', '"/opt/other"')
    node.run(state="absent")
    assert "nvidia" not in ordered(node.files[CFG])["runtimes"]


# --------------------------------------------------------------------------- a tuned existing runtime

def test_a_tuned_runtime_keeps_its_other_keys():
    node = Node({CFG: sample("tuned-nvidia.json")})
    node.run(set_as_default=True)
    nv = ordered(node.files[CFG])["runtimes"]["nvidia"]
    assert nv == {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": ["--debug"],
                  "options": {"SystemdCgroup": True}}
    node.run(set_as_default=True, runtime_args=[])
    assert ordered(node.files[CFG])["runtimes"]["nvidia"]["runtimeArgs"] == []
    # only the path's value changed, in place
    assert node.files[CFG] == sample("tuned-nvidia.json").replace(
        "/usr/local/nvidia/toolkit/nvidia-container-runtime", "/usr/bin/nvidia-container-runtime").replace(
        '["--debug"]', "[]")


# --------------------------------------------------------------------------- errors: nothing changes

@pytest.mark.parametrize("text, opts, words", [
    ('{\n  "debug": true,\n  "runtimes": {\n}\n', {}, ["not valid JSON at line 5 column 1"]),
    ('{\n  "debug": true\n  "x": 1\n}\n', {}, ["not valid JSON at line 3 column 3", "Expecting ',' delimiter"]),
    ('{"a": NaN}', {}, ["not valid JSON"]),
    ('[{"runtimes": {}}]\n', {}, ["JSON object at the top level, not an array"]),
    ('"x"', {}, ["not a string"]),
    ('{\n  "runtimes": ["nvidia"]\n}\n', {}, ["runtimes must be an object, but it is an array (line 2 column 15)"]),
    ('{"runtimes": {"nvidia": "/usr/bin/x"}}', {}, ["runtimes.nvidia must be an object, but it is a string"]),
    ('{"features": ["cdi"]}', {"enable_cdi": True}, ["features must be an object"]),
    ('{"runtimes": {},\n "runtimes": {}}', {}, ["has the key 'runtimes' 2 times (again at line 2)"]),
    ('{}', {"runtime_name": "runc"}, ["built-in runtimes"]),
])
def test_bad_input_is_a_clear_error(text, opts, words):
    node = Node({CFG: text})
    with pytest.raises(EngineError) as e:
        node.plan(**opts)
    for w in words:
        assert w in str(e.value)
    assert CFG in str(e.value) or "runtime_name" in str(e.value)


def test_a_broken_record_is_an_error():
    node = Node({CFG: "{}", SIDE: "not json"})
    with pytest.raises(EngineError, match="daemon.json.gpuops-nvidia .*not valid JSON"):
        node.plan()


def test_a_stale_record_without_its_file_is_dropped():
    node = Node({SIDE: json.dumps({"edits": [{"op": "value", "path": ["x"], "before": "1", "after": "2"}]})})
    p = node.run(state="absent")
    assert SIDE not in node.files and any("stale" in w for w in p.warnings)


# --------------------------------------------------------------------------- random files

def _random_value(rng, depth):
    kind = rng.choice(["int", "str", "bool", "null", "list", "obj"] if depth < 3 else ["int", "str", "bool"])
    if kind == "int":
        return rng.randint(-5, 500)
    if kind == "str":
        return rng.choice(["", "a b", "ü", "quote\"d", "back\\slash", "/usr/bin/x"])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [_random_value(rng, depth + 1) for _i in range(rng.randint(0, 3))]
    return {"k%d" % i: _random_value(rng, depth + 1) for i in range(rng.randint(0, 3))}


@pytest.mark.parametrize("seed", range(60))
def test_random_files_round_trip(seed):
    rng = random.Random(seed)
    data = {"key%d" % i: _random_value(rng, 1) for i in range(rng.randint(0, 5))}
    if rng.random() < 0.5:
        data["runtimes"] = {"r%d" % i: {"path": "/bin/r%d" % i} for i in range(rng.randint(0, 2))}
    if rng.random() < 0.5:
        data["features"] = {"buildkit": True} if rng.random() < 0.5 else {}
    items = list(data.items())
    rng.shuffle(items)
    indent = rng.choice([None, 2, 4, "\t", 1])
    seps = rng.choice([(",", ":"), (", ", ": "), (",", ": ")])
    text = json.dumps(dict(items), indent=indent, separators=seps, ensure_ascii=rng.random() < 0.5)
    text += rng.choice(["", "\n", "\n\n"])
    node = Node({CFG: text})
    opts = rng.choice(list(OPTION_SETS.values()))
    node.run(**opts)
    after = node.files[CFG]
    assert ordered(after)["runtimes"]["nvidia"]["path"] == "/usr/bin/nvidia-container-runtime"
    assert node.run(**opts).changed is False
    node.run(state="absent", **opts)
    assert node.files[CFG] == text and SIDE not in node.files


# --------------------------------------------------------------------------- validation and health

def _plan_for(text, **opts):
    return Node({CFG: text}).plan(**opts)


def test_validate_runs_dockerd_on_the_candidate_and_names_the_real_file():
    calls = []

    def runner(argv):
        calls.append((argv, Path(argv[3]).read_text()))
        return 1, "", "unable to configure the Docker daemon with file %s: the following directives don't " \
                      "match any configuration option: bogus" % argv[3]

    p = _plan_for('{"bogus": 1}')
    with pytest.raises(EngineError) as e:
        engine.validate(p, "/usr/sbin/dockerd", runner)
    argv, content = calls[0]
    assert argv[:3] == ["/usr/sbin/dockerd", "--validate", "--config-file"] and argv[4:] == ["--userland-proxy=false"]
    assert content == p.files[0].after
    assert "with file %s: the following directives" % CFG in str(e.value) and "nothing was changed" in str(e.value)
    assert not Path(argv[3]).exists()


def test_validate_leaves_out_the_proxy_flag_when_the_file_sets_it():
    calls = []
    engine.validate(_plan_for('{"userland-proxy": true}'), "dockerd", lambda a: calls.append(a) or (0, "", ""))
    assert calls[0][4:] == []


def test_versions():
    assert engine.dockerd_version("d", lambda a: (0, "Docker version 26.1.5+dfsg1, build 411e817\n", "")) == (26, 1, 5)
    assert engine.can_validate((23, 0, 0)) and not engine.can_validate((20, 10, 24))


@pytest.fixture
def fake_docker_socket(tmp_path):
    state = {"info": {"Runtimes": {"runc": {}, "nvidia": {}}, "DefaultRuntime": "nvidia"}, "requests": []}

    def answer(conn):
        state["requests"].append(conn.recv(4096))
        body = json.dumps(state["info"]).encode()
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)

    with unix_server(str(tmp_path / "docker.sock"), answer) as path:
        yield path, state


def test_daemon_info_and_the_health_judgement(fake_docker_socket, tmp_path):
    path, state = fake_docker_socket
    info = engine.daemon_info(path)
    assert info == state["info"] and state["requests"][0].startswith(b"GET /info HTTP/1.0\r\n")
    assert engine.info_matches(info, _plan_for("{}", set_as_default=True))
    assert not engine.info_matches(info, _plan_for("{}", set_as_default=True, variants=["cdi"]))
    assert not engine.info_matches(info, _plan_for("{}"))                 # default should be runc
    assert not engine.info_matches(info, _plan_for("{}", state="absent"))  # nvidia must be gone
    assert engine.daemon_info(str(tmp_path / "nothing.sock")) is None


def test_a_file_re_serialised_by_nvidia_ctk_in_between_still_comes_back_to_the_original_settings():
    """nvidia-ctk rewrites the whole file (sorted, 4 spaces): the record's spans no longer match, so
    absent falls back to removing our members; the settings come back, the layout is nvidia-ctk's."""
    original = sample("handwritten.json")
    node = Node({CFG: original})
    node.run(set_as_default=True, enable_cdi=True)
    node.files[CFG] = json.dumps(json.loads(node.files[CFG]), indent=4, sort_keys=True) + "\n"
    assert node.run(set_as_default=True, enable_cdi=True).changed is False
    p = node.run(state="absent")
    assert json.loads(node.files[CFG]) == json.loads(original)
    assert SIDE not in node.files and any("changed since" in w for w in p.warnings)


def test_duplicates_elsewhere_are_not_ours_to_judge():
    node = Node({CFG: '{"debug": true, "debug": false}'})
    node.run()
    assert node.files[CFG] == '{"debug": true, "debug": false, "runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime"}}}'
