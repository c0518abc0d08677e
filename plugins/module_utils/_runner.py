# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one way a module's implementation runs: in its own process, or inside the Ansible worker.

Every module's logic lives in ``module_utils/impl/<name>.py`` as ``module_kwargs()`` and
``run(module)``. ``run_module`` is both the modules' ``main()`` and, with ``InProcessModule``,
what the collection's action plugin calls when the task would run on the controller's own
Python anyway: the same AnsibleModule code validates the arguments, masks no_log values and
formats the result, so both ways give the same result.
"""

from __future__ import annotations

import copy
import functools
import json
import traceback

from ansible.module_utils import _internal
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common import warnings as _warnings
from ansible.module_utils.common.json import Direction, get_module_encoder
from ansible.module_utils.common.parameters import remove_values

from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError, fail_on_api_error

# The serialization profile of a module without METADATA, as AnsiballZ runs the
# collection's modules; the action plugin decodes an in-process result with the same one.
SERIALIZATION_PROFILE = "legacy"


def run_module(impl, module_class=AnsibleModule):
    """Build the module from ``impl.module_kwargs()`` and run ``impl.run`` to its exit_json/fail_json.

    An ApiError that ``run`` does not handle itself (404 meaning absent, retries...) is the
    module's failure, with the resource, status and server message: modules need no
    ``except ApiError`` of their own just to report one.
    """
    module = module_class(**impl.module_kwargs())
    _mask_messages(module)
    try:
        impl.run(module)
    except ApiError as err:
        fail_on_api_error(module, err)
    # run() must end the module; returning would print nothing and fail obscurely.
    module.fail_json(msg=f"{impl.__name__} ended without a result")


def _mask_messages(module):
    """Mask no_log values in the module's warnings and deprecations, as in its result.

    AnsibleModule masks them in the values it returns, but a warning is recorded as given: one
    that quotes a value (a server's message, a kubeconfig's field) would show a secret on the
    console and in callbacks. Masked when recorded, with the values known by then.
    """
    warn, deprecate = module.warn, module.deprecate

    def masked_warn(warning, **kwargs):
        warn(remove_values(warning, module.no_log_values), **kwargs)

    def masked_deprecate(msg, *args, **kwargs):
        deprecate(remove_values(msg, module.no_log_values), *args, **kwargs)

    module.warn, module.deprecate = masked_warn, masked_deprecate


class InProcessModule(AnsibleModule):
    """AnsibleModule reading its arguments from a dict and keeping its result instead of printing it.

    Only the input and output change: validation, no_log masking, ``invocation``, warnings,
    deprecations, cleanup files and check mode are AnsibleModule's own. exit_json and
    fail_json still end with SystemExit, which ``run_in_process`` catches.
    """

    def __init__(self, *args, module_args, record, **kwargs):
        self._in_process_args = module_args
        self._record = record
        record["module"] = self
        super().__init__(*args, **kwargs)

    def _load_params(self):
        # What AnsiballZ's _load_params would give: a fresh copy, which AnsibleModule changes.
        self.params = copy.deepcopy(self._in_process_args)

    def _record_module_result(self, o):
        # The hook AnsibleModule offers for in-worker execution: the JSON a module process
        # would print, with the encoder it would use, so the controller decodes the same thing.
        encoder = get_module_encoder(SERIALIZATION_PROFILE, Direction.MODULE_TO_CONTROLLER)
        self._record["result"] = json.dumps(o, cls=encoder)


def run_in_process(impl, module_args):
    """Run ``impl`` as a module inside this process: the JSON text its process would have printed.

    ``module_args`` are the task's arguments with the ``_ansible_*`` internal ones, as decoded
    by a module. Meant for an Ansible worker, a fork made for one task: the process-wide
    state a module run leaves (os.environ changes, module_utils caches) goes with it.
    """
    record = {}
    # Warnings and deprecations are process-wide in module_utils; a module process starts
    # with none, so must this run.
    _warnings._global_warnings.clear()  # pylint: disable=protected-access
    _warnings._global_deprecations.clear()  # pylint: disable=protected-access
    # On the controller, module_utils' warn() and deprecate() print at once instead of
    # recording for the result; for this run, module_utils behaves as in a module process.
    was_controller = _internal.is_controller
    _internal.is_controller = False
    try:
        _run_recorded(impl, module_args, record)
    finally:
        _internal.is_controller = was_controller
    if "result" not in record:
        raise RuntimeError(f"{impl.__name__} exited without a result")
    return record["result"]


def _run_recorded(impl, module_args, record):
    try:
        run_module(impl, functools.partial(InProcessModule, module_args=module_args, record=record))
    except SystemExit:
        pass
    except Exception as exc:  # pylint: disable=broad-exception-caught
        # A module process would die with a traceback; here the worker must go on, and report it.
        module = record.get("module")
        if module is None or "result" in record:
            raise
        # As a string: AnsibleModule masks no_log values in strings, not in exception objects.
        formatted = remove_values(traceback.format_exc(), module.no_log_values)
        try:
            module.fail_json(msg=f"{impl.__name__} raised {type(exc).__name__}: {exc}", exception=formatted)
        except SystemExit:
            pass
