"""Issue #15: GCS for jobs without a GSA, GKE direct resource access (``job_identity: direct``).

One sandbox for the module, onboarded by ``playbooks/onboard.yml`` as a user runs it: first as
today (``gsa``), then switched to ``direct``, which must leave no GSA, no annotation and no GSA
grant, and give the bucket role to the job KSA's ``principal://`` member. A job KSA's token,
exchanged at STS as GKE's metadata server does for a pod without annotation, then writes to the
bucket with the federated token itself; with the grant removed it is refused, verify names the
broken link, and the next onboarding repairs it; a re-run changes nothing.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import requests
import yaml
from google.auth.transport.requests import AuthorizedSession, Request
from google.oauth2 import service_account
from kubernetes import client, config

from prow_sandbox.gcp.testing import kube_sandbox_available
from test_playbooks import bad_vars, changed_tasks, fixture_sandbox, gcp_writes, kube_writes, playbook, recap  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(kube_sandbox_available()), reason=str(kube_sandbox_available()))]

PROJECT = "prow-sandbox-build"
NUMBER = "100000000002"
POOL = f"{PROJECT}.svc.id.goog"
NS, KSA = "test-pods", "prowjob-default-sa"
GSA = f"{KSA}@{PROJECT}.iam.gserviceaccount.com"
BUCKET = "prow-sandbox-results"
ROLE = "roles/storage.objectAdmin"
DIRECT = (f"principal://iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/{POOL}"
          f"/subject/ns/{NS}/sa/{KSA}")
ANNOTATION = "iam.gke.io/gcp-service-account"


def fake(state):
    """The fake's endpoints and an operator session, from the sandbox's state directory."""
    endpoints = json.loads((state / "endpoints.json").read_text())
    creds = service_account.Credentials.from_service_account_file(
        str(state / "gcp" / "operator-credentials.json"), scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return endpoints, AuthorizedSession(creds)


def bucket_members(endpoints, operator):
    policy = operator.get(f"{endpoints['storage']}/storage/v1/b/{BUCKET}/iam",
                          params={"optionsRequestedPolicyVersion": 3}).json()
    return next((set(b["members"]) for b in policy.get("bindings", []) if b["role"] == ROLE), set())


def set_bucket_members(endpoints, operator, members):
    url = f"{endpoints['storage']}/storage/v1/b/{BUCKET}/iam"
    policy = operator.get(url, params={"optionsRequestedPolicyVersion": 3}).json()
    policy["bindings"] = [b for b in policy.get("bindings", []) if b["role"] != ROLE] + [{"role": ROLE, "members": sorted(members)}]
    assert operator.put(url, json=policy).status_code == 200


def build_cluster(endpoints, operator, vars_file):
    """The onboarded GKE cluster's apiserver, as the admin (its kubeconfig from the GKE API's endpoint and CA)."""
    gke = yaml.safe_load(vars_file.read_text())["build_clusters"][0]["gke"]
    name = f"projects/{PROJECT}/locations/{gke['location']}/clusters/{gke['name']}"
    cluster = operator.get(f"{endpoints['container']}/v1/{name}").json()
    operator.credentials.refresh(Request())
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"https://{cluster['endpoint']}",
                                               "certificate-authority-data": cluster["masterAuth"]["clusterCaCertificate"]}}],
        "users": [{"name": "u", "user": {"token": operator.credentials.token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }
    return config.new_client_from_config_dict(kubeconfig), name, cluster["workloadIdentityConfig"]["workloadPool"]


def federated_token(endpoints, api, gke_name, pool):
    """What GKE's metadata server does for a pod of the KSA without annotation: the KSA's token, exchanged at STS."""
    minted = client.CoreV1Api(api).create_namespaced_service_account_token(
        KSA, NS, {"spec": {"audiences": [pool], "expirationSeconds": 3600}}).status.token
    sts = requests.post(f"{endpoints['sts']}/v1/token", timeout=30, json={
        "grantType": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subjectTokenType": "urn:ietf:params:oauth:token-type:jwt", "subjectToken": minted,
        "audience": f"identitynamespace:{pool}:https://container.googleapis.com/v1/{gke_name}",
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "requestedTokenType": "urn:ietf:params:oauth:token-type:access_token"})
    assert sts.status_code == 200, sts.text
    return sts.json()["access_token"]


def said(proc):
    """The playbook's output with its line wrapping undone (the YAML callback folds long messages)."""
    return " ".join(proc.stdout.split())


