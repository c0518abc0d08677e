"""Issue #15: GCS for jobs of a build cluster outside GKE (``job_identity: federated``), through Workload
Identity Federation, on the sandbox's kubeconfig-only build cluster.

``playbooks/onboard.yml`` as a user runs it makes the project's pool, the cluster's OIDC provider (its
issuer private, so its keys uploaded), the job KSA, the credential configuration Secret and the bucket
grant for the KSA's ``principal://``. A job KSA token, exchanged by
google-auth's own ``identity_pool.Credentials`` built from that Secret, writes (the pod's automounted
token, with no volume of its own, as Prow's sidecar has it) to the bucket; with the grant
removed it is refused; the next onboarding repairs exactly that; a re-run changes and writes nothing; check
mode writes nothing; offboarding removes the Secret, the grant and the provider.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime, timezone

import google.auth.exceptions
import pytest
import yaml
from google.auth import identity_pool
from google.auth.transport.requests import AuthorizedSession
from kubernetes import client, config

from prow_sandbox.gcp.testing import kube_sandbox_available
from test_job_identity_direct import bucket_members, fake, said, set_bucket_members
from test_playbooks import bad_vars, changed_tasks, fixture_sandbox, gcp_writes, kube_writes, playbook, recap, set_in  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(kube_sandbox_available()), reason=str(kube_sandbox_available()))]

PROJECT, NUMBER = "prow-sandbox-build", "100000000002"
ALIAS, NS, KSA = "build-fed", "test-pods", "prowjob-default-sa"
POOL = "prow-build-clusters"
BUCKET = "prow-sandbox-results"
MEMBER = (f"principal://iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/{POOL}"
          f"/subject/system:serviceaccount:{NS}:{KSA}")
AUDIENCE = f"//iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/{POOL}/providers/{ALIAS}"
PROVIDER = f"/v1/projects/{PROJECT}/locations/global/workloadIdentityPools/{POOL}/providers/{ALIAS}"
HOST_PLAY = "Onboard each build cluster"


def federated_vars(tmp_path):
    return bad_vars(tmp_path, set_in(["build_clusters", 0], {
        "alias": ALIAS, "project": PROJECT, "job_identity": "federated",
        "kubeconfig": "{{ lookup('ansible.builtin.env', 'BUILD_KUBECONFIG') }}"}))


def delivered_config(core):
    """The credential configuration the jobs mount: the Secret's JSON."""
    secret = core.read_namespaced_secret("gcs-credentials", NS)
    assert (secret.metadata.labels or {}).get("app.kubernetes.io/managed-by") == "prow.build_cluster"
    return json.loads(base64.b64decode(secret.data["service-account.json"]))


