"""The sync_record action: what it records, what it refuses, and when a record serves (the replay
itself, against real APIs, is tests/integration/test_sync_records.py)."""

from __future__ import annotations

import json
import os
import sys
from unittest import mock

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.prow.build_cluster.plugins.action.sync_record import ActionModule
from ansible_collections.prow.build_cluster.plugins.plugin_utils import sync_records

TOKEN = "eyJhbGciOiJSUzI1NiJ9.a-token-that-must-never-be-stored"
TASK_VARS = {"inventory_hostname": "build-a", "ansible_python_interpreter": sys.executable,
             "ansible_playbook_python": sys.executable}


def action(args):
    task = mock.MagicMock(args=args, action="prow.build_cluster.sync_record", resolved_action="prow.build_cluster.sync_record",
                          async_val=0, check_mode=False, no_log=False, diff=False, environment=[])
    connection = mock.MagicMock(transport="local", become=None, socket_path=None, has_native_async=False)
    templar = mock.MagicMock()
    templar.template.side_effect = lambda value: value
    templar.copy_with_new_env.return_value = templar
    return ActionModule(task, connection, mock.MagicMock(become=False), loader=None, templar=templar)


def call(module, secrets=(), environment=(), **args):
    return {"module": module, "args": args, "no_log": False, "secrets": list(secrets), "environment": list(environment)}


def record(tmp_path, entries, in_sync=(True, "")):
    for entry in entries:
        sync_records.append_journal(tmp_path / "build-a.journal", entry)
    plugin = action({"state": "record", "dir": str(tmp_path), "key": "k1"})
    with mock.patch.object(plugin, "_replay", return_value=in_sync) as replay:
        result = plugin.run(task_vars=dict(TASK_VARS))
    return result, replay


def test_the_record_leaves_out_the_store_of_a_minted_token_and_holds_no_secret(tmp_path):
    result, replay = record(tmp_path, [
        call("ksa_token", alias="build-a", current={"name": "secret s", "secret": "projects/p/secrets/s"}),
        call("secret_manager_secret", secrets=["payload"], project="p", name="s"),
        call("ksa_token", alias="build-a", current={"name": "secret s", "secret": "projects/p/secrets/s"}),
    ])
    assert result["in_sync"] and result["calls"] == 1, result
    path = tmp_path / "build-a.json"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    doc = json.loads(path.read_text())
    assert [c["module"] for c in doc["calls"]] == ["ksa_token"] and doc["key"] == "k1"
    assert [c["module"] for c in replay.call_args.args[0]] == ["ksa_token"]  # what is written was replayed
    assert not (tmp_path / "build-a.journal").exists()


@pytest.mark.parametrize("entry, why", [
    (call("k8s_namespace", secrets=["api_key"], name="test-pods"), "takes a secret (api_key)"),
    (call("gke_admin_ksa", environment=["HTTPS_PROXY"], name="sa"), "task environment"),
], ids=["api_key", "environment"])
def test_a_call_with_a_secret_it_cannot_replay_means_no_record(tmp_path, entry, why):
    (tmp_path / "build-a.json").write_text("{}")  # an older record goes too
    result, replay = record(tmp_path, [call("gcs_bucket", name="b"), entry])
    assert not result["in_sync"] and why in result["msg"], result
    assert not replay.called and not (tmp_path / "build-a.json").exists()


def test_no_record_when_the_replay_after_the_run_would_change(tmp_path):
    result, _replay = record(tmp_path, [call("gcs_bucket", name="b")], in_sync=(False, "call 1, gcs_bucket, would change"))
    assert not result["in_sync"] and "gcs_bucket, would change" in result["msg"]
    assert not (tmp_path / "build-a.json").exists()


