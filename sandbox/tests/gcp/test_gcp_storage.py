"""Cloud Storage JSON v1 through google-cloud-storage."""

from __future__ import annotations

import pytest
from google.api_core import exceptions
from google.cloud.storage import Blob

from prow_sandbox.gcp.seed import CRIER, DECK


@pytest.fixture
def bucket(gcp):
    client = gcp.storage()
    b = client.bucket(gcp.unique("results"))
    b.iam_configuration.uniform_bucket_level_access_enabled = True
    return client.create_bucket(b)


def _grant(bucket, role: str, member: str) -> None:
    policy = bucket.get_iam_policy(requested_policy_version=3)
    policy.bindings.append({"role": role, "members": {member}})
    bucket.set_iam_policy(policy)


def test_bucket_insert_get_and_uniform_access(gcp, bucket):
    got = gcp.storage().get_bucket(bucket.name)
    assert got.iam_configuration.uniform_bucket_level_access_enabled
    assert got.project_number == 100000000002
    assert got.metageneration == 1
    assert bucket.name in [b.name for b in gcp.storage().list_buckets()]


def test_bucket_errors(gcp, bucket):
    client = gcp.storage()
    with pytest.raises(exceptions.Conflict, match="you already own it"):
        client.create_bucket(bucket.name)
    with pytest.raises(exceptions.BadRequest, match="Invalid bucket name"):
        client.create_bucket("Not_A_Valid..Name")
    with pytest.raises(exceptions.NotFound, match="The specified bucket does not exist"):
        client.get_bucket(gcp.unique("missing"))
    with pytest.raises(exceptions.Forbidden):
        gcp.storage(CRIER).get_bucket(bucket.name)
    bucket.blob("x").upload_from_string("x")
    with pytest.raises(exceptions.Conflict, match="not empty"):
        bucket.delete()
    bucket.blob("x").delete()
    bucket.delete()
    with pytest.raises(exceptions.NotFound):
        client.get_bucket(bucket.name)


def test_new_bucket_policy_and_stale_etag_is_412(gcp, bucket):
    policy = bucket.get_iam_policy()
    project = gcp.build_project
    assert policy["roles/storage.legacyBucketOwner"] == {f"projectEditor:{project}",
                                                          f"projectOwner:{project}"}
    assert policy.etag == "CAE="
    stale_etag = policy.etag
    policy["roles/storage.objectAdmin"] = {f"serviceAccount:{CRIER}"}
    written = bucket.set_iam_policy(policy)
    assert written.etag not in (stale_etag, None)
    policy.etag = stale_etag
    with pytest.raises(exceptions.PreconditionFailed) as info:
        bucket.set_iam_policy(policy)
    assert info.value.errors[0]["reason"] == "conditionNotMet"


def test_bucket_iam_refuses_non_storage_roles_and_unknown_accounts(gcp, bucket):
    policy = bucket.get_iam_policy()
    policy["roles/iam.workloadIdentityUser"] = {f"serviceAccount:{CRIER}"}
    with pytest.raises(exceptions.BadRequest, match="not supported"):
        bucket.set_iam_policy(policy)
    policy = bucket.get_iam_policy()
    policy["roles/storage.objectAdmin"] = {
        f"serviceAccount:ghost@{gcp.build_project}.iam.gserviceaccount.com"}
    with pytest.raises(exceptions.BadRequest, match="does not exist"):
        bucket.set_iam_policy(policy)


