"""One verdict per host: the report row's ``drift`` is decided with its ``state`` (host_verdict), never apart."""
from __future__ import annotations

import pytest

from ansible_collections.gpuops.nvidia.plugins.filter.audit import audit_report, host_state, host_verdict

CONFIG = "/etc/containerd/config.toml"
BASE = dict(engine="containerd", toolkit="1.17.8", tomlkit=True, handler_present=True, would_change=False,
            would_change_files=[], changes=[], toolkit_config_would_change=None, error=None)
DRIFT_OF_STATE = {"error": None, "unchecked": None, "unconfigured": True, "drift": True, "configured": False}


@pytest.mark.parametrize("kw", [
    dict(),
    dict(error="boom"),
    dict(handler_present=False),
    dict(would_change=True, changes=[dict(file=CONFIG)]),
    dict(would_change=None, tomlkit=False),
    dict(toolkit_config_would_change=True),
    # the facts could not read the files (no tomlkit), yet the audit lists a change: drift, and the row says so
    dict(tomlkit=False, would_change=False, changes=[dict(file=CONFIG)]),
    dict(would_change=False, would_change_files=[CONFIG]),
])
def test_row_drift_follows_the_state(kw):
    audit = dict(BASE, host="h", **kw)
    state, drift = host_verdict(audit)
    assert host_state(audit) == state and drift is DRIFT_OF_STATE[state]
    row = audit_report([audit])["hosts"][0]
    assert (row["state"], row["drift"]) == (state, drift)


def test_no_engine_drift_is_whether_something_would_change():
    assert host_verdict(dict(BASE, engine="none")) == ("no_engine", False)
    assert host_verdict(dict(BASE, engine=None, would_change=True)) == ("no_engine", True)
