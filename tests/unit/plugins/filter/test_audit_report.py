"""The fleet audit's report logic (plugins/filter/audit.py): per-host audits in, report.json/.md out."""
import json
import re
from pathlib import Path

import pytest
import yaml

from ansible.errors import AnsibleFilterError
from ansible_collections.gpuops.nvidia.plugins.filter import audit
from ansible_collections.gpuops.nvidia.plugins.filter.audit import (
    HOST_KEYS, MISSING_AUDIT, STATES, audit_changes, audit_report, audit_report_markdown, host_state,
)

FILTER_DIR = Path(audit.__file__).resolve().parent
CONFIG = "/etc/containerd/config.toml"
TOOLKIT = "/etc/nvidia-container-runtime/config.toml"


def node(host, **kw):
    """An audit as the role's audit entry point records it (a configured containerd node by default)."""
    a = dict(host=host, engine="containerd", engine_version="1.6.20", gpu_count=0, driver=None,
             reboot_pending=False, toolkit="1.17.8", tomlkit=True, handler_present=True,
             nvidia_runtimes=["nvidia"], default_runtime="runc", would_change=False, would_change_files=[],
             changes=[], toolkit_config_would_change=None, error=None, line="...")
    a.update(kw)
    return a


def engine_result(*diffs, changed=True, **kw):
    r = dict(changed=changed, files=[d["before_header"].split(" (")[0] for d in diffs], diff=list(diffs))
    r.update(kw)
    return r


def file_diff(path, before, after):
    return dict(before=before or "", after=after or "",
                before_header="%s (%s)" % (path, "absent" if before is None else "before"),
                after_header="%s (%s)" % (path, "deleted" if after is None else "after"))


# -- audit_changes ----------------------------------------------------------------------------------
def test_changes_from_engine_diff_modify_counts_lines():
    before = 'version = 2\n[a]\n  BinaryName = "/usr/local/bin/x"\n'
    after = 'version = 2\n[a]\n  BinaryName = "/usr/bin/nvidia-container-runtime"\n  y = 1\n'
    assert audit_changes([engine_result(file_diff(CONFIG, before, after))]) == [
        dict(file=CONFIG, change="modify", lines_added=2, lines_removed=1)]


def test_changes_create_and_delete_from_headers():
    res = engine_result(file_diff("/etc/containerd/conf.d/99-nvidia.toml", None, "a\nb\n"),
                        file_diff(CONFIG, "x\n", None))
    assert audit_changes(res) == [
        dict(file="/etc/containerd/conf.d/99-nvidia.toml", change="create", lines_added=2, lines_removed=0),
        dict(file=CONFIG, change="delete", lines_added=0, lines_removed=1)]


def test_changes_toolkit_config_dict_diff_and_path():
    res = dict(changed=True, path=TOOLKIT, diff=dict(before="a = 1\n", after="a = 2\n",
                                                     before_header=TOOLKIT + " (before)",
                                                     after_header=TOOLKIT + " (after)"))
    assert audit_changes(res) == [dict(file=TOOLKIT, change="modify", lines_added=1, lines_removed=1)]


def test_changes_ignore_undefined_skipped_failed_unchanged():
    results = [None, dict(skipped=True, changed=False), dict(failed=True, changed=True, files=["/x"]),
               engine_result(file_diff(CONFIG, "a\n", "a\n"), changed=False), "junk"]
    assert audit_changes(results) == []
    assert audit_changes(None) == []


def test_changes_without_diff_mode_keep_the_file_names():
    assert audit_changes([dict(changed=True, files=[CONFIG, "/etc/containerd/conf.d/99-nvidia.toml"])]) == [
        dict(file=CONFIG, change=None, lines_added=None, lines_removed=None),
        dict(file="/etc/containerd/conf.d/99-nvidia.toml", change=None, lines_added=None, lines_removed=None)]


def test_changes_builtin_file_and_copy_results():
    """k3s/RKE2's copy/file tasks: dest or path, file's before/after state dicts."""
    removed = dict(changed=True, path="/etc/rancher/k3s/config.yaml.d/99-nvidia.yaml",
                   diff=dict(before=dict(path="/etc/rancher/k3s/config.yaml.d/99-nvidia.yaml", state="file"),
                             after=dict(path="/etc/rancher/k3s/config.yaml.d/99-nvidia.yaml", state="absent")))
    copied = dict(changed=True, dest="/etc/rancher/k3s/config.yaml.d/99-nvidia.yaml",
                  diff=[dict(before="", after="default-runtime: nvidia\n",
                             before_header="/etc/rancher/k3s/config.yaml.d/99-nvidia.yaml",
                             after_header="/etc/rancher/k3s/config.yaml.d/99-nvidia.yaml")])
    assert audit_changes([removed]) == [dict(file="/etc/rancher/k3s/config.yaml.d/99-nvidia.yaml", change="delete",
                                             lines_added=None, lines_removed=None)]
    assert audit_changes([copied]) == [dict(file="/etc/rancher/k3s/config.yaml.d/99-nvidia.yaml", change="modify",
                                            lines_added=1, lines_removed=0)]


