"""GKE through google-cloud-container (REST), with real sandbox apiservers behind it, and
the whole Workload Identity chain: KSA token -> STS -> generateAccessToken -> GCS write.

The module uses its own fake so that "no identity pool exists yet" holds at its start, and
shares one cluster between tests (an apiserver takes seconds to start).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import kubernetes
import pytest
import requests
from google.api_core import exceptions
from google.cloud import container_v1

from prow_sandbox import kube
from prow_sandbox.gcp import FakeGCP
from prow_sandbox.gcp.seed import BUILD_PROJECT, CRIER
from prow_sandbox.gcp.testing import GcpHandle, kube_sandbox_available

pytestmark = pytest.mark.skipif(kube_sandbox_available() is not None,
                                reason=str(kube_sandbox_available()))

LOCATION = "us-west1-b"
PARENT = f"projects/{BUILD_PROJECT}/locations/{LOCATION}"
POOL = f"{BUILD_PROJECT}.svc.id.goog"
CP = "https://www.googleapis.com/auth/cloud-platform"
Status = container_v1.Operation.Status


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcpHandle]:
    fake = FakeGCP(tmp_path_factory.mktemp("gke")).start()
    try:
        yield GcpHandle(fake)
    finally:
        fake.stop()


def wait(client: container_v1.ClusterManagerClient, op: container_v1.Operation,
         timeout: float = 120) -> tuple[container_v1.Operation, list[str]]:
    """Poll an operation to DONE; return it and every status seen (the create's first)."""
    seen = [op.status.name]
    deadline = time.monotonic() + timeout
    while op.status != Status.DONE:
        assert time.monotonic() < deadline, f"operation {op.name} stuck in {seen}"
        time.sleep(0.2)
        op = client.get_operation(name=f"{PARENT}/operations/{op.name}")
        seen.append(op.status.name)
    return op, seen


@pytest.fixture(scope="module")
def created(env: GcpHandle) -> dict:
    """A cluster created WITHOUT Workload Identity, as an existing team cluster would be."""
    client = env.container()
    op = client.create_cluster(parent=PARENT, cluster={
        "name": "build-a",
        "node_pools": [{"name": "pool-a", "initial_node_count": 1,
                        "config": {"machine_type": "n1-standard-8"}}]})
    during = client.get_cluster(name=f"{PARENT}/clusters/build-a").status.name
    op, seen = wait(client, op)
    return {"op": op, "seen": seen, "status_during": during,
            "cluster": client.get_cluster(name=f"{PARENT}/clusters/build-a")}


def kube_api(cluster: container_v1.Cluster, token: str) -> kubernetes.client.ApiClient:
    """A kubernetes client as gencred or an Ansible module builds one from the GKE API."""
    cfg = kubernetes.client.Configuration()
    cfg.host = f"https://{cluster.endpoint}"
    ca = base64.b64decode(cluster.master_auth.cluster_ca_certificate)
    cfg.ssl_ca_cert = kubernetes.config.kube_config.FileOrData(
        {"certificate-authority-data": base64.b64encode(ca).decode()},
        "certificate-authority").as_file()
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return kubernetes.client.ApiClient(cfg)


def token_of(env: GcpHandle, who: str = "operator") -> str:
    import google.auth.transport.requests
    creds = env.credentials(who)
    creds.refresh(google.auth.transport.requests.Request())
    return creds.token


def test_create_operation_progresses(created):
    assert created["seen"][0] == "PENDING"
    assert created["seen"][1] == "RUNNING"
    assert created["seen"][-1] == "DONE" and created["seen"].count("DONE") == 1
    assert not created["op"].error.message
    assert created["op"].operation_type == container_v1.Operation.Type.CREATE_CLUSTER
    assert created["status_during"] == "PROVISIONING"
    cluster = created["cluster"]
    assert cluster.status == container_v1.Cluster.Status.RUNNING
    host, port = cluster.endpoint.split(":")  # host:port, no scheme, as GKE returns it
    assert host == "127.0.0.1" and port.isdigit()
    assert base64.b64decode(cluster.master_auth.cluster_ca_certificate).startswith(b"-----BEGIN")
    assert not cluster.workload_identity_config.workload_pool


def test_duplicates_and_missing(env, created):
    client = env.container()
    with pytest.raises(exceptions.Conflict, match="Already exists"):
        client.create_cluster(parent=PARENT, cluster={"name": "build-a", "initial_node_count": 1})
    with pytest.raises(exceptions.NotFound, match="Not found"):
        client.get_cluster(name=f"{PARENT}/clusters/no-such-cluster")
    with pytest.raises(exceptions.NotFound):
        client.get_node_pool(name=f"{PARENT}/clusters/build-a/nodePools/nope")
    with pytest.raises(exceptions.BadRequest):
        client.create_cluster(parent=PARENT, cluster={"name": "Bad_Name"})
    with pytest.raises(exceptions.Forbidden):
        env.container(CRIER).get_cluster(name=f"{PARENT}/clusters/build-a")
    listed = client.list_clusters(parent=f"projects/{BUILD_PROJECT}/locations/-")
    assert [c.name for c in listed.clusters] == ["build-a"]


def test_apiserver_accepts_google_tokens(env, created):
    cluster = created["cluster"]
    with kube_api(cluster, token_of(env)) as api:  # a project owner: everything, through IAM
        review = kubernetes.client.AuthenticationV1Api(api).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        assert review.status.user_info.username.startswith("sandbox-operator@")
        kubernetes.client.CoreV1Api(api).list_namespace()
    with kube_api(cluster, token_of(env, CRIER)) as api:  # no role on the project
        with pytest.raises(kubernetes.client.ApiException) as info:
            kubernetes.client.CoreV1Api(api).list_namespace()
        assert info.value.status == 403
    with kube_api(cluster, "ya29.not-issued-by-the-fake") as api:
        with pytest.raises(kubernetes.client.ApiException) as info:
            kubernetes.client.CoreV1Api(api).list_namespace()
        assert info.value.status == 401


def test_workload_identity_chain(env, created):
    client, operator = env.container(), env.session()
    iam = env.url("iam", f"/v1/projects/{BUILD_PROJECT}/serviceAccounts")
    gsa = operator.post(iam, json={"accountId": "prowjob-default-sa"}).json()["email"]
    member = f"serviceAccount:{POOL}[test-pods/prowjob-default-sa]"
    binding = {"policy": {"bindings": [{"role": "roles/iam.workloadIdentityUser",
                                        "members": [member]}]}}

    # 1. No WI cluster yet: the pool does not exist, GKE_METADATA is refused.
    refused = operator.post(f"{iam}/{gsa}:setIamPolicy", json=binding)
    assert refused.status_code == 400 and "Identity Pool does not exist" in refused.text
    pool_name = f"{PARENT}/clusters/build-a/nodePools/pool-a"
    gke_metadata = {"mode": container_v1.WorkloadMetadataConfig.Mode.GKE_METADATA}
    pool_update = {"name": pool_name, "workload_metadata_config": gke_metadata,
                   "node_version": "-", "image_type": "COS_CONTAINERD"}
    with pytest.raises(exceptions.BadRequest, match="Workload Identity must be enabled"):
        client.update_node_pool(request=pool_update)

    # 2. Enable WI on the cluster; meanwhile a second operation is refused.
    op = client.update_cluster(name=f"{PARENT}/clusters/build-a", update={
        "desired_workload_identity_config": {"workload_pool": POOL}})
    with pytest.raises(exceptions.BadRequest, match=f"Operation {op.name} is currently"):
        client.update_node_pool(request=pool_update)
    op, seen = wait(client, op)
    assert seen[0] == "PENDING" and seen[-1] == "DONE"
    assert client.get_cluster(name=f"{PARENT}/clusters/build-a").workload_identity_config.workload_pool == POOL
    op, _ = wait(client, client.update_node_pool(request=pool_update))
    assert op.operation_type == container_v1.Operation.Type.UPGRADE_NODES
    pool = client.get_node_pool(name=pool_name)
    assert pool.config.workload_metadata_config.mode == gke_metadata["mode"]

    # 3. A pod's KSA token (TokenRequest, audience = the pool) exchanged at STS.
    cluster = client.get_cluster(name=f"{PARENT}/clusters/build-a")
    with kube_api(cluster, token_of(env)) as api:
        core = kubernetes.client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "test-pods"}})
        core.create_namespaced_service_account("test-pods", {"metadata": {
            "name": "prowjob-default-sa", "annotations": {"iam.gke.io/gcp-service-account": gsa}}})
        ksa_token = core.create_namespaced_service_account_token(
            "prowjob-default-sa", "test-pods",
            {"spec": {"audiences": [POOL], "expirationSeconds": 3600}}).status.token
        wrong_audience = core.create_namespaced_service_account_token(
            "prowjob-default-sa", "test-pods", {"spec": {"expirationSeconds": 3600}}).status.token
    audience = (f"identitynamespace:{POOL}:https://container.googleapis.com/v1/projects/"
                f"{BUILD_PROJECT}/locations/{LOCATION}/clusters/build-a")

    def sts(subject_token: str, aud: str = audience) -> requests.Response:
        return requests.post(env.url("sts", "/v1/token"), timeout=10, json={
            "grantType": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subjectTokenType": "urn:ietf:params:oauth:token-type:jwt",
            "requestedTokenType": "urn:ietf:params:oauth:token-type:access_token",
            "subjectToken": subject_token, "audience": aud, "scope": CP})

    assert sts(wrong_audience).json()["error"] == "invalid_grant"
    assert sts(ksa_token, aud=audience.replace("build-a", "build-x")).json()["error"] == "invalid_target"
    exchanged = sts(ksa_token)
    assert exchanged.status_code == 200, exchanged.text
    federated = {"Authorization": f"Bearer {exchanged.json()['access_token']}"}

    # 4. generateAccessToken for the GSA: refused until the WI binding exists.
    gen = env.url("iamcredentials", f"/v1/projects/-/serviceAccounts/{gsa}:generateAccessToken")
    assert requests.post(gen, json={"scope": [CP]}, headers=federated, timeout=10).status_code == 403
    assert operator.post(f"{iam}/{gsa}:setIamPolicy", json=binding).status_code == 200
    minted = requests.post(gen, json={"scope": [CP]}, headers=federated, timeout=10)
    assert minted.status_code == 200, minted.text
    as_gsa = {"Authorization": f"Bearer {minted.json()['accessToken']}"}

    # 5. As the GSA, write into the results bucket: only once it holds objectAdmin.
    bucket = env.storage().create_bucket(f"{BUILD_PROJECT}-results")
    upload = env.url("storage", f"/upload/storage/v1/b/{bucket.name}/o")
    params = {"uploadType": "media", "name": "logs/job/1/started.json"}
    put = lambda: requests.post(upload, params=params, data=b"{}", headers=as_gsa, timeout=10)  # noqa: E731
    assert put().status_code == 403
    policy = bucket.get_iam_policy()
    policy["roles/storage.objectAdmin"] = {f"serviceAccount:{gsa}"}
    bucket.set_iam_policy(policy)
    assert put().status_code == 200
    assert env.requests(service="storage", path="/upload/")[-1]["principal"] == f"serviceAccount:{gsa}"

    # 6. Direct resource access, no GSA: the federated token itself writes once the bucket
    # grants the KSA's principal:// member of the GKE pool (by project NUMBER), and only then.
    direct = lambda: requests.post(upload, params={**params, "name": "logs/job/2/started.json"},  # noqa: E731
                                   data=b"{}", headers=federated, timeout=10)
    assert direct().status_code == 403
    number = env.fake.state.projects[BUILD_PROJECT].number
    principal = (f"principal://iam.googleapis.com/projects/{number}/locations/global/"
                 f"workloadIdentityPools/{POOL}/subject/ns/test-pods/sa/prowjob-default-sa")
    policy = bucket.get_iam_policy()
    policy["roles/storage.objectCreator"] = {principal}
    bucket.set_iam_policy(policy)
    assert direct().status_code == 200
    assert env.requests(service="storage", path="/upload/")[-1]["principal"] == member
    policy = bucket.get_iam_policy()
    policy["roles/storage.objectCreator"] = {principal.replace("/sa/prowjob-default-sa", "/sa/other")}
    bucket.set_iam_policy(policy)
    assert direct().status_code == 403
    # The namespace's principal set of the GKE pool is honoured too.
    policy = bucket.get_iam_policy()
    policy["roles/storage.objectAdmin"] = {
        f"principalSet://iam.googleapis.com/projects/{number}/locations/global/"
        f"workloadIdentityPools/{POOL}/namespace/test-pods"}
    bucket.set_iam_policy(policy)
    assert requests.post(upload, params={**params, "name": "logs/job/3/started.json"}, data=b"{}",
                         headers=federated, timeout=10).status_code == 200


