"""gke_admin_ksa against the sandbox apiserver: check -> real -> check -> real, drift, RBAC, absent."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

TASK = "admin ksa"


def ksa_task(kube_cluster, **params):
    return [{"name": TASK, "prow.build_cluster.gke_admin_ksa": {"kubeconfig": str(kube_cluster.kubeconfig), **params}}]


@pytest.fixture
def names(namespace, kube_client):
    """SA in the test's namespace; the cluster-scoped binding named after it, removed afterwards."""
    binding = f"{namespace}-crb"
    yield {"name": "prow-admin", "namespace": namespace, "binding_name": binding}
    rbac = client.RbacAuthorizationV1Api(kube_client)
    try:
        rbac.delete_cluster_role_binding(binding)
    except client.ApiException as exc:
        assert exc.status == 404


def test_check_real_check_real(ansible, kube_cluster, kube_client, audit, names):
    tasks = ksa_task(kube_cluster, **names)
    scope = {"namespaces": (names["namespace"],), "names": (names["binding_name"],)}
    rbac = client.RbacAuthorizationV1Api(kube_client)

    since = audit.now()
    check = ansible.run(tasks, check=True, diff=True)
    result = check.task(TASK)
    assert result["changed"] is True, json.dumps(result)
    assert result["actions"] == [
        f"create serviceaccount {names['namespace']}/prow-admin",
        f"create clusterrolebinding {names['binding_name']}",
    ]
    assert result["diff"]["before"] == {"service_account": None, "cluster_role_binding": None}
    assert audit.writes_since(since, **scope) == [], "check mode must not write"

    since = audit.now()
    real = ansible.run(tasks, diff=True)
    assert real.task(TASK)["changed"] is True
    assert len(audit.writes_since(since, **scope)) == 2
    crb = rbac.read_cluster_role_binding(names["binding_name"])
    assert crb.role_ref.name == "cluster-admin"
    assert [(s.kind, s.namespace, s.name) for s in crb.subjects] == [("ServiceAccount", names["namespace"], "prow-admin")]
    assert real.task(TASK)["service_account"]["username"] == f"system:serviceaccount:{names['namespace']}:prow-admin"

    for check_mode in (True, False):
        since = audit.now()
        again = ansible.run(tasks, check=check_mode, diff=True)
        assert again.task(TASK)["changed"] is False, again.task(TASK)
        assert again.task(TASK)["actions"] == []
        assert audit.writes_since(since, **scope) == [], f"re-run (check={check_mode}) must not write"


