"""STAND-IN for tests, not NVIDIA software (gpuops.nvidia test repository, version @VERSION@).

Stands in for NVIDIA's nvidia-ctk with a small, honest subset of its CLI:

  nvidia-ctk --version | -v | version
  nvidia-ctk cdi generate [--output F] [--format yaml|json] [--vendor V] [--class C] [...]
      needs a driver, as the real one does (it asks NVML): here the stand-in nvidia-smi must be
      installed (package nvidia-smi / nvidia-driver from the stand-in repository), else it fails
      with the real tool's error.  Writes a tiny valid CDI spec: one device per GPU that
      `nvidia-smi -L` lists (names "0", "1", ...) plus "all"; the edits only set environment
      variables, no device nodes or hooks.  Without --output the spec goes to stdout.
  nvidia-ctk cdi list
  nvidia-ctk config [--config-file F] [--in-place]
      what the packages' post-install runs: creates the default config.toml when it is missing and
      leaves an existing file untouched (the real tool re-serialises it; the stand-in does not).

Anything else (runtime configure, config --set, system ...) exits 2 with "not implemented in the
stand-in", so a test that depends on it fails instead of passing by accident.
Every call is appended to /var/log/nvidia-ctk-standin.log (NVIDIA_CTK_STANDIN_LOG overrides):
  <UTC timestamp> TAB nvidia-ctk TAB <arg1> TAB <arg2> ...
"""
import datetime
import json
import os
import subprocess
import sys

VERSION = "@UPSTREAM@"
LOG = os.environ.get("NVIDIA_CTK_STANDIN_LOG", "/var/log/nvidia-ctk-standin.log")
DEFAULT_CONFIG = "/usr/share/gpuops-standin/nvidia-container-runtime-config.toml"
SPEC_DIRS = ("/etc/cdi", "/var/run/cdi")
# generate flags that take a value (the real tool's names); boolean ones are listed apart.
GENERATE_VALUE_FLAGS = {
    "--output", "--format", "--vendor", "--class", "--mode", "--device-name-strategy", "--driver-root",
    "--dev-root", "--nvidia-cdi-hook-path", "--nvidia-ctk-path", "--ldconfig-path", "--library-search-path",
    "--csv.file", "--csv.ignore-pattern", "--config-search-path", "--feature-flag", "--disable-hook",
    "--enable-hook",
}
GENERATE_BOOL_FLAGS = {"--no-all-device", "--disable-hooks"}


def log_call(argv):
    try:
        ts = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with open(LOG, "a", encoding="utf-8") as f:
            f.write("\t".join([ts, "nvidia-ctk"] + argv) + "\n")
    except OSError:
        pass


def fail(msg, code=1):
    sys.stderr.write("nvidia-ctk (stand-in): %s\n" % msg)
    sys.exit(code)


def not_implemented(argv):
    fail("'%s' is not implemented in the stand-in (gpuops.nvidia test repository)" % " ".join(argv), 2)


def parse_flags(args, value_flags, bool_flags):
    opts, rest = {}, []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("-"):
            name, eq, val = a.partition("=")
            name = "--" + name.lstrip("-")
            if name in value_flags:
                if not eq:
                    i += 1
                    if i >= len(args):
                        fail("flag needs an argument: %s" % a, 1)
                    val = args[i]
                opts[name] = val
            elif name in bool_flags:
                opts[name] = True
            else:
                fail("flag provided but not defined: %s" % a, 1)
        else:
            rest.append(a)
        i += 1
    return opts, rest


def gpus():
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    except OSError:
        out = None
    if out is None or out.returncode != 0:
        fail("failed to initialize NVML: ERROR_LIBRARY_NOT_FOUND "
             "(no driver: install the stand-in nvidia-driver package)", 1)
    return [line.split(":", 1)[0].split()[1] for line in out.stdout.splitlines() if line.startswith("GPU ")]


