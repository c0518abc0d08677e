"""k8s_namespace against the sandbox's real kube-apiserver: check -> real -> check -> real."""

from __future__ import annotations

import uuid

TASK = "namespace"


def test_check_real_check_real(ansible, kube_cluster, audit):
    name = f"pods-{uuid.uuid4().hex[:8]}"
    task = [{"name": TASK, "prow.build_cluster.k8s_namespace": {
        "kubeconfig": str(kube_cluster.kubeconfig), "name": name, "labels": {"prow.k8s.io/pods": "true"}}}]
    start = audit.now()

    check = ansible.run(task, check=True, diff=True)
    assert check.task(TASK)["changed"] is True
    assert audit.writes_since(start, names=[name]) == []

    real = ansible.run(task, diff=True)
    result = real.task(TASK)
    assert result["changed"] is True
    assert result["namespace"]["labels"]["prow.k8s.io/pods"] == "true"
    assert len(audit.writes_since(start, names=[name])) == 1

    after_create = audit.now()
    for mode in ({"check": True}, {}):
        again = ansible.run(task, **mode)
        assert again.task(TASK)["changed"] is False
    assert audit.writes_since(after_create, names=[name]) == []


def test_adds_missing_labels_and_keeps_others(ansible, kube_cluster, kube_client):
    from kubernetes import client  # pylint: disable=import-outside-toplevel

    name = f"pods-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(kube_client).create_namespace({"metadata": {"name": name, "labels": {"team": "a"}}})
    run = ansible.run([{"name": TASK, "prow.build_cluster.k8s_namespace": {
        "kubeconfig": str(kube_cluster.kubeconfig), "name": name, "labels": {"prow": "jobs"}}}], diff=True)
    result = run.task(TASK)
    assert result["changed"] is True
    assert result["diff"]["before"]["labels"].get("prow") is None
    labels = client.CoreV1Api(kube_client).read_namespace(name).metadata.labels
    assert labels["team"] == "a" and labels["prow"] == "jobs"


def test_invalid_name_fails_before_any_call(ansible, kube_cluster, audit):
    start = audit.now()
    run = ansible.run([{"name": TASK, "prow.build_cluster.k8s_namespace": {
        "kubeconfig": str(kube_cluster.kubeconfig), "name": "Test_Pods"}}])
    result = run.task(TASK)
    assert result["failed"] is True
    assert "namespace 'Test_Pods' is not a valid name" in result["msg"]
    assert audit.writes_since(start) == []


def test_unreachable_cluster_is_a_clear_error(ansible, tmp_path, kube_cluster):
    broken = tmp_path / "kubeconfig"
    broken.write_text(kube_cluster.kubeconfig.read_text().replace(kube_cluster.server, "https://127.0.0.1:1"))
    run = ansible.run([{"name": TASK, "prow.build_cluster.k8s_namespace": {"kubeconfig": str(broken)}}])
    result = run.task(TASK)
    assert result["failed"] is True
    assert "cannot reach https://127.0.0.1:1" in result["msg"]
