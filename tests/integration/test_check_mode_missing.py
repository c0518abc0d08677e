"""Check mode on an empty project (issue 16): what a real run would create first does not exist yet.

An earlier task (gke_cluster, gcp_service_account, gcs_bucket, secret_manager_secret) only
says in check mode that it would create the resource, so a later task's read answers 404.
That task must report what a real run would do (changed, with a message), write nothing and
not wait out the retries meant for resources that were just created. A real run on the same
missing resource still fails, with a clear error.
"""

from __future__ import annotations

import pytest

from conftest import gcp_writes

LOCATION = "us-west1-b"
ROLE = "roles/storage.objectAdmin"
MEMBER = "serviceAccount:prow-crier@prow-sandbox-prow.iam.gserviceaccount.com"


def missing_gke(gcp):
    return f"projects/{gcp.build_project}/locations/{LOCATION}/clusters/{gcp.unique('never-created')}"


@pytest.mark.parametrize(("module", "args"), [
    ("k8s_namespace", {}),
    ("k8s_apply", {"definition": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}}}),
    ("gke_admin_ksa", {}),
    ("ksa_token", {"alias": "build-team", "dest": "{tmp}/build-team.kubeconfig"}),
    ("workload_identity_binding", {"gcp_service_account": "prowjob@prow-sandbox-build.iam.gserviceaccount.com"}),
])
def test_check_mode_on_a_gke_cluster_that_does_not_exist_yet(ansible, gcp, operator_env, tmp_path, module, args):
    gke = missing_gke(gcp)
    args = {key: value.format(tmp=tmp_path) if isinstance(value, str) else value for key, value in args.items()}
    mark = gcp.mark()
    run = ansible.run([{"name": "t", f"prow.build_cluster.{module}": {"gke": gke, **args}}], check=True, env=operator_env)
    result = run.task("t")
    assert result.get("failed") is not True, result
    assert result["changed"] is True
    assert result["msg"].startswith(f"GKE cluster {gke} does not exist yet: a real run creates it first; would "), result["msg"]
    assert gcp_writes(gcp, mark) == []
    assert not (tmp_path / "build-team.kubeconfig").exists()


def test_k8s_apply_says_what_it_would_apply(ansible, gcp, operator_env):
    gke = missing_gke(gcp)
    definition = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n, "namespace": "default"}} for n in ("a", "b")]
    result = ansible.run([{"name": "t", "prow.build_cluster.k8s_apply": {"gke": gke, "definition": definition}}],
                         check=True, env=operator_env).task("t")
    assert result["msg"].endswith("would apply 2 document(s) in it")


def test_a_real_run_on_a_gke_cluster_that_does_not_exist_fails(ansible, gcp, operator_env):
    gke = missing_gke(gcp)
    result = ansible.run([{"name": "t", "prow.build_cluster.k8s_namespace": {"gke": gke}}], env=operator_env).task("t")
    assert result["failed"] is True
    assert f"GKE cluster {gke}: HTTP 404" in result["msg"] and "create it first (gke_cluster)" in result["msg"], result["msg"]


@pytest.mark.parametrize("resource_type", ["bucket", "service_account", "secret"])
def test_check_mode_iam_member_on_a_resource_that_does_not_exist_yet(ansible, gcp, operator_env, resource_type):
    resource = {
        "bucket": gcp.unique("never-bucket"),
        "service_account": f"{gcp.unique('never-sa')}@{gcp.build_project}.iam.gserviceaccount.com",
        "secret": f"projects/{gcp.prow_project}/secrets/{gcp.unique('never_secret')}",
    }[resource_type]
    task = [{"name": "t", "prow.build_cluster.gcp_iam_member": {
        "resource_type": resource_type, "resource": resource, "role": ROLE, "member": MEMBER}}]
    mark = gcp.mark()
    result = ansible.run(task, check=True, diff=True, env=operator_env).task("t")
    assert result.get("failed") is not True, result
    assert result["changed"] is True
    assert "does not exist yet: a real run creates it first" in result["msg"]
    assert result["msg"].endswith(f"would grant {ROLE} to {MEMBER} once it exists"), result["msg"]
    assert gcp_writes(gcp, mark) == []
    # One read: a 404 in check mode is not retried (nothing is being created).
    reads = [e for e in gcp.fake.requests(since=mark) if "etIamPolicy" in e["path"] or e["path"].endswith("/iam")]
    assert len(reads) == 1, reads


def test_a_real_iam_member_run_on_a_missing_resource_fails(ansible, gcp, operator_env):
    bucket = gcp.unique("never-bucket")
    task = [{"name": "t", "prow.build_cluster.gcp_iam_member": {
        "resource_type": "bucket", "resource": bucket, "role": ROLE, "member": MEMBER}}]
    result = ansible.run(task, env=operator_env).task("t")
    assert result["failed"] is True
    assert f"bucket {bucket} IAM policy: HTTP 404" in result["msg"], result["msg"]


