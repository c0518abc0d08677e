# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""sync_record: replay the build cluster hosts' records in check mode, or write one from its journal.

state=replay is one task for every host of the play (run_once): a task per host would cost a
worker and the strategy's per-task work for each of them, which is most of a no-op run's time.
It computes each host's key from that host's variables, then replays the records in a few
forked processes (their calls wait on APIs, not on CPU), each call through the same in-process
path as a module task (plugin_utils/inprocess.py), in check mode: the same calls and the same
desired-vs-actual comparisons as the pre-flight checks and the roles it stands for.
docs/architecture.md, "Sync records", says why skipping the roles then is sound.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

from ansible import context
from ansible import constants as C

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.release import __version__ as ansible_version

from ansible_collections.prow.build_cluster.plugins.module_utils.kubeconfig import write_atomic
from ansible_collections.prow.build_cluster.plugins.plugin_utils import sync_records
from ansible_collections.prow.build_cluster.plugins.plugin_utils.inprocess import (
    COLLECTION,
    IMPL_PACKAGE,
    InProcessAction,
    interpreter_is_controllers,
    plain_json,
)

# Once, in the controller that loads this action before it forks the hosts' workers.
sync_records.code_digest()

# How many processes replay the hosts' records at once, at most: their calls wait on the APIs,
# so more than the cores, but not more than the run's forks. PROW_SYNC_REPLAY_PROCESSES overrides.
PROCESSES_PER_CORE = 2

