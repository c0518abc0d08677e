"""The keyless credential model (``credential_model: gke_exec``), end to end with onboard.yml.

A whole sandbox of its own (the Prow kube-apiserver, the GCP fake whose GKE API starts the build
cluster, which authorizes Google identities by IAM and RBAC as GKE does). Onboarding a GKE
cluster with gke_exec stores no secret anywhere: the Prow cluster gets a ConfigMap with an exec
kubeconfig, the build project an IAM grant for Prow's control-plane GSAs, the cluster a
ClusterRoleBinding naming them as Users. That kubeconfig, the gke-gcloud-auth-plugin stand-in
and a control-plane GSA's Application Default Credentials list pods, through the official
kubernetes client, as Prow would.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import kubernetes
import pytest
import yaml
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import service_account
from test_playbooks import VARS, fixture_sandbox, gcp_writes, kube_writes, playbook, recap  # noqa: F401

from prow_sandbox.kube import list_clusters

BIN = Path(sys.executable).parent
ALIAS = "build-keyless"
PROJECT = "prow-sandbox-build"
CONFIGMAP = "prow-build-clusters-exec"
CONTROL_PLANE = "prow-controller-manager@prow-sandbox-prow.iam.gserviceaccount.com"
NOT_CONTROL_PLANE = "gencred-refresher@prow-sandbox-prow.iam.gserviceaccount.com"


def keyless_vars(tmp_path, **settings):
    doc = yaml.safe_load(VARS.read_text())
    doc["build_clusters"] = [{"alias": ALIAS, "project": PROJECT, "credential_model": "gke_exec",
                              "gke": {"location": "us-east1-b", "name": "keyless"}, **settings}]
    path = tmp_path / f"vars-{len(list(tmp_path.iterdir()))}.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module", name="onboarded")
def fixture_onboarded(sandbox, tmp_path_factory):
    state, env = sandbox
    vars_file = keyless_vars(tmp_path_factory.mktemp("vars"))
    first = playbook(env, "onboard.yml", "-e", f"@{vars_file}")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    return state, env, vars_file


def prow_core(env):
    return kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(env["PROW_KUBECONFIG"]))


def build_admin(state):
    cluster = next(c for c in list_clusters(state) if c.name.endswith("-keyless"))
    return kubernetes.config.new_client_from_config(str(cluster.kubeconfig))


def exec_kubeconfig(env):
    return yaml.safe_load(prow_core(env).read_namespaced_config_map(CONFIGMAP, "default").data[ALIAS])


def operator(state):
    """(AuthorizedSession of the sandbox operator, the fake's endpoints)."""
    endpoints = json.loads((state / "endpoints.json").read_text())
    creds = service_account.Credentials.from_service_account_file(
        str(state / "gcp" / "operator-credentials.json"), scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return AuthorizedSession(creds), endpoints


def project_members(state, role):
    session, endpoints = operator(state)
    policy = session.post(f"{endpoints['cloudresourcemanager']}/v1/projects/{PROJECT}:getIamPolicy", json={}).json()
    return next((b["members"] for b in policy.get("bindings", []) if b["role"] == role), [])


def test_onboarding_writes_a_keyless_kubeconfig_an_iam_grant_and_rbac(onboarded):
    state, env, _vars = onboarded
    config = exec_kubeconfig(env)
    user = config["users"][0]["user"]
    assert set(user) == {"exec"}, "no token, no client key: nothing secret"
    assert user["exec"]["command"] == "gke-gcloud-auth-plugin"
    assert user["exec"]["args"] == ["--use_application_default_credentials"]
    assert user["exec"]["provideClusterInfo"] is True
    assert config["contexts"][0]["name"] == ALIAS
    # No Secret Manager secret, no key in the build clusters' Secret.
    session, endpoints = operator(state)
    secret = f"{endpoints['secretmanager']}/v1/projects/prow-sandbox-prow/secrets/prow_build_cluster_kubeconfig_{ALIAS}"
    assert session.get(secret).status_code == 404
    secrets = prow_core(env).list_namespaced_secret("default").items
    assert not [s.metadata.name for s in secrets if ALIAS in (s.data or {})]
    assert f"serviceAccount:{CONTROL_PLANE}" in project_members(state, "roles/container.clusterViewer")
    binding = kubernetes.client.RbacAuthorizationV1Api(build_admin(state)).read_cluster_role_binding("prow-control-plane")
    assert binding.role_ref.name == "cluster-admin"
    assert {(s.kind, s.name) for s in binding.subjects} >= {("User", CONTROL_PLANE)}


@pytest.fixture
def adc(onboarded, monkeypatch):
    """A GSA's key file as Application Default Credentials, and the plugin on PATH, as in a Prow pod."""
    state = onboarded[0]
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")

    def use(email):
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(state / "gcp" / "credentials" / f"{email}.json"))
    return use


def test_the_configmap_kubeconfig_lists_pods_as_the_control_plane_gsa(onboarded, adc):
    adc(CONTROL_PLANE)
    with kubernetes.config.new_client_from_config_dict(exec_kubeconfig(onboarded[1])) as api:
        pods = kubernetes.client.CoreV1Api(api).list_namespaced_pod("test-pods")
        assert pods.items == []
        who = kubernetes.client.AuthenticationV1Api(api).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        assert who.status.user_info.username == CONTROL_PLANE


def test_the_same_kubeconfig_as_another_gsa_is_refused(onboarded, adc):
    adc(NOT_CONTROL_PLANE)
    with kubernetes.config.new_client_from_config_dict(exec_kubeconfig(onboarded[1])) as api:
        with pytest.raises(kubernetes.client.ApiException) as refused:
            kubernetes.client.CoreV1Api(api).list_namespaced_pod("test-pods")
        assert refused.value.status == 403


def test_a_rerun_changes_nothing_and_writes_nothing(onboarded):
    state, env, vars_file = onboarded
    since = datetime.now(timezone.utc)
    second = playbook(env, "onboard.yml", "-e", f"@{vars_file}")
    assert second.returncode == 0, second.stdout[-4000:]
    assert recap(second)["changed"] == 0, second.stdout[-4000:]
    assert gcp_writes(state, since) == []
    assert kube_writes(state, since) == []


def test_verify_proves_the_keyless_chain(onboarded):
    _state, env, vars_file = onboarded
    verified = playbook(env, "verify.yml", "-e", f"@{vars_file}")
    assert verified.returncode == 0, verified.stdout[-4000:]
    # The report wraps long lines: look for each link's start.
    for link in ("ok stored kubeconfig: ConfigMap default/prow-build-clusters-exec",
                 "ok exec credential: runs gke-gcloud-auth-plugin --use_application_default_credentials",
                 "ok permissions: prow-crier@", "ok expiry: no stored token"):
        assert link in verified.stdout, verified.stdout[-4000:]
    assert CONTROL_PLANE in verified.stdout and "BROKEN" not in verified.stdout


def test_verify_names_a_missing_binding_and_onboarding_repairs_it(onboarded):
    state, env, vars_file = onboarded
    kubernetes.client.RbacAuthorizationV1Api(build_admin(state)).delete_cluster_role_binding("prow-control-plane")
    broken = playbook(env, "verify.yml", "-e", f"@{vars_file}")
    assert broken.returncode != 0
    assert "BROKEN permissions" in broken.stdout and "cannot create, delete, list, watch, get, patch pods" in broken.stdout
    repaired = playbook(env, "onboard.yml", "-e", f"@{vars_file}")
    assert repaired.returncode == 0 and recap(repaired)["changed"] >= 1
    assert playbook(env, "verify.yml", "-e", f"@{vars_file}").returncode == 0


@pytest.mark.parametrize("field, value", [
    ("server", "https://127.0.0.1:1"),
    ("certificate-authority-data", "bm90IGEgY2E="),
])
def test_a_tampered_endpoint_or_ca_is_repaired(onboarded, field, value):
    _state, env, vars_file = onboarded
    core = prow_core(env)
    original = core.read_namespaced_config_map(CONFIGMAP, "default").data[ALIAS]
    tampered = yaml.safe_load(original)
    tampered["clusters"][0]["cluster"][field] = value
    core.patch_namespaced_config_map(CONFIGMAP, "default", {"data": {ALIAS: yaml.safe_dump(tampered)}})
    broken = playbook(env, "verify.yml", "-e", f"@{vars_file}")
    assert broken.returncode != 0 and "BROKEN stored kubeconfig" in broken.stdout, broken.stdout[-3000:]
    repaired = playbook(env, "onboard.yml", "-e", f"@{vars_file}")
    assert repaired.returncode == 0, repaired.stdout[-4000:]
    assert "Write the keyless kubeconfigs into ConfigMap" in repaired.stdout
    assert recap(repaired)["changed"] >= 1
    assert core.read_namespaced_config_map(CONFIGMAP, "default").data[ALIAS] == original


def test_a_bad_credential_model_fails_before_any_write(onboarded, tmp_path):
    state, env, _vars = onboarded
    since = datetime.now(timezone.utc)
    bad = playbook(env, "onboard.yml", "-e", f"@{keyless_vars(tmp_path, credential_model='keyless')}")
    assert bad.returncode != 0
    assert "credential_model" in bad.stdout and "gke_exec" in bad.stdout
    assert gcp_writes(state, since) == [] and kube_writes(state, since) == []


def test_keyless_needs_control_plane_service_accounts(onboarded, tmp_path):
    state, env, _vars = onboarded
    doc = yaml.safe_load(keyless_vars(tmp_path).read_text())
    doc["prow"]["control_plane_service_accounts"] = []
    path = tmp_path / "no-control-plane.yml"
    path.write_text(yaml.safe_dump(doc))
    since = datetime.now(timezone.utc)
    bad = playbook(env, "onboard.yml", "-e", f"@{path}")
    assert bad.returncode != 0 and "prow.control_plane_service_accounts" in bad.stdout
    assert gcp_writes(state, since) == [] and kube_writes(state, since) == []


def test_developer_access_is_iam_alone_and_removes_the_binding(onboarded, adc, tmp_path):
    """Last in this module: it changes the cluster's access for good."""
    state, env, _vars = onboarded
    developer = playbook(env, "onboard.yml", "-e", f"@{keyless_vars(tmp_path, gke_exec_access='developer')}")
    assert developer.returncode == 0, developer.stdout[-4000:]
    assert f"serviceAccount:{CONTROL_PLANE}" in project_members(state, "roles/container.developer")
    rbac = kubernetes.client.RbacAuthorizationV1Api(build_admin(state))
    with pytest.raises(kubernetes.client.ApiException) as gone:
        rbac.read_cluster_role_binding("prow-control-plane")
    assert gone.value.status == 404
    adc(CONTROL_PLANE)  # IAM's container.developer alone lets Prow's GSA manage pods
    with kubernetes.config.new_client_from_config_dict(exec_kubeconfig(env)) as api:
        assert kubernetes.client.CoreV1Api(api).list_namespaced_pod("test-pods").items == []