def to_yaml(spec):
    lines = ["---", "cdiVersion: %s" % spec["cdiVersion"], "containerEdits:", "  env:"]
    lines += ["  - %s" % e for e in spec["containerEdits"]["env"]]
    lines.append("devices:")
    for d in spec["devices"]:
        lines += ["- containerEdits:", "    env:"]
        lines += ["    - %s" % e for e in d["containerEdits"]["env"]]
        lines.append('  name: "%s"' % d["name"])
    lines.append("kind: %s" % spec["kind"])
    return "\n".join(lines) + "\n"


def cdi_generate(args):
    opts, rest = parse_flags(args, GENERATE_VALUE_FLAGS, GENERATE_BOOL_FLAGS)
    if rest:
        fail("unexpected arguments: %s" % " ".join(rest), 1)
    output = opts.get("--output", "")
    fmt = opts.get("--format") or ("json" if output.endswith(".json") else "yaml")
    if fmt not in ("yaml", "json"):
        fail("invalid output format: %s" % fmt, 1)
    kind = "%s/%s" % (opts.get("--vendor", "nvidia.com"), opts.get("--class", "gpu"))
    devices = [{"name": i, "containerEdits": {"env": ["NVIDIA_STANDIN_DEVICE=%s" % i]}} for i in gpus()]
    if "--no-all-device" not in opts:
        devices.append({"name": "all", "containerEdits": {"env": ["NVIDIA_STANDIN_DEVICE=all"]}})
    spec = {"cdiVersion": "0.5.0", "kind": kind,
            "containerEdits": {"env": ["NVIDIA_STANDIN_CDI=@UPSTREAM@"]}, "devices": devices}
    text = json.dumps(spec, indent=2) + "\n" if fmt == "json" else to_yaml(spec)
    if not output:
        sys.stdout.write(text)
        return
    d = os.path.dirname(os.path.abspath(output))
    os.makedirs(d, exist_ok=True)
    tmp = output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, output)
    sys.stderr.write('level=info msg="Generated CDI spec with version 0.5.0"\n')


def cdi_list(args):
    if args:
        not_implemented(["cdi", "list"] + args)
    found = []
    for d in SPEC_DIRS:
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            kind, names = None, []
            try:
                text = open(path, encoding="utf-8").read()
            except OSError:
                continue
            if name.endswith(".json"):
                try:
                    spec = json.loads(text)
                except ValueError:
                    continue
                kind, names = spec.get("kind"), [dev.get("name") for dev in spec.get("devices", [])]
            elif name.endswith((".yaml", ".yml")):
                for line in text.splitlines():
                    if line.startswith("kind:"):
                        kind = line.split(":", 1)[1].strip()
                    elif line.strip().startswith("name:") or line.strip().startswith("- name:"):
                        names.append(line.split(":", 1)[1].strip().strip('"'))
            if kind:
                found += ["%s=%s" % (kind, n) for n in names]
    sys.stderr.write('level=info msg="Found %d CDI devices"\n' % len(found))
    for f in found:
        print(f)


def config(args):
    opts, rest = parse_flags(args, {"--config-file", "--output", "--set"}, {"--in-place", "-i"})
    if "--set" in opts or rest:
        not_implemented(["config"] + args)
    path = opts.get("--config-file", "/etc/nvidia-container-runtime/config.toml")
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else open(DEFAULT_CONFIG, encoding="utf-8").read()
    if "--in-place" in opts or "-i" in opts:
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return
    if opts.get("--output"):
        with open(opts["--output"], "w", encoding="utf-8") as f:
            f.write(text)
        return
    sys.stdout.write(text)


def main(argv):
    log_call(argv)
    args = [a for a in argv if a not in ("--quiet", "-q", "--debug", "-d")]
    if not args or args[0] in ("--help", "-h", "help"):
        print(__doc__)
        return
    if args[0] in ("--version", "-v", "version"):
        print("NVIDIA Container Toolkit CLI version %s" % VERSION)
        print("commit: gpuops-standin (STAND-IN for tests, not NVIDIA software)")
        return
    if args[:2] == ["cdi", "generate"]:
        return cdi_generate(args[2:])
    if args[:2] == ["cdi", "list"]:
        return cdi_list(args[2:])
    if args[0] == "config":
        return config(args[1:])
    not_implemented(args)


if __name__ == "__main__":
    main(sys.argv[1:])
