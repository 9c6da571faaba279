# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the fleet audit (playbooks/audit.yml): the report's data and its Markdown rendering.

Documentation: one YAML file per filter beside this one (audit_changes.yml, audit_report.yml,
audit_report_markdown.yml), shown by ``ansible-doc -t filter gpuops.nvidia.<name>``.

* ``audit_changes``: registered results of the check-mode module runs -> what a real run would change,
  one entry per file (``file``, ``change``: create/modify/delete, ``lines_added``, ``lines_removed``).
* ``audit_report``: the per-host audits (the ``nvidia_runtime_audit`` facts) -> the report
  (``schema_version``, ``generated``, ``host_count``, ``summary``, ``hosts``), one row per expected host,
  sorted by host, every row with the same keys (null when unknown) and a ``state``.
* ``audit_report_markdown``: the report -> the Markdown page an operator reads.

Pure functions of their inputs (``generated`` aside, when not given): the unit tests call them directly.
"""

from __future__ import annotations

import datetime
import difflib

from ansible.errors import AnsibleFilterError

SCHEMA_VERSION = 1

# Every state a host can be in, in the order of the precedence rules of host_state() and of the summary.
STATES = ("error", "no_engine", "unconfigured", "drift", "unchecked", "configured")
STATE_MEANING = {
    "error": "unreachable, failed, or the audit itself failed (see error)",
    "no_engine": "no container runtime found: the runtime step has nothing to configure",
    "unconfigured": "no nvidia handler (or no toolkit and a config the facts cannot read): a real run would set it up",
    "drift": "a real run would change a file (the handler differs from what the role writes)",
    "unchecked": "toolkit installed, but the modules could not be asked (no tomlkit on the node): drift unknown",
    "configured": "the handler is in place and a real run would change nothing",
}
# The keys of each host row, in this order (report.json keeps it).
HOST_KEYS = (
    "host", "state", "drift", "engine", "engine_version", "gpu_count", "driver", "reboot_pending",
    "toolkit", "tomlkit", "handler_present", "handlers", "default_runtime", "changes", "error",
)
CHANGE_KEYS = ("file", "change", "lines_added", "lines_removed")
MISSING_AUDIT = "no audit from this host: unreachable, or it failed before the audit ran"


# ------------------------------------------------------------------------------------------ helpers
def _tristate(value):
    """True/False/None from a bool or a bool-like string ("True", "false", "yes"); anything else -> None."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    return None


def _text(value):
    """A non-empty string or None ("", "None" and null all mean unknown)."""
    if value is None:
        return None
    text = str(value).strip()
    return text if text and text not in ("None", "none", "null") else None


def _int(value):
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _str_list(value):
    if value is None or isinstance(value, (str, bytes, dict)):
        return None
    try:
        return [str(v) for v in value]
    except TypeError:
        return None


def _count_lines(before, after):
    """(added, removed) lines between two texts."""
    added = removed = 0
    for line in difflib.unified_diff((before or "").splitlines(), (after or "").splitlines(), n=0, lineterm=""):
        if line.startswith(("+++", "---", "@@")):
            continue
        if line.startswith("+"):
            added += 1
        elif line.startswith("-"):
            removed += 1
    return added, removed


def _header_path(header):
    """'/etc/x.toml (before)' -> '/etc/x.toml'."""
    text = str(header or "").strip()
    if text.endswith(")") and " (" in text:
        text = text[:text.rindex(" (")]
    return text or None