def test_release_channel_update_is_an_operation(env, created):
    client = env.container()
    name = f"{PARENT}/clusters/build-a"
    Channel = container_v1.ReleaseChannel.Channel
    assert client.get_cluster(name=name).release_channel.channel == Channel.REGULAR  # GKE's default
    op = client.update_cluster(name=name, update={"desired_release_channel": {"channel": Channel.RAPID}})
    assert op.operation_type == container_v1.Operation.Type.UPDATE_CLUSTER
    # One operation at a time, in the wording GKE uses for a caller's operation.
    with pytest.raises(exceptions.BadRequest, match=f"Operation {op.name} is currently updating cluster"):
        client.update_cluster(name=name, update={"desired_release_channel": {"channel": Channel.STABLE}})
    op, seen = wait(client, op)
    assert seen[-1] == "DONE" and not op.error.message
    assert client.get_cluster(name=name).release_channel.channel == Channel.RAPID
    wait(client, client.update_cluster(name=name, update={
        "desired_release_channel": {"channel": Channel.REGULAR}}))


def test_cluster_updates_refused_as_gke_refuses_them(env, created):
    client, session = env.container(), env.session()
    name = f"{PARENT}/clusters/build-a"
    with pytest.raises(exceptions.BadRequest, match="Exactly one update"):
        client.update_cluster(name=name, update={
            "desired_release_channel": {"channel": container_v1.ReleaseChannel.Channel.STABLE},
            "desired_workload_identity_config": {"workload_pool": POOL}})
    bad = session.put(env.url("container", f"/v1/{name}"),
                      json={"update": {"desiredReleaseChannel": {"channel": "FASTEST"}}})
    assert bad.status_code == 400 and "release_channel" in bad.text
    assert client.get_cluster(name=name).release_channel.channel == container_v1.ReleaseChannel.Channel.REGULAR