def test_wrong_subjects_are_corrected_and_a_different_role_replaces_the_binding(ansible, kube_cluster, kube_client, audit, names):
    rbac = client.RbacAuthorizationV1Api(kube_client)
    ansible.run(ksa_task(kube_cluster, **names))
    # Drift: someone added a subject by hand.
    rbac.patch_cluster_role_binding(names["binding_name"], {"subjects": [
        {"kind": "ServiceAccount", "name": "prow-admin", "namespace": names["namespace"]},
        {"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"},
    ]})
    run = ansible.run(ksa_task(kube_cluster, **names), diff=True)
    result = run.task(TASK)
    assert result["changed"] is True, json.dumps(result)
    assert result["actions"] == [f"set subjects of clusterrolebinding {names['binding_name']}"]
    assert "User mallory" in result["diff"]["before"]["cluster_role_binding"]["subjects"]
    assert [s.name for s in rbac.read_cluster_role_binding(names["binding_name"]).subjects] == ["prow-admin"]

    # A ClusterRole that does not exist would make a binding that grants nothing: an error, before
    # any write, in check mode too.
    since = audit.now()
    for check_mode in (True, False):
        missing = ansible.run(ksa_task(kube_cluster, cluster_role="prow-build-pods", **names), check=check_mode)
        assert missing.task(TASK).get("failed") is True, json.dumps(missing.task(TASK))
        assert "cluster_role: ClusterRole prow-build-pods does not exist" in missing.task(TASK)["msg"]
    assert audit.writes_since(since, names=(names["binding_name"], "prow-admin")) == []
    assert rbac.read_cluster_role_binding(names["binding_name"]).role_ref.name == "cluster-admin"

    # Least privilege: bind another ClusterRole. roleRef is immutable, so delete + create.
    role = f"{names['namespace']}-pods"
    rbac.create_cluster_role({"metadata": {"name": role},
                              "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})
    since = audit.now()
    try:
        run = ansible.run(ksa_task(kube_cluster, cluster_role=role, **names), diff=True)
        result = run.task(TASK)
        assert result["changed"] is True, json.dumps(result)
        assert result["actions"][0].startswith(f"delete clusterrolebinding {names['binding_name']}")
        assert result["diff"]["after"]["cluster_role_binding"]["cluster_role"] == role
        assert rbac.read_cluster_role_binding(names["binding_name"]).role_ref.name == role
        assert ansible.run(ksa_task(kube_cluster, cluster_role=role, **names)).task(TASK)["changed"] is False
    finally:
        rbac.delete_cluster_role(role)
    verbs = sorted(e["verb"] for e in audit.writes_since(since, names=(names["binding_name"],)))
    assert verbs == ["create", "delete"]


def test_absent_removes_both(ansible, kube_cluster, kube_client, audit, names):
    ansible.run(ksa_task(kube_cluster, **names))
    tasks = ksa_task(kube_cluster, state="absent", **names)
    check = ansible.run(tasks, check=True)
    assert check.task(TASK)["changed"] is True
    since = audit.now()
    assert ansible.run(tasks).task(TASK)["changed"] is True
    assert sorted(e["verb"] for e in audit.writes_since(since, namespaces=(names["namespace"],), names=(names["binding_name"],))) == [
        "delete", "delete"]
    core = client.CoreV1Api(kube_client)
    with pytest.raises(client.ApiException) as err:
        core.read_namespaced_service_account("prow-admin", names["namespace"])
    assert err.value.status == 404
    since = audit.now()
    assert ansible.run(tasks).task(TASK)["changed"] is False
    assert audit.writes_since(since, namespaces=(names["namespace"],), names=(names["binding_name"],)) == []


def test_caller_without_bind_right_fails_clearly_before_binding(ansible, kube_cluster, kube_client, kubectl, audit, names, tmp_path):
    """A caller who may create ServiceAccounts but not bind cluster-admin: SSAR says no, nothing is bound."""
    namespace = names["namespace"]
    core, rbac = client.CoreV1Api(kube_client), client.RbacAuthorizationV1Api(kube_client)
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="limited")))
    role = client.V1Role(metadata=client.V1ObjectMeta(name="sa-writer"), rules=[
        client.V1PolicyRule(api_groups=[""], resources=["serviceaccounts"], verbs=["get", "create"])])
    rbac.create_namespaced_role(namespace, role)
    rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="sa-writer"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="sa-writer"),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="limited", namespace=namespace)]))
    # A ClusterRole to read bindings, so the module gets as far as the bind check.
    reader = f"{namespace}-crb-reader"
    rbac.create_cluster_role(client.V1ClusterRole(metadata=client.V1ObjectMeta(name=reader), rules=[
        client.V1PolicyRule(api_groups=["rbac.authorization.k8s.io"], resources=["clusterrolebindings"], verbs=["get"])]))
    rbac.create_cluster_role_binding(client.V1ClusterRoleBinding(
        metadata=client.V1ObjectMeta(name=reader),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=reader),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="limited", namespace=namespace)]))
    try:
        token = kubectl("create", "token", "limited", "-n", namespace).stdout.strip()
        ca_cert = tmp_path / "ca.crt"
        ca_cert.write_text(kube_cluster.ca_pem)
        since = audit.now()
        run = ansible.run([{"name": TASK, "prow.build_cluster.gke_admin_ksa": {
            "host": kube_cluster.server, "api_key": token, "ca_cert": str(ca_cert), **names}}])
        result = run.task(TASK)
        assert result["failed"] is True
        assert "may not bind ClusterRole cluster-admin" in result["msg"], result["msg"]
        assert result["actions"] == []  # checked before any write, the ServiceAccount's too
        assert token not in run.stdout
        assert [e["objectRef"]["resource"] for e in audit.writes_since(since, names=(names["binding_name"],))] == []
    finally:
        rbac.delete_cluster_role_binding(reader)
        rbac.delete_cluster_role(reader)


@pytest.mark.parametrize(("params", "message"), [
    ({"namespace": "Bad_NS"}, "namespace 'Bad_NS' is not a valid name"),
    ({"name": "Prow Admin"}, "name 'Prow Admin' is not a valid name"),
    ({"cluster_role": "a/b"}, "cluster_role 'a/b' is not a valid RBAC name"),
])
def test_bad_input_fails_before_any_call(ansible, kube_cluster, audit, names, params, message):
    since = audit.now()
    run = ansible.run(ksa_task(kube_cluster, **dict(names, **params)))
    result = run.task(TASK)
    assert result["failed"] is True
    assert message in result["msg"]
    assert audit.writes_since(since) == []