def test_changes_one_entry_per_file_first_wins():
    first = engine_result(file_diff(CONFIG, "a\n", "b\n"))
    again = dict(changed=True, files=[CONFIG])
    assert audit_changes([first, again]) == [dict(file=CONFIG, change="modify", lines_added=1, lines_removed=1)]


def test_changes_changed_as_string_from_templating():
    assert audit_changes([dict(changed="True", files=[CONFIG])])[0]["file"] == CONFIG
    assert audit_changes([dict(changed="False", files=[CONFIG])]) == []


# -- host_state -------------------------------------------------------------------------------------
@pytest.mark.parametrize("audit_kw, state", [
    (None, "error"),
    (dict(error="boom"), "error"),
    (dict(error="boom", engine=None), "error"),                       # error wins over everything
    (dict(engine=None), "no_engine"),
    (dict(engine="none", handler_present=None, would_change=None), "no_engine"),
    (dict(handler_present=False, would_change=True, changes=[dict(file=CONFIG)]), "unconfigured"),
    (dict(handler_present=False, would_change=None, tomlkit=False), "unconfigured"),
    (dict(handler_present=None, would_change=None, tomlkit=False), "unchecked"),   # facts and modules blind
    (dict(handler_present=None, would_change=None, tomlkit=False, toolkit=None), "unconfigured"),  # never set up
    (dict(handler_present=None, would_change=True, toolkit=""), "unconfigured"),
    (dict(handler_present=None, would_change=True), "drift"),
    (dict(handler_present=None, would_change=False), "configured"),   # the module found its handler
    (dict(would_change=True, changes=[dict(file=CONFIG)]), "drift"),
    (dict(would_change=False, toolkit_config_would_change=True), "drift"),
    (dict(would_change=None, tomlkit=False), "unchecked"),
    (dict(), "configured"),
    (dict(handler_present="True", would_change="False"), "configured"),   # templated strings
])
def test_host_state_rules(audit_kw, state):
    assert host_state(None if audit_kw is None else node("h", **audit_kw)) == state


# -- audit_report -----------------------------------------------------------------------------------
def fleet():
    return [
        node("gpu-c", handler_present=False, nvidia_runtimes=[], would_change=None, tomlkit=False,
             toolkit=None, changes=[], would_change_files=[]),
        node("gpu-a"),
        node("gpu-b", would_change=True, changes=[dict(file=CONFIG, change="modify", lines_added=1, lines_removed=1)],
             would_change_files=[CONFIG]),
    ]


def test_report_rows_sorted_fixed_keys_and_summary():
    rep = audit_report(fleet(), hosts=["gpu-c", "gpu-a", "gpu-b", "gpu-d"], generated="2026-01-31T12:00:00Z")
    assert rep["schema_version"] == 1 and rep["generated"] == "2026-01-31T12:00:00Z"
    assert list(rep) == ["schema_version", "generated", "host_count", "summary", "hosts"]
    assert [r["host"] for r in rep["hosts"]] == ["gpu-a", "gpu-b", "gpu-c", "gpu-d"]
    assert all(tuple(r) == HOST_KEYS for r in rep["hosts"])
    assert [r["state"] for r in rep["hosts"]] == ["configured", "drift", "unconfigured", "error"]
    assert rep["summary"] == dict(error=1, no_engine=0, unconfigured=1, drift=1, unchecked=0, configured=1)
    assert list(rep["summary"]) == list(STATES)
    assert rep["host_count"] == 4
    json.dumps(rep)   # plain JSON types only


def test_report_row_values():
    rows = {r["host"]: r for r in audit_report(fleet(), hosts=["gpu-a", "gpu-b", "gpu-c", "gpu-d"])["hosts"]}
    a, b, c, d = rows["gpu-a"], rows["gpu-b"], rows["gpu-c"], rows["gpu-d"]
    assert (a["drift"], a["changes"], a["handlers"], a["default_runtime"]) == (False, [], ["nvidia"], "runc")
    assert a["engine"] == "containerd" and a["engine_version"] == "1.6.20" and a["gpu_count"] == 0
    assert b["drift"] is True and b["changes"] == [dict(file=CONFIG, change="modify", lines_added=1, lines_removed=1)]
    # unconfigured, no tomlkit: a real run would change it, but which files was not checked
    assert c["drift"] is True and c["changes"] is None and c["handler_present"] is False and c["tomlkit"] is False
    assert c["toolkit"] is None
    # no audit at all: every value null but host, state, error
    assert d["state"] == "error" and d["error"] == MISSING_AUDIT and d["drift"] is None
    assert {k for k, v in d.items() if v is not None} == {"host", "state", "error"}


