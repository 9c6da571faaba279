"""bench/size.py's config builders (the sizes and shapes it times are what it says). No timing."""
import importlib.util
import sys
import tomllib

import pytest

from ansible_run import REPO_ROOT

BENCH = REPO_ROOT / "bench"


@pytest.fixture(scope="module")
def size():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("gpuops_bench_size", BENCH / "size.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(BENCH))
    return mod


def test_scaled_copies_every_table_under_a_new_name(size):
    base = size.DEFAULT.read_text()
    one, ten = tomllib.loads(base), tomllib.loads(size.scaled(base, 10))
    assert size.scaled(base, 1) == base
    assert [k for k in ten if not k.startswith("copy")] == list(one)
    assert all(ten["copy%d" % i] == one for i in range(1, 10)) and "copy10" not in ten
    assert size.scaled(base, 10).count("\n[") == 10 * base.count("\n[") + 9


def test_out_of_order_tables_come_after_everything_else(size):
    base = size.DEFAULT.read_text()
    text = size.out_of_order(base)
    rts = tomllib.loads(text)["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    assert len([k for k in rts if k.startswith("extra-")]) == 40
    assert text.startswith(base) and text.index("runtimes.extra-0]") > text.index("[ttrpc]")


def test_comments_are_spread_and_the_data_unchanged(size):
    base = size.DEFAULT.read_text()
    text = size.commented(base)
    assert text.count("# comment line") == 10000 and tomllib.loads(text) == tomllib.loads(base)
    assert set(size.configs([1, 10])) == {"1x", "10x", "ooo-1x", "ooo-10x", "comments"}
