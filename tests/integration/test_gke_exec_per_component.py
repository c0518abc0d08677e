"""Per-component access in the keyless model (``credential_model: gke_exec``, ``access: per-component``).

A sandbox of its own: a keyless cluster onboarded with cluster-admin access, then switched to
per-component access. Each Prow component's GSA (``prow.component_service_accounts``) then has a
Role in the pod namespace with exactly the verbs Prow checks (crier's ``nodes get`` through a
ClusterRole) and nothing else: SubjectAccessReviews as each GSA, answered by the real
kube-apiserver's RBAC and the fake GKE's IAM authorization webhook, say so. Switching back to
cluster-admin removes every per-component object.
"""

from __future__ import annotations

from datetime import datetime, timezone

import kubernetes
import pytest
import yaml
from test_gke_exec import operator
from test_gke_exec_switch import exists
from test_playbooks import VARS, fixture_sandbox, gcp_writes, kube_writes, playbook, recap  # noqa: F401  pylint: disable=unused-import

from prow_sandbox.kube import list_clusters

ALIAS = "build-least"
PROJECT = "prow-sandbox-build"
NAMESPACE = "test-pods"
ACCOUNTS = {
    "prow-controller-manager": "prow-controller-manager@prow-sandbox-prow.iam.gserviceaccount.com",
    "sinker": "prow-sinker@prow-sandbox-prow.iam.gserviceaccount.com",
    "crier": "prow-crier@prow-sandbox-prow.iam.gserviceaccount.com",
    "deck": "prow-deck@prow-sandbox-prow.iam.gserviceaccount.com",
}
# What each component may do: (verb, resource, subresource, namespace or None for cluster scope).
ALLOWED = {
    "prow-controller-manager": [(v, "pods", "", NAMESPACE) for v in ("create", "delete", "list", "watch", "get", "patch")],
    "sinker": [(v, "pods", "", NAMESPACE) for v in ("delete", "list", "watch", "get", "patch")],
    "crier": [("get", "pods", "", NAMESPACE), ("list", "pods", "", NAMESPACE), ("get", "events", "", NAMESPACE),
              ("list", "events", "", NAMESPACE), ("patch", "pods", "", NAMESPACE), ("get", "nodes", "", None)],
    "deck": [("get", "pods", "log", NAMESPACE)],
}
DENIED = {
    "prow-controller-manager": [("create", "pods", "", "default"), ("get", "secrets", "", NAMESPACE),
                                ("update", "pods", "", NAMESPACE), ("get", "nodes", "", None)],
    "sinker": [("create", "pods", "", NAMESPACE), ("delete", "pods", "", "default")],
    "crier": [("delete", "pods", "", NAMESPACE), ("list", "nodes", "", None), ("get", "pods", "", "default")],
    "deck": [("list", "pods", "", NAMESPACE), ("get", "pods", "", NAMESPACE), ("get", "pods", "log", "default")],
}
OBJECTS = [("Role", name) for name in ("prow-controller-manager", "prow-sinker", "prow-crier", "prow-deck")] + \
    [("RoleBinding", name) for name in ("prow-controller-manager", "prow-sinker", "prow-crier", "prow-deck")] + \
    [("ClusterRole", "prow-crier"), ("ClusterRoleBinding", "prow-crier")]


def cluster_vars(tmp_path, accounts=None, **settings):
    doc = yaml.safe_load(VARS.read_text())
    doc["build_clusters"] = [{"alias": ALIAS, "project": PROJECT, "credential_model": "gke_exec",
                              "gke": {"location": "us-east1-c", "name": "least"}, **settings}]
    if accounts is not None:
        doc["prow"]["component_service_accounts"] = accounts
    path = tmp_path / f"vars-{len(list(tmp_path.iterdir()))}.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def onboard(env, path):
    run = playbook(env, "onboard.yml", "-e", f"@{path}")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return run


def admin(state):
    cluster = next(c for c in list_clusters(state) if c.name.endswith("-least"))
    return kubernetes.config.new_client_from_config(str(cluster.kubeconfig))


def allowed(api, user, verb, resource, subresource, namespace):
    attributes = {"verb": verb, "resource": resource, "version": "v1", "group": ""}
    if subresource:
        attributes["subresource"] = subresource
    if namespace:
        attributes["namespace"] = namespace
    review = kubernetes.client.AuthorizationV1Api(api).create_subject_access_review(
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
         "spec": {"user": user, "resourceAttributes": attributes}})
    return review.status.allowed


def present(api, kind, name):
    rbac = kubernetes.client.RbacAuthorizationV1Api(api)
    read = {"Role": lambda: rbac.read_namespaced_role(name, NAMESPACE),
            "RoleBinding": lambda: rbac.read_namespaced_role_binding(name, NAMESPACE),
            "ClusterRole": lambda: rbac.read_cluster_role(name),
            "ClusterRoleBinding": lambda: rbac.read_cluster_role_binding(name)}[kind]
    return exists(read)


