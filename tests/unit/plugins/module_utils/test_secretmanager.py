"""secretmanager: the shared client, google.api_core errors as ApiError, checksums."""

from __future__ import annotations

import json

import pytest
import requests
from google.api_core import exceptions as api_exceptions

from ansible_collections.prow.build_cluster.plugins.module_utils import _gcp_session, secretmanager
from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError


# Every test here starts without shared sessions (conftest.py).
pytestmark = pytest.mark.usefixtures("fresh_shared_sessions")


class FakeModule:
    def __init__(self, **params):
        self.params = dict({k: None for k in _gcp_session.GCP_AUTH_ARGSPEC}, **params)

    def fail_json(self, **kwargs):
        raise SystemExit(kwargs["msg"])


def http_error(status, body, method="GET", url="https://secretmanager.googleapis.com/v1/projects/p/secrets/s/versions/latest:access"):
    resp = requests.Response()
    resp.status_code = status
    resp._content = json.dumps(body).encode()
    resp.request = requests.Request(method, url).prepare()
    return api_exceptions.from_http_response(resp)


def test_crc32c_matches_the_castagnoli_check_value():
    assert secretmanager.crc32c(b"123456789") == 0xE3069283
    assert secretmanager.crc32c(b"") == 0


def test_one_client_per_process_and_auth_settings_on_the_sessions_credentials():
    first = secretmanager.SecretManager(_gcp_session.GcpSession(FakeModule(auth_kind="accesstoken", access_token="a")))
    same = secretmanager.SecretManager(_gcp_session.GcpSession(FakeModule(auth_kind="accesstoken", access_token="a")))
    other = secretmanager.SecretManager(_gcp_session.GcpSession(FakeModule(auth_kind="accesstoken", access_token="b")))
    assert first.client is same.client
    assert other.client is not first.client
    # The very credentials object of the session (one token, one impersonation), not a copy.
    assert first.client._transport._credentials is first.gcp.credentials
    endpoint = _gcp_session.GcpSession(FakeModule(auth_kind="accesstoken", access_token="a",
                                                  api_endpoints={"secretmanager": "http://127.0.0.1:9/secretmanager"}))
    redirected = secretmanager.SecretManager(endpoint).client
    assert redirected is not first.client and redirected._transport._host == "http://127.0.0.1:9/secretmanager"


def test_google_errors_become_api_errors_with_googles_message():
    disabled = "Secret Version [projects/1/secrets/s/versions/3] is in DISABLED state."
    err = secretmanager.api_error(
        http_error(400, {"error": {"code": 400, "message": disabled, "status": "FAILED_PRECONDITION"}}), "secret version s", "GET")
    assert isinstance(err, secretmanager.SecretVersionUnreadable) and isinstance(err, ApiError)
    assert (err.status, err.reason, err.message) == (400, "FAILED_PRECONDITION", disabled)
    assert (err.version, err.state) == ("projects/1/secrets/s/versions/3", "DISABLED") and "new version" in err.fix

    denied = secretmanager.api_error(http_error(403, {"error": {
        "code": 403, "message": "Permission 'secretmanager.versions.access' denied", "status": "PERMISSION_DENIED"}}), "r", "GET")
    assert not isinstance(denied, secretmanager.SecretVersionUnreadable) and (denied.status, denied.reason) == (403, "PERMISSION_DENIED")
    assert denied.message == "Permission 'secretmanager.versions.access' denied"  # without the client's "GET url:" prefix
    assert denied.body["error"]["status"] == "PERMISSION_DENIED" and not denied.transient

    unavailable = secretmanager.api_error(http_error(503, {"error": {"code": 503, "message": "down", "status": "UNAVAILABLE"}}), "r", "GET")
    assert unavailable.transient
    lost = secretmanager.api_error(requests.ConnectionError("refused"), "r", "GET")
    assert lost.status is None and lost.transient
    assert secretmanager.api_error(KeyError("a bug"), "r", "GET") is None  # not an API failure: re-raised as is
