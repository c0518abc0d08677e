"""The comparisons inside the GCP modules: what they decide to change, and what they refuse."""

from __future__ import annotations

from ansible_collections.prow.build_cluster.plugins.module_utils._gke import pending_operations
from ansible_collections.prow.build_cluster.plugins.module_utils.impl import gcs_bucket, gke_cluster, secret_manager_secret, workload_identity_binding

# ---------------------------------------------------------------- secret_manager_secret


def versions(*states):
    """API version dicts, newest last in the arguments, numbered from 1."""
    return [{"name": f"projects/1/secrets/s/versions/{n}", "state": s, "etag": f'"e{n}"'} for n, s in enumerate(states, 1)]


def numbers(vs):
    return sorted(secret_manager_secret.version_number(v) for v in vs)


def test_pruning_keeps_the_newest_enabled_and_disables_older_enabled_ones():
    vs = versions("ENABLED", "DISABLED", "ENABLED", "ENABLED", "ENABLED")
    assert numbers(secret_manager_secret.plan_pruning(vs, 2, "disable")) == [1, 3]
    assert numbers(secret_manager_secret.plan_pruning(vs, 2, "destroy")) == [1, 2, 3]


def test_pruning_never_touches_versions_newer_than_the_kept_ones_nor_destroyed_ones():
    vs = versions("DESTROYED", "ENABLED", "ENABLED", "DISABLED")  # v4 disabled by hand
    assert numbers(secret_manager_secret.plan_pruning(vs, 1, "destroy")) == [2]
    assert secret_manager_secret.plan_pruning(vs, None, "destroy") == []
    assert secret_manager_secret.plan_pruning(vs, 5, "disable") == []


def test_replication_forms():
    # Requests in the client's field names; secrets read back in the REST JSON spelling.
    assert secret_manager_secret.replication_body(None) == {"automatic": {}}
    body = secret_manager_secret.replication_body(["us-east1", "europe-west1"])
    assert body == {"user_managed": {"replicas": [{"location": "europe-west1"}, {"location": "us-east1"}]}}
    read = {"replication": {"userManaged": {"replicas": [{"location": "us-east1"}, {"location": "europe-west1"}]}}}
    assert secret_manager_secret.replication_of(read) == ["europe-west1", "us-east1"]
    assert secret_manager_secret.replication_of({"replication": {"automatic": {}}}) == []


def test_the_newest_version_is_never_pruned_whatever_its_state():
    # latest is the newest created version: pruning it would leave every reader of latest without a payload.
    vs = versions("ENABLED", "ENABLED", "DISABLED")
    assert numbers(secret_manager_secret.plan_pruning(vs, 1, "destroy")) == [1]
    assert numbers(secret_manager_secret.plan_pruning(versions("DISABLED"), 1, "destroy")) == []
    assert secret_manager_secret.newest_of(vs)["name"].endswith("/3")


# ---------------------------------------------------------------- gke_cluster

PARAMS = {"name": "build", "node_pool": "default-pool", "node_count": 5, "machine_type": "n1-standard-8",
          "disk_size_gb": 100, "disk_type": "pd-ssd", "release_channel": None}
POOL = "p-build.svc.id.goog"


def cluster(pool=POOL, modes=("GKE_METADATA",), machine="n1-standard-8", channel="REGULAR"):
    names = ["default-pool"] + [f"pool-{i}" for i in range(1, len(modes))]
    return {
        "workloadIdentityConfig": {"workloadPool": pool} if pool else None,
        "releaseChannel": {"channel": channel},
        "nodePools": [{"name": n, "config": {"machineType": machine, "diskSizeGb": 100, "diskType": "pd-ssd",
                                             "workloadMetadataConfig": {"mode": m} if m else {}}}
                      for n, m in zip(names, modes)],
    }


def test_a_matching_cluster_needs_nothing():
    assert gke_cluster.plan_updates(PARAMS, cluster(), POOL) == []
    assert gke_cluster.immutable_differences(PARAMS, cluster()) == []


