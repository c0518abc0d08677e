"""OAuth2 token endpoint and bearer-token checks, through google-auth."""

from __future__ import annotations

import base64
import json

import google.auth.transport.requests
import google.oauth2.credentials
import pytest
import requests
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import AuthorizedSession
from google.oauth2.service_account import Credentials

from prow_sandbox.gcp import seed
from prow_sandbox.gcp.seed import CRIER

CP = "https://www.googleapis.com/auth/cloud-platform"


def test_service_account_key_file_works_unmodified(gcp):
    creds = gcp.credentials("operator")  # GOOGLE_APPLICATION_CREDENTIALS of the sandbox
    resp = AuthorizedSession(creds).get(gcp.url("cloudresourcemanager",
                                                f"/v1/projects/{gcp.build_project}"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["projectId"] == gcp.build_project
    token_calls = gcp.requests(service="oauth2", path=r"/token$")
    assert [e["status"] for e in token_calls] == [200]
    assert gcp.requests(service="cloudresourcemanager")[-1]["principal"] == f"serviceAccount:{seed.OPERATOR}"


def test_authorized_user_refresh_flow(gcp):
    creds = gcp.credentials(seed.OPERATOR_USER)
    resp = AuthorizedSession(creds).get(gcp.url("cloudresourcemanager",
                                                f"/v1/projects/{gcp.prow_project}"))
    assert resp.status_code == 200, resp.text
    assert gcp.requests(service="cloudresourcemanager")[-1]["principal"] == f"user:{seed.OPERATOR_USER}"


def test_bad_refresh_token_is_invalid_grant(gcp):
    info = json.loads(gcp.fake.credentials[seed.OPERATOR_USER].read_text())
    creds = google.oauth2.credentials.Credentials(
        None, refresh_token="forged", client_id=info["client_id"],
        client_secret=info["client_secret"], token_uri=gcp.url("oauth2", "/token"))
    with pytest.raises(RefreshError, match="invalid_grant"):
        creds.refresh(google.auth.transport.requests.Request())


def test_key_file_without_scopes_is_invalid_scope(gcp):
    creds = Credentials.from_service_account_file(str(gcp.fake.credentials["operator"]))
    with pytest.raises(RefreshError, match="invalid_scope"):
        creds.refresh(google.auth.transport.requests.Request())


def test_forged_key_is_refused(gcp, tmp_path):
    # Same email and key id, different private key: the signature check must fail.
    info = json.loads(gcp.fake.credentials[CRIER].read_text())
    other = json.loads(gcp.fake.credentials["operator"].read_text())
    info["private_key"] = other["private_key"]
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(info))
    creds = Credentials.from_service_account_file(str(path), scopes=[CP])
    with pytest.raises(RefreshError, match="Invalid JWT Signature"):
        creds.refresh(google.auth.transport.requests.Request())


@pytest.mark.parametrize("header", [None, "Bearer ", "Bearer not-a-token", "Basic Zm9vOmJhcg=="])
def test_api_calls_need_a_token_the_fake_issued(gcp, header):
    headers = {"Authorization": header} if header is not None else {}
    resp = requests.post(gcp.url("iam", f"/v1/projects/{gcp.build_project}/serviceAccounts"),
                         json={"accountId": "nobody-here"}, headers=headers, timeout=10)
    assert resp.status_code == 401
    assert resp.json()["error"]["status"] == "UNAUTHENTICATED"
    assert "WWW-Authenticate" in resp.headers


def test_storage_401_uses_the_gcs_error_shape(gcp):
    resp = requests.get(gcp.url("storage", "/storage/v1/b/anything"),
                        headers={"Authorization": "Bearer nope"}, timeout=10)
    assert resp.status_code == 401
    assert resp.json()["error"]["errors"][0]["reason"] == "authError"


def test_gapic_self_signed_jwt_access_is_accepted(gcp):
    # GAPIC transports switch service-account credentials to self-signed JWTs
    # ("always_use_jwt_access"); without scopes that JWT is the bearer token itself.
    creds = Credentials.from_service_account_file(str(gcp.fake.credentials["operator"]))
    client = gcp.secretmanager()
    client._transport._credentials = creds.with_always_use_jwt_access(True)
    mark = gcp.mark()
    client.list_secrets(parent=f"projects/{gcp.prow_project}")
    calls = gcp.fake.requests(since=mark)
    assert [e["service"] for e in calls] == ["secretmanager"]  # no token endpoint call
    assert calls[0]["principal"] == f"serviceAccount:{seed.OPERATOR}"


def test_insufficient_scopes_are_refused(gcp):
    session = gcp.session("operator", scopes=["https://www.googleapis.com/auth/devstorage.read_only"])
    resp = session.post(gcp.url("iam", f"/v1/projects/{gcp.build_project}/serviceAccounts"),
                        json={"accountId": gcp.unique("scoped")})
    assert resp.status_code == 403
    assert "insufficient authentication scopes" in resp.json()["error"]["message"]


def test_keys_create_returns_a_working_key_file(gcp, operator, tmp_path):
    email = f"{seed.OPERATOR}"
    resp = operator.post(gcp.url("iam", f"/v1/projects/-/serviceAccounts/{CRIER}/keys"), json={})
    assert resp.status_code == 200, resp.text
    key = resp.json()
    assert key["name"].startswith(f"projects/{gcp.prow_project}/serviceAccounts/{CRIER}/keys/")
    path = tmp_path / "key.json"
    path.write_bytes(base64.b64decode(key["privateKeyData"]))
    assert json.loads(path.read_text())["token_uri"] == gcp.url("oauth2", "/token")
    creds = Credentials.from_service_account_file(str(path), scopes=[CP])
    creds.refresh(google.auth.transport.requests.Request())
    info = requests.get(gcp.url("oauth2", "/tokeninfo"), params={"access_token": creds.token},
                        timeout=10).json()
    assert info["email"] == CRIER and email != CRIER