def _diff_entry(diff, fallback_path):
    """One Ansible diff dict -> a change entry (or None when it holds nothing usable)."""
    before, after = diff.get("before"), diff.get("after")
    bh, ah = str(diff.get("before_header") or ""), str(diff.get("after_header") or "")
    path = _header_path(bh) or _header_path(ah) or fallback_path
    if isinstance(before, dict) or isinstance(after, dict):
        # ansible.builtin.file style: {"path": ..., "state": ...} before and after
        b_state = (before or {}).get("state") if isinstance(before, dict) else None
        a_state = (after or {}).get("state") if isinstance(after, dict) else None
        path = (after or {}).get("path") or (before or {}).get("path") or path
        if b_state == "absent" and a_state not in (None, "absent"):
            change = "create"
        elif a_state == "absent" and b_state not in (None, "absent"):
            change = "delete"
        else:
            change = "modify"
        return dict(file=path, change=change, lines_added=None, lines_removed=None)
    if before is None and after is None:
        return None
    added, removed = _count_lines(before if isinstance(before, str) else "", after if isinstance(after, str) else "")
    if bh.endswith("(absent)"):
        change = "create"
    elif ah.endswith("(deleted)"):
        change = "delete"
    else:
        change = "modify"
    return dict(file=path, change=change, lines_added=added, lines_removed=removed)


# ------------------------------------------------------------------------------------------ filters
def audit_changes(results):
    """What a real run would change, from the registered results of check-mode runs.

    ``results``: a list of registered results (or one); undefined/None, skipped, failed and unchanged
    results are ignored. A result names its files by ``files`` (the engine modules), ``path`` (the toolkit
    config module, ansible.builtin.file) or ``dest`` (copy, template). Its ``diff`` (a dict or a list of
    them, with ``before``/``after`` and the ``*_header`` the modules write) gives the kind of change and the
    line counts; without a diff (diff mode off) they are null. One entry per file, first mention wins,
    in the order given.
    """
    if results is None:
        return []
    if isinstance(results, dict):
        results = [results]
    entries = []
    seen = {}
    for res in results:
        if not isinstance(res, dict) or res.get("skipped") or res.get("failed") or not _tristate(res.get("changed")):
            continue
        files = res.get("files")
        if isinstance(files, (list, tuple)):
            paths = [str(f) for f in files]
        else:
            one = res.get("path") or res.get("dest")
            paths = [str(one)] if one else []
        diffs = res.get("diff")
        if isinstance(diffs, dict):
            diffs = [diffs]
        found = []
        for d in diffs or []:
            if isinstance(d, dict):
                entry = _diff_entry(d, paths[0] if len(paths) == 1 else None)
                if entry and entry["file"]:
                    found.append(entry)
        described = {e["file"] for e in found}
        found += [dict(file=p, change=None, lines_added=None, lines_removed=None) for p in paths if p not in described]
        for entry in found:
            if entry["file"] in seen:
                continue
            seen[entry["file"]] = entry
            entries.append({k: entry[k] for k in CHANGE_KEYS})
    return entries


def host_state(audit):
    """The state of one host from its audit (None: no audit at all): see host_verdict."""
    return host_verdict(audit)[0]


def host_verdict(audit):
    """(state, drift) of one host from its audit (None: no audit at all). ``drift``: a real run would change
    something (True), nothing (False), unknown (None: an error, or the modules could not be asked).
    State rules, first match wins:

    error        no audit (unreachable / failed before it), or the audit recorded an error
    no_engine    no container runtime found (engine null or "none")
    unconfigured the engine's config has no nvidia handler (handler_present false), or the facts cannot
                 read it (no tomlkit: handler_present null) and the NVIDIA Container Toolkit is not installed
                 either: the role never ran here
    drift        a check-mode run would change something (the engine module, the toolkit config module,
                 or any file in changes)
    unchecked    the modules could not be asked (would_change null: no tomlkit on the node)
    configured   otherwise: a real run would change nothing (so the module found its handler in place,
                 also when the facts could not tell: handler_present null)
    """
    if not isinstance(audit, dict) or _text(audit.get("error")):
        return "error", None
    would = _tristate(audit.get("would_change"))
    changes = bool(would or _tristate(audit.get("toolkit_config_would_change")) or audit.get("changes")
                   or audit.get("would_change_files"))
    if _text(audit.get("engine")) in (None, "none"):
        return "no_engine", changes
    handler = _tristate(audit.get("handler_present"))
    if handler is False or (handler is None and not _text(audit.get("toolkit"))):
        return "unconfigured", True
    if changes:
        return "drift", True
    if would is None:
        return "unchecked", None
    return "configured", False


