"""gke_cluster through ansible-playbook against the GCP fake, whose clusters are real kube-apiservers."""

from __future__ import annotations

import base64
import time

import pytest
from prow_sandbox.gcp.testing import kube_sandbox_available

from conftest import gcp_writes

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(kube_sandbox_available()), reason=str(kube_sandbox_available()))]

TASK = "cluster"
LOCATION = "us-west1-b"


def cluster_task(name, **extra):
    return [{"name": TASK, "prow.build_cluster.gke_cluster": {"name": name, "location": LOCATION, "wait_timeout": "3m", **extra}}]


def test_create_check_real_check_real_then_delete(ansible, gcp, operator_env):
    name = gcp.unique("build")
    tasks = cluster_task(name, machine_type="e2-standard-4", node_count=2, release_channel="REGULAR")
    clusters = f"/container/v1/projects/{gcp.build_project}/locations/{LOCATION}/clusters"

    mark = gcp.mark()
    check = ansible.run(tasks, check=True, diff=True, env=operator_env)
    assert check.task(TASK)["changed"] is True, check.stdout
    assert check.task(TASK)["diff"]["after"]["node_pools"] == {"default-pool": "GKE_METADATA"}
    assert gcp_writes(gcp, mark) == []

    real = ansible.run(tasks, env=operator_env)
    result = real.task(TASK)
    assert result["changed"] is True, real.stdout
    assert result["status"] == "RUNNING" and result["workload_pool"] == f"{gcp.build_project}.svc.id.goog"
    assert result["gke"] == f"projects/{gcp.build_project}/locations/{LOCATION}/clusters/{name}"
    assert result["endpoint"].startswith("127.0.0.1:")
    assert base64.b64decode(result["ca_certificate"]).startswith(b"-----BEGIN CERTIFICATE-----")
    assert gcp_writes(gcp, mark) == [f"POST {clusters}"]
    polls = gcp.fake.requests(since=mark, method="GET", path="/operations/")
    assert polls, "the module must wait on the operation"

    for mode in ({"check": True}, {}):
        mark = gcp.mark()
        again = ansible.run(tasks, env=operator_env, **mode)
        assert again.task(TASK)["changed"] is False, (mode, again.stdout)
        assert again.task(TASK)["endpoint"] == result["endpoint"]
        assert gcp_writes(gcp, mark) == [], mode

    mark = gcp.mark()
    different = ansible.run(cluster_task(name, machine_type="n1-standard-8", disk_type="pd-standard"), env=operator_env).task(TASK)
    assert different.get("failed"), different
    assert "cannot change in place" in different["msg"] and "machine_type" in different["msg"] and "disk_type" in different["msg"]
    assert gcp_writes(gcp, mark) == []

    mark = gcp.mark()
    gone = ansible.run(cluster_task(name, state="absent"), env=operator_env)
    assert gone.task(TASK)["changed"] is True, gone.stdout
    assert gcp_writes(gcp, mark) == [f"DELETE {clusters}/{name}"]


def test_existing_cluster_gets_workload_identity_one_operation_at_a_time(ansible, gcp, operator_env):
    name = gcp.unique("legacy")
    clusters = f"/v1/projects/{gcp.build_project}/locations/{LOCATION}/clusters"
    session = gcp.session()
    # A cluster as created by hand before Workload Identity: no pool, nodes on the GCE metadata server.
    pool = {"name": "default-pool", "initialNodeCount": 1,
            "config": {"machineType": "n1-standard-8", "diskSizeGb": 100, "diskType": "pd-ssd",
                       "workloadMetadataConfig": {"mode": "GCE_METADATA"}}}
    created = session.post(gcp.url("container", clusters), json={"cluster": {"name": name, "nodePools": [pool]}})
    assert created.status_code == 200, created.text
    operation = gcp.url("container", f"/v1/projects/{gcp.build_project}/locations/{LOCATION}/operations/{created.json()['name']}")
    deadline = time.monotonic() + 120
    while session.get(operation).json()["status"] != "DONE":
        assert time.monotonic() < deadline, "the hand-made cluster did not start"
        time.sleep(1)
    gcp.inject(kind="error", status=503, service="container", method="GET", path="/operations/", times=1)
    tasks = cluster_task(name)

    mark = gcp.mark()
    check = ansible.run(tasks, check=True, diff=True, env=operator_env)
    assert check.task(TASK)["changed"] is True, check.stdout
    assert check.task(TASK)["updates"] == ["enable Workload Identity", "move node pool default-pool to GKE_METADATA"]
    assert check.task(TASK)["diff"]["before"]["node_pools"] == {"default-pool": "GCE_METADATA"}
    assert gcp_writes(gcp, mark) == []

    real = ansible.run(tasks, env=operator_env)
    assert real.task(TASK)["changed"] is True, real.stdout
    assert len(real.task(TASK)["operations"]) == 2
    # In order, the second only after the first was DONE (the fake refuses overlapping ones).
    assert gcp_writes(gcp, mark) == [f"PUT /container{clusters}/{name}", f"PUT /container{clusters}/{name}/nodePools/default-pool"]
    assert real.task(TASK)["workload_pool"] == f"{gcp.build_project}.svc.id.goog"

    for mode in ({"check": True}, {}):
        mark = gcp.mark()
        assert ansible.run(tasks, env=operator_env, **mode).task(TASK)["changed"] is False, mode
        assert gcp_writes(gcp, mark) == [], mode
    ansible.run(cluster_task(name, state="absent"), env=operator_env)