@pytest.fixture(scope="module", name="per_component")
def fixture_per_component(sandbox, tmp_path_factory):
    state, env = sandbox
    session, endpoints = operator(state)
    created = session.post(f"{endpoints['iam']}/v1/projects/prow-sandbox-prow/serviceAccounts",
                           json={"accountId": "prow-sinker", "serviceAccount": {"displayName": "Prow sinker"}})
    assert created.status_code == 200, created.text
    tmp = tmp_path_factory.mktemp("vars")
    onboard(env, cluster_vars(tmp))
    assert present(admin(state), "ClusterRoleBinding", "prow-control-plane"), "cluster-admin access first"
    vars_file = cluster_vars(tmp, ACCOUNTS, access="per-component")
    switched = onboard(env, vars_file)
    assert recap(switched)["changed"] > 0
    return state, env, tmp, vars_file


def test_the_cluster_admin_binding_is_replaced_by_per_component_objects(per_component):
    api = admin(per_component[0])
    assert not present(api, "ClusterRoleBinding", "prow-control-plane")
    assert all(present(api, kind, name) for kind, name in OBJECTS)


@pytest.mark.parametrize("component", sorted(ACCOUNTS))
def test_each_component_may_do_exactly_its_verbs(per_component, component):
    api = admin(per_component[0])
    user = ACCOUNTS[component]
    refused = [check for check in ALLOWED[component] if not allowed(api, user, *check)]
    assert refused == [], f"{component} is refused what Prow needs"
    granted = [check for check in DENIED[component] if allowed(api, user, *check)]
    assert granted == [], f"{component} may do more than Prow needs"


def test_the_component_gsas_get_cluster_viewer_only(per_component):
    session, endpoints = operator(per_component[0])
    policy = session.post(f"{endpoints['cloudresourcemanager']}/v1/projects/{PROJECT}:getIamPolicy", json={}).json()
    roles = {b["role"] for b in policy.get("bindings", []) if f"serviceAccount:{ACCOUNTS['sinker']}" in b["members"]}
    assert roles == {"roles/container.clusterViewer"}


def test_a_rerun_changes_nothing_and_writes_nothing(per_component):
    state, env, _tmp, vars_file = per_component
    since = datetime.now(timezone.utc)
    again = onboard(env, vars_file)
    assert recap(again)["changed"] == 0, again.stdout[-4000:]
    assert gcp_writes(state, since) == []
    assert kube_writes(state, since) == []


def test_verify_proves_each_component_and_names_the_one_that_lost_its_role(per_component):
    state, env, _tmp, vars_file = per_component
    verified = playbook(env, "verify.yml", "-e", f"@{vars_file}")
    text = " ".join(verified.stdout.split())
    assert verified.returncode == 0, verified.stdout[-6000:]
    for component in ACCOUNTS:
        assert f"ok permissions of {component}: {ACCOUNTS[component]} may" in text, (component, verified.stdout[-6000:])
    assert "ok permissions of sinker: " + ACCOUNTS["sinker"] + " may delete pods, list pods, watch pods, get pods, patch pods," in text
    # The partner: sinker's RoleBinding gone, verify names sinker's link; onboarding puts it back.
    kubernetes.client.RbacAuthorizationV1Api(admin(state)).delete_namespaced_role_binding("prow-sinker", NAMESPACE)
    broken = playbook(env, "verify.yml", "-e", f"@{vars_file}")
    assert broken.returncode != 0 and f"BROKEN permissions of sinker: {ACCOUNTS['sinker']} cannot" in " ".join(broken.stdout.split()), \
        broken.stdout[-6000:]
    onboard(env, vars_file)
    assert playbook(env, "verify.yml", "-e", f"@{vars_file}").returncode == 0


@pytest.mark.parametrize("accounts, message", [
    ({**ACCOUNTS, "plank": "prow-plank@prow-sandbox-prow.iam.gserviceaccount.com"}, "prow.component_service_accounts"),
    ({k: v for k, v in ACCOUNTS.items() if k != "deck"}, "prow.component_service_accounts"),
    ({**ACCOUNTS, "deck": "deck@example.com"}, "prow.component_service_accounts"),
])
def test_bad_component_service_accounts_fail_in_preflight(per_component, accounts, message):
    state, env, tmp, _vars = per_component
    since = datetime.now(timezone.utc)
    bad = playbook(env, "onboard.yml", "-e", f"@{cluster_vars(tmp, accounts, access='per-component')}")
    assert bad.returncode != 0
    assert message in bad.stdout, bad.stdout[-3000:]
    assert gcp_writes(state, since) == [] and kube_writes(state, since) == []


def test_switching_back_to_cluster_admin_removes_the_per_component_objects(per_component):
    """Last in this module: it changes the cluster's access for good."""
    state, env, tmp, _vars = per_component
    onboard(env, cluster_vars(tmp, ACCOUNTS, access="cluster-admin"))
    api = admin(state)
    assert [obj for obj in OBJECTS if present(api, *obj)] == []
    assert present(api, "ClusterRoleBinding", "prow-control-plane")
    assert allowed(api, ACCOUNTS["prow-controller-manager"], "create", "pods", "", "default")