def test_objects_upload_get_list_delete(gcp, bucket):
    data = bytes(range(256)) * 10  # binary, with CR/LF bytes inside
    bucket.blob("logs/job/1/build-log.txt").upload_from_string(data)
    bucket.blob("logs/job/latest-build.txt").upload_from_string("1", content_type="text/plain")
    bucket.blob("pr-logs/other").upload_from_string("x")
    blob = bucket.get_blob("logs/job/1/build-log.txt")
    assert blob.size == len(data) and blob.crc32c and blob.md5_hash
    assert blob.download_as_bytes() == data  # the client verifies x-goog-hash
    assert bucket.blob("logs/job/latest-build.txt").download_as_text() == "1"
    names = [b.name for b in gcp.storage().list_blobs(bucket, prefix="logs/")]
    assert names == ["logs/job/1/build-log.txt", "logs/job/latest-build.txt"]
    listing = gcp.storage().list_blobs(bucket, prefix="logs/job/", delimiter="/")
    assert [b.name for b in listing] == ["logs/job/latest-build.txt"]
    assert listing.prefixes == {"logs/job/1/"}
    # uploadType=media, as the client sends it for upload with a generation precondition
    media = bucket.blob("started.json")
    media.upload_from_string("{}", if_generation_match=0)
    with pytest.raises(exceptions.PreconditionFailed):
        media.upload_from_string("{}", if_generation_match=0)
    bucket.blob("pr-logs/other").delete()
    with pytest.raises(exceptions.NotFound):
        bucket.blob("pr-logs/other").download_as_bytes()


def test_object_writes_follow_bucket_iam(gcp, bucket):
    as_crier = gcp.storage(CRIER).bucket(bucket.name)
    with pytest.raises(exceptions.Forbidden, match="storage.objects.create"):
        as_crier.blob("prowjob.json").upload_from_string("{}")

    # objectCreator may create, but not replace (replacing needs storage.objects.delete).
    _grant(bucket, "roles/storage.objectCreator", f"serviceAccount:{CRIER}")
    as_crier.blob("latest-build.txt").upload_from_string("1")
    with pytest.raises(exceptions.Forbidden, match="storage.objects.delete"):
        as_crier.blob("latest-build.txt").upload_from_string("2")

    # objectAdmin (what Prow needs) may replace and read.
    _grant(bucket, "roles/storage.objectAdmin", f"serviceAccount:{DECK}")
    as_deck = gcp.storage(DECK).bucket(bucket.name)
    as_deck.blob("latest-build.txt").upload_from_string("2")
    assert as_deck.blob("latest-build.txt").download_as_text() == "2"


def test_checksum_mismatch_is_400(gcp, bucket):
    blob = Blob("corrupt", bucket)
    blob.crc32c = "AAAAAA=="  # the client sends the metadata it is given
    with pytest.raises(exceptions.BadRequest, match="CRC32C"):
        blob.upload_from_string("data", checksum=None)


# ---------------------------------------------------------------- location, class, PATCH


def test_location_and_storage_class_are_kept_as_gcs_reports_them(gcp):
    client = gcp.storage()
    regional = client.bucket(gcp.unique("regional"))
    regional.storage_class = "NEARLINE"
    created = client.create_bucket(regional, location="us-west1")
    assert (created.location, created.location_type, created.storage_class) == (
        "US-WEST1", "region", "NEARLINE")
    got = client.get_bucket(created.name)
    assert (got.location, got.storage_class) == ("US-WEST1", "NEARLINE")
    default = client.create_bucket(gcp.unique("default"))
    assert (default.location, default.location_type, default.storage_class) == (
        "US", "multi-region", "STANDARD")


def test_invalid_location_or_storage_class_is_400(gcp):
    client = gcp.storage()
    with pytest.raises(exceptions.BadRequest, match="location constraint is not valid"):
        client.create_bucket(gcp.unique("nowhere"), location="moon-base1")
    odd = client.bucket(gcp.unique("odd-class"))
    odd.storage_class = "COLDEST"
    with pytest.raises(exceptions.BadRequest, match="storage class"):
        client.create_bucket(odd)


