"""plugin_utils.inprocess: which tasks run in the worker, and what such a run returns."""

from __future__ import annotations

import os
import sys
from unittest import mock

import pytest

from ansible_collections.prow.build_cluster.plugins.module_utils.impl import yaml_files
from ansible_collections.prow.build_cluster.plugins.plugin_utils.inprocess import InProcessAction

MODULE = "prow.build_cluster.yaml_files"


def action(args=None, transport="local", become=None, resolved=MODULE, check_mode=False, environment=None):
    task = mock.MagicMock(args=args or {}, action=resolved, resolved_action=resolved, async_val=0, check_mode=check_mode,
                          no_log=False, diff=False, environment=environment or [])
    connection = mock.MagicMock(transport=transport, become=become, socket_path=None, has_native_async=False)
    connection._shell.tmpdir = None
    connection._shell.env_prefix = lambda **env: ""
    play_context = mock.MagicMock(executable="/bin/sh")
    templar = mock.MagicMock()
    templar.template.side_effect = lambda value: value
    plugin = InProcessAction(task, connection, play_context, loader=None, templar=templar)
    plugin.get_shell_option = lambda option, default=None: default
    return plugin


def run(plugin, task_vars):
    with mock.patch.object(plugin, "_execute_module", return_value={"changed": False, "ran": "subprocess"}) as execute, \
            mock.patch.object(plugin, "_remove_tmp_path"):
        result = plugin.run(task_vars=task_vars)
    return result, execute


CONTROLLER = {"ansible_python_interpreter": sys.executable, "ansible_playbook_python": sys.executable}


@pytest.mark.parametrize("task_vars", [
    CONTROLLER,
    {"ansible_playbook_python": "/opt/ansible/bin/python", "ansible_python_interpreter": "/opt/ansible/bin/python"},
    {},  # unset: interpreter discovery on the controller's machine
])
def test_a_local_task_on_the_controllers_python_runs_in_the_worker(task_vars):
    assert action()._in_process_impl(task_vars) is yaml_files


@pytest.mark.parametrize("kind, change", [
    ("ssh connection", {"transport": "ssh"}),
    ("become", {"become": mock.MagicMock()}),
    ("another collection's module", {"resolved": "community.general.yaml_files"}),
    ("a module without an impl", {"resolved": "prow.build_cluster.no_such_module"}),
])
def test_anything_else_runs_the_module_as_a_process(kind, change):
    result, execute = run(action(**change), CONTROLLER)
    assert execute.called, kind
    assert result["ran"] == "subprocess"


def test_another_interpreter_runs_the_module_as_a_process():
    task_vars = dict(CONTROLLER, ansible_python_interpreter="/usr/bin/python3.12")
    assert action()._in_process_impl(task_vars) is None
    # Not resolved through symlinks: a virtualenv's python links to a system one, with other packages.
    assert action()._in_process_impl(dict(CONTROLLER, ansible_python_interpreter=os.path.realpath(sys.executable) + "-other")) is None


def test_an_in_process_run_returns_what_a_module_process_would(tmp_path):
    args = {"dest": str(tmp_path / "out"), "files": {"a.yaml": {"kind": "A"}}}
    result, execute = run(action(args, check_mode=True), CONTROLLER)
    assert not execute.called
    assert result["changed"] is True and result["written"] == ["a.yaml"]
    assert not (tmp_path / "out").exists()  # check mode reached the module
    assert result["invocation"]["module_args"] == {**args, "mode": "0644"}
    assert result["_ansible_parsed"] is True  # went through _parse_returned_data, like a process's output
    assert not [key for key in result if key.startswith("_ansible_") and key != "_ansible_parsed"]


def test_invalid_arguments_fail_like_a_module_process(tmp_path):
    result, _execute = run(action({"dest": str(tmp_path), "files": {}, "bogus": 1}), CONTROLLER)
    assert result["failed"] is True
    assert result["msg"] == "Unsupported parameters for (prow.build_cluster.yaml_files) module: bogus. " \
        "Supported parameters include: dest, files, mode."


def test_the_tasks_environment_is_set_for_the_run_and_restored(monkeypatch):
    monkeypatch.delenv("PROW_INPROCESS_TEST", raising=False)
    seen = {}

    def fake_run(impl, module_args):
        seen["value"] = os.environ.get("PROW_INPROCESS_TEST")
        return '{"changed": false}'
    plugin = action({"dest": "/nonexistent", "files": {}}, environment=[{"PROW_INPROCESS_TEST": "from-task"}])
    with mock.patch("ansible_collections.prow.build_cluster.plugins.module_utils._runner.run_in_process", fake_run):
        run(plugin, CONTROLLER)
    assert seen["value"] == "from-task" and "PROW_INPROCESS_TEST" not in os.environ


def test_what_the_module_prints_does_not_reach_the_controllers_output(capsys):
    def noisy_run(impl, module_args):
        print("noise on stdout")
        print("noise on stderr", file=sys.stderr)
        return '{"changed": false, "ok": 1}'
    with mock.patch("ansible_collections.prow.build_cluster.plugins.module_utils._runner.run_in_process", noisy_run):
        result, _execute = run(action({"dest": "/nonexistent", "files": {}}), CONTROLLER)
    assert result["ok"] == 1
    captured = capsys.readouterr()
    assert "noise" not in captured.out and "noise" not in captured.err