def test_workload_identity_first_then_every_pool_not_on_gke_metadata_one_by_one():
    plan = gke_cluster.plan_updates(PARAMS, cluster(pool=None, modes=("GCE_METADATA", None, "GKE_METADATA")), POOL)
    assert [step[:2] for step in plan] == [
        ("enable Workload Identity", ""),
        ("move node pool default-pool to GKE_METADATA", "/nodePools/default-pool"),
        ("move node pool pool-1 to GKE_METADATA", "/nodePools/pool-1"),
    ]
    assert plan[0][2] == {"update": {"desiredWorkloadIdentityConfig": {"workloadPool": POOL}}}
    assert plan[1][2] == {"workloadMetadataConfig": {"mode": "GKE_METADATA"}}


def test_another_projects_pool_is_replaced_and_the_channel_compared_only_when_given():
    plan = gke_cluster.plan_updates(PARAMS, cluster(pool="other-proj.svc.id.goog"), POOL)
    assert [step[0] for step in plan] == ["enable Workload Identity"]
    plan = gke_cluster.plan_updates(dict(PARAMS, release_channel="STABLE"), cluster(), POOL)
    assert plan == [("change the release channel", "", {"update": {"desiredReleaseChannel": {"channel": "STABLE"}}})]


def test_fields_that_cannot_change_in_place_are_reported_not_ignored():
    diffs = gke_cluster.immutable_differences(dict(PARAMS, disk_type="pd-standard"), cluster(machine="e2-medium"))
    assert diffs == ["machine_type: the cluster has 'e2-medium', not 'n1-standard-8'",
                     "disk_type: the cluster has 'pd-ssd', not 'pd-standard'"]
    assert "does not exist" in gke_cluster.immutable_differences(dict(PARAMS, node_pool="jobs"), cluster())[0]


class ListedOperations:
    """A session whose only call lists these operations."""

    def __init__(self, operations):
        self.operations = operations

    def request(self, method, service, path, resource=None, **_kwargs):
        assert (method, service, path) == ("GET", "container", "/v1/projects/p/locations/l/operations")
        return {"operations": self.operations} if self.operations else {}


def test_pending_operations_are_the_clusters_own_and_not_done():
    base = "https://container.googleapis.com/v1/projects/123/locations/l"
    ops = [
        {"name": "create", "status": "RUNNING", "targetLink": f"{base}/clusters/build"},
        {"name": "pool", "status": "PENDING", "targetLink": f"{base}/clusters/build/nodePools/default-pool"},
        {"name": "done", "status": "DONE", "targetLink": f"{base}/clusters/build"},
        {"name": "another", "status": "RUNNING", "targetLink": f"{base}/clusters/build-2"},
    ]
    assert [op["name"] for op in pending_operations(ListedOperations(ops), "projects/p/locations/l", "build")] == ["create", "pool"]
    assert pending_operations(ListedOperations([]), "projects/p/locations/l", "build") == []


