# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The action plugin of every module of the collection: run it inside the worker when it may.

A module task normally costs a new Python process that imports its client libraries
(google-auth, kubernetes, Secret Manager) again: most of the time of a run that changes
nothing. When the task would run on this machine with the controller's own Python anyway
(connection ``local``, no become, no async, the interpreter the controller runs on), the
module's implementation runs here, in the worker that Ansible forks for the task, through
``module_utils._runner.run_in_process``: the same AnsibleModule code as a module process,
with the arguments and the result passing through the same JSON. Anything else runs the
module the normal way (``_execute_module``).

The libraries are imported once when this file is loaded, which the strategy does in the
controller's main process before it forks the task's worker, so every worker has them.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import pkgutil
import sys

from ansible import constants as C
from ansible.module_utils.common.json import Direction, get_module_decoder, get_module_encoder
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash
from ansible.vars.clean import remove_internal_keys

from ansible_collections.prow.build_cluster.plugins.module_utils import _runner
from ansible_collections.prow.build_cluster.plugins.plugin_utils import sync_records

COLLECTION = "prow.build_cluster"
IMPL_PACKAGE = "ansible_collections.prow.build_cluster.plugins.module_utils.impl"

# The variable that, set to a file's path, makes every call of a collection module be appended
# to that host's journal (sync records: the onboarding play sets it, docs/architecture.md).
JOURNAL_VARIABLE = "prow_sync_journal"

# What the modules import, loaded in the controller so that forks inherit them. kubernetes
# is imported lazily by module_utils/k8s.py (a module process that never connects to a
# cluster does not pay for it), so it is named here.
_PRELOAD = (
    "ansible_collections.prow.build_cluster.plugins.module_utils._gcp_session",
    "ansible_collections.prow.build_cluster.plugins.module_utils.k8s",
    "ansible_collections.prow.build_cluster.plugins.module_utils.secretmanager",
    "ansible_collections.prow.build_cluster.plugins.module_utils.kubeconfig",
    "kubernetes.client",
    "kubernetes.config",
)


def _impl_modules():
    """The module implementations (module_utils/impl): a replay of sync records runs them all."""
    try:
        package = importlib.import_module(IMPL_PACKAGE)
    except ImportError:
        return ()
    return tuple(f"{IMPL_PACKAGE}.{info.name}" for info in pkgutil.iter_modules(package.__path__))


def _preload():
    for name in _PRELOAD + _impl_modules():
        try:
            importlib.import_module(name)
        except ImportError:
            # A missing library is the module's to report (missing_required_lib), in the task.
            pass
    try:
        from ansible_collections.prow.build_cluster.plugins.module_utils import _gcp_session  # pylint: disable=import-outside-toplevel
    except ImportError:
        return
    _gcp_session.warm_application_default_key()


_preload()


