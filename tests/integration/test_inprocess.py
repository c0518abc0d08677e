"""The action plugin: a module task runs in the worker or as a process, with the same result.

The harness runs ``-c local`` on this Python, so every other integration test takes the
in-process path. Here the same tasks also run with ``ansible_python_interpreter`` set to a
wrapper of this Python (another interpreter as far as the plugin can tell), which leaves a
mark for every module process, and both results are compared.
"""

from __future__ import annotations

import sys
import uuid

SECRET = "not-a-real-token-0123456789"


def interpreters(tmp_path):
    marks = tmp_path / "module-processes"
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho run >> "{marks}"\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    return {"worker": sys.executable, "process": str(wrapper)}, marks


def both_ways(ansible, tmp_path, tasks, **kwargs):
    (python, marks) = interpreters(tmp_path)
    results = {}
    for way, interpreter in python.items():
        before = marks.read_text().count("run") if marks.exists() else 0
        results[way] = ansible.run(tasks, extra_vars={"ansible_python_interpreter": interpreter}, **kwargs)
        processes = (marks.read_text().count("run") if marks.exists() else 0) - before
        assert processes == (0 if way == "worker" else len(tasks)), way
    return results


def test_same_result_with_module_defaults_check_and_diff_mode(ansible, kube_cluster, tmp_path, audit):
    name = f"inproc-{uuid.uuid4().hex[:8]}"
    tasks = [{"name": "namespace", "module_defaults": {"group/prow.build_cluster.k8s": {"kubeconfig": str(kube_cluster.kubeconfig)}},
              "prow.build_cluster.k8s_namespace": {"name": name, "labels": {"team": "a"}}}]
    start = audit.now()
    runs = both_ways(ansible, tmp_path, tasks, check=True, diff=True)
    worker, process = (runs[way].task("namespace") for way in ("worker", "process"))
    assert worker["changed"] is True and worker["diff"]["after"]["labels"] == {"team": "a"}
    assert worker["invocation"]["module_args"]["kubeconfig"] == str(kube_cluster.kubeconfig)  # from module_defaults
    assert worker == process
    assert audit.writes_since(start, names=[name]) == []


def test_same_failure_with_no_log_values_masked(ansible, kube_cluster, tmp_path):
    tasks = [{"name": "bad", "prow.build_cluster.k8s_namespace": {
        "kubeconfig": str(kube_cluster.kubeconfig), "api_key": SECRET, "name": "Not_A_Label"}}]
    runs = both_ways(ansible, tmp_path, tasks)
    worker, process = (runs[way].task("bad") for way in ("worker", "process"))
    assert worker["failed"] is True and "is not a valid name" in worker["msg"]
    assert worker["invocation"]["module_args"]["api_key"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert SECRET not in runs["worker"].stdout and SECRET not in runs["process"].stdout
    assert worker == process


def test_same_api_error_failure(ansible, tmp_path):
    # Nothing listens there: the connection error is an ApiError without a status, reported by run_module.
    tasks = [{"name": "unreachable", "prow.build_cluster.k8s_namespace": {
        "host": "https://127.0.0.1:9", "api_key": SECRET, "validate_certs": False, "name": "test-pods"}}]
    runs = both_ways(ansible, tmp_path, tasks)
    worker, process = (runs[way].task("unreachable") for way in ("worker", "process"))
    assert worker["failed"] is True and worker["resource"] == "namespace test-pods" and worker["status"] is None
    assert SECRET not in runs["worker"].stdout
    assert worker == process
