"""Secret Manager v1 through google-cloud-secret-manager (REST transport).

Over REST the client maps errors by HTTP status only: FAILED_PRECONDITION arrives as
BadRequest (400) and ALREADY_EXISTS as Conflict (409), as against Google.
"""

from __future__ import annotations

import google_crc32c
import pytest
from google.api_core import exceptions
from google.cloud import secretmanager

from prow_sandbox.gcp.seed import EXTERNAL_SECRETS, ROTATOR

NUMBER = "100000000001"  # prow-sandbox-prow


@pytest.fixture
def client(gcp) -> secretmanager.SecretManagerServiceClient:
    return gcp.secretmanager()


@pytest.fixture
def secret(gcp, client) -> secretmanager.Secret:
    return client.create_secret(
        parent=f"projects/{gcp.prow_project}", secret_id=gcp.unique("kubeconfig"),
        secret={"replication": {"automatic": {}}, "labels": {"team": "a"}})


def test_names_carry_the_project_number(gcp, client, secret):
    assert secret.name.startswith(f"projects/{NUMBER}/secrets/")
    secret_id = secret.name.rsplit("/", 1)[1]
    by_id = client.get_secret(name=f"projects/{gcp.prow_project}/secrets/{secret_id}")
    assert by_id.name == secret.name and by_id.labels == {"team": "a"}
    assert secret.etag.startswith('"') and secret.etag.endswith('"')
    listed = client.list_secrets(request={"parent": f"projects/{gcp.prow_project}",
                                          "filter": "labels.team=a"})
    assert secret.name in [s.name for s in listed]


def test_create_errors(gcp, client, secret):
    secret_id = secret.name.rsplit("/", 1)[1]
    with pytest.raises(exceptions.Conflict, match="already exists"):
        client.create_secret(parent=f"projects/{gcp.prow_project}", secret_id=secret_id,
                             secret={"replication": {"automatic": {}}})
    with pytest.raises(exceptions.BadRequest):
        client.create_secret(parent=f"projects/{gcp.prow_project}", secret_id="bad id!",
                             secret={"replication": {"automatic": {}}})
    with pytest.raises(exceptions.BadRequest, match="replication"):
        client.create_secret(parent=f"projects/{gcp.prow_project}", secret_id=gcp.unique("r"),
                             secret={})
    with pytest.raises(exceptions.NotFound):
        client.get_secret(name=f"projects/{gcp.prow_project}/secrets/{gcp.unique('nope')}")
    with pytest.raises(exceptions.Forbidden):
        client.create_secret(parent="projects/prow-sandbox-other", secret_id=gcp.unique("x"),
                             secret={"replication": {"automatic": {}}})


def test_update_labels_with_etags(client, secret):
    updated = client.update_secret(secret={"name": secret.name, "labels": {"team": "b"},
                                           "etag": secret.etag},
                                   update_mask={"paths": ["labels"]})
    assert updated.labels == {"team": "b"} and updated.etag != secret.etag
    with pytest.raises(exceptions.BadRequest) as info:  # stale etag: FAILED_PRECONDITION
        client.update_secret(secret={"name": secret.name, "labels": {}, "etag": secret.etag},
                             update_mask={"paths": ["labels"]})
    assert info.value.code == 400
    with pytest.raises(exceptions.BadRequest):
        client.delete_secret(request={"name": secret.name, "etag": secret.etag})
    client.delete_secret(request={"name": secret.name, "etag": updated.etag})
    with pytest.raises(exceptions.NotFound):
        client.get_secret(name=secret.name)


def test_versions_lifecycle(client, secret):
    payloads = [b"kubeconfig-1", b"kubeconfig-2", b"kubeconfig-3"]
    versions = [client.add_secret_version(parent=secret.name, payload={
        "data": p, "data_crc32c": google_crc32c.value(p)}) for p in payloads]
    assert [v.name.rsplit("/", 1)[1] for v in versions] == ["1", "2", "3"]
    assert versions[0].client_specified_payload_checksum

    listed = list(client.list_secret_versions(parent=secret.name))
    assert [v.name for v in listed] == [v.name for v in reversed(versions)]  # newest first
    latest = client.access_secret_version(name=f"{secret.name}/versions/latest")
    assert latest.payload.data == b"kubeconfig-3"
    assert latest.payload.data_crc32c == google_crc32c.value(b"kubeconfig-3")

    disabled = client.disable_secret_version(name=versions[2].name)
    assert disabled.state == secretmanager.SecretVersion.State.DISABLED
    with pytest.raises(exceptions.BadRequest, match="is in DISABLED state"):
        client.access_secret_version(name=versions[2].name)
    # The older versions stay readable by number.
    assert client.access_secret_version(name=versions[1].name).payload.data == b"kubeconfig-2"

    client.enable_secret_version(name=versions[2].name)
    assert client.access_secret_version(name=versions[2].name).payload.data == b"kubeconfig-3"

    destroyed = client.destroy_secret_version(name=versions[0].name)
    assert destroyed.state == secretmanager.SecretVersion.State.DESTROYED
    assert destroyed.destroy_time
    with pytest.raises(exceptions.BadRequest, match="is in DESTROYED state"):
        client.access_secret_version(name=versions[0].name)
    with pytest.raises(exceptions.BadRequest, match="DESTROYED"):
        client.enable_secret_version(name=versions[0].name)  # destroy is final
    with pytest.raises(exceptions.NotFound):
        client.get_secret_version(name=f"{secret.name}/versions/9")