def replay(tmp_path, text, in_sync=(True, ""), **variables):
    if text is not None:
        (tmp_path / "build-a.json").write_text(text)
    plugin = action({"state": "replay", "dir": str(tmp_path), "inputs": {"playbook": "onboard"},
                     "host_inputs": "sync_inputs"})
    task_vars = dict(TASK_VARS, sync_inputs={"build_cluster": {"alias": "build-a"}, "state": "present"})
    task_vars.update(variables)
    with mock.patch.object(plugin, "_replay", return_value=in_sync) as replayed:
        result = plugin.run(task_vars=task_vars)
    return dict(result["hosts"]["build-a"], warnings=result.get("warnings")), replayed


def test_a_record_with_this_runs_key_is_replayed_and_no_journal_started(tmp_path):
    key = replay(tmp_path, None)[0]["key"]
    calls = [{"module": "gcs_bucket", "args": {"name": "b"}, "no_log": False}]
    result, replayed = replay(tmp_path, json.dumps(sync_records.record_document(key, calls)))
    assert result["in_sync"] and result["journal"] == "" and replayed.call_args.args[0] == calls


def test_the_key_is_of_the_hosts_inputs(tmp_path):
    key = replay(tmp_path, None)[0]["key"]
    assert replay(tmp_path, None)[0]["key"] == key
    other = replay(tmp_path, None, sync_inputs={"build_cluster": {"alias": "build-a", "zone": "z"}, "state": "present"})
    assert other[0]["key"] != key


@pytest.mark.parametrize("variables, why", [
    ({"sync_inputs": {"build_cluster": {"alias": "build-a"}, "state": "absent"}}, "offboarded"),
    ({"prow_sync_records": "false"}, "prow_sync_records is false"),
], ids=["absent", "switched-off"])
def test_a_host_offboarded_or_without_records_is_not_replayed_nor_journaled(tmp_path, variables, why):
    result, replayed = replay(tmp_path, None, **variables)
    assert not result["in_sync"] and result["journal"] == "" and why in result["msg"] and not replayed.called
    assert not (tmp_path / "build-a.journal").exists()


def test_a_host_whose_modules_run_elsewhere_is_not_replayed(tmp_path):
    key = replay(tmp_path, None)[0]["key"]
    calls = [{"module": "gcs_bucket", "args": {"name": "b"}, "no_log": False}]
    result, replayed = replay(tmp_path, json.dumps(sync_records.record_document(key, calls)), ansible_connection="ssh")
    assert not result["in_sync"] and "controller's Python" in result["msg"] and not replayed.called
    assert result["journal"]  # its full run is journaled, as any other host's


def test_hosts_are_replayed_in_forked_processes_and_each_gets_its_own_answer(tmp_path, monkeypatch):
    monkeypatch.setenv("PROW_SYNC_REPLAY_PROCESSES", "3")
    plugin = action({"state": "replay", "dir": str(tmp_path)})
    jobs = [(f"build-{n}", [{"module": "m", "args": {"n": n}}], {}) for n in range(5)]
    parent = os.getpid()

    def in_a_child(calls, _gcp_auth, _variables):
        n = calls[0]["args"]["n"]
        if n == 3:
            raise RuntimeError("boom")
        return os.getpid() != parent and n % 2 == 0, f"pid {os.getpid()}"

    with mock.patch.object(plugin, "_replay", side_effect=in_a_child):
        outcomes = plugin._replay_in_processes(jobs, {})
    assert {alias: in_sync for alias, (in_sync, _why) in outcomes.items()} == {
        "build-0": True, "build-1": False, "build-2": True, "build-3": False, "build-4": True}
    assert "RuntimeError: boom" in outcomes["build-3"][1]
    assert len({why for alias, (_in_sync, why) in outcomes.items() if alias != "build-3"}) == 3  # three processes


@pytest.mark.parametrize("text, why, warned", [
    (None, "no sync record yet", False),
    ('{"format": 1, "key": ', "is corrupt", True),
    (json.dumps(sync_records.record_document("another key", [{"module": "m", "args": {}}])), "inputs or the collection changed", False),
], ids=["missing", "corrupt", "other key"])
def test_otherwise_the_full_run_journals_and_says_why(tmp_path, text, why, warned):
    result, replayed = replay(tmp_path, text)
    assert not result["in_sync"] and why in result["msg"] and not replayed.called
    assert result["journal"] == str(tmp_path / "build-a.journal")
    assert oct(os.stat(result["journal"]).st_mode & 0o777) == "0o600"
    assert bool(result.get("warnings")) is warned


