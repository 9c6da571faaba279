"""The playbooks' own variables (read with a default, not the role's) are in the README's table, with the
playbooks that read them and the same default."""
import re

import yaml

from ansible_run import REPO_ROOT

ROW = re.compile(r"^\| `(nvidia_runtime_[a-z0-9_]+)` \| ([^|]+) \| ([^|]+) \|", re.M)
USE = re.compile(r"(nvidia_runtime_[a-z0-9_]+)\s*\|\s*default\((\[[^]]*\]|[^,)]*)")


def playbook_vars():
    role = set(yaml.safe_load((REPO_ROOT / "roles/nvidia_runtime/defaults/main.yml").read_text()))
    found = {}
    for path in sorted((REPO_ROOT / "playbooks").glob("*.yml")):
        for name, default in USE.findall(path.read_text()):
            if name not in role:
                found.setdefault(name, {})[path.stem] = re.sub(r"['\"]", "", default.strip())
    return found


def test_every_playbook_variable_has_a_readme_row_with_its_playbooks_and_default():
    rows = {name: (books, default) for name, books, default in ROW.findall((REPO_ROOT / "README.md").read_text())}
    found = playbook_vars()
    assert {"nvidia_runtime_hosts", "nvidia_runtime_serial", "nvidia_runtime_audit_dir"} <= set(found)
    for name, uses in found.items():
        assert name in rows, "%s (read by %s) has no row in the README's playbook variables table" % (name, sorted(uses))
        books, default = rows[name]
        assert {b.strip() for b in books.split(",")} == set(uses), name
        for value in set(uses.values()):   # quotes dropped: the README shows values in YAML flow style
            assert "`%s`" % value in default, (name, value, default)
