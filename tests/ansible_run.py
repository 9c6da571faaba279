"""Run Ansible for real from the tests (no importing of modules).

Standard library only, so it also works before the venv has its packages, e.g.
``python3 tests/ansible_run.py --collection-path`` (used by scripts/collection-path.sh).

* :func:`ensure_collection_path` makes the checkout importable as the collection
  ``gpuops.nvidia``: ``.build/ansible_collections/gpuops/nvidia`` is a symlink to the
  repository root (Ansible's collection loader and plain Python imports both follow it).
* :func:`run_module` runs one module in a generated one-task playbook on localhost
  (``connection: local``, the interpreter is ``sys.executable`` so the module sees the
  venv's packages) and returns the module's result dict, parsed from JSON that the
  playbook writes itself (never scraped from the screen).  Failures are returned,
  never raised.
* :func:`run_playbook` runs a playbook (file or YAML text) and returns ``(rc, stdout, stderr)``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / ".build"
COLLECTION_NAMESPACE = "gpuops"
COLLECTION_NAME = "nvidia"
COLLECTION_LINK = BUILD_DIR / "ansible_collections" / COLLECTION_NAMESPACE / COLLECTION_NAME
ANSIBLE_CFG = REPO_ROOT / "ansible.cfg"
DEFAULT_TIMEOUT = 600

__all__ = [
    "REPO_ROOT",
    "BUILD_DIR",
    "ModuleResult",
    "ensure_collection_path",
    "in_place_collections_root",
    "ansible_env",
    "run_module",
    "run_playbook",
]


# --------------------------------------------------------------------------- collection path
def in_place_collections_root() -> Path | None:
    """The folder holding ``ansible_collections/`` when the checkout already sits at
    ``.../ansible_collections/gpuops/nvidia`` (the layout ansible-test requires), else None."""
    if REPO_ROOT.parts[-3:] == ("ansible_collections", COLLECTION_NAMESPACE, COLLECTION_NAME):
        return REPO_ROOT.parents[2]
    return None


def ensure_collection_path() -> Path:
    """Create ``.build/ansible_collections/gpuops/nvidia -> ../../..`` (idempotent, race-safe).

    Returns the folder to put on ``ANSIBLE_COLLECTIONS_PATH`` and ``sys.path`` (``.build``).
    The link is relative, so the checkout can be moved.  A checkout that already is
    ``ansible_collections/gpuops/nvidia`` needs no link: the folder holding that is returned.
    """
    in_place = in_place_collections_root()
    if in_place is not None:
        return in_place
    parent = COLLECTION_LINK.parent
    parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(REPO_ROOT, parent)  # "../../.."
    if COLLECTION_LINK.is_symlink():
        if os.readlink(COLLECTION_LINK) == target:
            return BUILD_DIR
    elif COLLECTION_LINK.is_dir():  # e.g. an old copy: replace it by the link
        shutil.rmtree(COLLECTION_LINK)
    tmp = parent / f".{COLLECTION_NAME}.{os.getpid()}.tmp"
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    os.symlink(target, tmp)
    os.replace(tmp, COLLECTION_LINK)  # atomic: concurrent callers never see a missing link
    return BUILD_DIR


def _full_ansible_dir() -> str | None:
    """Under ``ansible-test units``, module and module_utils tests see an ``ansible`` package that holds only
    ``module_utils`` (a symlink into the real one), so an Ansible subprocess could not start: a folder
    holding a link to the real package, to put first on its PYTHONPATH.  None when ``ansible.cli`` imports."""
    import importlib.util
    if importlib.util.find_spec("ansible.cli") is not None:
        return None
    import ansible.module_utils
    real = Path(os.path.realpath(list(ansible.module_utils.__path__)[0])).parent
    folder = Path(tempfile.gettempdir()) / ("gpuops-ansible-%d" % os.getuid())
    link = folder / "ansible"
    if not link.is_symlink() or os.readlink(link) != str(real):
        folder.mkdir(exist_ok=True)
        tmp = folder / (".ansible.%d.tmp" % os.getpid())
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(real, tmp)
        os.replace(tmp, link)
    return str(folder)


def ansible_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for an Ansible subprocess: this checkout's collection path first, the
    current interpreter for modules, no colours, no retry files; ``env`` overrides."""
    build = str(ensure_collection_path())
    out = dict(os.environ)
    full = _full_ansible_dir()
    if full:
        out["PYTHONPATH"] = os.pathsep.join([full] + [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p])
    paths = [p for p in out.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep) if p and p != build]
    out["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join([build] + paths)
    out["ANSIBLE_PYTHON_INTERPRETER"] = sys.executable
    if ANSIBLE_CFG.is_file():
        out["ANSIBLE_CONFIG"] = str(ANSIBLE_CFG)
    out.update(
        {
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_LOCALHOST_WARNING": "0",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
            "ANSIBLE_STDOUT_CALLBACK": "default",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    out.pop("ANSIBLE_DEBUG", None)
    if env:
        out.update({k: str(v) for k, v in env.items()})
    return out


def _ansible_cmd(tool: str) -> list[str]:
    """``ansible-<tool>`` (playbook, galaxy...) of the interpreter running the tests, called through its
    module ``ansible.cli.<tool>``: unlike ``python -m ansible <tool>`` this needs no installed
    ansible-core distribution (under ``ansible-test units`` ansible is only on PYTHONPATH)."""
    code = "import sys; from ansible.cli.%s import main; main(['ansible-%s'] + sys.argv[1:])" % (tool, tool)
    return [sys.executable, "-c", code]


# --------------------------------------------------------------------------- YAML generation
def _yaml(value: Any) -> str:
    """Flow-style YAML for module arguments.  Every string is tagged ``!unsafe`` so Ansible
    passes it verbatim (no Jinja: ``{{ template "base" . }}`` in a k3s template stays as is).
    JSON string escapes are valid in YAML double-quoted scalars (ensure_ascii keeps it ASCII)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, (str, os.PathLike)):
        return "!unsafe " + json.dumps(os.fspath(value))
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple, set, frozenset)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    raise TypeError(f"run_module: cannot pass {type(value).__name__} as a module argument: {value!r}")


def _inventory_text() -> str:
    return (
        "localhost ansible_connection=local "
        f"ansible_python_interpreter={json.dumps(sys.executable)}\n"
    )


# --------------------------------------------------------------------------- results
class ModuleResult(dict):
    """The module's result dict (``changed``, ``failed``, ``msg``, ``diff``, ``warnings``, ...
    exactly as registered by Ansible), with the run's details as attributes:
    ``rc`` (ansible-playbook exit code), ``stdout``, ``stderr``, ``playbook`` (text)."""

    rc: int
    stdout: str
    stderr: str
    playbook: str

    def __repr__(self) -> str:  # keep pytest failure output useful
        return f"ModuleResult({dict.__repr__(self)}, rc={self.rc})"


def _error_from_output(stdout: str, stderr: str) -> str:
    """Best message when the playbook never got to write the result (syntax error, unknown
    module, crash of ansible itself...): Ansible's own ERROR text, else the output's tail."""
    for stream in (stderr, stdout):
        lines = stream.splitlines()
        for i, line in enumerate(lines):
            if line.startswith(("ERROR!", "[ERROR]")):
                return "\n".join(lines[i:]).strip()
    text = (stderr.strip() or stdout.strip())
    return text[-4000:] if text else "ansible-playbook produced no result and no output"


def _run(cmd: list[str], env: dict[str, str], timeout: float, cwd: Path) -> tuple[int, str, str]:
    try:
        p = subprocess.run(  # the caller checks returncode
            cmd,
            check=False,
            cwd=str(cwd),
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        def _s(x: Any) -> str:
            return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
        return -1, _s(e.stdout), _s(e.stderr) + f"\n[run] timed out after {timeout}s: {cmd}"
    return p.returncode, p.stdout, p.stderr


def run_module(
    module_fqcn: str,
    args: Mapping[str, Any] | None = None,
    check: bool = False,
    diff: bool = False,
    env: Mapping[str, str] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    become: bool = False,
) -> ModuleResult:
    """Run ``module_fqcn`` with ``args`` on localhost through ansible-playbook; return its result.

    ``args`` values are passed literally (strings are ``!unsafe``: never templated).
    ``check``/``diff`` are the task's check_mode/diff.  ``env`` is added to the environment of
    ansible-playbook (and so of the module: connection local).

    The result is the dict Ansible registered for the task, e.g.
    ``{"changed": True, "failed": False, "msg": ..., "diff": {"before": ..., "after": ...},
    "warnings": [...]}``; ``changed`` and ``failed`` are always present.  A failing module
    gives ``failed: True`` and its ``msg`` (nothing is raised).  If Ansible could not run the
    task at all (unknown module, bad argument YAML, timeout) the result is
    ``{"failed": True, "changed": False, "msg": <Ansible's error text>}``.
    ``result.rc/.stdout/.stderr/.playbook`` hold the run's details.
    """
    with tempfile.TemporaryDirectory(prefix="gpuops-ansible-run-") as tmp:
        tmpd = Path(tmp)
        out_file = tmpd / "result.json"
        task_args = _yaml(dict(args or {}))
        playbook = f"""\
- name: run_module
  hosts: localhost
  gather_facts: false
  tasks:
    - name: module under test
      {module_fqcn}: {task_args}
      register: gpuops_run_module_result
      ignore_errors: true
      ignore_unreachable: true
      check_mode: {_yaml(bool(check))}
      diff: {_yaml(bool(diff))}
      become: {_yaml(bool(become))}

    - name: save the registered result as JSON
      ansible.builtin.copy:
        content: "{{{{ gpuops_run_module_result | to_json }}}}"
        dest: {json.dumps(str(out_file))}
        mode: "0600"
      check_mode: false
      diff: false
      become: false
"""
        pb_file = tmpd / "run_module.yml"
        pb_file.write_text(playbook)
        inv = tmpd / "inventory"
        inv.write_text(_inventory_text())
        cmd = _ansible_cmd("playbook") + ["-i", str(inv), str(pb_file)]
        rc, stdout, stderr = _run(cmd, ansible_env(env), timeout, REPO_ROOT)

        result: ModuleResult
        data: Any = None
        if out_file.is_file():
            try:
                data = json.loads(out_file.read_text())
            except ValueError:
                data = None
        if isinstance(data, dict):
            result = ModuleResult(data)
            if result.get("unreachable"):
                result["failed"] = True
        else:
            result = ModuleResult(failed=True, changed=False, msg=_error_from_output(stdout, stderr))
        result.setdefault("changed", False)
        result.setdefault("failed", False)
        result.rc, result.stdout, result.stderr, result.playbook = rc, stdout, stderr, playbook
        return result


def run_module_steps(
    module_fqcn: str,
    steps: list[Mapping[str, Any]],
    env: Mapping[str, str] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[ModuleResult]:
    """Run ``module_fqcn`` once per step, in order, in ONE ansible-playbook (saves its start-up).

    A step is the module's args, plus optional ``_check``/``_diff`` booleans.  Returns one
    result per step, as :func:`run_module` would (a failed step does not stop the next).
    """
    with tempfile.TemporaryDirectory(prefix="gpuops-ansible-run-") as tmp:
        tmpd = Path(tmp)
        tasks = []
        for i, step in enumerate(steps):
            step = dict(step)
            check, diff = bool(step.pop("_check", False)), bool(step.pop("_diff", False))
            out_file = tmpd / f"result{i}.json"
            tasks.append(f"""\
    - name: step {i}
      {module_fqcn}: {_yaml(step)}
      register: gpuops_step
      ignore_errors: true
      check_mode: {_yaml(check)}
      diff: {_yaml(diff)}

    - name: save step {i}
      ansible.builtin.copy:
        content: "{{{{ gpuops_step | to_json }}}}"
        dest: {json.dumps(str(out_file))}
        mode: "0600"
      check_mode: false
      diff: false
""")
        playbook = "- name: run_module_steps\n  hosts: localhost\n  gather_facts: false\n  tasks:\n" + "\n".join(tasks)
        pb_file = tmpd / "steps.yml"
        pb_file.write_text(playbook)
        inv = tmpd / "inventory"
        inv.write_text(_inventory_text())
        rc, stdout, stderr = _run(_ansible_cmd("playbook") + ["-i", str(inv), str(pb_file)], ansible_env(env),
                                  timeout, REPO_ROOT)
        results = []
        for i in range(len(steps)):
            f = tmpd / f"result{i}.json"
            if f.is_file():
                r = ModuleResult(json.loads(f.read_text()))
            else:
                r = ModuleResult(failed=True, changed=False, msg=_error_from_output(stdout, stderr))
            r.setdefault("changed", False)
            r.setdefault("failed", False)
            r.rc, r.stdout, r.stderr, r.playbook = rc, stdout, stderr, playbook
            results.append(r)
        return results


def run_playbook(
    path_or_yaml_text: str | os.PathLike,
    extravars: Mapping[str, Any] | None = None,
    check: bool = False,
    diff: bool = False,
    env: Mapping[str, str] | None = None,
    *,
    inventory: str | os.PathLike | None = None,
    extra_args: list[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[int, str, str]:
    """Run a playbook file, or YAML text (anything containing a newline, or not an existing
    file), with this checkout's collection.  Default inventory: ``localhost`` with connection
    local and the current interpreter.  ``extravars`` go in as a JSON file (``-e @file``), so
    any value survives quoting.  Returns ``(rc, stdout, stderr)``."""
    with tempfile.TemporaryDirectory(prefix="gpuops-ansible-run-") as tmp:
        tmpd = Path(tmp)
        text = os.fspath(path_or_yaml_text)
        if isinstance(path_or_yaml_text, os.PathLike) or ("\n" not in text and Path(text).is_file()):
            pb = Path(text).resolve()
            cwd = pb.parent
        else:
            pb = tmpd / "playbook.yml"
            pb.write_text(text)
            cwd = REPO_ROOT
        if inventory is None:
            inv = tmpd / "inventory"
            inv.write_text(_inventory_text())
        else:
            inv = Path(inventory)
        cmd = _ansible_cmd("playbook") + ["-i", str(inv)]
        if extravars:
            ev = tmpd / "extravars.json"
            ev.write_text(json.dumps(dict(extravars)))
            cmd += ["-e", f"@{ev}"]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        cmd += list(extra_args or [])
        cmd.append(str(pb))
        return _run(cmd, ansible_env(env), timeout, cwd)


if __name__ == "__main__":
    if sys.argv[1:] == ["--collection-path"]:
        print(ensure_collection_path())
        sys.exit(0)
    print("usage: ansible_run.py --collection-path", file=sys.stderr)
    sys.exit(2)
