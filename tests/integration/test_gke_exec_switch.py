"""Switching a build cluster between the token and the keyless (gke_exec) credential models.

token -> gke_exec removes the Secret Manager secret, the cluster's key of the build clusters'
ExternalSecret, and the ServiceAccount with its binding; gke_exec -> token removes the keyless
ClusterRoleBinding and the cluster's key of the ConfigMap, and stores a token again. A sandbox of
its own, driven by onboard.yml as a user does.
"""

from __future__ import annotations

import kubernetes
import yaml
from test_gke_exec import CONFIGMAP, operator, prow_core
from test_playbooks import VARS, fixture_sandbox, playbook, recap  # noqa: F401  pylint: disable=unused-import

from prow_sandbox.kube import list_clusters

ALIAS = "build-switch"
SECRET = f"prow_build_cluster_kubeconfig_{ALIAS}"


def onboard(env, tmp_path, model):
    doc = yaml.safe_load(VARS.read_text())
    doc["build_clusters"] = [{"alias": ALIAS, "project": "prow-sandbox-build", "credential_model": model,
                              "gke": {"location": "us-east1-d", "name": "switch"}}]
    path = tmp_path / f"{model}.yml"
    path.write_text(yaml.safe_dump(doc))
    run = playbook(env, "onboard.yml", "-e", f"@{path}")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return run


def secret_status(state):
    session, endpoints = operator(state)
    return session.get(f"{endpoints['secretmanager']}/v1/projects/prow-sandbox-prow/secrets/{SECRET}").status_code


def rbac(state):
    cluster = next(c for c in list_clusters(state) if c.name.endswith("-switch"))
    return kubernetes.client.RbacAuthorizationV1Api(kubernetes.config.new_client_from_config(str(cluster.kubeconfig)))


def exists(read):
    try:
        read()
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def external_secret_keys(env):
    api = kubernetes.client.CustomObjectsApi(kubernetes.config.new_client_from_config(env["PROW_KUBECONFIG"]))
    try:
        found = api.get_namespaced_custom_object("external-secrets.io", "v1", "default", "externalsecrets",
                                                 "prow-build-clusters")
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return []
        raise
    return [entry["secretKey"] for entry in found["spec"]["data"]]


def configmap_keys(env):
    try:
        return sorted(prow_core(env).read_namespaced_config_map(CONFIGMAP, "default").data or {})
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return []
        raise


def test_token_to_keyless_and_back(sandbox, tmp_path):
    """One test: each step starts from the one before."""
    state, env = sandbox
    onboard(env, tmp_path, "token")
    assert secret_status(state) == 200 and external_secret_keys(env) == [ALIAS]
    assert exists(lambda: rbac(state).read_cluster_role_binding("serviceaccount-cluster-admin-crb"))

    keyless = onboard(env, tmp_path, "gke_exec")
    assert recap(keyless)["changed"] > 0
    assert secret_status(state) == 404, "the token model's secret is gone"
    assert external_secret_keys(env) == [] and configmap_keys(env) == [ALIAS]
    assert not exists(lambda: rbac(state).read_cluster_role_binding("serviceaccount-cluster-admin-crb"))
    core = kubernetes.client.CoreV1Api(rbac(state).api_client)
    assert not exists(lambda: core.read_namespaced_service_account("serviceaccount-cluster-admin", "default"))
    assert exists(lambda: rbac(state).read_cluster_role_binding("prow-control-plane"))

    onboard(env, tmp_path, "token")
    assert secret_status(state) == 200 and external_secret_keys(env) == [ALIAS]
    assert configmap_keys(env) == [], "no keyless cluster left: the ConfigMap went"
    assert not exists(lambda: rbac(state).read_cluster_role_binding("prow-control-plane"))
