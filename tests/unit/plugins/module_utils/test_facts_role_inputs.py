"""What the facts module reads for the role besides the facts (plugins/module_utils/facts.py,
gather_role_inputs): the modules' Python, the installed packages, the state of the role's files.
On fake roots: nothing may be run there."""
import hashlib
import json
import os
import subprocess
import sys

from ansible_collections.gpuops.nvidia.plugins.module_utils import facts


def forbidden_runner(argv):
    raise AssertionError("a program was run under a fake root: %r" % (argv,))


DPKG_STATUS = """Package: nvidia-container-toolkit
Status: install ok installed
Version: 1.17.8-1

Package: libnvidia-container1
Status: deinstall ok config-files
Version: 1.17.9-1

Package: libnvidia-container-tools
Status: install ok installed
Architecture: amd64
Version: 1.17.8-1
Description: tools
 more text: with a colon
"""


def test_packages_from_the_dpkg_database(tmp_path):
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text(DPKG_STATUS)
    got = facts.gather_role_inputs(str(tmp_path), ["nvidia-container-toolkit", "libnvidia-container1",
                                                   "libnvidia-container-tools", "absent"], runner=forbidden_runner)
    # removed but its config files kept: not installed
    assert got["packages"] == {"nvidia-container-toolkit": "1.17.8-1", "libnvidia-container1": None,
                               "libnvidia-container-tools": "1.17.8-1", "absent": None}


def test_packages_without_a_database(tmp_path):
    # no dpkg database, and rpm may not be run under a fake root
    got = facts.gather_role_inputs(str(tmp_path), ["a", "b"], runner=forbidden_runner)
    assert got["packages"] == {"a": None, "b": None}


def test_path_states(tmp_path):
    (tmp_path / "etc/apt/keyrings").mkdir(parents=True)
    os.chmod(tmp_path / "etc/apt/keyrings", 0o750)
    key = tmp_path / "etc/apt/keyrings/k.asc"
    key.write_bytes(b"key\n")
    os.chmod(key, 0o644)
    os.symlink("k.asc", tmp_path / "etc/apt/keyrings/link.asc")
    got = facts.gather_role_inputs(str(tmp_path), paths=["/etc/apt/keyrings", "/etc/apt/keyrings/k.asc",
                                                         "/etc/apt/keyrings/link.asc", "/etc/missing"],
                                   runner=forbidden_runner)["paths"]
    json.dumps(got)
    assert got["/etc/apt/keyrings"] == {"exists": True, "isdir": True, "mode": "0750", "uid": os.getuid(),
                                        "gid": os.getgid(), "checksum": None}
    assert got["/etc/apt/keyrings/k.asc"]["checksum"] == hashlib.sha1(b"key\n").hexdigest()
    assert got["/etc/apt/keyrings/k.asc"]["mode"] == "0644" and not got["/etc/apt/keyrings/k.asc"]["isdir"]
    # a last symlink is not followed (the file modules would replace it)
    assert got["/etc/apt/keyrings/link.asc"]["exists"] and got["/etc/apt/keyrings/link.asc"]["checksum"] is None
    assert got["/etc/missing"] == {"exists": False, "isdir": False, "mode": None, "uid": None, "gid": None,
                                   "checksum": None}


def test_python_probe_is_this_interpreter():
    probe = facts.gather_role_inputs("/", runner=forbidden_runner)["probe"]
    assert probe["executable"] == sys.executable and probe["prefix"] == sys.prefix
    assert probe["venv"] == (sys.prefix != sys.base_prefix)
    assert set(probe) == {"executable", "venv", "prefix", "externally_managed", "pip"}


def test_python_probe_imports_no_toml_library():
    """The probe finds, it does not import: no module needs tomlkit (toml_reader says what the modules read with)."""
    code = ("import sys; sys.path[:0] = %r; from ansible_collections.gpuops.nvidia.plugins.module_utils import facts; "
            "facts.python_probe(); print(sorted(m for m in ('tomlkit', 'toml') if m in sys.modules))" % (sys.path,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