def _row(host, audit, verdict):
    a = audit if isinstance(audit, dict) else {}
    state, drift = verdict
    changes = None
    if state != "error" and _tristate(a.get("tomlkit")) is True:
        changes = audit_changes_normalized(a.get("changes"))
        if changes is None:   # an audit without the changes list: the file names alone
            changes = [dict(file=str(f), change=None, lines_added=None, lines_removed=None)
                       for f in (a.get("would_change_files") or [])]
    row = dict(
        host=str(host),
        state=state,
        drift=drift,
        engine=_text(a.get("engine")),
        engine_version=_text(a.get("engine_version")),
        gpu_count=_int(a.get("gpu_count")),
        driver=_text(a.get("driver")),
        reboot_pending=_tristate(a.get("reboot_pending")),
        toolkit=_text(a.get("toolkit")),
        tomlkit=_tristate(a.get("tomlkit")),
        handler_present=_tristate(a.get("handler_present")),
        handlers=_str_list(a.get("nvidia_runtimes")),
        default_runtime=_text(a.get("default_runtime")),
        changes=changes,
        error=_text(a.get("error")) or (MISSING_AUDIT if audit is None else None),
    )
    if row["engine"] == "none":
        row["engine"] = None
    return {k: row[k] for k in HOST_KEYS}


def audit_changes_normalized(changes):
    """A list of change entries with exactly CHANGE_KEYS (None when ``changes`` is not a list)."""
    if not isinstance(changes, (list, tuple)):
        return None
    out = []
    for c in changes:
        if isinstance(c, dict) and c.get("file"):
            out.append(dict(file=str(c["file"]), change=_text(c.get("change")),
                            lines_added=_int(c.get("lines_added")), lines_removed=_int(c.get("lines_removed"))))
        elif isinstance(c, str) and c:
            out.append(dict(file=c, change=None, lines_added=None, lines_removed=None))
    return out


def audit_report(audits, hosts=None, generated=None):
    """The report: {schema_version, generated, host_count, summary, hosts}.

    ``audits``: the per-host audit dicts (each with ``host``), a list or a {host: audit} dict.
    ``hosts``: every host the audit was meant to cover (``ansible_play_hosts_all``); one without an
    audit gets a row in state ``error``. Without it, the hosts of ``audits``.
    ``generated``: the timestamp to record (default: now, UTC, ISO 8601 with a Z).
    """
    if audits is None:
        audits = []
    if isinstance(audits, dict):
        audits = [dict(a, host=a.get("host") or h) if isinstance(a, dict) else None for h, a in audits.items()]
    by_host = {}
    for a in audits:
        if a is None:
            continue
        if not isinstance(a, dict) or not _text(a.get("host")):
            raise AnsibleFilterError("audit_report: every audit must be a dict with a 'host' key, got %r" % (a,))
        by_host[str(a["host"])] = a
    if hosts is None:
        names = list(by_host)
    elif isinstance(hosts, (str, bytes)):
        raise AnsibleFilterError("audit_report: hosts must be a list of host names, not a string")
    else:
        names = [str(h) for h in hosts]
    rows = []
    for name in sorted(set(names)):
        audit = by_host.get(name)
        rows.append(_row(name, audit, host_verdict(audit)))
    summary = {s: 0 for s in STATES}
    for r in rows:
        summary[r["state"]] += 1
    if generated is None:
        generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return dict(schema_version=SCHEMA_VERSION, generated=str(generated), host_count=len(rows),
                summary=summary, hosts=rows)


