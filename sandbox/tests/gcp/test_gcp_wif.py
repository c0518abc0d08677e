"""Workload Identity Federation: pools and OIDC providers through IAM's REST API (google-auth
AuthorizedSession), and tokens exchanged by google-auth's own ``identity_pool.Credentials``
(a file-sourced subject token) used with google-cloud-storage.

Most subject tokens here are signed by a key the test makes (its JWKS uploaded to the
provider); one comes from a real kube-apiserver's TokenRequest, as a non-GKE build cluster's
job pod would hold it.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import google.auth.exceptions
import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from google.api_core import exceptions
from google.auth import identity_pool
from google.cloud import storage

from prow_sandbox.gcp.seed import BUILD_PROJECT, CRIER
from prow_sandbox.gcp.testing import GcpHandle, kube_sandbox_available

NUMBER = "100000000002"  # prow-sandbox-build
ISSUER = "https://issuer.example.test"
CP = "https://www.googleapis.com/auth/cloud-platform"
POOLS = f"/v1/projects/{BUILD_PROJECT}/locations/global/workloadIdentityPools"


class Issuer:
    """An OIDC issuer of the test's own: an RSA key, its JWKS, and tokens signed with it."""

    def __init__(self, issuer: str = ISSUER) -> None:
        self.issuer = issuer
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex

    def jwks(self) -> str:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return json.dumps({"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]})

    def token(self, audience: str, *, sub: str = "system:serviceaccount:test-pods:job",
              lifetime: int = 600, kid: str | None = None, issuer: str | None = None,
              **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": issuer or self.issuer, "sub": sub, "aud": audience, "iat": now - 60,
                "exp": now + lifetime, **claims}
        return jwt.encode(body, self.key, algorithm="RS256", headers={"kid": kid or self.kid})


def done(session, gcp: GcpHandle, op: dict[str, Any]) -> dict[str, Any]:
    """Poll an IAM operation once: the call's answer is not done, the first GET is."""
    assert op.get("done") is not True and "/operations/" in op["name"]
    polled = session.get(gcp.url("iam", f"/v1/{op['name']}"))
    assert polled.status_code == 200, polled.text
    assert polled.json()["done"] is True
    return polled.json()["response"]


def make_pool(session, gcp: GcpHandle, **body: Any) -> str:
    pool_id = gcp.unique("pool")
    resp = session.post(gcp.url("iam", POOLS), params={"workloadIdentityPoolId": pool_id},
                        json=body)
    assert resp.status_code == 200, resp.text
    done(session, gcp, resp.json())
    return pool_id


def make_provider(session, gcp: GcpHandle, pool_id: str, issuer: Issuer,
                  **overrides: Any) -> str:
    provider_id = gcp.unique("prov")
    body = {"oidc": {"issuerUri": issuer.issuer, "jwksJson": issuer.jwks()},
            "attributeMapping": {"google.subject": "assertion.sub",
                                 "attribute.namespace": "assertion['kubernetes.io'].namespace"},
            **overrides}
    resp = session.post(gcp.url("iam", f"{POOLS}/{pool_id}/providers"),
                        params={"workloadIdentityPoolProviderId": provider_id}, json=body)
    assert resp.status_code == 200, resp.text
    done(session, gcp, resp.json())
    return provider_id


def audience(pool_id: str, provider_id: str) -> str:
    return (f"//iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/"
            f"{pool_id}/providers/{provider_id}")


def pool_member(pool_id: str, rest: str, kind: str = "principal") -> str:
    return (f"{kind}://iam.googleapis.com/projects/{NUMBER}/locations/global/"
            f"workloadIdentityPools/{pool_id}/{rest}")


def federated(gcp: GcpHandle, tmp_path: Path, aud: str, subject_token: str) -> Any:
    """google-auth external-account credentials as a job's credential config names them."""
    token_file = tmp_path / f"token-{uuid.uuid4().hex}"
    token_file.write_text(subject_token)
    return identity_pool.Credentials.from_info({
        "type": "external_account", "audience": aud,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": gcp.url("sts", "/v1/token"),
        "credential_source": {"file": str(token_file)}}).with_scopes([CP])


def sts(gcp: GcpHandle, aud: str, subject_token: str) -> requests.Response:
    return requests.post(gcp.url("sts", "/v1/token"), timeout=10, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "subject_token": subject_token, "audience": aud, "scope": CP})


@pytest.fixture
def bucket(gcp):
    client = gcp.storage()
    b = client.bucket(gcp.unique("wif-results"))
    b.iam_configuration.uniform_bucket_level_access_enabled = True
    return client.create_bucket(b)


def set_members(bucket, role: str, members: set[str]) -> None:
    policy = bucket.get_iam_policy(requested_policy_version=3)
    policy.bindings = [b for b in policy.bindings if b["role"] != role]
    if members:
        policy.bindings.append({"role": role, "members": members})
    bucket.set_iam_policy(policy)


def upload(gcp: GcpHandle, creds: Any, bucket_name: str, name: str = "logs/1/started.json") -> None:
    client = storage.Client(project=BUILD_PROJECT, credentials=creds,
                            client_options={"api_endpoint": gcp.endpoints["storage"]})
    client.bucket(bucket_name).blob(f"{name}-{uuid.uuid4().hex}").upload_from_string(b"{}")


# ---------------------------------------------------------------- pools and providers


def test_pool_crud_operations_and_soft_delete(gcp, operator):
    pool_id = gcp.unique("pool")
    create = operator.post(gcp.url("iam", POOLS), params={"workloadIdentityPoolId": pool_id},
                           json={"displayName": "jobs", "description": "build cluster jobs"})
    assert create.status_code == 200
    created = done(operator, gcp, create.json())
    name = f"projects/{NUMBER}/locations/global/workloadIdentityPools/{pool_id}"
    assert created["@type"] == "type.googleapis.com/google.iam.v1.WorkloadIdentityPool"
    assert created["name"] == name and created["state"] == "ACTIVE"
    url = gcp.url("iam", f"{POOLS}/{pool_id}")
    assert operator.get(url).json() == {"name": name, "state": "ACTIVE", "displayName": "jobs",
                                        "description": "build cluster jobs"}

    again = operator.post(gcp.url("iam", POOLS), params={"workloadIdentityPoolId": pool_id},
                          json={})
    assert again.status_code == 409 and again.json()["error"]["status"] == "ALREADY_EXISTS"

    patched = operator.patch(url, params={"updateMask": "displayName"},
                             json={"displayName": "renamed", "description": "ignored"})
    assert done(operator, gcp, patched.json())["displayName"] == "renamed"
    assert operator.get(url).json()["description"] == "build cluster jobs"
    no_mask = operator.patch(url, json={"displayName": "x"})
    assert no_mask.status_code == 400 and no_mask.json()["error"]["status"] == "INVALID_ARGUMENT"
    bad_mask = operator.patch(url, params={"updateMask": "name"}, json={})
    assert bad_mask.status_code == 400

    listed = operator.get(gcp.url("iam", POOLS)).json()["workloadIdentityPools"]
    assert name in [p["name"] for p in listed]

    deleted = done(operator, gcp, operator.delete(url).json())
    assert deleted["state"] == "DELETED" and "expireTime" in deleted
    assert operator.get(url).json()["state"] == "DELETED"
    listed = operator.get(gcp.url("iam", POOLS)).json().get("workloadIdentityPools", [])
    assert name not in [p["name"] for p in listed]
    shown = operator.get(gcp.url("iam", POOLS), params={"showDeleted": "true"}).json()
    assert name in [p["name"] for p in shown["workloadIdentityPools"]]
    reuse = operator.post(gcp.url("iam", POOLS), params={"workloadIdentityPoolId": pool_id},
                          json={})
    assert reuse.status_code == 409, "a soft-deleted pool's ID stays taken"
    assert operator.patch(url, params={"updateMask": "displayName"}, json={}).status_code == 400

    restored = done(operator, gcp, operator.post(f"{url}:undelete", json={}).json())
    assert restored["state"] == "ACTIVE" and "expireTime" not in restored


def test_pool_errors_in_googles_shape(gcp, operator):
    missing = operator.get(gcp.url("iam", f"{POOLS}/no-such-pool"))
    assert missing.status_code == 404
    assert missing.json()["error"] == {"code": 404, "message": "Requested entity was not found.",
                                       "status": "NOT_FOUND"}
    for bad_id in ("abc", "UPPER-case", "gcp-reserved", "x" * 33):
        resp = operator.post(gcp.url("iam", POOLS), params={"workloadIdentityPoolId": bad_id},
                             json={})
        assert resp.status_code == 400 and resp.json()["error"]["status"] == "INVALID_ARGUMENT", bad_id
    elsewhere = operator.post(gcp.url("iam", POOLS.replace("global", "us-east1")),
                              params={"workloadIdentityPoolId": gcp.unique("pool")}, json={})
    assert elsewhere.status_code == 400
    missing_op = operator.get(gcp.url("iam", f"{POOLS}/{make_pool(operator, gcp)}/operations/nope"))
    assert missing_op.status_code == 404


def test_callers_without_a_role_are_denied_before_existence_is_revealed(gcp):
    crier = gcp.session(CRIER)
    for resp in (crier.get(gcp.url("iam", f"{POOLS}/no-such-pool")),
                 crier.post(gcp.url("iam", POOLS), params={"workloadIdentityPoolId": "some-pool"},
                            json={})):
        assert resp.status_code == 403
        details = resp.json()["error"]["details"][0]
        assert details["reason"] == "IAM_PERMISSION_DENIED"
        assert details["metadata"]["permission"].startswith("iam.workloadIdentityPools.")


def test_provider_crud_and_validation(gcp, operator):
    issuer = Issuer()
    pool_id = make_pool(operator, gcp)
    provider_id = make_provider(operator, gcp, pool_id, issuer,
                                attributeCondition="attribute.namespace == 'test-pods'")
    url = gcp.url("iam", f"{POOLS}/{pool_id}/providers/{provider_id}")
    got = operator.get(url).json()
    assert got["name"].startswith(f"projects/{NUMBER}/locations/global/")
    assert got["oidc"]["issuerUri"] == ISSUER and got["oidc"]["jwksJson"] == issuer.jwks()
    assert got["attributeMapping"]["google.subject"] == "assertion.sub"
    assert "allowedAudiences" not in got["oidc"]

    patched = operator.patch(url, params={"updateMask": "oidc.allowedAudiences,disabled"},
                             json={"oidc": {"allowedAudiences": ["https://jobs.example"]},
                                   "disabled": True})
    after = done(operator, gcp, patched.json())
    assert after["oidc"]["allowedAudiences"] == ["https://jobs.example"]
    assert after["oidc"]["jwksJson"] == issuer.jwks() and after["disabled"] is True
    listed = operator.get(gcp.url("iam", f"{POOLS}/{pool_id}/providers")).json()
    assert [p["name"] for p in listed["workloadIdentityPoolProviders"]] == [got["name"]]

    def create(body: dict[str, Any]) -> requests.Response:
        return operator.post(gcp.url("iam", f"{POOLS}/{pool_id}/providers"),
                             params={"workloadIdentityPoolProviderId": gcp.unique("prov")},
                             json=body)

    good = {"oidc": {"issuerUri": ISSUER}, "attributeMapping": {"google.subject": "assertion.sub"}}
    for broken, words in (
            ({**good, "attributeMapping": {"attribute.x": "assertion.x"}}, "google.subject"),
            ({**good, "oidc": {"issuerUri": "http://plain.example"}}, "https"),
            ({**good, "oidc": {"issuerUri": ISSUER, "jwksJson": "{\"keys\": 1}"}}, "JWK"),
            ({**good, "attributeMapping": {"google.subject": "assertion.sub + 'x'"}}, "sandbox"),
            ({"attributeMapping": good["attributeMapping"]}, "OIDC")):
        resp = create(broken)
        assert resp.status_code == 400, broken
        assert resp.json()["error"]["status"] == "INVALID_ARGUMENT" and words in resp.text
    duplicate = operator.post(gcp.url("iam", f"{POOLS}/{pool_id}/providers"),
                              params={"workloadIdentityPoolProviderId": provider_id}, json=good)
    assert duplicate.status_code == 409
    assert operator.get(f"{url}-missing").status_code == 404

    assert done(operator, gcp, operator.delete(url).json())["state"] == "DELETED"
    assert operator.get(gcp.url("iam", f"{POOLS}/{pool_id}/providers")).json() == {}
    assert done(operator, gcp, operator.post(f"{url}:undelete", json={}).json())["state"] == "ACTIVE"


# ---------------------------------------------------------------- STS and direct access


def test_federated_token_writes_where_its_principal_is_granted(gcp, operator, bucket, tmp_path):
    issuer = Issuer()
    pool_id = make_pool(operator, gcp)
    provider_id = make_provider(operator, gcp, pool_id, issuer)
    aud = audience(pool_id, provider_id)
    subject = "system:serviceaccount:test-pods:job"
    token = issuer.token(f"https:{aud}", sub=subject, **{"kubernetes.io": {"namespace": "test-pods"}})
    creds = federated(gcp, tmp_path, aud, token)

    with pytest.raises(exceptions.Forbidden):
        upload(gcp, creds, bucket.name)
    principal = pool_member(pool_id, f"subject/{subject}")
    set_members(bucket, "roles/storage.objectCreator", {principal})
    upload(gcp, creds, bucket.name)
    assert gcp.requests(service="storage", path="/upload/")[-1]["principal"] == principal
    assert gcp.requests(service="sts")[-1]["status"] == 200

    # The grant removed: refused again, with the same token.
    set_members(bucket, "roles/storage.objectCreator", set())
    with pytest.raises(exceptions.Forbidden):
        upload(gcp, creds, bucket.name)

    # Principal sets: the whole pool, and a mapped attribute's value.
    for member in (pool_member(pool_id, "*", "principalSet"),
                   pool_member(pool_id, "attribute.namespace/test-pods", "principalSet")):
        set_members(bucket, "roles/storage.objectAdmin", {member})
        upload(gcp, creds, bucket.name)
    set_members(bucket, "roles/storage.objectAdmin",
                {pool_member(pool_id, "attribute.namespace/other", "principalSet")})
    with pytest.raises(exceptions.Forbidden):
        upload(gcp, creds, bucket.name)


def test_bucket_policies_refuse_malformed_pool_members(gcp, bucket):
    for member in ("principal://iam.googleapis.com/projects/prow-sandbox-build/locations/global/"
                   "workloadIdentityPools/p/subject/s",
                   pool_member("some-pool", "nothing/here", "principalSet"),
                   pool_member("some-pool", "*", "principal")):
        with pytest.raises(exceptions.BadRequest, match="Invalid principal identifier"):
            set_members(bucket, "roles/storage.objectCreator", {member})


def test_sts_refuses_tokens_the_provider_does_not_accept(gcp, operator):
    issuer = Issuer()
    pool_id = make_pool(operator, gcp)
    provider_id = make_provider(operator, gcp, pool_id, issuer,
                                attributeCondition="attribute.namespace == 'test-pods'")
    aud = audience(pool_id, provider_id)
    ns = {"kubernetes.io": {"namespace": "test-pods"}}
    assert sts(gcp, aud, issuer.token(aud, **ns)).status_code == 200
    assert sts(gcp, aud, issuer.token(f"https:{aud}", **ns)).status_code == 200

    for token, words in (
            (issuer.token("https://someone-else", **ns), "audience in ID Token"),
            (issuer.token(aud, lifetime=-120, **ns), "expired"),
            (issuer.token(aud, kid="unknown-kid", **ns), "key ID"),
            (issuer.token(aud, issuer="https://other.example", **ns), "issuer in ID Token"),
            (Issuer().token(aud, **ns), "key ID"),
            ("not-a-jwt", "Unable to parse")):
        resp = sts(gcp, aud, token)
        assert resp.status_code == 400, words
        assert resp.json()["error"] == "invalid_grant", resp.text
        assert words in resp.json()["error_description"]
        assert set(resp.json()) == {"error", "error_description"}

    rejected = sts(gcp, aud, issuer.token(aud, **{"kubernetes.io": {"namespace": "other"}}))
    assert rejected.status_code == 400
    assert rejected.json() == {"error": "unauthorized_client", "error_description":
                               "The given credential is rejected by the attribute condition."}
    no_subject = sts(gcp, aud, issuer.token(aud, sub="", **ns))
    assert no_subject.json()["error"] == "invalid_grant"

    # Unknown, disabled and deleted providers and pools are not a target.
    url = gcp.url("iam", f"{POOLS}/{pool_id}/providers/{provider_id}")
    for aud_, breaks in ((aud.replace(provider_id, "prov-missing"), None),
                         (aud, lambda: operator.patch(url, params={"updateMask": "disabled"},
                                                      json={"disabled": True})),
                         (aud, lambda: operator.patch(url, params={"updateMask": "disabled"},
                                                      json={"disabled": False})
                          and operator.delete(gcp.url("iam", f"{POOLS}/{pool_id}")))):
        if breaks:
            assert breaks().status_code == 200
        resp = sts(gcp, aud_, issuer.token(aud_, **ns))
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_target"


def test_google_auth_reports_an_sts_refusal(gcp, operator, tmp_path):
    issuer = Issuer()
    pool_id = make_pool(operator, gcp)
    aud = audience(pool_id, make_provider(operator, gcp, pool_id, issuer))
    creds = federated(gcp, tmp_path, aud, issuer.token(aud, lifetime=-120))
    import google.auth.transport.requests
    with pytest.raises(google.auth.exceptions.OAuthError, match="invalid_grant"):
        creds.refresh(google.auth.transport.requests.Request())


def test_provider_without_keys_needs_a_reachable_issuer(gcp, operator):
    # An issuer that refuses at once: a name to resolve (issuer.invalid) can take longer than
    # any client timeout where DNS is slow or absent, and requests' timeout does not cover DNS.
    issuer = Issuer("https://127.0.0.1:1")
    pool_id = make_pool(operator, gcp)
    provider_id = make_provider(operator, gcp, pool_id, issuer,
                                oidc={"issuerUri": issuer.issuer})
    aud = audience(pool_id, provider_id)
    resp = sts(gcp, aud, issuer.token(aud))
    assert resp.status_code == 400
    assert resp.json()["error_description"] == "Error connecting to the given credential's issuer."


@pytest.mark.skipif(kube_sandbox_available() is not None, reason=str(kube_sandbox_available()))
def test_kube_apiserver_token_exchanged_for_a_bucket_write(gcp, operator, bucket, tmp_path,
                                                           kube_client, namespace):
    """A build cluster known only by its kubeconfig: its issuer is not public, so its JWKS is
    uploaded; a TokenRequest token with the provider's audience is the job's credential."""
    from kubernetes import client as k8s

    discovery = kube_client.call_api("/.well-known/openid-configuration", "GET",
                                      auth_settings=["BearerToken"], response_type="object",
                                      _return_http_data_only=True)
    jwks = kube_client.call_api("/openid/v1/jwks", "GET", auth_settings=["BearerToken"],
                                response_type="object", _return_http_data_only=True)
    pool_id = make_pool(operator, gcp)
    provider_id = gcp.unique("prov")
    created = operator.post(gcp.url("iam", f"{POOLS}/{pool_id}/providers"),
                            params={"workloadIdentityPoolProviderId": provider_id}, json={
                                "oidc": {"issuerUri": discovery["issuer"],
                                         "jwksJson": json.dumps(jwks)},
                                "attributeMapping": {"google.subject": "assertion.sub"}})
    assert created.status_code == 200, created.text
    aud = audience(pool_id, provider_id)

    core = k8s.CoreV1Api(kube_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "job-sa"}})

    def token_for(audiences: list[str]) -> str:
        return core.create_namespaced_service_account_token("job-sa", namespace, {
            "spec": {"audiences": audiences, "expirationSeconds": 3600}}).status.token

    subject = f"system:serviceaccount:{namespace}:job-sa"
    set_members(bucket, "roles/storage.objectAdmin", {pool_member(pool_id, f"subject/{subject}")})
    upload(gcp, federated(gcp, tmp_path, aud, token_for([f"https:{aud}"])), bucket.name)
    # The apiserver's own audience is not the provider's: refused before any bucket call.
    with pytest.raises(google.auth.exceptions.OAuthError, match="audience"):
        upload(gcp, federated(gcp, tmp_path, aud, token_for([discovery["issuer"]])), bucket.name)
    set_members(bucket, "roles/storage.objectAdmin", set())
    with pytest.raises(exceptions.Forbidden):
        upload(gcp, federated(gcp, tmp_path, aud, token_for([f"https:{aud}"])), bucket.name)