def job_session(core, info, tmp_path, audiences=None, name="token"):
    """What a job pod's Google client does: the service-account token read from the file the configuration
    names; here a TokenRequest token written 0600 in tmp, the file swapped in. Without ``audiences`` the
    apiserver's default ones: the token the kubelet automounts in every container of the pod."""
    spec = {"expirationSeconds": 3600}
    if audiences:
        spec["audiences"] = audiences
    token = core.create_namespaced_service_account_token(KSA, NS, {"spec": spec}).status.token
    path = tmp_path / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    info = dict(info, credential_source={"file": str(path)})
    creds = identity_pool.Credentials.from_info(info, scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return AuthorizedSession(creds)


def upload(endpoints, session, name):
    return session.post(f"{endpoints['storage']}/upload/storage/v1/b/{BUCKET}/o", timeout=30,
                        params={"uploadType": "media", "name": name}, data=b"{}",
                        headers={"Content-Type": "application/json"})


def test_federated_job_identity_onboard_write_refusal_rerun_and_offboard(sandbox, tmp_path):
    state, env = sandbox
    endpoints, operator = fake(state)
    vars_file = federated_vars(tmp_path)
    core = client.CoreV1Api(config.new_client_from_config(env["BUILD_KUBECONFIG"]))

    # Check mode first: it lists the changes and writes nothing anywhere.
    since = datetime.now(timezone.utc)
    check = playbook(env, "onboard.yml", "-e", f"@{vars_file}", "--check", "--diff")
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]
    assert recap(check)["changed"] > 0
    assert gcp_writes(state, since) == [] and kube_writes(state, since) == []

    first = playbook(env, "onboard.yml", "-e", f"@{vars_file}")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    changed = {task for task, host in changed_tasks(first, HOST_PLAY) if "gcs_access" in task}
    assert {"prow.build_cluster.gcs_access : Ensure the Workload Identity Federation pool of the project",
            "prow.build_cluster.gcs_access : Ensure the cluster's OIDC provider in the pool",
            "prow.build_cluster.gcs_access : Ensure the job KSA and its credential configuration Secret"} <= changed, changed
    assert MEMBER in bucket_members(endpoints, operator)
    provider = operator.get(f"{endpoints['iam']}{PROVIDER}").json()
    assert provider["oidc"]["jwksJson"] and provider["attributeMapping"] == {"google.subject": "assertion.sub"}
    assert not (core.read_namespaced_service_account(KSA, NS).metadata.annotations or {}).get("iam.gke.io/gcp-service-account")
    info = delivered_config(core)
    assert info == {"type": "external_account", "audience": AUDIENCE,
                    "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                    "token_url": f"{endpoints['sts']}/v1/token",
                    "credential_source": {"file": "/var/run/secrets/kubernetes.io/serviceaccount/token"}}

    # The decoration entry names that Secret (gcs_credentials_secret).
    decoration = yaml.safe_load((state / "out" / ALIAS / "decoration-config.yaml").read_text())
    [entry] = decoration["plank"]["default_decoration_config_entries"]
    assert entry["cluster"] == ALIAS and entry["config"]["gcs_credentials_secret"] == "gcs-credentials", entry

    # The provider allows the audiences of the pods' automounted token (the issuer) and its own name.
    issuer = provider["oidc"]["issuerUri"]
    assert provider["oidc"]["allowedAudiences"] == [issuer, AUDIENCE], provider["oidc"]

    # A job's automounted token, exchanged by google-auth from the delivered configuration, writes as the
    # principal; so does a token projected for the provider; a token for another audience is refused.
    session = job_session(core, info, tmp_path)
    written = upload(endpoints, session, "logs/federated/1/started.json")
    assert written.status_code == 200, written.text
    assert upload(endpoints, job_session(core, info, tmp_path, [AUDIENCE], "projected"), "logs/federated/1/p.json").status_code == 200
    with pytest.raises(google.auth.exceptions.OAuthError, match="audience in ID Token does not match"):
        upload(endpoints, job_session(core, info, tmp_path, ["https://elsewhere.example"], "other"), "logs/federated/1/x.json")

    # verify proves the same chain, link by link, as the KSA's principal.
    verified = playbook(env, "verify.yml", "-e", f"@{vars_file}")
    assert verified.returncode == 0, verified.stdout[-6000:]
    for line in ("ok credential configuration: Secret test-pods/gcs-credentials key service-account.json",
                 f"ok STS exchange: a pod token of the KSA exchanged for a federated token of {MEMBER}",
                 f"ok bucket write: {MEMBER} wrote and deleted"):
        assert line in said(verified), (line, verified.stdout[-6000:])

    # The grant removed: refused, and verify names the broken link.
    members = bucket_members(endpoints, operator)
    set_bucket_members(endpoints, operator, members - {MEMBER})
    assert upload(endpoints, session, "logs/federated/2/started.json").status_code == 403
    broken = playbook(env, "verify.yml", "-e", f"@{vars_file}")
    assert broken.returncode != 0 and f"BROKEN bucket write: {MEMBER} cannot write" in said(broken), broken.stdout[-6000:]

    # The next onboarding repairs exactly that; a re-run (and check mode) changes and writes nothing.
    repaired = playbook(env, "onboard.yml", "-e", f"@{vars_file}")
    assert repaired.returncode == 0, repaired.stdout[-4000:]
    assert changed_tasks(repaired, HOST_PLAY) == [
        ("prow.build_cluster.gcs_access : Grant write access on the bucket to the job KSA's federated principal "
         "and Prow's control plane", ALIAS)], repaired.stdout[-4000:]
    assert upload(endpoints, session, "logs/federated/3/started.json").status_code == 200
    for mode in ([], ["--check"]):
        since = datetime.now(timezone.utc)
        again = playbook(env, "onboard.yml", "-e", f"@{vars_file}", *mode)
        assert again.returncode == 0 and recap(again)["changed"] == 0, (mode, again.stdout[-4000:])
        assert gcp_writes(state, since) == [] and kube_writes(state, since) == [], mode

    # A hand edit of the delivered configuration is repaired.
    core.patch_namespaced_secret("gcs-credentials", NS, {"data": {"service-account.json": base64.b64encode(b"{}").decode()}})
    broken = playbook(env, "verify.yml", "-e", f"@{vars_file}")
    assert broken.returncode != 0 and "BROKEN credential configuration" in said(broken), broken.stdout[-6000:]
    fixed = playbook(env, "onboard.yml", "-e", f"@{vars_file}")
    assert changed_tasks(fixed, HOST_PLAY) == [
        ("prow.build_cluster.gcs_access : Ensure the job KSA and its credential configuration Secret", ALIAS)], fixed.stdout[-4000:]
    assert delivered_config(core) == info

    # Offboarding: the Secret, the grant and the provider go; the pool stays (the project's, shared).
    off = playbook(env, "offboard.yml", "-e", f"@{vars_file}", "--limit", ALIAS)
    assert off.returncode == 0, off.stdout[-4000:] + off.stderr[-2000:]
    assert MEMBER not in bucket_members(endpoints, operator)
    assert core.list_namespaced_secret(NS, field_selector="metadata.name=gcs-credentials").items == []
    gone = operator.get(f"{endpoints['iam']}{PROVIDER}")
    assert gone.status_code == 404 or gone.json().get("state") == "DELETED", gone.text
    assert operator.get(f"{endpoints['iam']}/v1/projects/{PROJECT}/locations/global/workloadIdentityPools/{POOL}").json()["state"] == "ACTIVE"
    # The provider gone, STS refuses the exchange itself (the principal's grant is gone too).
    with pytest.raises(google.auth.exceptions.OAuthError, match="invalid_target"):
        upload(endpoints, job_session(core, info, tmp_path), "logs/federated/4/started.json")


def test_federated_inputs_are_checked_before_any_write(sandbox, tmp_path):
    """The partner of the pre-flight: a provider ID the API refuses (from a 3-letter alias), and federated
    on a GKE cluster, each fail naming the variable, before any write."""
    state, env = sandbox
    kubeconfig_cluster = {"project": PROJECT, "job_identity": "federated",
                          "kubeconfig": "{{ lookup('ansible.builtin.env', 'BUILD_KUBECONFIG') }}"}
    since = datetime.now(timezone.utc)
    for mutate, text in [
        (set_in(["build_clusters", 0], {"alias": "fed", **kubeconfig_cluster}),
         "build_clusters[fed].federation.provider, else its alias (gcs_access_federation_provider): ID 'fed' is not a"
         " valid ID: 4 to 32"),
        (lambda doc: doc["build_clusters"][0].update(job_identity="federated"),
         "build_clusters[build-sandbox].job_identity: federated is for clusters outside GKE"),
    ]:
        failed = playbook(env, "onboard.yml", "-e", f"@{bad_vars(tmp_path, mutate)}")
        assert failed.returncode != 0 and text in " ".join(failed.stdout.split()), (text, failed.stdout[-3000:])
    assert gcp_writes(state, since) == [] and kube_writes(state, since) == []
