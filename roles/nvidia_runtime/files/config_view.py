# -*- coding: utf-8 -*-
# Copyright: gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a runtime's config says about its handlers, as JSON (run on the node by the nvidia_runtime role).

    config_view.py cri  FILE            a containerd config file (e.g. a k0s drop-in, k3s's rendered config)
    config_view.py cri  -- CMD ARGS...  the TOML a command prints (containerd --config F config dump)
    config_view.py crio -- CMD ARGS...  the same for CRI-O (crio status --socket S config)

Prints {"runtimes": {name: BinaryName|runtime_path|null}, "default_runtime": ..., "version": ...,
"enable_cdi": ...}; on error {"error": "..."} and exit status 1. Reads with the TOML reader the collection's
modules use (the order of plugins/module_utils/tomledit.py READERS: tomllib, tomli, tomlkit, toml); a standalone
script run with ``python -c``, so it cannot import the collection.
"""
import json
import subprocess
import sys


def _reader():
    for name in ("tomllib", "tomli", "tomlkit", "toml"):
        try:
            mod = __import__(name)
        except ImportError:
            continue
        if name == "tomlkit":
            return lambda text: _plain(mod.parse(text))
        return mod.loads
    raise SystemExit(json.dumps({"error": "no TOML reader (tomllib, tomli, tomlkit, toml) in this Python"}))


def _plain(doc):
    """A tomlkit document (any version: 0.9 has no unwrap, 0.9/0.11 lose keys of tables out of order in their
    mapping view) -> plain data, walking its (key, item) pairs as tomledit.py does."""
    def is_table(item):
        return hasattr(getattr(item, "value", None), "body") and not isinstance(item, list)

    def merge(body, out):
        for key, item in body:
            if key is None:
                continue
            k = str(getattr(key, "key", key)[:])
            if type(item).__name__ == "AoT":
                out.setdefault(k, []).extend(merge(t.value.body, {}) for t in item.body)
            elif is_table(item):
                if not isinstance(out.get(k), dict):
                    out[k] = {}
                merge(item.value.body, out[k])
            else:
                out[k] = value(item)
        return out

    def value(item):
        if is_table(item):
            return merge(item.value.body, {})
        if isinstance(item, list):
            return [value(x) for x in item]
        inner = getattr(item, "value", item)
        if isinstance(inner, bool):
            return bool(inner)
        if isinstance(item, str):
            return str(item[:])
        return inner

    return merge(doc.body, {})


loads = _reader()

CRI_PATHS = {
    1: ("plugins", "cri"),
    2: ("plugins", "io.containerd.grpc.v1.cri"),
    3: ("plugins", "io.containerd.cri.v1.runtime"),
}


def get(data, path):
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def cri_view(data):
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        version = 1 if data else None
    paths = [CRI_PATHS[version]] if version in CRI_PATHS else list(CRI_PATHS.values())
    runtimes, default, cdi = {}, None, False
    for path in paths:
        cri = get(data, path)
        if not isinstance(cri, dict):
            continue
        tables = get(cri, ("containerd", "runtimes"))
        if isinstance(tables, dict):
            for name, table in tables.items():
                binary = get(table, ("options", "BinaryName"))
                runtimes[name] = binary if isinstance(binary, str) and binary else None
        name = get(cri, ("containerd", "default_runtime_name"))
        if isinstance(name, str) and name:
            default = name
        cdi = cdi or cri.get("enable_cdi") is True
    return {"version": version, "runtimes": runtimes, "default_runtime": default or "runc", "enable_cdi": cdi}


def crio_view(data):
    runtime = get(data, ("crio", "runtime")) or {}
    runtimes = {}
    tables = runtime.get("runtimes") if isinstance(runtime, dict) else None
    if isinstance(tables, dict):
        for name, table in tables.items():
            path = table.get("runtime_path") if isinstance(table, dict) else None
            runtimes[name] = path if isinstance(path, str) and path else None
    default = runtime.get("default_runtime") if isinstance(runtime, dict) else None
    return {"version": None, "runtimes": runtimes, "default_runtime": default or None, "enable_cdi": None}


def main(argv):
    if len(argv) < 2 or argv[0] not in ("cri", "crio"):
        raise SystemExit(__doc__)
    kind, rest = argv[0], argv[1:]
    try:
        if rest[0] == "--":
            proc = subprocess.run(rest[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError("%s exited %d: %s" % (" ".join(rest[1:]), proc.returncode, proc.stderr.strip()[-2000:]))
            text = proc.stdout
        else:
            with open(rest[0]) as f:
                text = f.read()
        data = loads(text)
        view = cri_view(data) if kind == "cri" else crio_view(data)
    except Exception as e:  # noqa: BLE001 - reported as JSON to the role
        print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}))
        return 1
    print(json.dumps(view))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
