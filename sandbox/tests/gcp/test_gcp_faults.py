"""Fault injection and the request log, as clients and tests observe them."""

from __future__ import annotations

import json
import time

import pytest
import requests
from google.api_core import exceptions

from prow_sandbox.gcp import daemon


def test_503_once_is_retried_by_the_client(gcp):
    client = gcp.secretmanager()
    secret = client.create_secret(parent=f"projects/{gcp.prow_project}",
                                  secret_id=gcp.unique("retry"),
                                  secret={"replication": {"automatic": {}}})
    client.add_secret_version(parent=secret.name, payload={"data": b"kubeconfig"})
    gcp.inject(status=503, method="GET", path=r"/versions/latest:access$", times=1)
    mark = gcp.mark()
    # access_secret_version's default retry covers UNAVAILABLE.
    latest = client.access_secret_version(name=f"{secret.name}/versions/latest")
    assert latest.payload.data == b"kubeconfig"
    statuses = [e["status"] for e in gcp.fake.requests(since=mark, service="secretmanager")]
    assert statuses == [503, 200]


def test_429_surfaces_as_too_many_requests(gcp, operator):
    gcp.inject(status=429, path=r"/serviceAccounts$", service="iam", times=2)
    url = gcp.url("iam", f"/v1/projects/{gcp.build_project}/serviceAccounts")
    first, second, third = (operator.get(url) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (429, 429, 200)
    assert first.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    # The quota ErrorInfo Google sends, as the official clients parse it.
    parsed = exceptions.from_http_response(first)
    assert isinstance(parsed, exceptions.TooManyRequests)
    assert (parsed.reason, parsed.domain) == ("RATE_LIMIT_EXCEEDED", "googleapis.com")
    assert parsed.metadata["service"] == "iam.googleapis.com"
    gcp.inject(status=429, service="storage", path=r"/b/whatever-bucket$")
    with pytest.raises(exceptions.TooManyRequests) as info:
        gcp.storage().get_bucket("whatever-bucket", retry=None)  # storage retries 429 by default
    assert info.value.errors[0]["reason"] == "rateLimitExceeded"


def test_errors_at_a_rate(gcp, operator):
    gcp.inject(status=500, service="cloudresourcemanager", rate=0.5, times=None)
    url = gcp.url("cloudresourcemanager", f"/v1/projects/{gcp.build_project}")
    statuses = [operator.get(url).status_code for _ in range(40)]
    assert 5 < statuses.count(500) < 35 and statuses.count(200) + statuses.count(500) == 40


def test_added_latency(gcp, operator):
    gcp.inject(kind="latency", delay=0.3, service="cloudresourcemanager", times=1)
    url = gcp.url("cloudresourcemanager", f"/v1/projects/{gcp.build_project}")
    started = time.monotonic()
    assert operator.get(url).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_request_log_counts_writes(gcp, operator):
    url = gcp.url("iam", f"/v1/projects/{gcp.build_project}/serviceAccounts")
    created = operator.post(url, json={"accountId": gcp.unique("counted")}).json()
    operator.post(f"{url}/{created['email']}:getIamPolicy")  # a POST that is a read
    operator.get(f"{url}/{created['email']}")
    writes = gcp.requests(service="iam", writes_only=True)
    assert [(e["method"], e["status"]) for e in writes] == [("POST", 200)]
    entry = writes[0]
    assert entry["principal"].startswith("serviceAccount:sandbox-operator@")
    assert set(entry) >= {"time", "method", "path", "principal", "status", "service"}
    # The same entries are appended to <state_dir>/gcp/requests.jsonl.
    lines = (gcp.fake.gcp_dir / "requests.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["path"].endswith(f"/{created['email']}")


def test_admin_http_api(gcp):
    base = gcp.fake.base_url
    fault = requests.post(f"{base}/_fake/faults", timeout=5,
                          json={"status": 503, "service": "storage", "times": 3}).json()
    assert requests.get(f"{base}/_fake/faults", timeout=5).json()["faults"][0]["id"] == fault["id"]
    assert requests.delete(f"{base}/_fake/faults/{fault['id']}", timeout=5).status_code == 200
    assert requests.get(f"{base}/_fake/faults", timeout=5).json()["faults"] == []
    config = requests.post(f"{base}/_fake/config", json={"gke_running_polls": 2}, timeout=5).json()
    assert config["gke_running_polls"] == 2
    log = requests.get(f"{base}/_fake/requests", params={"since": gcp.start_mark}, timeout=5).json()
    assert log["requests"] == [] and log["mark"] == gcp.start_mark  # admin calls are not logged
    assert requests.post(f"{base}/_fake/faults", json={"kind": "bogus"}, timeout=5).status_code == 400


def test_daemon_start_is_idempotent_and_stop_ends_it(tmp_path):
    info = daemon.start(tmp_path)
    try:
        assert daemon.start(tmp_path)["pid"] == info["pid"]
        assert json.loads(info["endpoints_file"].read_text()) == info["endpoints"]
        assert set(info["endpoints"]) == {"iam", "iamcredentials", "sts", "storage",
                                          "secretmanager", "container",
                                          "cloudresourcemanager", "oauth2"}
        assert info["credentials_file"].is_file()
        assert (tmp_path / "gcp" / "pid").read_text().strip() == str(info["pid"])
        health = requests.get(info["endpoints"]["oauth2"].rsplit("/", 1)[0] + "/_fake/health",
                              timeout=5)
        assert health.json()["project"] == "prow-sandbox-build"
    finally:
        assert daemon.stop(tmp_path)
    assert not daemon.stop(tmp_path)
    with pytest.raises(requests.ConnectionError):
        requests.get(info["base_url"] + "/_fake/health", timeout=2)


def test_latency_applies_once_per_request(gcp, operator):
    # times=N delays the next N requests, not one request N times.
    gcp.inject(kind="latency", delay=0.2, service="cloudresourcemanager", times=2)
    url = gcp.url("cloudresourcemanager", f"/v1/projects/{gcp.build_project}")
    durations = []
    for _ in range(3):
        started = time.monotonic()
        operator.get(url)
        durations.append(time.monotonic() - started)
    assert durations[0] >= 0.2 and durations[1] >= 0.2 and durations[0] < 0.4
    assert durations[2] < 0.2


def test_operation_latency_switch_through_the_admin_api(gcp):
    base = gcp.fake.base_url
    set_ = lambda value: requests.post(f"{base}/_fake/config", json={"gke_operation_latency": value},  # noqa: E731
                                       timeout=5)
    assert set_("create_cluster=60, UPGRADE_NODES=5").json()["gke_operation_latency"] == {
        "CREATE_CLUSTER": 60.0, "UPGRADE_NODES": 5.0}
    assert set_({"DELETE_CLUSTER": 1}).json()["gke_operation_latency"] == {"DELETE_CLUSTER": 1.0}
    # A typo must not silently leave every operation fast.
    for bad in ("CREATE=60", "CREATE_CLUSTER", {"CREATE_CLUSTER": -1}):
        assert set_(bad).status_code == 400, bad
    assert requests.get(f"{base}/_fake/config", timeout=5).json()["gke_operation_latency"] == {"DELETE_CLUSTER": 1.0}


def test_daemon_takes_switches_at_start_and_keeps_them_over_reset(tmp_path):
    with pytest.raises(RuntimeError, match="gke_operation_latency"):
        daemon.start(tmp_path, {"gke_operation_latency": "CREATE=60"})
    assert not (tmp_path / "gcp" / "pid").exists()  # refused before starting anything
    info = daemon.start(tmp_path, {"gke_operation_latency": {"CREATE_CLUSTER": 60}, "gke_running_polls": 2})
    try:
        config = lambda: requests.get(info["base_url"] + "/_fake/config", timeout=5).json()  # noqa: E731
        assert config()["gke_operation_latency"] == {"CREATE_CLUSTER": 60.0}
        assert config()["gke_running_polls"] == 2
        # Given at start, they are the fake's defaults: a reset comes back to them.
        requests.post(info["base_url"] + "/_fake/config", json={"gke_operation_latency": {}}, timeout=5)
        assert requests.post(info["base_url"] + "/_fake/reset", timeout=30).status_code == 200
        assert config()["gke_operation_latency"] == {"CREATE_CLUSTER": 60.0}
        # `prow-sandbox up` again on a running fake sets them at runtime.
        assert daemon.start(tmp_path, {"gke_operation_latency": "UPDATE_CLUSTER=3"})["pid"] == info["pid"]
        assert config()["gke_operation_latency"] == {"UPDATE_CLUSTER": 3.0}
    finally:
        assert daemon.stop(tmp_path)


# ---------------------------------------------------------------- answers lost after the write
# kind=error with after=true: the request is handled, then the client gets the error. A blind
# retry of a call that is not idempotent then does the thing twice, which is what these show
# (and what the collection's modules must not do, see tests/integration/test_chaos.py).


def test_lost_answer_of_add_version_leaves_the_version_and_a_blind_retry_duplicates_it(gcp):
    client = gcp.secretmanager()
    secret = client.create_secret(parent=f"projects/{gcp.prow_project}", secret_id=gcp.unique("lost"),
                                  secret={"replication": {"automatic": {}}})
    gcp.inject(status=503, method="POST", path=r":addVersion$", after=True, times=1)
    mark = gcp.mark()
    with pytest.raises(exceptions.ServiceUnavailable):
        client.add_secret_version(parent=secret.name, payload={"data": b"one"}, retry=None)
    versions = list(client.list_secret_versions(parent=secret.name))
    assert [v.name.rsplit("/", 1)[1] for v in versions] == ["1"]  # applied, answer lost
    assert client.access_secret_version(name=versions[0].name).payload.data == b"one"
    client.add_secret_version(parent=secret.name, payload={"data": b"one"}, retry=None)  # the blind retry
    assert len(list(client.list_secret_versions(parent=secret.name))) == 2
    adds = gcp.fake.requests(since=mark, path=r":addVersion$")
    assert [(e["status"], e.get("answer_lost")) for e in adds] == [(503, 200), (200, None)]


def test_a_fault_without_after_changes_nothing(gcp):
    # The partner of the test above: the same fault before the handler stores nothing.
    client = gcp.secretmanager()
    secret = client.create_secret(parent=f"projects/{gcp.prow_project}", secret_id=gcp.unique("before"),
                                  secret={"replication": {"automatic": {}}})
    gcp.inject(status=503, method="POST", path=r":addVersion$", times=1)
    with pytest.raises(exceptions.ServiceUnavailable):
        client.add_secret_version(parent=secret.name, payload={"data": b"one"}, retry=None)
    assert list(client.list_secret_versions(parent=secret.name)) == []


def test_lost_answer_of_a_policy_write_applies_it_and_the_same_etag_then_conflicts(gcp):
    bucket = gcp.storage().create_bucket(gcp.unique("lost-policy"))
    policy = bucket.get_iam_policy(requested_policy_version=3)
    policy.bindings.append({"role": "roles/storage.objectViewer", "members": {"allUsers"}})
    gcp.inject(status=504, method="PUT", path=r"/iam$", service="storage", after=True, times=1)
    with pytest.raises(exceptions.GatewayTimeout):
        bucket.set_iam_policy(policy, retry=None)
    after = bucket.get_iam_policy(requested_policy_version=3)
    assert {"allUsers"} in [b["members"] for b in after.bindings if b["role"] == "roles/storage.objectViewer"]
    # Retrying the write with the etag it was read with is refused: the etag moved on.
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.set_iam_policy(policy, retry=None)


def test_lost_answer_of_a_gke_create_then_the_retry_is_409(gcp):
    client = gcp.container()
    parent = f"projects/{gcp.build_project}/locations/us-east1-b"
    name = gcp.unique("lost-gke")
    gcp.configure(gke_fail_next_operations=1)  # the operation fails at once: no apiserver to start
    gcp.inject(status=503, method="POST", path=r"/clusters$", service="container", after=True, times=1)
    spec = {"name": name, "node_pools": [{"name": "pool", "initial_node_count": 1}]}
    with pytest.raises(exceptions.ServiceUnavailable):
        client.create_cluster(parent=parent, cluster=spec, retry=None)
    assert client.get_cluster(name=f"{parent}/clusters/{name}").name == name
    with pytest.raises(exceptions.Conflict, match="Already exists"):  # REST clients map by status: 409
        client.create_cluster(parent=parent, cluster=spec, retry=None)
    ops = [op for op in client.list_operations(parent=parent).operations if op.target_link.endswith(f"/clusters/{name}")]
    assert [op.operation_type.name for op in ops] == ["CREATE_CLUSTER"]


def test_after_is_for_error_faults_only(gcp):
    base = gcp.fake.base_url
    bad = requests.post(f"{base}/_fake/faults", json={"kind": "latency", "delay": 1, "after": True}, timeout=5)
    assert bad.status_code == 400 and "after" in bad.json()["error"]
    listed = requests.post(f"{base}/_fake/faults", json={"status": 503, "after": True}, timeout=5).json()
    assert listed["after"] is True


def test_a_reset_replays_the_same_rate_faults(gcp_fake):
    """The rate's random sequence restarts at a reset: a scenario after it fails the same requests
    whatever ran before (the chaos suite relies on its rate faults hitting something)."""

    def hits():
        gcp_fake.faults.add(status=503, path="/x", rate=0.3, times=None)
        return [gcp_fake.faults.error_for("GET", "/x", "iam") is not None for _ in range(30)]

    gcp_fake.faults.reset()
    first = hits()
    gcp_fake.faults.error_for("GET", "/x", "iam")  # some history
    gcp_fake.faults.reset()
    assert hits() == first and any(first) and not all(first)
    gcp_fake.faults.clear()  # the partner: clear keeps the sequence going
    assert hits() != first
    gcp_fake.faults.reset()