def test_create_body_has_workload_identity_and_gke_metadata():
    body = gke_cluster.create_body(dict(PARAMS, release_channel="REGULAR"), POOL)["cluster"]
    assert body["workloadIdentityConfig"] == {"workloadPool": POOL}
    assert body["nodePools"][0]["config"]["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}
    assert body["nodePools"][0]["initialNodeCount"] == 5 and body["releaseChannel"] == {"channel": "REGULAR"}


# ---------------------------------------------------------------- workload_identity_binding

GSA = "job@p-build.iam.gserviceaccount.com"


def ksa(annotation=None):
    return {"metadata": {"annotations": {workload_identity_binding.ANNOTATION: annotation} if annotation else {}}}


def test_ksa_annotation_is_set_corrected_and_removed_only_if_ours():
    assert workload_identity_binding.ksa_patch(ksa(), GSA, True) == {"metadata": {"annotations": {workload_identity_binding.ANNOTATION: GSA}}}
    assert workload_identity_binding.ksa_patch(ksa("old@p-build.iam.gserviceaccount.com"), GSA, True) is not None
    assert workload_identity_binding.ksa_patch(ksa(GSA), GSA, True) is None
    assert workload_identity_binding.ksa_patch(ksa(GSA), GSA, False) == {"metadata": {"annotations": {workload_identity_binding.ANNOTATION: None}}}
    assert workload_identity_binding.ksa_patch(ksa("other@p.iam.gserviceaccount.com"), GSA, False) is None


def test_direct_access_removes_any_annotation_and_leaves_an_unannotated_ksa_alone():
    removal = {"metadata": {"annotations": {workload_identity_binding.ANNOTATION: None}}}
    # Any GSA named there (ours or not) would make the pods impersonate it.
    assert workload_identity_binding.ksa_patch(ksa(GSA), None, True, direct=True) == removal
    assert workload_identity_binding.ksa_patch(ksa("other@p.iam.gserviceaccount.com"), None, True, direct=True) == removal
    assert workload_identity_binding.ksa_patch(ksa(), None, True, direct=True) is None
    assert workload_identity_binding.ksa_patch(ksa(GSA), None, False, direct=True) is None


# ---------------------------------------------------------------- gcs_bucket

BUCKET_PARAMS = {"uniform_bucket_level_access": True, "storage_class": None, "labels": None}


def bucket(uniform=True, labels=None, storage_class="STANDARD"):
    return {"location": "US", "storageClass": storage_class, "labels": labels or {},
            "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": uniform}}}


def test_bucket_patch_only_for_what_differs_and_labels_merge():
    assert gcs_bucket.wanted_changes(BUCKET_PARAMS, bucket()) == {}
    assert gcs_bucket.wanted_changes(BUCKET_PARAMS, bucket(uniform=False)) == {
        "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": True}}}
    params = dict(BUCKET_PARAMS, labels={"team": "a"})
    assert gcs_bucket.wanted_changes(params, bucket(labels={"team": "a", "other": "kept"})) == {}
    assert gcs_bucket.wanted_changes(params, bucket(labels={"other": "kept"})) == {"labels": {"team": "a"}}
    assert gcs_bucket.wanted_changes(dict(BUCKET_PARAMS, storage_class="NEARLINE"), bucket()) == {"storageClass": "NEARLINE"}


def test_federated_member_audience_and_credential_configuration():
    from ansible_collections.prow.build_cluster.plugins.module_utils import iam  # pylint: disable=import-outside-toplevel

    assert iam.federated_member("123", "pool-a", "test-pods", "job") == (
        "principal://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool-a"
        "/subject/system:serviceaccount:test-pods:job")
    audience = iam.federated_audience("123", "pool-a", "build-eks")
    assert audience == "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool-a/providers/build-eks"
    assert workload_identity_binding.credential_config(audience, "https://sts.googleapis.com/v1/token", "/t/token") == {
        "type": "external_account", "audience": audience, "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://sts.googleapis.com/v1/token", "credential_source": {"file": "/t/token"}}


def test_federated_options_are_checked_before_any_call():
    good = {"federation_pool": "prow-build-clusters", "federation_provider": "build-eks",
            "credential_secret": "gcs-credentials", "credential_secret_key": "service-account.json",
            "token_path": "/var/run/secrets/tokens/gcs/token"}
    assert workload_identity_binding.federated_errors(good) is None
    for option, value, message in [
        ("federation_pool", "gcp-x", "federation_pool 'gcp-x' is not a valid ID"),
        ("federation_provider", "eks", "federation_provider 'eks' is not a valid ID"),
        ("credential_secret", "Bad_Name", "credential_secret"),
        ("credential_secret_key", "a/b", "credential_secret_key 'a/b' is not a valid Secret key"),
        ("token_path", "relative/token", "token_path 'relative/token': an absolute file path"),
        ("token_path", "/dir/", "an absolute file path"),
    ]:
        error = workload_identity_binding.federated_errors(dict(good, **{option: value}))
        assert error and message in error, (option, error)