def test_gke_busy_with_its_own_maintenance_uses_the_other_wording(env, created):
    client = env.container()
    name = f"{PARENT}/clusters/build-a"
    env.configure(gke_maintenance_rejects=1)
    update = {"desired_release_channel": {"channel": container_v1.ReleaseChannel.Channel.STABLE}}
    with pytest.raises(exceptions.BadRequest) as info:
        client.update_cluster(name=name, update=update)
    assert info.value.message.endswith(": Cluster is currently being created, deleted, updated or "
                                       "repaired and cannot be updated.")
    assert info.value.response.json()["error"]["status"] == "FAILED_PRECONDITION"
    op, _ = wait(client, client.update_cluster(name=name, update=update))  # the retry goes through
    assert not op.error.message
    wait(client, client.update_cluster(name=name, update={
        "desired_release_channel": {"channel": container_v1.ReleaseChannel.Channel.REGULAR}}))


def test_operation_latency_keeps_an_update_running(env, created):
    # As on GKE, an operation lasts: polled before the configured latency it is RUNNING
    # (although the fake's work finished at once), after it DONE.
    client = env.container()
    name = f"{PARENT}/clusters/build-a"
    Channel = container_v1.ReleaseChannel.Channel
    env.configure(gke_operation_latency={"UPDATE_CLUSTER": 2})
    try:
        started = time.monotonic()
        op = client.update_cluster(name=name, update={"desired_release_channel": {"channel": Channel.RAPID}})
        polls = []
        while op.status != Status.DONE:
            assert time.monotonic() - started < 30, f"stuck: {polls}"
            time.sleep(0.2)
            op = client.get_operation(name=f"{PARENT}/operations/{op.name}")
            polls.append((time.monotonic() - started, op.status.name))
        done_at = polls[-1][0]
        assert done_at >= 2
        assert all(status == "RUNNING" for at, status in polls[:-1]) and len(polls) >= 5
        assert client.get_cluster(name=name).release_channel.channel == Channel.RAPID
    finally:
        env.configure(gke_operation_latency={})
        wait(client, client.update_cluster(name=name, update={
            "desired_release_channel": {"channel": Channel.REGULAR}}))