# ------------------------------------------------------------------------------------------ Markdown
def _cell(value):
    """Text safe inside a Markdown table cell (pipes escaped, one line)."""
    text = " ".join(str(value).split())
    return text.replace("\\", "\\\\").replace("|", "\\|") if text else "—"


def _yes_no(value, unknown="—"):
    return unknown if value is None else ("yes" if value else "no")


def _change_text(c):
    text = "`%s`" % c["file"]
    detail = c.get("change") or "change"
    if c.get("lines_added") is not None and c.get("lines_removed") is not None:
        detail += " +%d -%d" % (c["lines_added"], c["lines_removed"])
    return "%s %s" % (text, detail)


def _drift_text(row):
    if row["state"] == "error":
        return "—"
    changes = row.get("changes")
    if changes:
        return "<br>".join(_change_text(c) for c in changes)
    if changes is None:
        why = "no tomlkit >= 0.12 on the node" if row.get("tomlkit") is False else "the modules were not run"
        if row["state"] == "unconfigured":
            return "not set up (files not checked: %s)" % why
        if row["state"] == "no_engine":
            return "none (toolkit config not checked: %s)" % why
        return "unknown (%s)" % why
    if row["state"] == "unconfigured":
        return "not set up"
    return "none"


def audit_report_markdown(report, title="NVIDIA runtime audit"):
    """The report as a Markdown page: a table with one row per host, then the summary and the errors."""
    if not isinstance(report, dict) or not isinstance(report.get("hosts"), list):
        raise AnsibleFilterError("audit_report_markdown: expects the dict audit_report returns")
    rows = report["hosts"]
    out = ["# %s" % title, ""]
    out.append("Generated %s (UTC) · %d host(s) · report schema %s · check mode: nothing was changed on the nodes."
               % (report.get("generated"), len(rows), report.get("schema_version")))
    out.append("")
    out.append("| host | state | engine | GPUs | driver | toolkit | handler present | default runtime "
               "| drift (what a real run would change) | reboot pending |")
    out.append("|---|---|---|---:|---|---|---|---|---|---|")
    for r in rows:
        engine = " ".join(x for x in (r.get("engine"), r.get("engine_version")) if x) or None
        handler = _yes_no(r.get("handler_present"))
        if r.get("handler_present") and r.get("handlers"):
            handler = "yes (%s)" % ", ".join(r["handlers"])
        cells = [
            r["host"], r["state"], engine if engine else ("none" if r["state"] == "no_engine" else "—"),
            "—" if r.get("gpu_count") is None else r["gpu_count"],
            r.get("driver") or ("not loaded" if r["state"] != "error" else "—"),
            r.get("toolkit") or ("not installed" if r["state"] != "error" else "—"),
            handler, r.get("default_runtime") or "—", _drift_text(r), _yes_no(r.get("reboot_pending")),
        ]
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    out += ["", "## Summary", "", "| state | hosts | meaning |", "|---|---:|---|"]
    summary = report.get("summary") or {}
    for state in STATES:
        out.append("| %s | %d | %s |" % (state, int(summary.get(state, 0)), STATE_MEANING[state]))
    out.append("| **total** | %d | |" % len(rows))
    attention = [r for r in rows if r["state"] in ("drift", "unconfigured", "unchecked", "error")]
    if attention:
        out += ["", "## Needs attention", ""]
        for r in attention:
            line = "- **%s** (%s)" % (r["host"], r["state"])
            if r.get("error"):
                line += ": %s" % " ".join(str(r["error"]).split())
            elif r.get("changes"):
                line += ": " + ", ".join("%s (%s)" % (c["file"], c.get("change") or "change") for c in r["changes"])
            out.append(line)
    out.append("")
    return "\n".join(out)


class FilterModule(object):
    """gpuops.nvidia audit filters."""

    def filters(self):
        return {
            "audit_changes": audit_changes,
            "audit_report": audit_report,
            "audit_report_markdown": audit_report_markdown,
        }
