"""Stand-in for ``nvidia-ctk runtime configure --runtime=containerd --config=F`` (bench peers only).

The test repository's nvidia-ctk stand-in has no ``runtime configure``; this one does the same work at
about the same cost (one interpreter, one TOML parse of the config): it adds an ``nvidia`` runtime
(BinaryName /usr/bin/nvidia-container-runtime) under the CRI plugin of the file's config version when
the file has none, and leaves the file untouched (not rewritten) when it has one. Not NVIDIA software.
"""
import sys
import tomllib

CRI = {1: ("plugins", "cri"), 2: ("plugins", "io.containerd.grpc.v1.cri"), 3: ("plugins", "io.containerd.cri.v1.runtime")}


def main(argv):
    config = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "/etc/containerd/config.toml")
    try:
        with open(config, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        data = {}
    version = data.get("version", 1 if data else 2)
    path = CRI.get(version, CRI[3])
    node = data
    for key in path + ("containerd", "runtimes"):
        node = node.get(key, {}) if isinstance(node, dict) else {}
    if "nvidia" in node:
        print("nvidia runtime already configured in %s" % config)
        return 0
    table = ".".join('"%s"' % p if "." in p else p for p in path) + ".containerd.runtimes.nvidia"
    with open(config, "a") as f:
        f.write('\n[%s]\n  runtime_type = "io.containerd.runc.v2"\n\n[%s.options]\n'
                '  BinaryName = "/usr/bin/nvidia-container-runtime"\n' % (table, table))
    print("added the nvidia runtime to %s" % config)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
