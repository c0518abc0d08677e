"""workload_identity_pool and workload_identity_pool_provider through ansible-playbook against the GCP fake,
and the proof they are for: a build cluster known only by its kubeconfig (its issuer not public, so its keys
uploaded), whose service-account token is exchanged at STS and writes to a bucket as its principal://."""

from __future__ import annotations

import uuid

import requests

from conftest import gcp_writes

POOL_TASK, PROVIDER_TASK = "pool", "provider"
NUMBER = "100000000002"  # prow-sandbox-build


def pool_task(name, **extra):
    return [{"name": POOL_TASK, "prow.build_cluster.workload_identity_pool": {"name": name, **extra}}]


def provider_task(pool, name, **extra):
    return [{"name": PROVIDER_TASK, "prow.build_cluster.workload_identity_pool_provider": {"pool": pool, "name": name, **extra}}]


def test_pool_check_real_rerun_patch_delete_and_undelete(ansible, gcp, operator_env):
    name = gcp.unique("pool")
    path = f"/iam/v1/projects/{gcp.build_project}/locations/global/workloadIdentityPools"
    tasks = pool_task(name, display_name="build clusters")

    mark = gcp.mark()
    check = ansible.run(tasks, check=True, diff=True, env=operator_env)
    assert check.task(POOL_TASK)["changed"] is True, check.stdout
    assert check.task(POOL_TASK)["diff"]["after"]["displayName"] == "build clusters"
    assert gcp_writes(gcp, mark) == []

    real = ansible.run(tasks, env=operator_env)
    assert real.task(POOL_TASK)["changed"] is True, real.stdout
    assert real.task(POOL_TASK)["pool"]["name"] == f"projects/{NUMBER}/locations/global/workloadIdentityPools/{name}"
    assert gcp_writes(gcp, mark) == [f"POST {path}"]
    for mode in ({"check": True}, {}):
        mark = gcp.mark()
        again = ansible.run(tasks, env=operator_env, **mode)
        assert again.task(POOL_TASK)["changed"] is False, (mode, again.stdout)
        assert gcp_writes(gcp, mark) == [], mode

    mark = gcp.mark()
    renamed = ansible.run(pool_task(name, display_name="renamed", disabled=False), env=operator_env, diff=True)
    assert renamed.task(POOL_TASK)["changed"] is True
    assert renamed.task(POOL_TASK)["diff"] == {"before": {"displayName": "build clusters", "description": None, "disabled": None},
                                               "after": {"displayName": "renamed", "description": None, "disabled": False}}
    patches = gcp.requests(service="iam", method="PATCH")
    assert [(p["path"], p["query"]) for p in patches] == [(f"{path}/{name}", "updateMask=displayName")]

    mark = gcp.mark()
    assert ansible.run(pool_task(name, state="absent"), env=operator_env).task(POOL_TASK)["changed"] is True
    assert gcp_writes(gcp, mark) == [f"DELETE {path}/{name}"]
    assert ansible.run(pool_task(name, state="absent"), env=operator_env).task(POOL_TASK)["changed"] is False
    # Deleted is soft: present again undeletes (the ID stays taken, a create would be 409).
    mark = gcp.mark()
    back = ansible.run(pool_task(name, display_name="renamed"), env=operator_env)
    assert back.task(POOL_TASK)["changed"] is True and back.task(POOL_TASK)["pool"]["state"] == "ACTIVE", back.stdout
    assert gcp_writes(gcp, mark) == [f"POST {path}/{name}:undelete"]


def test_bad_inputs_fail_before_any_call(ansible, gcp, operator_env):
    mark = gcp.mark()
    for tasks, task, message in [
        (pool_task("gcp-reserved"), POOL_TASK, "gcp-"),
        (pool_task("ab"), POOL_TASK, "4 to 32"),
        (provider_task("jobs-pool", "pr", issuer_uri="https://issuer.example"), PROVIDER_TASK, "4 to 32"),
        (provider_task("jobs-pool", "provider", issuer_uri="http://issuer.example"), PROVIDER_TASK, "https"),
        (provider_task("jobs-pool", "provider", issuer_uri="https://issuer.example",
                       attribute_mapping={"attribute.ns": "assertion.sub"}), PROVIDER_TASK, "google.subject"),
    ]:
        result = ansible.run(tasks, env=operator_env).task(task)
        assert result.get("failed") and message in result["msg"], (tasks, result.get("msg"))
    assert gcp.fake.requests(since=mark) == []

    # A provider of a pool that does not exist: named as such.
    missing = ansible.run(provider_task(gcp.unique("no-pool"), "provider", issuer_uri="https://issuer.example"),
                          env=operator_env).task(PROVIDER_TASK)
    assert missing.get("failed") and "does not exist: create it first" in missing["msg"], missing