def test_bad_inputs_fail_before_any_call(ansible, gcp, operator_env):
    mark = gcp.mark()
    for extra, message in [({"name": "Build"}, "cluster name"), ({"name": "ok", "location": "US-WEST1"}, "location"),
                           ({"name": "ok", "wait_timeout": "ten minutes"}, "wait_timeout"), ({"name": "ok", "node_count": 0}, "node_count")]:
        args = dict({"location": LOCATION}, **extra)
        result = ansible.run([{"name": TASK, "prow.build_cluster.gke_cluster": args}], env=operator_env).task(TASK)
        assert result.get("failed") and message in result["msg"], (extra, result.get("msg"))
    assert gcp.fake.requests(since=mark) == []


def wait_operation(gcp, name):
    session = gcp.session()
    url = gcp.url("container", f"/v1/projects/{gcp.build_project}/locations/{LOCATION}/operations/{name}")
    deadline = time.monotonic() + 120
    while session.get(url).json()["status"] != "DONE":
        assert time.monotonic() < deadline, f"operation {name} not done"
        time.sleep(0.5)


def test_release_channel_is_changed_in_place_through_gke_being_busy(ansible, gcp, operator_env):
    name = gcp.unique("channel")
    clusters = f"/container/v1/projects/{gcp.build_project}/locations/{LOCATION}/clusters"
    made = ansible.run(cluster_task(name, node_count=1, release_channel="REGULAR"), env=operator_env)
    assert made.task(TASK)["changed"] is True, made.stdout
    tasks = cluster_task(name, node_count=1, release_channel="RAPID")

    mark = gcp.mark()
    check = ansible.run(tasks, check=True, diff=True, env=operator_env)
    assert check.task(TASK)["updates"] == ["change the release channel"], check.stdout
    assert (check.task(TASK)["diff"]["before"]["release_channel"], check.task(TASK)["diff"]["after"]["release_channel"]) == ("REGULAR", "RAPID")
    assert gcp_writes(gcp, mark) == []

    # GKE is repairing the cluster on its own: twice "Cluster is currently being ... repaired".
    gcp.configure(gke_maintenance_rejects=2)
    real = ansible.run(tasks, env=operator_env)
    assert real.task(TASK)["changed"] is True, real.stdout
    puts = [(e["status"]) for e in gcp.fake.requests(since=mark, method="PUT")]
    assert puts == [400, 400, 200]
    assert gcp.session().get(gcp.url("container", f"/v1/projects/{gcp.build_project}/locations/{LOCATION}/clusters/{name}")).json()[
        "releaseChannel"] == {"channel": "RAPID"}

    for mode in ({"check": True}, {}):
        mark = gcp.mark()
        assert ansible.run(tasks, env=operator_env, **mode).task(TASK)["changed"] is False, mode
        assert gcp_writes(gcp, mark) == [], mode

    # wait: false starts the (last) update and returns; once it is done nothing is left to do.
    mark = gcp.mark()
    started = ansible.run(cluster_task(name, node_count=1, release_channel="STABLE", wait=False), env=operator_env).task(TASK)
    assert started["changed"] is True and len(started["operations"]) == 1, started
    assert gcp_writes(gcp, mark) == [f"PUT {clusters}/{name}"]
    assert not gcp.fake.requests(since=mark, method="GET", path="/operations/"), "wait: false must not poll"
    wait_operation(gcp, started["operations"][0])
    mark = gcp.mark()
    assert ansible.run(cluster_task(name, node_count=1, release_channel="STABLE"), env=operator_env).task(TASK)["changed"] is False
    assert gcp_writes(gcp, mark) == []

    # A delete that is under way (wait: false) is not started twice.
    mark = gcp.mark()
    assert ansible.run(cluster_task(name, state="absent", wait=False), env=operator_env).task(TASK)["changed"] is True
    assert ansible.run(cluster_task(name, state="absent"), env=operator_env).task(TASK)["changed"] is False
    assert gcp_writes(gcp, mark) == [f"DELETE {clusters}/{name}"]