def upload(endpoints, token, name):
    return requests.post(f"{endpoints['storage']}/upload/storage/v1/b/{BUCKET}/o", timeout=30,
                         params={"uploadType": "media", "name": name}, data=b"{}",
                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


def test_direct_job_identity_onboarding_switch_write_refusal_and_rerun(sandbox, tmp_path):
    state, env = sandbox
    endpoints, operator = fake(state)
    gsa_vars = bad_vars(tmp_path, lambda doc: None)
    direct_vars = bad_vars(tmp_path, lambda doc: doc["build_clusters"][0].update(job_identity="direct"))

    # Onboarded as today: the GSA, its binding, the annotation and the GSA's bucket grant.
    first = playbook(env, "onboard.yml", "-e", f"@{gsa_vars}")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert f"serviceAccount:{GSA}" in bucket_members(endpoints, operator)
    api, gke_name, pool = build_cluster(endpoints, operator, gsa_vars)
    assert pool == POOL
    core = client.CoreV1Api(api)
    assert core.read_namespaced_service_account(KSA, NS).metadata.annotations[ANNOTATION] == GSA

    # Switched to direct: the GSA's grant and the GSA go, the annotation goes, the principal is granted.
    check = playbook(env, "onboard.yml", "-e", f"@{direct_vars}", "--check", "--diff")
    assert check.returncode == 0, check.stdout[-4000:]
    assert recap(check)["changed"] > 0 and f"serviceAccount:{GSA}" in bucket_members(endpoints, operator)
    switched = playbook(env, "onboard.yml", "-e", f"@{direct_vars}")
    assert switched.returncode == 0, switched.stdout[-4000:] + switched.stderr[-2000:]
    changed = {task for task, host in changed_tasks(switched, "Onboard each build cluster")}
    assert changed == {"prow.build_cluster.gcs_access : Revoke the job GSA's access to the bucket",
                       "prow.build_cluster.gcs_access : Delete the job GSA, with its Workload Identity binding",
                       "prow.build_cluster.gcs_access : Ensure the job KSA without a GSA annotation",
                       "prow.build_cluster.gcs_access : Grant write access on the bucket to the job KSA's principal "
                       "and Prow's control plane"}, switched.stdout[-4000:]
    members = bucket_members(endpoints, operator)
    assert DIRECT in members and not any(GSA in m for m in members), members
    assert operator.get(f"{endpoints['iam']}/v1/projects/{PROJECT}/serviceAccounts/{GSA}").status_code == 404
    assert not (core.read_namespaced_service_account(KSA, NS).metadata.annotations or {}).get(ANNOTATION)

    # A job's federated token writes by itself, as its principal; no impersonation anywhere.
    mark = len((state / "gcp" / "requests.jsonl").read_text().splitlines())
    token = federated_token(endpoints, api, gke_name, pool)
    written = upload(endpoints, token, "logs/direct/1/started.json")
    assert written.status_code == 200, written.text
    verified = playbook(env, "verify.yml", "-e", f"@{direct_vars}")
    assert verified.returncode == 0, verified.stdout[-4000:]
    assert f"ok bucket write: {DIRECT} wrote and deleted" in said(verified), verified.stdout[-6000:]
    assert "impersonation" not in said(verified)
    log = (state / "gcp" / "requests.jsonl").read_text().splitlines()[mark:]
    assert not any("generateAccessToken" in line for line in log)

    # The grant removed: refused, and verify names the broken link with its fix, writing nothing.
    set_bucket_members(endpoints, operator, members - {DIRECT})
    assert upload(endpoints, token, "logs/direct/2/started.json").status_code == 403
    broken = playbook(env, "verify.yml", "-e", f"@{direct_vars}")
    assert broken.returncode != 0
    assert "BROKEN bucket write" in said(broken) and f"to {DIRECT}" in said(broken), broken.stdout[-3000:]

    # The next onboarding repairs exactly that, and a re-run changes and writes nothing.
    repaired = playbook(env, "onboard.yml", "-e", f"@{direct_vars}")
    assert repaired.returncode == 0, repaired.stdout[-4000:]
    assert changed_tasks(repaired, "Onboard each build cluster") == [
        ("prow.build_cluster.gcs_access : Grant write access on the bucket to the job KSA's principal and Prow's control plane",
         "build-sandbox")]
    assert upload(endpoints, token, "logs/direct/3/started.json").status_code == 200
    since = datetime.now(timezone.utc)
    again = playbook(env, "onboard.yml", "-e", f"@{direct_vars}")
    assert again.returncode == 0 and recap(again)["changed"] == 0, again.stdout[-4000:]
    assert gcp_writes(state, since) == [] and kube_writes(state, since) == []

    # An annotation put back by hand switches the pods to impersonation: verify says so, onboarding removes it.
    core.patch_namespaced_service_account(KSA, NS, {"metadata": {"annotations": {ANNOTATION: GSA}}})
    annotated = playbook(env, "verify.yml", "-e", f"@{direct_vars}")
    assert annotated.returncode != 0 and "BROKEN job KSA" in said(annotated), annotated.stdout[-3000:]
    fixed = playbook(env, "onboard.yml", "-e", f"@{direct_vars}")
    assert changed_tasks(fixed, "Onboard each build cluster") == [
        ("prow.build_cluster.gcs_access : Ensure the job KSA without a GSA annotation", "build-sandbox")]

    # Offboarding with direct revokes the principal's grant (the control plane's stays: it is shared).
    off = playbook(env, "offboard.yml", "-e", f"@{direct_vars}", "--limit", "build-sandbox")
    assert off.returncode == 0, off.stdout[-4000:]
    left = bucket_members(endpoints, operator)
    assert DIRECT not in left and any("prow-crier@" in m for m in left), left
    assert upload(endpoints, token, "logs/direct/4/started.json").status_code == 403