@pytest.mark.parametrize("action", ["disable", "destroy"])
def test_latest_is_the_newest_created_version_whatever_its_state(client, secret, action):
    """As Google documents: versions/latest is an alias to the most recently created version. When
    that one is DISABLED or DESTROYED, latest fails 400 FAILED_PRECONDITION; it does not fall back
    to an older ENABLED version."""
    older = client.add_secret_version(parent=secret.name, payload={"data": b"kubeconfig-1"})
    newest = client.add_secret_version(parent=secret.name, payload={"data": b"kubeconfig-2"})
    latest = f"{secret.name}/versions/latest"
    assert client.access_secret_version(name=latest).payload.data == b"kubeconfig-2"

    getattr(client, f"{action}_secret_version")(name=newest.name)
    state = "DISABLED" if action == "disable" else "DESTROYED"
    with pytest.raises(exceptions.BadRequest) as info:
        client.access_secret_version(name=latest)
    assert info.value.code == 400
    assert info.value.message.endswith(f"Secret Version [{newest.name}] is in {state} state.")
    assert info.value.response.json()["error"]["status"] == "FAILED_PRECONDITION"
    # Its metadata is still the newest version's, in its state; the older one is still enabled.
    got = client.get_secret_version(name=latest)
    assert got.name == newest.name and got.state.name == state
    assert client.access_secret_version(name=older.name).payload.data == b"kubeconfig-1"

    # A new version is what makes latest readable again.
    repaired = client.add_secret_version(parent=secret.name, payload={"data": b"kubeconfig-3"})
    assert client.access_secret_version(name=latest).name == repaired.name


def test_version_etags(client, secret):
    version = client.add_secret_version(parent=secret.name, payload={"data": b"x"})
    with pytest.raises(exceptions.BadRequest):
        client.disable_secret_version(request={"name": version.name, "etag": '"stale"'})
    client.disable_secret_version(request={"name": version.name, "etag": version.etag})


def test_add_version_checks(client, secret):
    with pytest.raises(exceptions.BadRequest, match="Data corruption"):
        client.add_secret_version(parent=secret.name, payload={
            "data": b"kubeconfig", "data_crc32c": google_crc32c.value(b"other")})
    with pytest.raises(exceptions.NotFound):
        client.access_secret_version(name=f"{secret.name}/versions/latest")  # no versions


def test_secret_iam_grants_access(gcp, client, secret):
    client.add_secret_version(parent=secret.name, payload={"data": b"kubeconfig"})
    eso = gcp.secretmanager(EXTERNAL_SECRETS)
    with pytest.raises(exceptions.Forbidden):
        eso.access_secret_version(name=f"{secret.name}/versions/latest")

    policy = client.get_iam_policy(request={"resource": secret.name})
    assert policy.etag == b"\x00\x20\x01"  # "ACAB": never written
    policy.bindings.add(role="roles/secretmanager.secretAccessor",
                        members=[f"serviceAccount:{EXTERNAL_SECRETS}"])
    written = client.set_iam_policy(request={"resource": secret.name, "policy": policy})
    assert written.etag != policy.etag
    with pytest.raises(exceptions.Conflict):  # stale etag: ABORTED
        client.set_iam_policy(request={"resource": secret.name, "policy": policy})

    assert eso.access_secret_version(name=f"{secret.name}/versions/latest").payload.data == b"kubeconfig"
    # The accessor role does not let ESO add versions: that is the rotation job's right.
    with pytest.raises(exceptions.Forbidden):
        eso.add_secret_version(parent=secret.name, payload={"data": b"y"})
    with pytest.raises(exceptions.Forbidden):
        gcp.secretmanager(ROTATOR).add_secret_version(parent=secret.name, payload={"data": b"y"})


def test_corrupted_access_is_caught_by_the_checksum(gcp, client, secret):
    """The fault mode that lets a client's integrity check fail: data and dataCrc32c disagree."""
    client.add_secret_version(parent=secret.name, payload={"data": b"kubeconfig", "data_crc32c": google_crc32c.value(b"kubeconfig")})
    gcp.configure(secretmanager_corrupt_next_access=1)
    corrupted = client.access_secret_version(name=f"{secret.name}/versions/latest")
    assert corrupted.payload.data != b"kubeconfig"
    assert corrupted.payload.data_crc32c == google_crc32c.value(b"kubeconfig") != google_crc32c.value(corrupted.payload.data)
    again = client.access_secret_version(name=f"{secret.name}/versions/latest")  # only the next one
    assert again.payload.data == b"kubeconfig" and again.payload.data_crc32c == google_crc32c.value(again.payload.data)