ARGUMENT_SPEC = {
    "state": {"type": "str", "choices": ["replay", "record"], "required": True},
    "dir": {"type": "path", "required": True},
    "inputs": {"type": "dict", "default": {}},
    "host_inputs": {"type": "str"},
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
        directory = args["dir"]
        result.update(changed=False, in_sync=False, calls=0)
        if args["state"] == "replay":
            result["hosts"] = {}
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
        if args["state"] == "replay":
            result.update(self._replay_hosts(args, task_vars, directory))
        else:
            if not args["key"]:
                raise AnsibleActionFail("state=record needs the key that state=replay returned")
            alias = task_vars["inventory_hostname"]
            result.update(self._write_record(args, task_vars, os.path.join(directory, f"{alias}.json"),
                                             os.path.join(directory, f"{alias}.journal")))
        return result

    # ------------------------------------------------------------ replay
    def _play_hosts_variables(self, task_vars):
        """{alias: its variables as its own task would have them}, for every host of the play's batch.

        This task's host has its task_vars; every other host's are the variable manager's, for this
        play and task, as the strategy computes them for a task of that host.
        """
        own = task_vars["inventory_hostname"]
        hosts = list(task_vars.get("ansible_play_batch") or [own])
        variables = {own: task_vars}
        others = [alias for alias in hosts if alias != own]
        if others:
            manager = self._task.get_variable_manager()
            inventory = task_vars["hostvars"]._inventory  # pylint: disable=protected-access
            play = self._task.get_play()
            for alias in others:
                variables[alias] = manager.get_vars(play=play, host=inventory.get_host(alias), task=self._task)
        return {alias: variables[alias] for alias in hosts}

    def _host_runs_here(self, variables):
        """Whether this host's module tasks would run in-process here (local, no become, this Python)."""
        templar = self._templar.copy_with_new_env(available_variables=variables)
        connection = templar.template(variables.get("ansible_connection", self._connection.transport))
        become = templar.template(variables.get("ansible_become", self._play_context.become))
        if connection != "local" or boolean(become, strict=False):
            return False
        return interpreter_is_controllers(variables, templar)

    def _key(self, inputs, variables, templar):
        role_variables = {}
        for name in sync_records.role_variable_names(variables):
            try:
                role_variables[name] = plain_json(templar.template(variables[name]))
            except Exception:  # pylint: disable=broad-exception-caught
                # Not computable here (it needs a role default): its text is what can change.
                role_variables[name] = str(variables[name])
        return sync_records.record_key(plain_json(inputs), role_variables, sync_records.code_digest(),
                                       ansible_version)

    def _replay_hosts(self, args, task_vars, directory):
        """Every host's outcome ({alias: in_sync, key, journal, calls, msg}) and the warnings."""
        hosts, jobs, warnings = {}, [], []
        for alias, variables in self._play_hosts_variables(task_vars).items():
            outcome = hosts[alias] = {"in_sync": False, "key": "", "journal": "", "calls": 0}
            templar = self._templar.copy_with_new_env(available_variables=variables)
            inputs = dict(args["inputs"])
            if args["host_inputs"]:
                inputs.update(templar.template(variables[args["host_inputs"]]))
            if inputs.get("state", "present") != "present":
                outcome["msg"] = "not replayed: the build cluster is being offboarded"
                continue
            if not boolean(templar.template(variables.get("prow_sync_records", True)), strict=False):
                outcome["msg"] = "not replayed: prow_sync_records is false"
                continue
            outcome["key"] = self._key(inputs, variables, templar)
            record_path = os.path.join(directory, f"{alias}.json")
            if not self._host_runs_here(variables):
                # The replay runs the modules here; elsewhere there is nothing to replay with.
                self._start_journal(directory, alias, outcome,
                                    "the modules do not run on the controller's Python for this host")
                continue
            try:
                calls = sync_records.load_record(record_path, outcome["key"])
            except sync_records.RecordUnusable as exc:
                if "corrupt" in str(exc):
                    warnings.append(f"{alias}: {exc}; running the full onboarding, which writes a new one")
                self._start_journal(directory, alias, outcome, str(exc))
                continue
            outcome["calls"] = len(calls)
            jobs.append((alias, calls, variables))
        for alias, (in_sync, reason) in self._replay_in_processes(jobs, args["gcp_auth"]).items():
            outcome = hosts[alias]
            if in_sync:
                outcome.update(in_sync=True, msg=f"in sync: {outcome['calls']} recorded calls replayed in check mode "
                                                 "without a change")
            else:
                self._start_journal(directory, alias, outcome, reason)
        in_sync = sorted(alias for alias, outcome in hosts.items() if outcome["in_sync"])
        result = {"hosts": hosts, "msg": f"{len(in_sync)} of {len(hosts)} build clusters in sync: "
                                         + ", ".join(f"{alias}: {outcome['msg']}" for alias, outcome in hosts.items())}
        if warnings:
            result["warnings"] = warnings
        return result

    @staticmethod
    def _start_journal(directory, alias, outcome, reason):
        """Not in sync: the host's calls are journaled from now on, for the record at its end."""
        journal_path = os.path.join(directory, f"{alias}.journal")
        with open(journal_path, "w", encoding="utf-8"):
            pass
        os.chmod(journal_path, 0o600)
        outcome.update(journal=journal_path, msg=f"not in sync, the full onboarding runs: {reason}")

    def _replay_processes(self, jobs):
        configured = os.environ.get("PROW_SYNC_REPLAY_PROCESSES")
        if configured:
            if not configured.isdigit() or int(configured) < 1:
                raise AnsibleActionFail(f"PROW_SYNC_REPLAY_PROCESSES must be a whole number of processes, not {configured!r}")
            return min(int(configured), len(jobs))
        forks = context.CLIARGS.get("forks") or C.DEFAULT_FORKS
        return max(1, min(len(jobs), forks, PROCESSES_PER_CORE * (os.cpu_count() or 1)))

    def _replay_in_processes(self, jobs, gcp_auth):
        """{alias: (in_sync, reason)} of every job (alias, calls, variables), in forked processes."""
        processes = self._replay_processes(jobs) if jobs else 0
        if processes <= 1:
            return {alias: self._replay(calls, gcp_auth, variables) for alias, calls, variables in jobs}
        sys.stdout.flush()
        sys.stderr.flush()
        children = []
        for share in (jobs[index::processes] for index in range(processes)):
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: replay its share, answer in JSON, and leave without cleanup
                os.close(read_end)
                answer = {}
                for alias, calls, variables in share:
                    try:
                        answer[alias] = self._replay(calls, gcp_auth, variables)
                    except Exception as exc:  # pylint: disable=broad-exception-caught
                        answer[alias] = (False, f"the replay failed ({type(exc).__name__}: {exc})")
                with os.fdopen(write_end, "w", encoding="utf-8") as pipe:
                    pipe.write(json.dumps(answer))
                os._exit(0)  # pylint: disable=protected-access
            os.close(write_end)
            children.append((pid, read_end, share))
        outcomes = {}
        for pid, read_end, share in children:
            with os.fdopen(read_end, encoding="utf-8") as pipe:
                text = pipe.read()
            os.waitpid(pid, 0)
            try:
                outcomes.update({alias: tuple(value) for alias, value in json.loads(text).items()})
            except ValueError:
                outcomes.update({alias: (False, "the replay's process ended without an answer")
                                 for alias, _calls, _variables in share})
        return outcomes

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
