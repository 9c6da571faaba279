"""The collection as an adopter gets it: ``ansible-galaxy collection build``, then install the tarball on a
"fresh controller" (an empty collections path, an empty ansible.cfg, a working directory outside the checkout)
and run the playbooks by FQCN.

* the tarball holds the collection and no test material: no tests/, molecule/, scripts/, bench/, no demo,
  no executable stand-ins (fake nvidia-smi, nvidia-ctk, nvidia-container-runtime), but COPYING and the changelog;
* ``ansible-playbook gpuops.nvidia.site --check`` and ``gpuops.nvidia.audit`` resolve from the installed copy
  and run on localhost with variables that keep everything inside tmp_path (engine none, no driver, no
  packages, no pip);
* ``ansible-builder introspect`` reads the installed collection's execution-environment metadata and
  ``ansible-builder create`` accepts an EE definition that installs the tarball (no image is built).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from ansible_run import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent
GALAXY = yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text())
TARBALL_NAME = "%s-%s-%s.tar.gz" % (GALAXY["namespace"], GALAXY["name"], GALAXY["version"])

# Top-level folders / files that are test or development material only.
NOT_SHIPPED = ("tests/", "molecule/", "scripts/", "bench/", ".ci/", ".venv/", ".build/", ".git/", "audit/",
               "changelogs/fragments/", "playbooks/demo.yml", "playbooks/files/", "playbooks/tasks/",
               "Makefile", "pytest.ini", "requirements-test.txt", "ansible.cfg")
STANDIN_NAMES = {"nvidia-smi", "nvidia-ctk", "nvidia-container-runtime", "nvidia-container-runtime.cdi",
                 "nvidia-container-runtime.legacy", "nvidia-container-cli"}


def run(cmd: list[str], env: dict, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def controller(tmp_path_factory):
    """Build the tarball from the checkout and install it into an empty collections path."""
    root = tmp_path_factory.mktemp("controller")
    (root / "ansible.cfg").write_text("[defaults]\n")  # a fresh controller's (empty) config
    env = dict(os.environ)
    for key in [k for k in env if k.startswith("ANSIBLE_")]:
        del env[key]
    env.update({
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(root / "collections"),
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_GALAXY_SERVER": "http://127.0.0.1:9/",  # never reach Galaxy (the tarball has no dependencies)
        "PATH": str(BIN) + os.pathsep + env.get("PATH", ""),
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    env.pop("PYTHONPATH", None)
    build = run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(root), str(REPO_ROOT)],
                env, root, timeout=120)
    assert build.returncode == 0, build.stdout + build.stderr
    tarball = root / TARBALL_NAME
    assert tarball.is_file(), build.stdout
    install = run([str(BIN / "ansible-galaxy"), "collection", "install", str(tarball), "-p", str(root / "collections")],
                  env, root, timeout=120)
    assert install.returncode == 0, install.stdout + install.stderr
    installed = root / "collections" / "ansible_collections" / GALAXY["namespace"] / GALAXY["name"]
    assert installed.is_dir() and not installed.is_symlink()
    work = root / "work"
    work.mkdir()
    return {"root": root, "env": env, "tarball": tarball, "installed": installed, "work": work}


def test_tarball_holds_no_test_material(controller):
    with tarfile.open(controller["tarball"]) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    leaked = [n for n in names if n.startswith(NOT_SHIPPED) or n.rstrip("/") in {p.rstrip("/") for p in NOT_SHIPPED}]
    assert leaked == []
    standins = [n for n in names if Path(n).name in STANDIN_NAMES]
    assert standins == []
    # nothing executable but folders (the role's helper is run through the node's Python)
    executables = [m.name for m in members if m.isfile() and m.mode & stat.S_IXUSR]
    assert executables == []
    for required in ("COPYING", "README.md", "CHANGELOG.rst", "changelogs/changelog.yaml", "meta/runtime.yml",
                     "meta/execution-environment.yml", "meta/ee-requirements.txt", "bindep.txt",
                     "playbooks/site.yml", "playbooks/audit.yml", "roles/nvidia_runtime/tasks/main.yml"):
        assert required in names, required
    assert "GNU GENERAL PUBLIC LICENSE" in (controller["installed"] / "COPYING").read_text()[:200]
    manifest = json.loads((controller["installed"] / "MANIFEST.json").read_text())
    assert manifest["collection_info"]["license"] == ["GPL-3.0-or-later"]


def test_collection_list_shows_the_installed_copy(controller):
    out = run([str(BIN / "ansible-galaxy"), "collection", "list", "gpuops.nvidia", "--format", "json"],
              controller["env"], controller["work"], timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    found = json.loads(out.stdout)
    assert list(found) == [str(controller["installed"].parent.parent)]
    assert found[str(controller["installed"].parent.parent)]["gpuops.nvidia"]["version"] == GALAXY["version"]


def sandbox(controller, tmp_path: Path) -> tuple[Path, Path]:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"gpu_nodes": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
    extravars = tmp_path / "vars.json"
    extravars.write_text(json.dumps({
        "ansible_become": False,  # root already; sites run with become: true
        "nvidia_runtime_engine": "none",
        "nvidia_runtime_driver_method": "none",
        "nvidia_runtime_toolkit_install": False,
        "nvidia_runtime_tomlkit_install": False,
        "nvidia_runtime_toolkit_config_path": str(tmp_path / "etc/nvidia-container-runtime/config.toml"),
        "nvidia_runtime_audit_dir": str(tmp_path / "audit"),
    }))
    return inventory, extravars


def test_site_by_fqcn_from_the_installed_tarball(controller, tmp_path):
    inventory, extravars = sandbox(controller, tmp_path)
    out = run([str(BIN / "ansible-playbook"), "-i", str(inventory), "-e", "@%s" % extravars,
               "gpuops.nvidia.site", "--check", "--diff"], controller["env"], controller["work"])
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    assert re.search(r"^localhost\s*:\s*ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", out.stdout, re.M), out.stdout[-3000:]
    assert "engine=none" in out.stdout
    assert str(REPO_ROOT) not in out.stdout + out.stderr  # nothing came from the checkout
    assert not (tmp_path / "etc").exists()


def test_audit_by_fqcn_from_the_installed_tarball(controller, tmp_path):
    inventory, extravars = sandbox(controller, tmp_path)
    out = run([str(BIN / "ansible-playbook"), "-i", str(inventory), "-e", "@%s" % extravars,
               "gpuops.nvidia.audit"], controller["env"], controller["work"])
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    report = json.loads((tmp_path / "audit/report.json").read_text())
    assert [h["host"] for h in report["hosts"]] == ["localhost"]
    assert report["hosts"][0]["error"] is None, report
    assert (tmp_path / "audit/report.md").is_file()
    assert str(REPO_ROOT) not in out.stdout + out.stderr


def test_execution_environment_metadata(controller, tmp_path):
    """ansible-builder reads the installed collection's EE metadata, and create accepts an EE that installs it."""
    assert shutil.which("ansible-builder", path=str(BIN)), "ansible-builder missing (requirements-test.txt)"
    out = run([str(BIN / "ansible-builder"), "introspect", str(controller["root"] / "collections")],
              controller["env"], tmp_path, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    # both files named by meta/execution-environment.yml are found (a missing one is reported here) and
    # hold no requirement: the controller needs ansible-core only (tomlkit is the nodes')
    assert "not present" not in out.stdout + out.stderr and "Error" not in out.stdout + out.stderr, out.stdout + out.stderr
    assert yaml.safe_load(out.stdout) == {"python": [], "system": []}
    meta = yaml.safe_load((controller["installed"] / "meta/execution-environment.yml").read_text())
    for path in meta["dependencies"].values():
        assert (controller["installed"] / path).is_file(), path

    context = tmp_path / "context"
    shutil.copy(controller["tarball"], tmp_path / TARBALL_NAME)
    (tmp_path / "execution-environment.yml").write_text(yaml.safe_dump({
        "version": 3,
        "images": {"base_image": {"name": "quay.io/ansible/awx-ee:latest"}},
        "dependencies": {"galaxy": {"collections": [{"name": "/build/" + TARBALL_NAME, "type": "file"}]}},
        "additional_build_files": [{"src": TARBALL_NAME, "dest": "."}],
        "additional_build_steps": {"prepend_galaxy": ["COPY _build/%s /build/%s" % (TARBALL_NAME, TARBALL_NAME)]},
    }, sort_keys=False))
    out = run([str(BIN / "ansible-builder"), "create", "-f", "execution-environment.yml", "-c", str(context)],
              controller["env"], tmp_path, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (context / "Containerfile").is_file()
    assert (context / "_build" / TARBALL_NAME).is_file()
