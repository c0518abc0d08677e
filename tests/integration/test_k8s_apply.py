"""k8s_apply against the sandbox's real kube-apiserver with the real (pinned) ESO CRDs.

What matters most: a second run writes nothing (the audit log shows it), while every kind of
drift that a ``kubectl apply`` would fix is found and fixed, and the annotation the module
writes is the one kubectl itself reads (a kubectl apply after the module is a no-op).
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from prow_sandbox import assets

from conftest import BIN

TASK = "apply"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
ESO = "external-secrets.io/v1"


@pytest.fixture(scope="module", autouse=True)
def eso_crds(kube_cluster):
    """The ESO CRDs, server-side applied (client-side they exceed the annotation size limit)."""
    kubectl = [str(BIN / "kubectl"), f"--kubeconfig={kube_cluster.kubeconfig}"]
    files = [f"--filename={crd}" for crd in assets.files("eso-crds")]
    subprocess.run([*kubectl, "apply", "--server-side", "--field-manager=k8s-apply-tests", *files],
                   check=True, capture_output=True, text=True)
    subprocess.run([*kubectl, "wait", "--for=condition=Established", "--timeout=60s", *files],
                   check=True, capture_output=True, text=True)


def external_secret(namespace, keys=("build-a",)):
    return {
        "apiVersion": ESO,
        "kind": "ExternalSecret",
        "metadata": {"name": "kubeconfigs", "namespace": namespace},
        "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": f"store-{namespace}"},
            "target": {"name": "kubeconfig"},
            "data": [{"secretKey": key, "remoteRef": {"key": f"prow-{key}-kubeconfig"}} for key in keys],
        },
    }


def store(namespace):
    return {"apiVersion": ESO, "kind": "ClusterSecretStore", "metadata": {"name": f"store-{namespace}"},
            "spec": {"provider": {"gcpsm": {"projectID": "prow-project"}}}}


def apply_task(kube_cluster, definition, **params):
    return [{"name": TASK, "prow.build_cluster.k8s_apply": {
        "kubeconfig": str(kube_cluster.kubeconfig), "definition": definition, **params}}]


def custom(kube_client):
    from kubernetes import client  # pylint: disable=import-outside-toplevel
    return client.CustomObjectsApi(kube_client)


def read_es(kube_client, namespace):
    return custom(kube_client).get_namespaced_custom_object("external-secrets.io", "v1", namespace, "externalsecrets", "kubeconfigs")


def kubectl_form(doc):
    """A definition as kubectl stores it in the annotation: metadata.annotations always present."""
    return dict(doc, metadata=dict(doc["metadata"], annotations=doc["metadata"].get("annotations", {})))


def writes(audit, since, namespace):
    return audit.describe(audit.writes_since(since, namespaces=(namespace,), names=(f"store-{namespace}",)))


def test_create_then_no_op_with_zero_writes(ansible, kube_cluster, kube_client, audit, namespace):
    docs = [store(namespace), external_secret(namespace, keys=("build-a", "build-b"))]
    task = apply_task(kube_cluster, docs)
    since = audit.now()

    check = ansible.run(task, check=True, diff=True).task(TASK)
    assert check["changed"] is True, check
    assert [d["action"] for d in check["documents"]] == ["created", "created"]
    assert check["diff"]["after"][f"ExternalSecret {namespace}/kubeconfigs"]["spec"]["data"][1]["secretKey"] == "build-b"
    assert writes(audit, since, namespace) == [], "check mode writes nothing"

    real = ansible.run(task).task(TASK)
    assert real["changed"] is True, real
    assert real["documents"] == [
        {"kind": "ClusterSecretStore", "name": f"store-{namespace}", "namespace": None, "action": "created"},
        {"kind": "ExternalSecret", "name": "kubeconfigs", "namespace": namespace, "action": "created"},
    ]
    assert len(writes(audit, since, namespace)) == 2
    live = read_es(kube_client, namespace)
    assert json.loads(live["metadata"]["annotations"][LAST_APPLIED]) == kubectl_form(docs[1])
    # The CRD's defaults filled in fields the definition does not set, inside the list items:
    # what makes kubernetes.core re-send the list; they must not count as a difference.
    assert live["spec"]["data"][0]["remoteRef"] != docs[1]["spec"]["data"][0]["remoteRef"]

    after_create = audit.now()
    for mode in ({"check": True, "diff": True}, {}):
        again = ansible.run(task, **mode).task(TASK)
        assert again["changed"] is False, again
        assert [d["action"] for d in again["documents"]] == ["unchanged", "unchanged"]
    assert writes(audit, after_create, namespace) == []


def test_the_annotation_is_what_kubectl_writes(ansible, kube_cluster, kube_client, audit, namespace, tmp_path):
    """kubectl apply after the module sends nothing, and the module after kubectl apply neither.

    For a ConfigMap, kubectl says "unchanged". For an ExternalSecret kubectl itself re-sends
    spec.data on every apply (its three-way JSON merge patch sees the CRD's defaults in the
    list items); the annotation it writes then must be byte for byte the module's.
    """
    from kubernetes import client  # pylint: disable=import-outside-toplevel

    kubectl = [str(BIN / "kubectl"), f"--kubeconfig={kube_cluster.kubeconfig}"]
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain", "namespace": namespace},
                  "data": {"a": "1"}}
    ours = external_secret(namespace)
    theirs = dict(external_secret(namespace), metadata={"name": "by-kubectl", "namespace": namespace})
    for name, doc in (("cm", config_map), ("ours", ours), ("theirs", theirs)):
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    assert ansible.run(apply_task(kube_cluster, [config_map, ours])).task(TASK)["changed"] is True
    written = read_es(kube_client, namespace)["metadata"]["annotations"][LAST_APPLIED]

    out = subprocess.run([*kubectl, "apply", "-f", str(tmp_path / "cm.json")], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "configmap/plain unchanged"
    subprocess.run([*kubectl, "apply", "-f", str(tmp_path / "ours.json")], check=True, capture_output=True, text=True)
    assert read_es(kube_client, namespace)["metadata"]["annotations"][LAST_APPLIED] == written

    subprocess.run([*kubectl, "apply", "-f", str(tmp_path / "theirs.json")], check=True, capture_output=True, text=True)
    since = audit.now()
    result = ansible.run(apply_task(kube_cluster, [config_map, theirs, ours])).task(TASK)
    assert result["changed"] is False, result
    assert writes(audit, since, namespace) == []
    assert client.CoreV1Api(kube_client).read_namespaced_config_map("plain", namespace).data == {"a": "1"}


def test_a_changed_list_item_is_found_and_fixed(ansible, kube_cluster, kube_client, audit, namespace):
    doc = external_secret(namespace, keys=("build-a", "build-b"))
    task = apply_task(kube_cluster, doc)
    assert ansible.run(task).task(TASK)["changed"] is True
    patch = {"spec": {"data": [{"secretKey": "build-a", "remoteRef": {"key": "someone-else"}},
                               {"secretKey": "build-b", "remoteRef": {"key": "prow-build-b-kubeconfig"}}]}}
    custom(kube_client).patch_namespaced_custom_object("external-secrets.io", "v1", namespace, "externalsecrets", "kubeconfigs", patch)

    check = ansible.run(task, check=True, diff=True).task(TASK)
    assert check["changed"] is True
    key = f"ExternalSecret {namespace}/kubeconfigs"
    assert check["diff"]["before"][key]["spec"]["data"][0]["remoteRef"]["key"] == "someone-else"
    assert check["diff"]["after"][key]["spec"]["data"][0]["remoteRef"]["key"] == "prow-build-a-kubeconfig"

    real = ansible.run(task).task(TASK)
    assert real["documents"][0]["action"] == "updated"
    assert read_es(kube_client, namespace)["spec"]["data"][0]["remoteRef"]["key"] == "prow-build-a-kubeconfig"
    since = audit.now()
    assert ansible.run(task).task(TASK)["changed"] is False
    assert writes(audit, since, namespace) == []


def test_list_order_and_length_are_part_of_the_definition(ansible, kube_cluster, kube_client, namespace):
    assert ansible.run(apply_task(kube_cluster, external_secret(namespace, keys=("build-a", "build-b")))).task(TASK)["changed"]
    reordered = ansible.run(apply_task(kube_cluster, external_secret(namespace, keys=("build-b", "build-a")))).task(TASK)
    assert reordered["changed"] is True
    shorter = ansible.run(apply_task(kube_cluster, external_secret(namespace, keys=("build-b",)))).task(TASK)
    assert shorter["changed"] is True
    assert [d["secretKey"] for d in read_es(kube_client, namespace)["spec"]["data"]] == ["build-b"], "the list is replaced whole"


def test_fields_set_by_hand_are_kept_and_do_not_count(ansible, kube_cluster, kube_client, audit, namespace):
    doc = external_secret(namespace)
    task = apply_task(kube_cluster, doc)
    assert ansible.run(task).task(TASK)["changed"] is True
    by_hand = {"metadata": {"labels": {"team": "a"}}, "spec": {"refreshPolicy": "Periodic"}}
    custom(kube_client).patch_namespaced_custom_object("external-secrets.io", "v1", namespace, "externalsecrets", "kubeconfigs", by_hand)

    since = audit.now()
    assert ansible.run(task).task(TASK)["changed"] is False
    assert writes(audit, since, namespace) == []
    # An update for another reason keeps them too: a merge patch, not a replace.
    changed = ansible.run(apply_task(kube_cluster, external_secret(namespace, keys=("build-z",)))).task(TASK)
    assert changed["changed"] is True
    live = read_es(kube_client, namespace)
    assert live["metadata"]["labels"]["team"] == "a" and live["spec"]["refreshPolicy"] == "Periodic"


def test_a_removed_annotation_and_a_dropped_field_are_changes(ansible, kube_cluster, kube_client, namespace):
    doc = external_secret(namespace)
    doc["metadata"]["labels"] = {"owner": "prow"}
    assert ansible.run(apply_task(kube_cluster, doc)).task(TASK)["changed"] is True
    custom(kube_client).patch_namespaced_custom_object("external-secrets.io", "v1", namespace, "externalsecrets", "kubeconfigs",
                                                       {"metadata": {"annotations": {LAST_APPLIED: None}}})
    restored = ansible.run(apply_task(kube_cluster, doc)).task(TASK)
    assert restored["changed"] is True
    assert json.loads(read_es(kube_client, namespace)["metadata"]["annotations"][LAST_APPLIED]) == kubectl_form(doc)

    # The label the last definition set and this one drops is deleted, as kubectl apply does.
    del doc["metadata"]["labels"]
    assert ansible.run(apply_task(kube_cluster, doc)).task(TASK)["changed"] is True
    assert "owner" not in (read_es(kube_client, namespace)["metadata"].get("labels") or {})


def test_absent_deletes_then_is_a_no_op(ansible, kube_cluster, kube_client, audit, namespace):
    docs = [store(namespace), external_secret(namespace)]
    assert ansible.run(apply_task(kube_cluster, docs)).task(TASK)["changed"] is True
    check = ansible.run(apply_task(kube_cluster, docs, state="absent"), check=True, diff=True).task(TASK)
    assert [d["action"] for d in check["documents"]] == ["deleted", "deleted"]
    assert check["diff"]["after"] == {f"ClusterSecretStore store-{namespace}": {}, f"ExternalSecret {namespace}/kubeconfigs": {}}
    assert read_es(kube_client, namespace)["metadata"]["name"] == "kubeconfigs", "check mode deletes nothing"

    assert ansible.run(apply_task(kube_cluster, docs, state="absent")).task(TASK)["changed"] is True
    since = audit.now()
    again = ansible.run(apply_task(kube_cluster, docs, state="absent")).task(TASK)
    assert again["changed"] is False
    assert [d["action"] for d in again["documents"]] == ["absent", "absent"]
    assert writes(audit, since, namespace) == []


def test_secret_values_are_never_shown_and_string_data_compares(ansible, kube_cluster, audit, namespace):
    value = f"s3cr3t-{uuid.uuid4().hex}"
    doc = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token", "namespace": namespace},
           "type": "Opaque", "stringData": {"token": value}}
    first = ansible.run(apply_task(kube_cluster, doc), diff=True)
    result = first.task(TASK)
    assert result["changed"] is True
    assert value not in first.stdout and value not in first.stderr
    # After: what the server stored (data, base64), as a fingerprint.
    assert result["diff"]["after"][f"Secret {namespace}/token"]["data"]["token"].startswith("sha256:")

    since = audit.now()
    second = ansible.run(apply_task(kube_cluster, doc), diff=True)
    assert second.task(TASK)["changed"] is False, "stringData is compared with the data the server stores"
    assert writes(audit, since, namespace) == []
    assert value not in second.stdout


def test_a_kind_the_server_does_not_serve_is_a_clear_error(ansible, kube_cluster, namespace):
    doc = {"apiVersion": "widgets.example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": namespace}}
    result = ansible.run(apply_task(kube_cluster, [external_secret(namespace), doc]), check=True).task(TASK)
    assert result["failed"] is True
    assert "kind Widget in apiVersion widgets.example.com/v1" in result["msg"]
    assert "CustomResourceDefinition" in result["msg"]
    # A known group without the kind is the same error.
    wrong_kind = dict(doc, apiVersion=ESO, kind="ExternalSecrets")
    result = ansible.run(apply_task(kube_cluster, wrong_kind)).task(TASK)
    assert result["failed"] is True and f"kind ExternalSecrets in apiVersion {ESO}" in result["msg"]


def test_invalid_definitions_fail_before_any_call(ansible, kube_cluster, audit):
    since = audit.now()
    for definition, message in [
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}, "definition[0]: missing metadata.name"),
        ([{"kind": "ConfigMap", "metadata": {"name": "a"}}], "definition[0]: missing apiVersion"),
        (["text"], "definition[0]: each document must be a mapping"),
    ]:
        result = ansible.run(apply_task(kube_cluster, definition)).task(TASK)
        assert result["failed"] is True and message in result["msg"], result
    assert audit.writes_since(since) == []


def test_namespace_on_a_cluster_scoped_kind_and_a_missing_namespace(ansible, kube_cluster):
    scoped = dict(store("x"), metadata={"name": "store-x", "namespace": "default"})
    result = ansible.run(apply_task(kube_cluster, scoped)).task(TASK)
    assert result["failed"] is True and "is cluster-scoped" in result["msg"]
    missing = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": f"none-{uuid.uuid4().hex[:8]}"}}
    assert ansible.run(apply_task(kube_cluster, missing), check=True).task(TASK)["changed"] is True
    result = ansible.run(apply_task(kube_cluster, missing)).task(TASK)
    assert result["failed"] is True and "does not exist; create it first" in result["msg"]
