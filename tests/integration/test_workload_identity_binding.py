"""workload_identity_binding, and the end-to-end proof that a job pod's KSA can write results.

The cluster is created through the fake's GKE API (a real kube-apiserver whose service-account
tokens the fake's STS verifies), the module connects with ``gke:`` and the operator's Google
credentials, and the proof walks the chain a job pod's metadata server walks: a TokenRequest
token with audience PROJECT.svc.id.goog, exchanged at STS for a federated token, exchanged at
IAM Credentials for the GSA's access token, used to upload an object into the bucket.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
import requests
from prow_sandbox import kube
from prow_sandbox.gcp.testing import kube_sandbox_available

from conftest import gcp_writes

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(kube_sandbox_available()), reason=str(kube_sandbox_available()))]

LOCATION = "us-west1-b"
NS = "test-pods"
KSA = "prowjob-default-sa"
TASK = "wi"
OBJECT_ADMIN = "roles/storage.objectAdmin"


def k8s_writes(cluster, since):
    time.sleep(1.0)  # the audit backend writes just after the response
    return [f"{e['verb']} {e['objectRef'].get('resource')}/{e['objectRef'].get('name', '')}"
            for e in kube.audit_events(cluster, since=since)]


class Chain:
    """What GKE's metadata server does for a pod of ``ksa``; each step returns the HTTP response."""

    def __init__(self, gcp, kube_api, gke_name, pool):
        self.gcp, self.kube_api, self.gke_name, self.pool = gcp, kube_api, gke_name, pool

    def ksa_token(self, namespace, name):
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [self.pool], "expirationSeconds": 3600}}
        response = self.kube_api.call_api(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", "POST",
                                          body=body, auth_settings=["BearerToken"], response_type="object",
                                          _return_http_data_only=True)
        return response["status"]["token"]

    def gsa_token(self, namespace, name, gsa):
        sts = requests.post(self.gcp.url("sts", "/v1/token"), timeout=30, json={
            "grantType": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subjectTokenType": "urn:ietf:params:oauth:token-type:jwt",
            "subjectToken": self.ksa_token(namespace, name),
            "audience": f"identitynamespace:{self.pool}:https://container.googleapis.com/v1/{self.gke_name}",
            "scope": "https://www.googleapis.com/auth/cloud-platform",
            "requestedTokenType": "urn:ietf:params:oauth:token-type:access_token",
        })
        assert sts.status_code == 200, sts.text
        return requests.post(
            self.gcp.url("iamcredentials", f"/v1/projects/-/serviceAccounts/{gsa}:generateAccessToken"), timeout=30,
            headers={"Authorization": f"Bearer {sts.json()['access_token']}"},
            json={"scope": ["https://www.googleapis.com/auth/devstorage.read_write"]})

    def upload(self, token, bucket, name):
        return requests.post(self.gcp.url("storage", f"/upload/storage/v1/b/{bucket}/o"), timeout=30,
                             params={"uploadType": "media", "name": name}, data=b'{"timestamp": 1}',
                             headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


def test_binding_and_the_job_chain_end_to_end(ansible, gcp, operator_env):
    name = gcp.unique("wi")
    gke = f"projects/{gcp.build_project}/locations/{LOCATION}/clusters/{name}"
    pool = f"{gcp.build_project}.svc.id.goog"
    gsa_id = gcp.unique("prowjob-sa")
    gsa = f"{gsa_id}@{gcp.build_project}.iam.gserviceaccount.com"
    bucket = gcp.unique("wi-results")
    setup = ansible.run([
        {"name": "cluster", "prow.build_cluster.gke_cluster": {"name": name, "location": LOCATION, "node_count": 1, "wait_timeout": "3m"}},
        {"name": "gsa", "prow.build_cluster.gcp_service_account": {"name": gsa_id, "display_name": "ProwJob default SA"}},
        {"name": "bucket", "prow.build_cluster.gcs_bucket": {"name": bucket}},
    ], env=operator_env)
    assert setup.failed == 0, setup.stdout
    cluster = gcp.fake.state.clusters[(gcp.build_project, LOCATION, name)].kube
    from kubernetes import client, config  # pylint: disable=import-outside-toplevel
    kube_api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    client.CoreV1Api(kube_api).create_namespace({"metadata": {"name": NS}})
    chain = Chain(gcp, kube_api, gke, pool)
    bind = [{"name": TASK, "prow.build_cluster.workload_identity_binding": {"gke": gke, "gcp_service_account": gsa}}]
    grant = [{"name": "grant", "prow.build_cluster.gcp_iam_member": {
        "resource_type": "bucket", "resource": bucket, "role": OBJECT_ADMIN, "member": f"serviceAccount:{gsa}"}}]

    # check mode: reports both halves, writes neither
    mark, since = gcp.mark(), datetime.now(timezone.utc)
    check = ansible.run(bind, check=True, diff=True, env=operator_env)
    result = check.task(TASK)
    assert result["changed"] is True and result["ksa_created"] is True, check.stdout
    assert result["member"] == f"serviceAccount:{pool}[{NS}/{KSA}]"
    assert result["diff"]["after"] == {"ksa": f"ServiceAccount {NS}/{KSA}", "annotation": gsa, "gsa_member": True}
    assert gcp_writes(gcp, mark) == [] and k8s_writes(cluster, since) == []

    # Before: a pod of the KSA (created here by hand, without the annotation) cannot act as the GSA.
    client.CoreV1Api(kube_api).create_namespaced_service_account(NS, {"metadata": {"name": KSA}})
    refused = chain.gsa_token(NS, KSA, gsa)
    assert refused.status_code == 403 and "iam.serviceAccounts.getAccessToken" in refused.text, refused.text

    mark, since = gcp.mark(), datetime.now(timezone.utc)
    real = ansible.run(bind, diff=True, env=operator_env)
    assert real.task(TASK)["changed"] is True and real.task(TASK)["ksa_created"] is False, real.stdout
    assert gcp_writes(gcp, mark) == [f"POST /iam/v1/projects/-/serviceAccounts/{gsa}:setIamPolicy"]
    assert k8s_writes(cluster, since) == [f"patch serviceaccounts/{KSA}"]
    ksa = client.CoreV1Api(kube_api).read_namespaced_service_account(KSA, NS)
    assert ksa.metadata.annotations == {"iam.gke.io/gcp-service-account": gsa}

    # The KSA now acts as the GSA, but the GSA may not write into the bucket yet.
    issued = chain.gsa_token(NS, KSA, gsa)
    assert issued.status_code == 200, issued.text
    token = issued.json()["accessToken"]
    assert chain.upload(token, bucket, "logs/job/1/started.json").status_code == 403

    assert ansible.run(grant, env=operator_env).task("grant")["changed"] is True
    uploaded = chain.upload(chain.gsa_token(NS, KSA, gsa).json()["accessToken"], bucket, "logs/job/1/started.json")
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["name"] == "logs/job/1/started.json"

    for mode in ({"check": True}, {}):
        mark, since = gcp.mark(), datetime.now(timezone.utc)
        again = ansible.run(bind + grant, env=operator_env, **mode)
        assert again.changed == 0, (mode, again.stdout)
        assert gcp_writes(gcp, mark) == [] and k8s_writes(cluster, since) == [], mode

    # A KSA that does not exist yet is created with the annotation.
    since = datetime.now(timezone.utc)
    other = ansible.run([{"name": TASK, "prow.build_cluster.workload_identity_binding": {
        "gke": gke, "gcp_service_account": gsa, "service_account": "other-sa"}}], env=operator_env)
    assert other.task(TASK)["ksa_created"] is True, other.stdout
    assert k8s_writes(cluster, since) == ["create serviceaccounts/other-sa"]

    # absent removes the annotation and that member only; the KSA and other members stay.
    mark, since = gcp.mark(), datetime.now(timezone.utc)
    gone = ansible.run([{"name": TASK, "prow.build_cluster.workload_identity_binding": {
        "gke": gke, "gcp_service_account": gsa, "state": "absent"}}], env=operator_env)
    assert gone.task(TASK)["changed"] is True, gone.stdout
    assert k8s_writes(cluster, since) == [f"patch serviceaccounts/{KSA}"]
    assert not (client.CoreV1Api(kube_api).read_namespaced_service_account(KSA, NS).metadata.annotations or {})
    policy = gcp.session().post(gcp.url("iam", f"/v1/projects/-/serviceAccounts/{gsa}:getIamPolicy")).json()
    assert [b["members"] for b in policy.get("bindings", [])] == [[f"serviceAccount:{pool}[{NS}/other-sa]"]]
    assert chain.gsa_token(NS, KSA, gsa).status_code == 403

    ansible.run([{"name": "cluster", "prow.build_cluster.gke_cluster": {"name": name, "location": LOCATION, "state": "absent"}}],
                env=operator_env)


def test_wrong_pool_and_bad_inputs_fail_before_any_write(ansible, gcp, operator_env):
    name = gcp.unique("nowi")
    gke = f"projects/{gcp.build_project}/locations/{LOCATION}/clusters/{name}"
    gsa = f"prow-crier@{gcp.prow_project}.iam.gserviceaccount.com"
    mark = gcp.mark()
    for args, message in [
        ({"gke": gke, "gcp_service_account": "crier"}, "not a Google service account email"),
        ({"gke": gke, "gcp_service_account": gsa, "namespace": "Test_Pods"}, "namespace"),
        ({"gke": gke, "gcp_service_account": gsa, "service_account": "Bad Name"}, "service_account"),
        ({"gke": gke, "gcp_service_account": gsa, "workload_pool": "my-project"}, "svc.id.goog"),
        ({"gke": "clusters/x", "gcp_service_account": gsa}, "projects/PROJECT/locations/LOCATION/clusters/CLUSTER"),
    ]:
        result = ansible.run([{"name": TASK, "prow.build_cluster.workload_identity_binding": args}], env=operator_env).task(TASK)
        assert result.get("failed") and message in result["msg"], (args, result.get("msg"))
    assert gcp.fake.requests(since=mark) == []

    # A cluster without Workload Identity: refused after reading it, before any write.
    created = gcp.session().post(gcp.url("container", f"/v1/projects/{gcp.build_project}/locations/{LOCATION}/clusters"),
                                 json={"cluster": {"name": name, "nodePools": [{"name": "default-pool", "initialNodeCount": 1}]}})
    assert created.status_code == 200, created.text
    deadline = time.monotonic() + 120
    while gcp.session().get(gcp.url("container", f"/v1/{gke}")).json().get("status") != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(1)
    mark = gcp.mark()
    result = ansible.run([{"name": TASK, "prow.build_cluster.workload_identity_binding": {"gke": gke, "gcp_service_account": gsa}}],
                         env=operator_env).task(TASK)
    assert result.get("failed") and "Workload Identity is off" in result["msg"], result
    assert gcp_writes(gcp, mark) == []
    gcp.session().delete(gcp.url("container", f"/v1/{gke}"))


def test_a_just_created_gsa_that_answers_404_and_403_is_bound(ansible, gcp, operator_env, kube_cluster, namespace):
    """Created one task earlier, the GSA may still answer 404 or 403 (and flip back once):
    the binding waits it out (bounded) instead of failing half-way."""
    pool = f"{gcp.build_project}.svc.id.goog"
    with gcp.fake.state.lock:  # the project has a Workload Identity cluster, hence its pool
        gcp.fake.state.identity_pools.add(pool)
    gsa_id = gcp.unique("fresh-job-sa")
    gsa = f"{gsa_id}@{gcp.build_project}.iam.gserviceaccount.com"
    gcp.configure(iam_new_sa_visibility="404,200,404,403,200,403")
    bind = {"name": TASK, "prow.build_cluster.workload_identity_binding": {
        "kubeconfig": str(kube_cluster.kubeconfig), "workload_pool": pool, "namespace": namespace, "gcp_service_account": gsa}}
    tasks = [{"name": "gsa", "prow.build_cluster.gcp_service_account": {"name": gsa_id}}, bind]
    mark = gcp.mark()
    run = ansible.run(tasks, env=operator_env)
    assert run.failed == 0 and run.task(TASK)["changed"] is True, run.stdout
    statuses = [e["status"] for e in gcp.fake.requests(since=mark, service="iam") if gsa in e["path"]]
    assert 403 in statuses and 404 in statuses, statuses
    policy = gcp.session().post(gcp.url("iam", f"/v1/projects/-/serviceAccounts/{gsa}:getIamPolicy")).json()
    assert policy["bindings"] == [{"role": "roles/iam.workloadIdentityUser", "members": [f"serviceAccount:{pool}[{namespace}/{KSA}]"]}]

    gcp.configure(iam_new_sa_visibility="")
    mark = gcp.mark()
    assert ansible.run(tasks, env=operator_env).changed == 0
    assert gcp_writes(gcp, mark) == []
