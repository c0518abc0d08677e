# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Run the collection's modules in check mode, many in one process.

A module task costs a new Python process that imports its client libraries again, which
is most of a no-op run's time. Every module's logic lives in ``module_utils/impl/<name>.py``
as ``module_kwargs()`` and ``run(module)``; ``CheckModeModule`` stands in for
``AnsibleModule`` so that ``run`` can be called several times in one process, always in
check mode. ``run`` may use only ``params``, ``check_mode``, ``_diff``, ``exit_json``,
``fail_json``, ``warn``, ``no_log``, ``no_log_values`` and ``add_cleanup_file``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values

_VALIDATOR_KEYWORDS = ("mutually_exclusive", "required_together", "required_one_of", "required_if", "required_by")


class CallExited(Exception):
    """``exit_json`` was called: the call's result."""

    def __init__(self, result):
        super().__init__("exit_json")
        self.result = result


class CallFailed(Exception):
    """``fail_json`` was called, or the arguments were invalid."""

    def __init__(self, msg, result=None, no_log_values=()):
        super().__init__(msg)
        self.msg = msg
        self.result = result or {}
        self.no_log_values = set(no_log_values)


class _RecordingSet(set):
    """A set that remembers everything ever added to it, even what is later removed."""

    def __init__(self, values=()):
        super().__init__(values)
        self.seen = set(values)

    def add(self, value):
        self.seen.add(value)
        super().add(value)

    def update(self, *others):
        for other in others:
            self.seen.update(other)
        super().update(*others)


@dataclass
class Outcome:
    """What a check-mode call said; never its result, which may hold secrets."""

    changed: bool = False
    failed: bool = False
    msg: str = ""
    warnings: list = field(default_factory=list)


class CheckModeModule:
    """The part of AnsibleModule that the collection's ``run`` functions use, in check mode.

    ``no_log`` is true: the caller never returns a call's result, so modules that insist
    on a no_log task (``ksa_token`` with ``return_content``) accept it. Values of no_log
    options are added to ``no_log_values``, shared with the calling module, so that they
    are masked in whatever the caller does return.
    """

    check_mode = True
    _diff = False
    no_log = True

    def __init__(self, module_kwargs, params, no_log_values):
        # A copy: a module may take values out of its own set (return_in_clear, for a
        # result its no_log task may show), which must not unmask them for the caller,
        # who gets every value the call ever masked (secrets_seen).
        self.no_log_values = _RecordingSet(no_log_values)
        self.warnings = []
        self._cleanup_files = []
        validator = ArgumentSpecValidator(
            module_kwargs["argument_spec"],
            **{key: module_kwargs[key] for key in _VALIDATOR_KEYWORDS if module_kwargs.get(key)})
        validation = validator.validate(dict(params or {}))
        # pylint: disable-next=protected-access
        self.no_log_values.update(validation._no_log_values)
        if validation.error_messages:
            raise CallFailed("; ".join(validation.error_messages), no_log_values=self.no_log_values.seen)
        self.params = validation.validated_parameters

    @property
    def secrets_seen(self):
        return self.no_log_values.seen

    def exit_json(self, **result):
        raise CallExited(result)

    def fail_json(self, msg, **result):
        raise CallFailed(msg, result)

    def warn(self, warning):
        self.warnings.append(warning)

    def add_cleanup_file(self, path):
        self._cleanup_files.append(path)

    def cleanup(self):
        for path in self._cleanup_files:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def check(impl, params, no_log_values):
    """Run ``impl.run`` in check mode with ``params``; say whether it would change anything."""
    try:
        module = CheckModeModule(impl.module_kwargs(), params, no_log_values)
    except CallFailed as err:
        no_log_values.update(err.no_log_values)
        return Outcome(failed=True, msg=_masked(err.msg, no_log_values))
    try:
        impl.run(module)
        outcome = Outcome(failed=True, msg=f"{getattr(impl, '__name__', impl)} ended without a result")
    except CallExited as done:
        outcome = Outcome(changed=bool(done.result.get("changed")))
    except CallFailed as err:
        outcome = Outcome(failed=True, msg=err.msg)
    finally:
        module.cleanup()
        no_log_values.update(module.secrets_seen)
    outcome.msg = _masked(outcome.msg, no_log_values)
    outcome.warnings = [_masked(warning, no_log_values) for warning in module.warnings]
    return outcome


def _masked(msg, no_log_values):
    return remove_values(msg, no_log_values) if no_log_values else msg