def sts(gcp, audience, token):
    return requests.post(gcp.url("sts", "/v1/token"), timeout=10, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "subject_token": token, "audience": audience, "scope": "https://www.googleapis.com/auth/cloud-platform"})


def test_a_kubeconfig_cluster_s_tokens_write_to_a_bucket_through_its_provider(ansible, gcp, operator_env, kube_cluster,
                                                                            kube_client, namespace):
    from kubernetes import client  # pylint: disable=import-outside-toplevel

    pool, provider, bucket = gcp.unique("pool"), gcp.unique("provider"), gcp.unique("wif-results")
    connection = {"kubeconfig": str(kube_cluster.kubeconfig)}
    tasks = pool_task(pool) + provider_task(pool, provider, oidc_from_cluster=True, **connection)
    setup = ansible.run([{"name": "bucket", "prow.build_cluster.gcs_bucket": {"name": bucket}}], env=operator_env)
    assert setup.failed == 0, setup.stdout

    mark = gcp.mark()
    check = ansible.run(tasks, check=True, env=operator_env)
    assert check.task(PROVIDER_TASK)["changed"] is True, check.stdout
    assert gcp_writes(gcp, mark) == []
    real = ansible.run(tasks, env=operator_env)
    made = real.task(PROVIDER_TASK)
    assert made["changed"] is True, real.stdout
    # The sandbox cluster's issuer (https://kubernetes.default.svc.NAME) is not reachable: its keys were uploaded.
    assert made["provider"]["oidc"]["issuerUri"] == kube_cluster.issuer
    assert made["provider"]["oidc"]["jwksJson"]
    audience = made["audience"]
    assert audience == f"//iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/{pool}/providers/{provider}"
    for mode in ({"check": True}, {}):
        mark = gcp.mark()
        again = ansible.run(tasks, env=operator_env, **mode)
        assert again.changed == 0, (mode, again.stdout)
        assert gcp_writes(gcp, mark) == [], mode

    core = client.CoreV1Api(kube_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "job-sa"}})
    token = core.create_namespaced_service_account_token("job-sa", namespace, {
        "spec": {"audiences": [audience], "expirationSeconds": 3600}}).status.token
    exchanged = sts(gcp, audience, token)
    assert exchanged.status_code == 200, exchanged.text
    federated = {"Authorization": f"Bearer {exchanged.json()['access_token']}"}

    def upload():
        return requests.post(gcp.url("storage", f"/upload/storage/v1/b/{bucket}/o"), timeout=10, headers=federated,
                             params={"uploadType": "media", "name": f"logs/{uuid.uuid4().hex}"}, data=b"{}")

    assert upload().status_code == 403
    member = (f"principal://iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/{pool}"
              f"/subject/system:serviceaccount:{namespace}:job-sa")
    grant = [{"name": "grant", "prow.build_cluster.gcp_iam_member": {
        "resource_type": "bucket", "resource": bucket, "role": "roles/storage.objectCreator", "member": member}}]
    assert ansible.run(grant, env=operator_env).task("grant")["changed"] is True
    assert upload().status_code == 200

    # Without the uploaded keys STS cannot verify the token: the issuer is private.
    bare = ansible.run(provider_task(pool, provider, oidc_from_cluster=True, upload_jwks="never", **connection),
                       env=operator_env, diff=True)
    assert bare.task(PROVIDER_TASK)["changed"] is True, bare.stdout
    refused = sts(gcp, audience, token)
    assert refused.status_code == 400
    assert refused.json()["error_description"] == "Error connecting to the given credential's issuer."
    assert ansible.run(tasks, env=operator_env).task(PROVIDER_TASK)["changed"] is True
    assert sts(gcp, audience, token).status_code == 200
