"""GcpSession requests and retries, the policy read-modify-write loop, names."""

from __future__ import annotations

import json

import pytest
import requests

from ansible_collections.prow.build_cluster.plugins.module_utils import _gcp_iam, _gcp_session, _retry, _validate
from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError


@pytest.fixture(autouse=True)
def no_backoff_sleep(monkeypatch):
    # The retry helper's real waits are up to seconds; decisions, not timing, are tested here.
    monkeypatch.setattr(_retry, "RETRY_INITIAL_WAIT", 0.0)
    monkeypatch.setattr(_retry, "RETRY_MAX_WAIT", 0.0)


# Every test here starts without shared sessions (conftest.py).
pytestmark = pytest.mark.usefixtures("fresh_shared_sessions")


class FakeModule:
    def __init__(self, **params):
        self.params = dict({k: None for k in _gcp_session.GCP_AUTH_ARGSPEC}, **params)
        self.failed = None

    def fail_json(self, **kwargs):
        self.failed = kwargs
        raise SystemExit(kwargs["msg"])


def response(status, body=None, method="GET", url="https://x.googleapis.com/v1/thing"):
    resp = requests.Response()
    resp.status_code = status
    resp._content = json.dumps(body).encode() if body is not None else b""
    resp.request = requests.Request(method, url).prepare()
    return resp