def test_gke_busy_beyond_the_retries_fails_with_gkes_message(ansible, gcp, operator_env):
    name = gcp.unique("busy")
    assert ansible.run(cluster_task(name, node_count=1), env=operator_env).task(TASK)["changed"] is True
    gcp.configure(gke_maintenance_rejects=100)
    mark = gcp.mark()
    result = ansible.run(cluster_task(name, node_count=1, release_channel="STABLE"), env=operator_env).task(TASK)
    assert result.get("failed") and "being created, deleted, updated or repaired" in result["msg"], result
    assert result["reason"] == "FAILED_PRECONDITION"
    assert 1 < len(gcp.fake.requests(since=mark, method="PUT")) <= 6, "retried, but bounded"
    gcp.configure(gke_maintenance_rejects=0)
    ansible.run(cluster_task(name, state="absent"), env=operator_env)


def test_a_lost_answer_of_the_create_waits_for_the_create_it_started(ansible, gcp, operator_env):
    """GKE started the create, then the answer was lost (503): the retry is 409 ALREADY_EXISTS, and the
    module waits for the running create as for its own, so it returns a RUNNING cluster and its endpoint."""
    name = gcp.unique("lost")
    clusters = f"/container/v1/projects/{gcp.build_project}/locations/{LOCATION}/clusters"
    gcp.configure(gke_operation_latency={"CREATE_CLUSTER": 1})  # still running when the retry comes
    gcp.inject(status=503, service="container", method="POST", path=r"/clusters$", after=True, times=1)
    mark = gcp.mark()
    run = ansible.run(cluster_task(name, node_count=1), env=operator_env)
    result = run.task(TASK)
    assert result["changed"] is True and result["status"] == "RUNNING", run.stdout
    assert result["endpoint"].startswith("127.0.0.1:")
    creates = gcp.fake.requests(since=mark, method="POST", path=r"/clusters$")
    assert [(e["status"], e.get("answer_lost")) for e in creates] == [(503, 200), (409, None)]
    assert gcp_writes(gcp, mark) == [f"POST {clusters}", f"POST {clusters}"]  # the second one refused
    again = ansible.run(cluster_task(name, node_count=1), env=operator_env)
    assert again.task(TASK)["changed"] is False, again.stdout
    ansible.run(cluster_task(name, state="absent", wait=False), env=operator_env)


def test_a_run_finds_the_create_an_interrupted_run_started_and_waits(ansible, gcp, operator_env):
    """A run killed while it waited leaves the create going on: the next run waits for it (no write)."""
    name = gcp.unique("started")
    parent = f"projects/{gcp.build_project}/locations/{LOCATION}"
    gcp.configure(gke_operation_latency={"CREATE_CLUSTER": 1})

    def start_create(cluster_name):
        """What the module's create sends, as an interrupted run left it."""
        gcp.container().create_cluster(parent=parent, cluster={
            "name": cluster_name, "workload_identity_config": {"workload_pool": f"{gcp.build_project}.svc.id.goog"},
            "node_pools": [{"name": "default-pool", "initial_node_count": 1, "config": {
                "machine_type": "n1-standard-8", "disk_size_gb": 100, "disk_type": "pd-ssd",
                "workload_metadata_config": {"mode": "GKE_METADATA"}}}]})

    start_create(name)
    mark = gcp.mark()
    run = ansible.run(cluster_task(name, node_count=1), env=operator_env)
    result = run.task(TASK)
    assert result["changed"] is False and result["status"] == "RUNNING", run.stdout
    assert result["endpoint"].startswith("127.0.0.1:") and result["operations"], result
    assert gcp_writes(gcp, mark) == []
    # The partner: without wait the module reports the cluster as it is, still being created.
    other = gcp.unique("nowait")
    start_create(other)
    busy = ansible.run(cluster_task(other, node_count=1, wait=False), env=operator_env).task(TASK)
    assert busy["status"] == "PROVISIONING" and not busy["operations"], busy
    for each in (name, other):
        ansible.run(cluster_task(each, state="absent", wait=False), env=operator_env)
