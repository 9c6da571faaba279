"""fleet: playbooks/audit.yml on three nodes (unconfigured, configured, drifted by hand).

The report is read on the controller ($MOLECULE_EPHEMERAL_DIRECTORY/audit, written by converge; audit-fail/ by
the side_effect run with nvidia_runtime_audit_fail_on_drift). Tests without the ``host`` fixture run once;
the ones with it run on each node (podman backend, molecule/shared/checks.py).
"""
import json
import os
import re
from pathlib import Path

import testinfra

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
REPORT_DIR = EPHEMERAL / "audit"
FAIL_DIR = EPHEMERAL / "audit-fail"
CONFIG = "/etc/containerd/config.toml"
HOSTS = ["gpuops-fleet-configured", "gpuops-fleet-drifted", "gpuops-fleet-unconfigured"]   # sorted
HOST_KEYS = ["host", "state", "drift", "engine", "engine_version", "gpu_count", "driver", "reboot_pending",
             "toolkit", "tomlkit", "handler_present", "handlers", "default_runtime", "changes", "error"]
STATES = ["error", "no_engine", "unconfigured", "drift", "unchecked", "configured"]
HAND_EDITED = '"/opt/hand-edited/nvidia-container-runtime"'


def load(folder=REPORT_DIR):
    return json.loads((folder / "report.json").read_text())


def rows(folder=REPORT_DIR):
    return {r["host"]: r for r in load(folder)["hosts"]}


def md_table(folder=REPORT_DIR):
    """The host table of report.md: header cells and one list of cells per row."""
    lines = (folder / "report.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| host |"))
    assert re.fullmatch(r"\|(---:?\|)+", lines[start + 1])
    table = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        table.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return [c.strip() for c in lines[start].split("|")[1:-1]], table


# -- report.json ------------------------------------------------------------------------------------
def test_json_schema():
    rep = load()
    assert list(rep) == ["schema_version", "generated", "host_count", "summary", "hosts"]
    assert rep["schema_version"] == 1 and rep["host_count"] == 3
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rep["generated"])
    assert [r["host"] for r in rep["hosts"]] == HOSTS
    assert all(list(r) == HOST_KEYS for r in rep["hosts"])


def test_json_summary():
    assert load()["summary"] == dict(error=0, no_engine=0, unconfigured=1, drift=1, unchecked=0, configured=1)
    assert list(load()["summary"]) == STATES


def test_json_configured_node():
    r = rows()["gpuops-fleet-configured"]
    assert (r["state"], r["drift"], r["changes"], r["error"]) == ("configured", False, [], None)
    assert (r["handler_present"], r["handlers"], r["default_runtime"]) == (True, ["nvidia"], "runc")
    assert r["engine"] == "containerd" and r["engine_version"].startswith("1.6.")
    assert (r["toolkit"], r["tomlkit"], r["gpu_count"], r["driver"], r["reboot_pending"]) == (
        "1.17.8", True, 0, None, False)


def test_json_drifted_node():
    """The hand edit: a real run would rewrite BinaryName in place, one line in config.toml."""
    r = rows()["gpuops-fleet-drifted"]
    assert (r["state"], r["drift"], r["error"]) == ("drift", True, None)
    assert (r["handler_present"], r["handlers"], r["default_runtime"]) == (True, ["nvidia"], "runc")
    assert r["changes"] == [dict(file=CONFIG, change="modify", lines_added=1, lines_removed=1)]
    assert r["engine"] == "containerd" and r["engine_version"].startswith("1.6.") and r["toolkit"] == "1.17.8"


def test_json_unconfigured_node():
    """Nothing but containerd and no toolkit; bookworm's Python 3.11 reads TOML (tomllib), so the facts read the
    config (no handler) and the module says which files a real run would change: unconfigured."""
    r = rows()["gpuops-fleet-unconfigured"]
    assert (r["state"], r["drift"], r["error"]) == ("unconfigured", True, None)
    assert r["changes"] and all(c["file"].startswith("/etc/containerd/") for c in r["changes"]), r["changes"]
    assert (r["handler_present"], r["handlers"], r["toolkit"], r["tomlkit"]) == (False, [], None, True)
    assert r["engine"] == "containerd" and r["engine_version"].startswith("1.6.") and r["gpu_count"] == 0


# -- report.md --------------------------------------------------------------------------------------
def test_md_one_row_per_host():
    header, table = md_table()
    assert header == ["host", "state", "engine", "GPUs", "driver", "toolkit", "handler present", "default runtime",
                      "drift (what a real run would change)", "reboot pending"]
    assert [row[0] for row in table] == HOSTS
    assert all(len(row) == len(header) for row in table)


def test_md_rows():
    _header, table = md_table()
    by_host = {row[0]: dict(zip(["host", "state", "engine", "gpus", "driver", "toolkit", "handler", "default",
                                 "drift", "reboot"], row)) for row in table}
    conf, drift, unconf = (by_host[h] for h in HOSTS)
    assert (conf["state"], conf["handler"], conf["default"], conf["drift"], conf["reboot"]) == (
        "configured", "yes (nvidia)", "runc", "none", "no")
    assert re.fullmatch(r"containerd 1\.6\.\d+", conf["engine"]) and conf["toolkit"] == "1.17.8"
    assert conf["gpus"] == "0" and conf["driver"] == "not loaded"
    assert (drift["state"], drift["handler"], drift["default"]) == ("drift", "yes (nvidia)", "runc")
    assert drift["drift"] == "`%s` modify +1 -1" % CONFIG
    assert (unconf["state"], unconf["handler"], unconf["toolkit"]) == ("unconfigured", "no", "not installed")
    assert unconf["drift"].startswith("`/etc/containerd/")


def test_md_summary_counts():
    text = (REPORT_DIR / "report.md").read_text()
    counts = dict(re.findall(r"^\| (\w+) \| (\d+) \|", text.split("## Summary", 1)[1], re.M))
    assert counts == dict(error="0", no_engine="0", unconfigured="1", drift="1", unchecked="0", configured="1")
    assert "| **total** | 3 |" in text
    attention = text.split("## Needs attention", 1)[1]
    assert "- **gpuops-fleet-drifted** (drift): %s (modify)" % CONFIG in attention
    assert "- **gpuops-fleet-unconfigured** (unconfigured)" in attention
    assert "gpuops-fleet-configured" not in attention


# -- nvidia_runtime_audit_fail_on_drift (side_effect) -----------------------------------------------
def test_fail_on_drift_failed_after_writing_the_same_report():
    log = (EPHEMERAL / "audit-fail.log").read_text()
    assert log.startswith("rc=2\n")
    assert re.search(r"2 host\(s\) not as a real run would leave them: gpuops-fleet-drifted \(drift\), "
                     r"gpuops-fleet-unconfigured \(unconfigured\)\. Report: \S+/audit-fail/report\.md", log), log
    fail, first = load(FAIL_DIR), load()
    assert fail["generated"] >= first["generated"]
    for rep in (fail, first):
        rep.pop("generated")
    assert fail == first
    assert [row[:2] for row in md_table(FAIL_DIR)[1]] == [row[:2] for row in md_table()[1]]


# -- the nodes: the two audits changed nothing ------------------------------------------------------
def test_audits_changed_nothing_on_the_node(host):
    before = host.file("/var/lib/gpuops-test/before-audit").content_string
    now = host.check_output("/var/lib/gpuops-test/audit-state.sh")
    assert now.strip() == before.strip()


def test_drifted_config_still_hand_edited():
    drifted = testinfra.get_host("podman://gpuops-fleet-drifted")
    assert HAND_EDITED in drifted.file(CONFIG).content_string
