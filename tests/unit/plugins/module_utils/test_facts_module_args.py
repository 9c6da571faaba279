"""The engine module's arguments the facts complete from the node (plugins/module_utils/facts.py, module_args): the
one home of "which containerd validates" and "which k0s release the drop-in is for" (the role states the rest)."""
import os

import pytest

from ansible_collections.gpuops.nvidia.plugins.module_utils import facts


def engines(**kinds):
    return {"engines": kinds}


CONTAINERD = {"binary": "/usr/bin/containerd", "version": "1.7.24", "version_source": "binary"}


def test_containerd_binary_and_version_from_the_facts():
    args = facts.module_args("containerd", {"config": "/etc/containerd/config.toml", "containerd_path": ""},
                             engines(containerd=CONTAINERD))
    assert args == {"config": "/etc/containerd/config.toml", "containerd_path": "/usr/bin/containerd",
                    "containerd_version": "1.7.24"}


def test_containerd_binary_inside_the_facts_root():
    """A sandbox's own binary validates its config (the facts' paths are inside their root)."""
    args = facts.module_args("containerd", {}, engines(containerd=dict(CONTAINERD, version=None, version_source=None)),
                             root="/srv/sandbox/")
    assert args == {"containerd_path": "/srv/sandbox/usr/bin/containerd"}


@pytest.mark.parametrize("source", ["dpkg:containerd", None])
def test_containerd_version_only_when_read_from_that_binary(source):
    """A dpkg version is the package's, not necessarily the binary's: the module reads the binary itself."""
    args = facts.module_args("containerd", {}, engines(containerd=dict(CONTAINERD, version_source=source)))
    assert "containerd_version" not in args and args["containerd_path"] == "/usr/bin/containerd"


def test_containerd_stated_binary_wins_and_its_version_is_not_assumed():
    args = facts.module_args("containerd", {"containerd_path": "/opt/bin/containerd"}, engines(containerd=CONTAINERD))
    assert args == {"containerd_path": "/opt/bin/containerd"}


def test_containerd_stated_binary_that_the_facts_read():
    args = facts.module_args("containerd", {"containerd_path": "/usr/bin/containerd"}, engines(containerd=CONTAINERD))
    assert args == {"containerd_path": "/usr/bin/containerd", "containerd_version": "1.7.24"}


def test_k0s_containerd_version_read_by_the_facts(tmp_path):
    binary = tmp_path / "containerd"
    binary.write_text("")
    k0s = {"binary": "/containerd", "version": "1.7.27", "version_source": "binary", "distribution_version": "v1.33.1+k0s.0"}
    args = facts.module_args("k0s", {"containerd_path": str(binary)}, engines(k0s=k0s), root=str(tmp_path))
    assert args == {"containerd_path": str(binary), "containerd_version": "1.7.27", "k0s_version": "v1.33.1+k0s.0",
                    "validate": True}
    args = facts.module_args("k0s", {"containerd_path": "/elsewhere/containerd"}, engines(k0s=k0s), root=str(tmp_path))
    assert "containerd_version" not in args


def test_containerd_not_found_is_the_one_on_path():
    assert facts.module_args("containerd", {}, engines()) == {"containerd_path": "containerd"}


@pytest.mark.parametrize("value", ["", None, []])
def test_empty_is_not_stated(value):
    """'' / None / [] leave the module's default (cdi_spec_dirs [] is not "no folders")."""
    args = facts.module_args("docker", {"config": "/etc/docker/daemon.json", "cdi_spec_dirs": value}, engines())
    assert args == {"config": "/etc/docker/daemon.json"}


def test_k0s_release_stated_over_installed(tmp_path):
    k0s = {"distribution_version": "v1.33.1+k0s.0"}
    binary = tmp_path / "containerd"
    stated = {"containerd_path": str(binary), "k0s_version": ""}
    assert facts.module_args("k0s", stated, engines(k0s=k0s)) == dict(
        stated, k0s_version="v1.33.1+k0s.0", validate=False)          # not there: bootstrap, nothing validates
    binary.write_text("")
    assert facts.module_args("k0s", dict(stated, k0s_version="v1.36.1+k0s.0"), engines(k0s=k0s)) == dict(
        stated, k0s_version="v1.36.1+k0s.0", validate=True)
    assert facts.module_args("k0s", dict(stated, validate=False), engines(k0s=k0s))["validate"] is False


def test_k0s_not_installed_and_not_stated():
    args = facts.module_args("k0s", {"containerd_path": "/nonexistent/containerd"}, engines())
    assert args == {"containerd_path": "/nonexistent/containerd", "validate": False}


def test_crio_and_docker_are_as_stated():
    stated = {"config": "/etc/crio/crio.conf", "crio_path": "crio", "restart": "auto"}
    assert facts.module_args("crio", stated, engines(crio={"binary": "/usr/bin/crio"})) == stated


@pytest.mark.parametrize("engine, module", [("containerd", "containerd"), ("k0s", "containerd"), ("crio", "crio"),
                                            ("docker", "docker"), ("k3s", None), ("microk8s", None)])
def test_engine_adapter(engine, module):
    adapter = facts.engine_adapter(engine)
    if module is None:
        assert adapter is None
    else:
        assert adapter.__module__.rsplit(".", 1)[-1] == module and adapter.options and "state" not in adapter.options
        assert os.path.basename(adapter.__module__.replace(".", "/")) == module