class ScriptedHttp:
    """Stands in for AuthorizedSession: answers from a script and records every call."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def request(self, method, url, **kwargs):
        self.calls.append((method, url, kwargs.get("json"), kwargs.get("params")))
        answer = self.answers.pop(0)
        return answer(method, url, kwargs) if callable(answer) else answer


def session_with(*answers, endpoints=None):
    module = FakeModule(api_endpoints=endpoints)
    session = _gcp_session.GcpSession(module)
    session._shared["session"] = ScriptedHttp(*answers)
    return session


def google_error(status, message, reason):
    return response(status, {"error": {"code": status, "message": message, "status": reason}})


def test_request_retries_transient_errors_then_returns_json():
    s = session_with(google_error(503, "unavailable", "UNAVAILABLE"), google_error(429, "quota", "RESOURCE_EXHAUSTED"),
                     response(200, {"ok": True}))
    assert s.request("GET", "iam", "/v1/x") == {"ok": True}
    assert len(s.session.calls) == 3


def test_request_does_not_retry_a_client_error_and_keeps_googles_message():
    s = session_with(google_error(400, "Invalid 'accountId' field", "INVALID_ARGUMENT"))
    with pytest.raises(ApiError) as info:
        s.request("POST", "iam", "/v1/x", "service account x")
    err = info.value
    assert (err.status, err.reason, err.resource) == (400, "INVALID_ARGUMENT", "service account x")
    assert "Invalid 'accountId' field" in str(err)
    assert len(s.session.calls) == 1


def test_request_reads_cloud_storages_legacy_error_shape():
    body = {"error": {"code": 412, "message": "At least one of the pre-conditions you specified did not hold.",
                      "errors": [{"reason": "conditionNotMet"}]}}
    s = session_with(response(412, body))
    with pytest.raises(ApiError) as info:
        s.request("PUT", "storage", "/storage/v1/b/b/iam")
    assert info.value.reason == "conditionNotMet" and "pre-conditions" in info.value.message


def test_get_is_none_on_404_and_a_retry_budget_is_bounded():
    s = session_with(google_error(404, "not found", "NOT_FOUND"))
    assert s.get("iam", "/v1/x") is None
    s = session_with(*[google_error(503, "down", "UNAVAILABLE")] * (_retry.RETRY_ATTEMPTS + 1))
    with pytest.raises(ApiError):
        s.request("GET", "iam", "/v1/x")
    assert len(s.session.calls) == _retry.RETRY_ATTEMPTS


def test_endpoints_override_is_the_one_place_urls_come_from():
    s = session_with(response(200, {}), endpoints=json.dumps({"iam": "http://127.0.0.1:1/iam/"}))
    s.request("GET", "iam", "/v1/projects/p/serviceAccounts")
    assert s.session.calls[0][1] == "http://127.0.0.1:1/iam/v1/projects/p/serviceAccounts"
    with pytest.raises(ValueError, match="unknown services"):
        _gcp_session.resolve_endpoints({"bogus": "http://x"})


# ---------------------------------------------------------------- read-modify-write


class PolicyServer:
    """A policy endpoint with etags; ``interfere`` other writers land between a read and our write."""

    def __init__(self, policy, interfere=0, conflict_status=409):
        self.policy = policy
        self.interfere = interfere
        self.conflict_status = conflict_status
        self.writes = 0

    def __call__(self, method, url, kwargs):
        if url.endswith(":getIamPolicy") or method == "GET":
            return response(200, self.policy)
        sent = kwargs["json"]["policy"] if "policy" in (kwargs["json"] or {}) else kwargs["json"]
        if self.interfere:
            # Someone else adds their member after our read: our etag is now stale.
            self.interfere -= 1
            self.policy = dict(self.policy, etag=self.policy["etag"] + "x",
                               bindings=self.policy["bindings"] + [{"role": "roles/viewer", "members": [f"user:other{self.interfere}@x.com"]}])
        if sent.get("etag") != self.policy["etag"]:
            return google_error(self.conflict_status, "There were concurrent policy changes.", "ABORTED" if self.conflict_status == 409 else None)
        self.writes += 1
        self.policy = dict(sent, etag=sent["etag"] + "+")
        return response(200, self.policy)


def add(member):
    from ansible_collections.prow.build_cluster.plugins.module_utils import iam
    return lambda p: iam.add_member(p, "roles/storage.objectAdmin", member)


@pytest.mark.parametrize(("target", "status"), [
    (_gcp_iam.PolicyTarget.service_account("a@p-build.iam.gserviceaccount.com"), 409),
    (_gcp_iam.PolicyTarget.bucket("results"), 412),
])
def test_a_concurrent_writer_never_loses_a_binding(target, status):
    server = PolicyServer({"etag": "e1", "bindings": []}, interfere=2, conflict_status=status)
    s = session_with(*[server] * 20)
    _before, _after, changed = _gcp_iam.update_policy(s, target, add("user:me@x.com"))
    assert changed and server.writes == 1
    members = {m for b in server.policy["bindings"] for m in b["members"]}
    assert members == {"user:me@x.com", "user:other1@x.com", "user:other0@x.com"}


def test_no_write_when_nothing_changes_nor_in_check_mode():
    server = PolicyServer({"etag": "e1", "bindings": [{"role": "roles/storage.objectAdmin", "members": ["user:me@x.com"]}]})
    s = session_with(*[server] * 4)
    assert _gcp_iam.update_policy(s, _gcp_iam.PolicyTarget.project("p-build"), add("user:me@x.com"))[2] is False
    assert _gcp_iam.update_policy(s, _gcp_iam.PolicyTarget.project("p-build"), add("user:you@x.com"), check_mode=True)[2] is True
    assert server.writes == 0
    assert [c[0] for c in s.session.calls] == ["POST", "POST"]
    assert s.session.calls[0][2] == {"options": {"requestedPolicyVersion": 3}}


def test_a_member_iam_does_not_know_yet_is_retried_only_when_asked():
    unknown = google_error(400, "Service account new@p.iam.gserviceaccount.com does not exist.", "INVALID_ARGUMENT")
    server = PolicyServer({"etag": "e1", "bindings": []})
    s = session_with(server, unknown, server, server)
    _gcp_iam.update_policy(s, _gcp_iam.PolicyTarget.project("p-build"), add("user:me@x.com"), retry_on=_gcp_iam.member_not_yet_visible)
    assert server.writes == 1
    s = session_with(server, unknown)
    with pytest.raises(ApiError, match="does not exist"):
        _gcp_iam.update_policy(s, _gcp_iam.PolicyTarget.project("p-build"), add("user:new@x.com"))


# ---------------------------------------------------------------- names and checksums


@pytest.mark.parametrize(("check", "good", "bad"), [
    (_validate.project_id_error, ["my-build", "k8s-prow", "example.com:my-project"], ["My-Build", "abc", "1project", "proj-", "a" * 31]),
    (_validate.account_id_error, ["prowjob-default-sa", "abcdef"], ["abcde", "Prowjob", "sa-", "1sa-abc", "a" * 31, "my_sa_x"]),
    (_validate.bucket_name_error, ["my-build-project", "a.b.c", "k8s_results"], ["ab", "Upper", "-a-b", "goog-x", "my-google-b", "1.2.3.4", "a" * 64]),
    (_validate.secret_id_error, ["prow_build_cluster_kubeconfig_build-team", "A1"], ["", "has space", "a/b", "a" * 256]),
    (_validate.gke_name_error, ["build", "my-build-project"], ["Build", "1build", "build-", "a" * 41]),
    (_validate.location_error, ["us-west1-b", "us-west1", "northamerica-northeast1", "europe-west4-a"], ["us", "US-WEST1", "us-west1-bb", "west1"]),
])
def test_names_are_checked_with_a_message_that_says_the_rule(check, good, bad):
    for value in good:
        assert check(value) is None, value
    for value in bad:
        message = check(value)
        assert message and repr(value) in message, value


def test_gsa_emails():
    assert _validate.gsa_email_error("prowjob-default-sa@my-build.iam.gserviceaccount.com") is None
    assert _validate.gsa_email_error("123456789-compute@developer.gserviceaccount.com") is None
    assert _validate.gsa_email_error("user@example.com")
    assert _validate.gsa_email_error("serviceAccount:a@p.iam.gserviceaccount.com")


def test_labels_and_bucket_prefix():
    assert _validate.labels_error({"team": "build-a", "cost_center": ""}) is None
    assert "key" in _validate.labels_error({"Team": "x"})
    assert "value" in _validate.labels_error({"team": "A B"})
    assert _validate.normalize_bucket("gs://results/") == "results"


def test_sessions_with_the_same_auth_settings_share_credentials_and_connections():
    first = _gcp_session.GcpSession(FakeModule(auth_kind="accesstoken", access_token="token-a"))
    same = _gcp_session.GcpSession(FakeModule(auth_kind="accesstoken", access_token="token-a"))
    other = _gcp_session.GcpSession(FakeModule(auth_kind="accesstoken", access_token="token-b"))
    assert first.credentials is same.credentials
    assert first.session is same.session
    assert other.credentials is not first.credentials
    assert other.credentials.token == "token-b"


@pytest.fixture(name="header_echo")
def fixture_header_echo():
    """A local HTTP server that answers every POST with the Authorization header it received."""
    import http.server  # pylint: disable=import-outside-toplevel
    import threading  # pylint: disable=import-outside-toplevel

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802  pylint: disable=invalid-name
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps({"authorization": self.headers.get("Authorization")}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # pylint: disable=arguments-differ
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_call_as_someone_else_carries_their_token_alone(header_echo):
    # The caller's AuthorizedSession puts the caller's token in place of any Authorization
    # header given (how verify once proved the operator instead of the job GSA); as_bearer
    # sends the other token on a plain session, or none at all.
    session = _gcp_session.GcpSession(FakeModule(auth_kind="accesstoken", access_token="operator-token",
                                                 api_endpoints={"storage": header_echo}))

    def sent(**kwargs):
        return session.request("POST", "storage", "/o", json_body={}, **kwargs)["authorization"]

    assert sent() == "Bearer operator-token"
    assert sent(headers={"Authorization": "Bearer gsa-token"}) == "Bearer operator-token"
    assert sent(as_bearer="gsa-token") == "Bearer gsa-token"
    assert sent(as_bearer="gsa-token", headers={"authorization": "Bearer operator-token"}) == "Bearer gsa-token"
    assert sent(as_bearer=_gcp_session.ANONYMOUS) is None


def _key_info(project="p-build"):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return {"type": "service_account", "project_id": project, "private_key_id": "k1", "private_key": pem.decode(),
            "client_email": f"op@{project}.iam.gserviceaccount.com", "token_uri": "https://oauth2.example/token"}


def test_a_key_is_parsed_once_per_process_and_signs_as_google_auth_would(monkeypatch):
    from google.oauth2 import service_account

    monkeypatch.setattr(_gcp_session, "_SIGNERS", {})
    info, other = _key_info(), _key_info()
    first = _gcp_session.service_account_credentials(info, ["scope-a"])
    again = _gcp_session.service_account_credentials(info, ["scope-b"])
    assert first.signer is again.signer and len(_gcp_session._SIGNERS) == 1  # pylint: disable=protected-access
    assert _gcp_session.service_account_credentials(other, ["scope-a"]).signer is not first.signer
    reference = service_account.Credentials.from_service_account_info(info, scopes=["scope-b"])
    assert (again.service_account_email, again.project_id, again._token_uri, again.scopes) == (  # pylint: disable=protected-access
        reference.service_account_email, reference.project_id, reference._token_uri, reference.scopes)  # pylint: disable=protected-access
    assert again.signer.sign(b"x") == reference.signer.sign(b"x")  # RSA PKCS#1 v1.5 signatures are deterministic


def test_the_application_default_key_is_warmed_before_the_workers_fork(monkeypatch, tmp_path):
    monkeypatch.setattr(_gcp_session, "_SIGNERS", {})
    adc = tmp_path / "adc.json"
    adc.write_text(json.dumps(_key_info()))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    _gcp_session.warm_application_default_key()
    assert len(_gcp_session._SIGNERS) == 1  # pylint: disable=protected-access
    # Other kinds of application default credentials are google.auth.default's.
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "c"}))
    assert _gcp_session.application_default_key() is None


def test_a_key_without_its_fields_is_refused():
    with pytest.raises(ValueError, match="client_email, token_uri and private_key"):
        _gcp_session.service_account_credentials({"type": "service_account"}, [])
