# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""sync_record: replay a build cluster host's record in check mode, or write it from the journal.

Every replayed call runs in this task's worker, one after the other, through the same in-process
path as a module task (plugin_utils/inprocess.py), in check mode: one task instead of the
pre-flight checks and the roles, with the same calls and the same desired-vs-actual comparisons.
docs/architecture.md, "Sync records", says why skipping the roles then is sound.
"""

from __future__ import annotations

import importlib
import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.release import __version__ as ansible_version

from ansible_collections.prow.build_cluster.plugins.module_utils.kubeconfig import write_atomic
from ansible_collections.prow.build_cluster.plugins.plugin_utils import sync_records
from ansible_collections.prow.build_cluster.plugins.plugin_utils.inprocess import (
    COLLECTION,
    IMPL_PACKAGE,
    InProcessAction,
    plain_json,
)

# Once, in the controller that loads this action before it forks the hosts' workers.
sync_records.code_digest()

ARGUMENT_SPEC = {
    "state": {"type": "str", "choices": ["replay", "record"], "required": True},
    "dir": {"type": "path", "required": True},
    "inputs": {"type": "dict", "default": {}},
    "key": {"type": "str"},
    "gcp_auth": {"type": "dict", "default": {}, "no_log": True},
}


class ActionModule(InProcessAction):
    """Replays a record (state=replay) or writes one from this run's journal (state=record)."""

    # In check mode it neither replays nor writes: the full check-mode run follows (the playbook
    # also skips it then). A record is a cache, never a change, so there is no diff either.
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        # Not InProcessAction.run: this action is no module, and is not journaled.
        result = ActionBase.run(self, tmp, task_vars)
        task_vars = task_vars or {}
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        alias = task_vars["inventory_hostname"]
        directory = args["dir"]
        result.update(changed=False, in_sync=False, journal="", calls=0)
        if self._task.check_mode:
            result["msg"] = "check mode: no sync record is replayed or written; the full check-mode run follows"
            return result
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            # A bad output_dir is the pre-flight's to report, naming the variable: records are a cache,
            # so without a directory for them this run is the full one, and writes none.
            result["msg"] = f"not in sync: no sync records in {directory} ({exc.strerror}); the full onboarding runs"
            return result
        record_path = os.path.join(directory, f"{alias}.json")
        journal_path = os.path.join(directory, f"{alias}.journal")
        if args["state"] == "replay":
            result.update(self._replay_record(args, task_vars, record_path, journal_path))
        else:
            if not args["key"]:
                raise AnsibleActionFail("state=record needs the key that state=replay returned")
            result.update(self._write_record(args, task_vars, record_path, journal_path))
        return result

    # ------------------------------------------------------------ replay
    def _key(self, args, task_vars):
        role_variables = {}
        for name in sync_records.role_variable_names(task_vars):
            try:
                role_variables[name] = plain_json(self._templar.template(task_vars[name]))
            except Exception:  # pylint: disable=broad-exception-caught
                # Not computable here (it needs a role default): its text is what can change.
                role_variables[name] = str(task_vars[name])
        return sync_records.record_key(plain_json(args["inputs"]), role_variables, sync_records.code_digest(),
                                       ansible_version)

    def _replay_record(self, args, task_vars, record_path, journal_path):
        key = self._key(args, task_vars)
        outcome = {"key": key}
        warnings = []
        if not self._runs_on_controller_python(task_vars):
            # The replay runs the modules here; elsewhere there is nothing to replay with.
            return dict(outcome, msg="not in sync: the modules do not run on the controller's Python here")
        try:
            calls = sync_records.load_record(record_path, key)
        except sync_records.RecordUnusable as exc:
            reason = str(exc)
            if "corrupt" in reason:
                warnings.append(f"{reason}; running the full onboarding, which writes a new one")
        else:
            in_sync, reason = self._replay(calls, args["gcp_auth"], task_vars)
            if in_sync:
                return dict(outcome, in_sync=True, calls=len(calls),
                            msg=f"in sync: {len(calls)} recorded calls replayed in check mode without a change")
            outcome["calls"] = len(calls)
        # Not in sync: this run's calls are journaled from now on, for the record at its end.
        with open(journal_path, "w", encoding="utf-8"):
            pass
        os.chmod(journal_path, 0o600)
        outcome.update(journal=journal_path, msg=f"not in sync, the full onboarding runs: {reason}")
        if warnings:
            outcome["warnings"] = warnings
        return outcome

    def _replay(self, calls, gcp_auth, task_vars):
        """(True, '') when every call reports no change in check mode; else (False, which call and why)."""
        for number, call in enumerate(calls, 1):
            module = call["module"]
            try:
                impl = importlib.import_module(f"{IMPL_PACKAGE}.{module}")
            except ImportError:
                return False, f"call {number}: no module {module}"
            module_args = sync_records.replay_args(impl.module_kwargs()["argument_spec"], call["args"], gcp_auth)
            self._update_module_args(f"{COLLECTION}.{module}", module_args, task_vars)
            module_args.update(_ansible_check_mode=True, _ansible_diff=False, _ansible_no_log=bool(call.get("no_log")))
            data = self._run_impl(impl, module_args)
            if data.get("failed") or data.get("changed"):
                what = "fails" if data.get("failed") else "would change"
                # A no_log call's message may hold what it hides: not repeated.
                detail = "" if call.get("no_log") else f" ({data.get('msg') or data.get('reason') or ''})".replace(" ()", "")
                return False, f"call {number}, {module}, {what}{detail}"
        return True, ""

    # ------------------------------------------------------------ record
    def _write_record(self, args, task_vars, record_path, journal_path):
        try:
            entries = sync_records.read_journal(journal_path)
        except (OSError, ValueError) as exc:
            return {"msg": f"no record written: the journal cannot be read ({exc})"}
        finally:
            if os.path.exists(journal_path):
                os.unlink(journal_path)
        kept, refusal = [], None
        for entry in entries:
            if entry.get("environment"):
                refusal = f"{entry['module']} ran with a task environment, which a record does not hold"
            elif entry.get("secrets"):
                if entry["module"] in sync_records.SECRET_CALLS_OUTSIDE_RECORDS:
                    continue  # left out: see SECRET_CALLS_OUTSIDE_RECORDS
                refusal = f"{entry['module']} takes a secret ({', '.join(entry['secrets'])}), which a record does not hold"
            else:
                kept.append(entry)
        calls = sync_records.unique_calls(kept)
        if refusal is None and not calls:
            refusal = "no call to record"
        if refusal is None:
            in_sync, reason = self._replay(calls, args["gcp_auth"], task_vars)
            if not in_sync:
                refusal = f"the replay after the run is not in sync: {reason}"
        if refusal is not None:
            if os.path.exists(record_path):
                os.unlink(record_path)
            return {"msg": f"no record written: {refusal}"}
        write_atomic(record_path, sync_records.serialize(sync_records.record_document(args["key"], calls)) + "\n")
        return {"in_sync": True, "calls": len(calls), "msg": f"record written: {len(calls)} calls, in sync"}
