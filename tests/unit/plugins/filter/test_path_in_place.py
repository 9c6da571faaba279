"""gpuops.nvidia.path_in_place: a path is in place when the facts read it with every wanted value."""
from __future__ import annotations

from ansible_collections.gpuops.nvidia.plugins.filter.paths import FilterModule, path_in_place

KEY = {"exists": True, "isdir": False, "mode": "0644", "uid": 0, "gid": 0, "checksum": "ab"}
MISSING = {"exists": False, "isdir": False, "mode": None, "uid": None, "gid": None, "checksum": None}


def test_every_wanted_value_must_match():
    paths = {"/k": KEY}
    assert path_in_place(paths, "/k", exists=True, isdir=False, mode="0644", uid=0, gid=0, checksum="ab")
    assert path_in_place(paths, "/k", exists=True, mode="0644")             # only what is asked is compared
    assert not path_in_place(paths, "/k", mode="0600")
    assert not path_in_place(paths, "/k", checksum="cd")
    assert not path_in_place(paths, "/k", uid=1000)


def test_a_path_the_facts_did_not_read_is_not_in_place():
    assert not path_in_place({}, "/k", exists=False)
    assert not path_in_place(None, "/k")
    assert not path_in_place({"/k": None}, "/k", exists=False)
    assert not path_in_place({"/k": {"exists": False}}, "/k", mode="0644")  # a key the facts do not give


def test_absent_is_a_wanted_value_too():
    assert path_in_place({"/k": MISSING}, "/k", exists=False)
    assert not path_in_place({"/k": KEY}, "/k", exists=False)


def test_registered_as_a_filter():
    assert FilterModule().filters()["path_in_place"] is path_in_place