def test_report_drift_of_other_states():
    rows = audit_report([node("n", engine="none", handler_present=None, would_change=None),
                         node("u", would_change=None, tomlkit=False),
                         node("e", error="unreachable: ssh timeout")])["hosts"]
    assert [(r["host"], r["state"], r["drift"]) for r in rows] == [
        ("e", "error", None), ("n", "no_engine", False), ("u", "unchecked", None)]
    assert rows[1]["engine"] is None   # "none" is no engine


def test_report_normalizes_templated_strings():
    rep = audit_report([node("h", gpu_count="2", reboot_pending="True", handler_present="True",
                             would_change="False", tomlkit="True", driver="", toolkit="None")])
    row = rep["hosts"][0]
    assert (row["gpu_count"], row["reboot_pending"], row["handler_present"], row["tomlkit"]) == (2, True, True, True)
    assert row["driver"] is None and row["toolkit"] is None and row["state"] == "configured"


def test_report_changes_fall_back_to_would_change_files():
    a = node("h", would_change=True, would_change_files=[CONFIG])
    del a["changes"]
    row = audit_report([a])["hosts"][0]
    assert row["state"] == "drift"
    assert row["changes"] == [dict(file=CONFIG, change=None, lines_added=None, lines_removed=None)]


def test_report_hosts_default_to_audits_and_dict_input():
    rep = audit_report({"y": node("y"), "x": dict(node("x"), host=None)})
    assert [r["host"] for r in rep["hosts"]] == ["x", "y"]
    assert audit_report([], hosts=[])["hosts"] == [] and audit_report(None)["summary"]["configured"] == 0


def test_report_default_generated_is_utc_iso():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", audit_report([])["generated"])


def test_report_bad_input():
    with pytest.raises(AnsibleFilterError):
        audit_report([dict(engine="containerd")])
    with pytest.raises(AnsibleFilterError):
        audit_report([], hosts="gpu-a")


# -- audit_report_markdown --------------------------------------------------------------------------
def table_rows(md):
    lines = md.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("| host |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return lines[start], rows


def test_markdown_one_row_per_host_with_columns():
    rep = audit_report(fleet(), hosts=["gpu-a", "gpu-b", "gpu-c", "gpu-d"], generated="2026-01-31T12:00:00Z")
    md = audit_report_markdown(rep)
    header, rows = table_rows(md)
    assert [c.strip() for c in header.split("|")[1:-1]] == [
        "host", "state", "engine", "GPUs", "driver", "toolkit", "handler present", "default runtime",
        "drift (what a real run would change)", "reboot pending"]
    assert [r[:2] for r in rows] == [["gpu-a", "configured"], ["gpu-b", "drift"], ["gpu-c", "unconfigured"],
                                     ["gpu-d", "error"]]
    a, b, c, d = rows
    assert a == ["gpu-a", "configured", "containerd 1.6.20", "0", "not loaded", "1.17.8", "yes (nvidia)", "runc",
                 "none", "no"]
    assert b[8] == "`%s` modify +1 -1" % CONFIG
    assert c[6] == "no" and c[5] == "not installed" and c[8].startswith("not set up (files not checked: no tomlkit")
    assert d[2:] == ["—"] * 8
    assert "2026-01-31T12:00:00Z" in md and md.endswith("\n")


def test_markdown_summary_counts_and_attention():
    rep = audit_report(fleet(), hosts=["gpu-a", "gpu-b", "gpu-c", "gpu-d"])
    md = audit_report_markdown(rep)
    counts = dict(re.findall(r"^\| (\w+) \| (\d+) \|", md.split("## Summary", 1)[1], re.M))
    assert counts == dict(error="1", no_engine="0", unconfigured="1", drift="1", unchecked="0", configured="1")
    assert "| **total** | 4 |" in md
    attention = md.split("## Needs attention", 1)[1]
    assert "- **gpu-b** (drift): %s (modify)" % CONFIG in attention
    assert "- **gpu-d** (error): " + MISSING_AUDIT in attention
    assert "gpu-a" not in attention


def test_markdown_escapes_pipes_and_newlines():
    rep = audit_report([node("h|1", error="line one\nline | two", engine=None)])
    header, rows = table_rows(audit_report_markdown(rep))
    assert len(rows) == 1 and rows[0][0] == "h\\|1" and len(rows[0]) == 10


def test_markdown_rejects_other_input():
    with pytest.raises(AnsibleFilterError):
        audit_report_markdown({"hosts": None})


# -- documentation ----------------------------------------------------------------------------------
def test_every_filter_has_its_documentation():
    """ansible-doc -t filter gpuops.nvidia.<name> reads plugins/filter/<name>.yml."""
    names = audit.FilterModule().filters()
    assert set(names) == {"audit_changes", "audit_report", "audit_report_markdown"}
    for name in names:
        doc = yaml.safe_load((FILTER_DIR / ("%s.yml" % name)).read_text())
        assert doc["DOCUMENTATION"]["name"] == name
        assert doc["DOCUMENTATION"]["options"]["_input"]["required"] is True
        assert "gpuops.nvidia.%s" % name in doc["EXAMPLES"]
        assert doc["RETURN"]["_value"]["type"]
