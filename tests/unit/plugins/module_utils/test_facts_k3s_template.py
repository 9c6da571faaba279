"""The k3s/RKE2 template a release renders is told by the facts (one home of the config-version rule); the
role asks ``template_name`` instead of comparing config versions in Jinja."""
from __future__ import annotations

import pytest

from ansible_collections.gpuops.nvidia.plugins.module_utils import facts
from fixtures.facts import faketree
from fixtures.facts.faketree import Tree

CDIR = "/var/lib/rancher/k3s/agent/etc/containerd"


@pytest.fixture
def k3s_tree():
    with Tree.temporary() as t:
        yield t


def k3s_engine(tree):
    f, _warnings = facts.gather(str(tree.root), runner=lambda argv: (127, "", "no programs under a fake root"))
    return f["engines"]["k3s"]


@pytest.mark.parametrize("version, name", [(2, "config.toml.tmpl"), (3, "config-v3.toml.tmpl")])
def test_template_name_follows_the_rendered_config_version(k3s_tree, version, name):
    faketree.k3s(k3s_tree, nvidia_in_config=False)
    if version == 3:   # a k3s on containerd 2.x renders a version 3 config
        text = (k3s_tree.root / CDIR.lstrip("/") / "config.toml").read_text()
        k3s_tree.file(CDIR + "/config.toml", "version = 3\n" + text.replace("version = 2\n", "")
                      .replace('"io.containerd.grpc.v1.cri"', '"io.containerd.cri.v1.runtime"'))
    e = k3s_engine(k3s_tree)
    assert e["config_version"] == version and e["template_name"] == name


def test_template_name_of_a_template_without_a_rendered_config(k3s_tree):
    faketree.k3s(k3s_tree, generated=False)
    k3s_tree.file(CDIR + "/config-v3.toml.tmpl", "{{ template \"base\" . }}\n")
    e = k3s_engine(k3s_tree)
    assert (e["config_version"], e["config_version_source"]) == (3, "template")
    assert e["template_name"] == "config-v3.toml.tmpl"