def test_check_mode_workload_identity_on_a_gsa_that_does_not_exist_yet(ansible, gcp, operator_env, kube_cluster, namespace, audit):
    gsa = f"{gcp.unique('never-jobs')}@{gcp.build_project}.iam.gserviceaccount.com"
    task = [{"name": "t", "prow.build_cluster.workload_identity_binding": {
        "kubeconfig": str(kube_cluster.kubeconfig), "namespace": namespace, "gcp_service_account": gsa,
        "workload_pool": f"{gcp.build_project}.svc.id.goog"}}]
    mark, since = gcp.mark(), audit.now()
    result = ansible.run(task, check=True, env=operator_env).task("t")
    assert result.get("failed") is not True, result
    assert result["changed"] is True
    assert result["msg"].startswith(f"service account {gsa} does not exist yet"), result["msg"]
    assert "would grant roles/iam.workloadIdentityUser to serviceAccount:" in result["msg"]
    assert gcp_writes(gcp, mark) == [] and audit.writes_since(since, namespaces=(namespace,)) == []

    real = ansible.run(task, env=operator_env).task("t")
    assert real["failed"] is True and "HTTP 404" in real["msg"], real
    assert audit.writes_since(since, namespaces=(namespace,)) == [], "a failed read writes neither half"


def test_check_mode_ksa_token_before_its_service_account_and_secret_exist(ansible, gcp, kube_cluster, namespace, audit, tmp_path):
    """On an empty project gke_admin_ksa only said it would create the ServiceAccount, and
    secret_manager_secret that it would store the kubeconfig: ksa_token would mint."""
    from conftest import gcp_env  # pylint: disable=import-outside-toplevel

    secret = f"projects/{gcp.prow_project}/secrets/{gcp.unique('never_kubeconfig')}"
    dest = tmp_path / "build-team.kubeconfig"
    task = [{"name": "t", "prow.build_cluster.ksa_token": {
        "kubeconfig": str(kube_cluster.kubeconfig), "namespace": namespace, "service_account": "not-created-yet",
        "alias": "build-team", "current": {"secret": secret}, "dest": str(dest)}}]
    mark, since = gcp.mark(), audit.now()
    result = ansible.run(task, check=True, env=gcp_env(gcp)).task("t")
    assert result.get("failed") is not True, result
    assert result["changed"] is True and result["rotated"] is True, result
    assert not dest.exists()
    assert gcp_writes(gcp, mark) == [] and audit.writes_since(since, namespaces=(namespace,)) == []

    real = ansible.run(task, env=gcp_env(gcp)).task("t")
    assert real["failed"] is True and "not-created-yet" in real["msg"], real


def test_composite_kubeconfig_in_check_mode_before_the_secret_and_directory_exist(ansible, gcp, operator_env, tmp_path):
    """The instance's composite in check mode on an empty project: the member's secret (stored by an earlier task) and
    the output directory (made by the Prow files' task) do not exist yet; a real run on the same still fails."""
    secret = f"projects/{gcp.prow_project}/secrets/{gcp.unique('never_secret')}"
    dest = tmp_path / "out" / "composite.kubeconfig"
    task = [{"name": "t", "prow.build_cluster.composite_kubeconfig": {"members": [{"name": "build-team", "secret": secret}],
                                                                      "dest": str(dest)}}]
    mark = gcp.mark()
    check = ansible.run(task, check=True, diff=True, env=operator_env).task("t")
    assert check.get("failed") is not True, check
    assert check["changed"] is True and check["missing"] == []
    assert check["msg"] == f"build-team: secret {secret} does not exist yet: a real run stores it first; would merge it with the other members"
    assert gcp_writes(gcp, mark) == [] and not dest.parent.exists()
    dest.parent.mkdir()
    real = ansible.run(task, env=operator_env).task("t")
    assert real["failed"] is True and real["msg"] == "build-team: no such secret", real
    assert not dest.exists()


@pytest.mark.slow
def test_check_mode_on_a_gke_cluster_still_being_created(ansible, gcp, operator_env):
    """A run killed after its GKE create: the next run's pre-flight checks (check mode) find the cluster
    PROVISIONING, with no endpoint yet; that is what a real run waits for, not a failure. A real run's
    task on it (no gke_cluster task before it) still fails, saying so."""
    name = gcp.unique("provisioning")
    gke = f"projects/{gcp.build_project}/locations/{LOCATION}/clusters/{name}"
    gcp.configure(gke_operation_latency={"CREATE_CLUSTER": 120})  # PROVISIONING for the whole test
    gcp.container().create_cluster(parent=f"projects/{gcp.build_project}/locations/{LOCATION}",
                                   cluster={"name": name, "node_pools": [{"name": "p", "initial_node_count": 1}]})
    task = [{"name": "t", "prow.build_cluster.gke_admin_ksa": {"gke": gke}}]
    result = ansible.run(task, check=True, env=operator_env).task("t")
    assert result.get("failed") is not True and result["changed"] is True, result
    real = ansible.run(task, env=operator_env).task("t")
    assert real.get("failed") and "has no endpoint yet (status PROVISIONING)" in real["msg"], real
