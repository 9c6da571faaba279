# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one flow of the runtime modules (nvidia_containerd_runtime, nvidia_crio_runtime, nvidia_docker_runtime).

plan -> result and diff -> validate -> warnings -> write (check mode: the real run's write tests only)
-> restart -> health -> rollback. What differs per runtime is a ``service.RuntimeAdapter`` beside its
engine (containerd.py, crio.py, docker.py), with the module's own options; a module's ``main()`` is one call to
:func:`run`. :func:`check` runs the same flow in check mode inside another module (the facts module answers the
role's plan for the engine module that way: one module run per node). Private to the collection's modules (the
leading underscore, as community.docker's ``module_utils/_util.py``): the only module_utils file that talks to
AnsibleModule.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.gpuops.nvidia.plugins.module_utils import fileops, service, tomledit


def argument_spec(adapter_class):
    """The argument spec of the module of ``adapter_class`` (a service.RuntimeAdapter): the options every runtime
    module has, with the adapter's own ``options`` and ``states`` (V(query) where the adapter answers it)."""
    spec = dict(
        state=dict(type="str", default="present", choices=list(adapter_class.states)),
        runtime_name=dict(type="str", default="nvidia"),
        runtime_path=dict(type="path", default="/usr/bin/nvidia-container-runtime"),
        variants=dict(type="list", elements="str", default=[], choices=["cdi", "legacy"]),
        set_as_default=dict(type="bool", default=False),
        backup=dict(type="bool", default=False),
        restart_timeout=dict(type="int", default=60),
        lock_timeout=dict(type="int", default=fileops.LOCK_TIMEOUT),
    )
    spec.update(adapter_class.options)
    return spec


class _Stop(Exception):
    """The end of a job: its result is complete (``failed`` and ``msg`` set when it failed)."""


class _Job(object):
    """One run of a runtime module: what the adapter's hooks see (see service.RuntimeAdapter).

    ``params`` and ``check_mode`` are the module's unless given (:func:`check` runs a job inside another module);
    ``warn`` records the job's warnings for that module to pass on."""

    def __init__(self, module, adapter, params=None, check_mode=None):
        self.module = module
        self.adapter = adapter
        self.params = module.params if params is None else params
        self.check_mode = module.check_mode if check_mode is None else check_mode
        self.warnings = []
        self.plan = None
        self.result = dict(changed=False, files=[], restarted=False, restart_method=None, backup_files=[])
        self.result.update(adapter.initial_result(self.params))

    def warn(self, msg):
        self.warnings.append(msg)

    def run(self, argv):
        rc, out, err = self.module.run_command(argv)
        return rc, out, err

    def fail(self, msg):
        self.result.update(failed=True, msg=msg)
        raise _Stop()

    def done(self):
        raise _Stop()


def require_toml_reader(module):
    """Fail (nothing read, nothing changed) with the one message when the node has no TOML reader."""
    missing = tomledit.reader_missing()
    if missing:
        module.fail_json(msg=missing, changed=False)


def run(module, adapter_class):
    """Run the module with the engine's ``adapter_class`` (a service.RuntimeAdapter); ``module`` is
    built from :func:`argument_spec`."""
    if adapter_class.reads_toml:
        require_toml_reader(module)
    job = _Job(module, adapter_class())
    _run(job)
    for w in job.warnings:
        module.warn(w)
    if job.result.get("failed"):
        module.fail_json(**job.result)
    module.exit_json(**job.result)


def check(module, adapter_class, params):
    """What the module of ``adapter_class`` would return in check mode with ``params`` (its options, validated and
    completed with their defaults here), run inside ``module`` (another module of the collection on the same node:
    the facts module answers the role's plan this way without a second module run). The same flow as the module's
    own check mode, so the same result, warnings and errors; ``failed`` and ``msg`` are set instead of raising.
    Returns (result, warnings)."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    validated = ArgumentSpecValidator(argument_spec(adapter_class)).validate(params)
    if validated.error_messages:
        return dict(changed=False, failed=True, msg="; ".join(validated.error_messages)), []
    missing = adapter_class.reads_toml and tomledit.reader_missing()
    if missing:
        return dict(changed=False, failed=True, msg=missing), []
    job = _Job(module, adapter_class(), params=validated.validated_parameters, check_mode=True)
    _run(job)
    job.result.setdefault("failed", False)
    return job.result, job.warnings


def _run(job):
    """The job from start to end (``job.result`` holds the outcome)."""
    try:
        _steps(job)
    except _Stop:
        pass


def _steps(job):
    if job.params["state"] == "query":   # read only (any TOML reader will do): no plan, no lock, nothing written
        try:
            job.result.update(job.adapter.query(job))
        except job.adapter.errors as e:
            job.fail(to_native(e))
        job.done()
    if job.check_mode:   # reads only: no lock needed
        _execute(job)
    try:   # read, plan, write and restart under the files' locks: a concurrent run waits, then reads what this one wrote
        with fileops.locked(job.adapter.lock_paths(job.params), timeout=job.params["lock_timeout"]):
            _execute(job)
    except fileops.FileOpError as e:
        job.fail(to_native(e))


def _execute(job):
    a, params, result = job.adapter, job.params, job.result
    try:
        plan = job.plan = a.plan(job)
    except a.errors as e:
        job.fail(to_native(e))
    result.update(a.result_fields(job))
    result.update(files=[f.path for f in plan.files if f.changed], changed=plan.changed)
    if job.module._diff:
        result["diff"] = plan.diff()
    try:
        if plan.changed:
            a.validate(job)
    except a.errors as e:
        job.fail(to_native(e))
    for w in plan.warnings:
        job.warn(w)
    pending = a.pending(job)
    act = plan.changed or pending

    changes = [(f.path, f.before, f.after) for f in plan.files if f.changed]
    outside = params[a.outside] if a.outside else None
    try:
        if act and not job.check_mode:
            a.before_write(job)
    except a.errors as e:
        job.fail(to_native(e))
    try:   # check mode runs the real run's write tests (immutable file, read-only mount...), writes nothing
        _written, backups = fileops.apply_changes(changes, module=job.module, backup=params["backup"], outside=outside,
                                                  backup_dir=a.backup_dir(job), check_mode=job.check_mode or not act)
    except (fileops.FileOpError, IOError, OSError) as e:
        result["changed"] = False
        job.fail(to_native(e))
    if not act or job.check_mode:
        job.done()
    result["backup_files"] = backups
    previous = [(path, before) for path, before, _after in changes]

    health = a.health(job)
    restarter = service.Restarter(job.run, params["restart"], params["service"], params["socket"],
                                  params["restart_timeout"], health, job.warn, reload_cmd=a.reload_cmd(params))
    method = a.decide(job, restarter, health)
    if method is None:
        job.done()
    try:
        method = a.restart(job, restarter, method, health)
    except service.RestartError as e:
        method = restarter.method or method

        def restore():
            health.relax()            # after the rollback, only the runtime's health counts
            return fileops.restore(previous, module=job.module, outside=outside)
        msg = service.rollback(e, restarter, method, restore, [p for p, _b in previous], why=health.why)
        result.update(changed=True, restarted=True, restart_method=method, rolled_back=True)
        job.fail(msg)
    result.update(restarted=True, restart_method=method)
    if pending:
        result["changed"] = True
    job.done()