def test_patch_changes_only_the_named_fields_and_bumps_the_metageneration(gcp):
    client = gcp.storage()
    b = client.bucket(gcp.unique("patched"))
    b.labels = {"team": "a", "keep": "yes"}
    b = client.create_bucket(b, location="EU")
    assert b.metageneration == 1 and not b.iam_configuration.uniform_bucket_level_access_enabled
    b.labels = {"team": "b", "keep": "yes"}
    b.storage_class = "COLDLINE"
    b.versioning_enabled = True
    b.iam_configuration.uniform_bucket_level_access_enabled = True
    b.patch(if_metageneration_match=1)
    assert b.metageneration == 2 and b.etag == "CAI="
    got = client.get_bucket(b.name)
    assert got.labels == {"team": "b", "keep": "yes"}
    assert (got.storage_class, got.versioning_enabled, got.location) == ("COLDLINE", True, "EU")
    assert got.iam_configuration.uniform_bucket_level_access_enabled
    # The client sends a removed label as null: GCS drops that key, keeps the others.
    got.labels = {"keep": "yes"}
    got.patch()
    assert client.get_bucket(b.name).labels == {"keep": "yes"}
    # A bucket write changes its IAM policy's etag too (both are the metageneration).
    assert got.get_iam_policy().etag == got.etag == "CAM="


def test_patch_with_a_stale_metageneration_is_412_and_changes_nothing(gcp):
    client = gcp.storage()
    b = client.create_bucket(gcp.unique("stale"))
    mine = client.get_bucket(b.name)
    theirs = client.get_bucket(b.name)
    theirs.labels = {"owner": "them"}
    theirs.patch(if_metageneration_match=theirs.metageneration)
    mine.labels = {"owner": "me"}
    with pytest.raises(exceptions.PreconditionFailed) as info:
        mine.patch(if_metageneration_match=1)
    assert info.value.errors[0]["reason"] == "conditionNotMet"
    assert client.get_bucket(b.name).labels == {"owner": "them"}
    with pytest.raises(exceptions.PreconditionFailed):
        mine.patch(if_metageneration_not_match=2)


def test_patch_cannot_move_a_bucket_nor_touch_one_without_permission(gcp, bucket):
    url = gcp.url("storage", f"/storage/v1/b/{bucket.name}")
    moved = gcp.session().patch(url, json={"location": "ASIA"})
    assert moved.status_code == 400 and "location cannot be changed" in moved.text
    as_crier = gcp.storage(CRIER).bucket(bucket.name)
    as_crier.labels = {"x": "y"}
    with pytest.raises(exceptions.Forbidden, match="storage.buckets.update"):
        as_crier.patch()


# ---------------------------------------------------------------- IAM conditions


CONDITION = {"title": "until-2030", "expression": 'request.time < timestamp("2030-01-01T00:00:00Z")'}


def _conditional_binding(bucket):
    policy = bucket.get_iam_policy(requested_policy_version=3)
    policy.version = 3
    policy.bindings.append({"role": "roles/storage.objectViewer",
                            "members": {f"serviceAccount:{CRIER}"}, "condition": CONDITION})
    return policy


def test_conditions_only_on_uniform_access_buckets(gcp):
    client = gcp.storage()
    fine_grained = client.create_bucket(gcp.unique("acl"))  # uniform access off
    with pytest.raises(exceptions.BadRequest, match="uniform bucket-level access"):
        fine_grained.set_iam_policy(_conditional_binding(fine_grained))
    uniform = client.bucket(gcp.unique("ubla"))
    uniform.iam_configuration.uniform_bucket_level_access_enabled = True
    uniform = client.create_bucket(uniform)
    written = uniform.set_iam_policy(_conditional_binding(uniform))
    assert written.version == 3
    # ... and uniform access cannot be turned off while the policy has conditions.
    uniform.iam_configuration.uniform_bucket_level_access_enabled = False
    with pytest.raises(exceptions.BadRequest, match="conditions"):
        uniform.patch()


def test_conditional_policy_is_read_only_as_version_3(gcp):
    client = gcp.storage()
    b = client.bucket(gcp.unique("cond"))
    b.iam_configuration.uniform_bucket_level_access_enabled = True
    b = client.create_bucket(b)
    b.set_iam_policy(_conditional_binding(b))
    with pytest.raises(exceptions.BadRequest, match="optionsRequestedPolicyVersion=3"):
        b.get_iam_policy()  # the client sends no version: 1
    policy = b.get_iam_policy(requested_policy_version=3)
    conditional = [x for x in policy.bindings if x.get("condition")]
    assert policy.version == 3 and conditional[0]["condition"] == CONDITION