def test_operation_latency_applies_to_configured_types_only(env, created):
    # Latency for node pool and create operations leaves a cluster update as fast as without
    # any: PENDING, RUNNING, DONE on three successive polls (today's timing, as with 0).
    client = env.container()
    name = f"{PARENT}/clusters/build-a"
    Channel = container_v1.ReleaseChannel.Channel
    for latency in ({"UPGRADE_NODES": 30, "CREATE_CLUSTER": 30}, {"UPDATE_CLUSTER": 0}):
        env.configure(gke_operation_latency=latency)
        for channel in (Channel.RAPID, Channel.REGULAR):
            started = time.monotonic()
            op, seen = wait(client, client.update_cluster(
                name=name, update={"desired_release_channel": {"channel": channel}}))
            assert seen == ["PENDING", "RUNNING", "DONE"], (latency, seen)
            assert time.monotonic() - started < 5 and not op.error.message


def test_create_latency_overlaps_the_apiserver_start(env, created):
    # The apiserver starts at once: it is up while the create is still RUNNING, and the
    # operation is DONE at the latency, not at latency + start time.
    latency = 15.0
    client = env.container()
    env.configure(gke_operation_latency=f"CREATE_CLUSTER={latency}")
    started = time.monotonic()
    op = client.create_cluster(parent=PARENT, cluster={"name": "slow-create", "initial_node_count": 1})
    try:
        running_with_apiserver = []
        while op.status != Status.DONE:
            assert time.monotonic() - started < latency + 60, "create never finished"
            time.sleep(0.5)
            op = client.get_operation(name=f"{PARENT}/operations/{op.name}")
            if op.status == Status.RUNNING:
                fake_cluster = next(c for c in env.fake.state.clusters.values() if c.name == "slow-create")
                if fake_cluster.kube is not None:
                    running_with_apiserver.append(time.monotonic() - started)
                    # GKE's cluster stays PROVISIONING until its create operation is done, with no endpoint to reach.
                    provisioning = client.get_cluster(name=f"{PARENT}/clusters/slow-create")
                    assert provisioning.status.name == "PROVISIONING" and provisioning.endpoint == ""
                    assert not provisioning.master_auth.cluster_ca_certificate
        elapsed = time.monotonic() - started
        assert latency <= elapsed < latency + 3, elapsed
        assert running_with_apiserver and running_with_apiserver[0] < latency
        assert not op.error.message
        done = client.get_cluster(name=f"{PARENT}/clusters/slow-create")
        assert done.status.name == "RUNNING" and done.endpoint and done.master_auth.cluster_ca_certificate
    finally:
        env.configure(gke_operation_latency={})
        wait(client, client.delete_cluster(name=f"{PARENT}/clusters/slow-create"))


