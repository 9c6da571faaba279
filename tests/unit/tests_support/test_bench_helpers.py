"""bench/run.py's pure helpers (statistics, parsing, the table). No timing is asserted anywhere."""
import importlib.util

import pytest

from ansible_run import REPO_ROOT

BENCH = REPO_ROOT / "bench" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("gpuops_bench_run", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_median_ratio_stats(bench):
    assert bench.median([3.0, 1.0, 2.0]) == 2.0
    assert bench.median([1.0, 2.0, 3.0, 4.0]) == 2.5
    assert bench.median([]) is None
    assert bench.ratio(3.0, 1.5) == 2.0
    assert bench.ratio(1.0, 0) is None and bench.ratio(None, 1.0) is None
    s = bench.stats([0.3, 0.1, 0.2])
    assert s == {"samples_s": [0.3, 0.1, 0.2], "n": 3, "median_s": 0.2, "min_s": 0.1, "max_s": 0.3}
    assert bench.stats([])["median_s"] is None


def test_formatting(bench):
    assert bench.fmt_time(None) == "-"
    assert bench.fmt_time(12.34) == "12.3 s"
    assert bench.fmt_time(1.234) == "1.23 s"
    assert bench.fmt_time(0.456) == "456 ms"
    assert bench.fmt_time(0.0123) == "12.3 ms"
    assert bench.fmt_time(0.000456) == "456 us"
    assert bench.fmt_ratio(None) == "-"
    assert bench.fmt_ratio(1.0) == "1.00x"
    assert bench.fmt_ratio(13.71) == "13.7x"
    assert bench.fmt_ratio(250.4) == "250x"


def test_table_is_markdown(bench):
    text = bench.table(["a", "long header"], [["xyz", 1], ["", "2"]])
    lines = text.splitlines()
    assert lines[0] == "| a   | long header |"
    assert lines[1] == "|-----|-------------|"
    assert lines[2] == "| xyz | 1           |"
    assert len({len(line) for line in lines}) == 1


def test_down_intervals(bench):
    tr = [(0.0, True), (1.0, False), (1.5, True), (2.0, False), (4.0, True)]
    assert bench.down_intervals(tr, end=5.0) == [0.5, 2.0]
    assert bench.down_intervals([(0.0, True)], end=5.0) == []
    # still down when the poller stopped: counted up to the end
    assert bench.down_intervals([(0.0, True), (3.0, False)], end=5.0) == [2.0]


def test_parse_recap_and_adhoc(bench):
    out = (
        "PLAY RECAP *********\n"
        "gpuops-bench-1             : ok=42   changed=0    unreachable=0    failed=0    skipped=20\n"
        "gpuops-bench-2             : ok=40   changed=1    unreachable=0    failed=1    skipped=20\n"
    )
    assert bench.parse_recap(out) == {
        "gpuops-bench-1": {"ok": 42, "changed": 0, "unreachable": 0, "failed": 0},
        "gpuops-bench-2": {"ok": 40, "changed": 1, "unreachable": 0, "failed": 1},
    }
    status, result = bench.parse_adhoc('[WARNING]: x\ngpuops-bench-1 | CHANGED => {\n  "changed": true,\n'
                                       '  "restart_method": "signal"\n}\n')
    assert status == "CHANGED" and result == {"changed": True, "restart_method": "signal"}
    assert bench.parse_adhoc("nothing") == (None, {})


def test_parse_nodes(bench):
    assert bench.parse_nodes("8,1,4,4") == [1, 4, 8]
    with pytest.raises(Exception):
        bench.parse_nodes("0,2")


def test_starts_between(bench):
    a = {"Boots": 3, "NRestarts": 0, "InvocationID": "x", "MainPID": 10}
    assert bench.starts_between(a, dict(a)) == 0
    # systemctl restart: a new invocation and PID, one more boot line, NRestarts unchanged
    assert bench.starts_between(a, dict(a, Boots=4, InvocationID="y", MainPID=11)) == 1
    # two restarts between the readings: the journal's count wins
    assert bench.starts_between(a, dict(a, Boots=5, InvocationID="z", MainPID=12)) == 2
    # a journal rotated away still shows the new PID
    assert bench.starts_between(a, dict(a, Boots=0, MainPID=12)) == 1
    assert bench.starts_between({}, {}) == 0


def test_peer_summary(bench):
    samples = {"floor": [1.0, 2.0, 3.0], "module": [2.0, 2.0, 4.0], "site": [4.0, 5.0, 6.0], "naive": [8.0, 10.0, 12.0]}
    restarts = {"floor": [0, 0, 0], "module": [0, 0, 0], "site": [0, 0, 0], "naive": [4, 4, 4]}
    s = bench.peer_summary(samples, restarts, 4)
    assert s["site"]["site_ratio"] == 1.0
    assert s["module"]["site_ratio"] == 2.5 and s["floor"]["site_ratio"] == 2.5
    assert s["naive"]["site_ratio"] == 0.5
    assert s["naive"]["restarts_total"] == 12 and s["naive"]["restarts_per_run_per_node"] == 1.0
    assert s["site"]["restarts_per_run_per_node"] == 0.0
    assert s["module"]["median_s"] == 2.0 and s["module"]["n"] == 3
    # a peer without samples has no ratio
    assert bench.peer_summary({"site": [1.0], "careful": []}, {}, 1)["careful"]["site_ratio"] is None


def test_peers_are_playbooks_of_the_repository(bench):
    names = [name for name, _pb, _what in bench.PEERS]
    assert names[0] == "floor" and names[-1] == "naive"   # the naive peer restarts containerd: last in a round
    assert set(bench.NO_CHANGE_PEERS) == set(names) - {"naive"}
    for _name, pb, _what in bench.PEERS:
        assert pb.is_file(), pb
