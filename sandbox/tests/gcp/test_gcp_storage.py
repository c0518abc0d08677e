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