def test_permission_errors_carry_error_info(env, created):
    with pytest.raises(exceptions.Forbidden) as info:
        env.container(CRIER).get_cluster(name=f"{PARENT}/clusters/build-a")
    assert (info.value.reason, info.value.domain) == ("IAM_PERMISSION_DENIED", "container.googleapis.com")
    assert info.value.metadata["permission"] == "container.clusters.get"


def test_failed_operation_and_delete(env, created):
    client = env.container()
    env.configure(gke_fail_next_operations=1)
    op, seen = wait(client, client.create_cluster(parent=PARENT, cluster={
        "name": "broken", "initial_node_count": 1}))
    assert seen[-1] == "DONE" and "Injected failure" in op.error.message
    broken = client.get_cluster(name=f"{PARENT}/clusters/broken")
    assert broken.status == container_v1.Cluster.Status.ERROR
    wait(client, client.delete_cluster(name=f"{PARENT}/clusters/broken"))
    with pytest.raises(exceptions.NotFound):
        client.get_cluster(name=f"{PARENT}/clusters/broken")


def test_delete_stops_the_apiserver(env, created):
    client = env.container()
    name = next(c for c in env.fake.state.clusters.values() if c.name == "build-a").kube_name
    assert kube.get_cluster(name, env.fake.state_dir) is not None
    op, seen = wait(client, client.delete_cluster(name=f"{PARENT}/clusters/build-a"))
    assert op.operation_type == container_v1.Operation.Type.DELETE_CLUSTER and not op.error.message
    with pytest.raises(exceptions.NotFound):
        client.get_cluster(name=f"{PARENT}/clusters/build-a")
    assert kube.get_cluster(name, env.fake.state_dir) is None