@contextlib.contextmanager
def _environment(variables):
    """The task's ``environment:`` in os.environ for the run, as a module process would have it."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update({name: str(value) for name, value in variables.items()})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class InProcessAction(ActionBase):
    """Runs a module of this collection in the worker process when it would run locally anyway."""

    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # no longer has any effect
        task_vars = task_vars or {}
        wrap_async = self._task.async_val and not self._connection.has_native_async
        impl = None if wrap_async else self._in_process_impl(task_vars)
        self._journal(task_vars)
        if impl is None:
            # Exactly what the ansible.builtin.normal action plugin does.
            result = merge_hash(result, self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
            if not wrap_async:
                self._remove_tmp_path(self._connection._shell.tmpdir)
            return result
        return merge_hash(result, self._run_in_process(impl, task_vars))

    def _module_name(self):
        """The module's short name, when it is one of this collection's; else None."""
        resolved = self._task.resolved_action or ""
        namespace, _sep, name = resolved.rpartition(".")
        return name if namespace == COLLECTION else None

    def _runs_on_controller_python(self, task_vars):
        """Whether a module process would be a local child of the controller on its own Python."""
        if getattr(self._connection, "transport", None) != "local" or self._connection.become is not None:
            return False
        return interpreter_is_controllers(task_vars, self._templar)

    def _in_process_impl(self, task_vars):
        """The module's implementation, when this task can run it here; else None."""
        name = self._module_name()
        if name is None or not self._runs_on_controller_python(task_vars):
            return None
        try:
            return importlib.import_module(f"{IMPL_PACKAGE}.{name}")
        except ImportError:
            return None

    def _journal(self, task_vars):
        """Append this call to the host's journal, when this play keeps one (sync records).

        What is kept: the module, its final arguments (templated, with module_defaults) without
        any no_log option nor the Google credentials options, and whether the task is no_log.
        A call whose arguments held a secret is kept with the names of the options dropped, so
        that the record step can leave it out or refuse to record (sync_records.scrub_call).
        """
        path = task_vars.get(JOURNAL_VARIABLE)
        name = self._module_name()
        if not path or name is None:
            return
        path = self._templar.template(path)
        if not path:
            return
        try:
            impl = importlib.import_module(f"{IMPL_PACKAGE}.{name}")
        except ImportError:
            return
        args, secrets = sync_records.scrub_call(impl.module_kwargs()["argument_spec"], plain_json(self._task.args))
        environment = {}
        self._compute_environment_string(environment)
        sync_records.append_journal(path, {
            "module": name,
            "args": args,
            "no_log": bool(self._task.no_log),
            "secrets": secrets,
            # A task environment is not recorded (it may hold credentials): such a call is not replayable.
            "environment": sorted(environment),
        })

    def _run_in_process(self, impl, task_vars):
        """Run ``impl`` here with the task's arguments: the module's result."""
        module_args = self._task.args.copy()
        self._update_module_args(self._task.action, module_args, task_vars)
        return self._run_impl(impl, module_args)

    def _run_impl(self, impl, module_args):
        """Run ``impl`` here with ``module_args`` (``_ansible_*`` included), as a module process would."""
        # The arguments as the module process would decode them: plain JSON types, no tags.
        profile = _runner.SERIALIZATION_PROFILE
        module_args = plain_json(module_args)
        environment = {}
        self._compute_environment_string(environment)
        # What the module or its libraries print (urllib3's InsecureRequestWarning, say) would be
        # a module process's stdout/stderr, not the controller's output, where it could break a
        # callback's JSON: kept, and parsed with the result as _execute_module parses a process's.
        stdout, stderr = io.StringIO(), io.StringIO()
        with _environment(environment), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            output = _runner.run_in_process(impl, module_args)
        data = self._parse_returned_data({"stdout": stdout.getvalue() + "\n" + output, "stderr": stderr.getvalue(), "rc": 0}, profile)
        data.pop("_ansible_suppress_tmpdir_delete", None)
        remove_internal_keys(data)
        return data


def interpreter_is_controllers(variables, templar):
    """Whether the Python interpreter ``variables`` give a host is the one the controller runs on."""
    interpreter = variables.get("ansible_python_interpreter")
    if interpreter is None:
        interpreter = C.config.get_config_value("INTERPRETER_PYTHON", variables=variables)
        # Unset, or left to interpreter discovery: taken as the controller's Python, which on
        # the controller's own machine is the one that has the collection's requirements.
        if interpreter is None or str(interpreter).startswith("auto"):
            return True
    interpreter = templar.template(interpreter)
    # Not realpath: a virtualenv's python is a symlink to the system one, with other packages.
    return str(interpreter) in {sys.executable, variables.get("ansible_playbook_python")}


def plain_json(value):
    """``value`` as a module process would decode it: plain JSON types, no Ansible tags."""
    profile = _runner.SERIALIZATION_PROFILE
    encoded = json.dumps(value, cls=get_module_encoder(profile, Direction.CONTROLLER_TO_MODULE))
    return json.loads(encoded, cls=get_module_decoder(profile, Direction.CONTROLLER_TO_MODULE))