def test_a_replay_that_would_change_gives_the_full_run(tmp_path):
    key = replay(tmp_path, None)[0]["key"]
    calls = [{"module": "gcs_bucket", "args": {"name": "b"}, "no_log": False}]
    result, _replayed = replay(tmp_path, json.dumps(sync_records.record_document(key, calls)),
                               in_sync=(False, "call 1, gcs_bucket, would change"))
    assert not result["in_sync"] and result["journal"] and "gcs_bucket, would change" in result["msg"]


# ---------------------------------------------------------------- the journal of InProcessAction
def module_task(args, task_vars):
    from test_inprocess import action as module_action, run  # pylint: disable=import-outside-toplevel
    plugin = module_action(args=args, resolved="prow.build_cluster.secret_manager_secret", transport="ssh")
    return run(plugin, task_vars)


def test_a_module_call_is_journaled_without_its_secrets_when_the_play_keeps_a_journal(tmp_path):
    journal = tmp_path / "build-a.journal"
    module_task({"project": "p", "name": "s", "payload": TOKEN, "access_token": TOKEN}, {"prow_sync_journal": str(journal)})
    [entry] = sync_records.read_journal(journal)
    assert entry["module"] == "secret_manager_secret" and entry["args"] == {"project": "p", "name": "s"}
    assert entry["secrets"] == ["payload"] and TOKEN not in journal.read_text()
    assert oct(os.stat(journal).st_mode & 0o777) == "0o600"


def test_no_journal_without_the_variable(tmp_path):
    module_task({"project": "p", "name": "s"}, {"prow_sync_journal": ""})
    module_task({"project": "p", "name": "s"}, {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("state", ["replay", "record"])
def test_check_mode_replays_and_writes_nothing(tmp_path, state):
    directory = tmp_path / "sync"
    plugin = action({"state": state, "dir": str(directory), "key": "k1"})
    plugin._task.check_mode = True
    with mock.patch.object(plugin, "_replay") as replay:
        result = plugin.run(task_vars=dict(TASK_VARS))
    assert result["changed"] is False and result["in_sync"] is False and "check mode" in result["msg"], result
    assert result.get("hosts", {}) == {}
    assert not replay.called and not directory.exists()
    # The same call outside check mode does write (the test can fail).
    plugin._task.check_mode = False
    if state == "replay":
        plugin.run(task_vars=dict(TASK_VARS))
        assert (directory / "build-a.journal").exists()


@pytest.mark.parametrize("state", ["replay", "record"])
def test_a_directory_that_cannot_be_made_means_the_full_run_not_a_failure(tmp_path, state):
    # output_dir a file: the pre-flight names the variable; records must not fail before it.
    (tmp_path / "out").write_text("a file")
    plugin = action({"state": state, "dir": str(tmp_path / "out" / ".sync"), "key": "k1"})
    result = plugin.run(task_vars=dict(TASK_VARS))
    assert result.get("failed") is not True and result["in_sync"] is False and not result.get("hosts"), result
    assert "Not a directory" in result["msg"] and "full onboarding runs" in result["msg"]


@pytest.mark.parametrize("value", ["two", "0", "-1"])
def test_a_bad_number_of_replay_processes_is_refused_by_name(tmp_path, monkeypatch, value):
    monkeypatch.setenv("PROW_SYNC_REPLAY_PROCESSES", value)
    plugin = action({"state": "replay", "dir": str(tmp_path)})
    with pytest.raises(AnsibleActionFail, match="PROW_SYNC_REPLAY_PROCESSES must be a whole number"):
        plugin._replay_in_processes([("build-a", [], {})], {})
