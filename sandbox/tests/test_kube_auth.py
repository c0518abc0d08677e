"""Service-account tokens, RBAC and TLS on a real sandbox apiserver.

The tests mint TokenRequest tokens and then use *only* those tokens (plus the cluster CA)
in fresh kubeconfigs, through both the official Python client and kubectl, so they check
what GKE-style bound tokens really allow.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from urllib3.exceptions import MaxRetryError, SSLError

from prow_sandbox import pki

TOKEN_SECONDS = 1200  # the API's minimum is 600; anything but 3607 is granted as asked


def _token(api: client.ApiClient, cluster, namespace: str, sa: str) -> client.V1TokenRequest:
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=sa)))
    spec = client.V1TokenRequestSpec(audiences=[cluster.issuer], expiration_seconds=TOKEN_SECONDS)
    return core.create_namespaced_service_account_token(
        sa, namespace, client.AuthenticationV1TokenRequest(spec=spec))


def _token_kubeconfig(path: Path, cluster, token: str, ca_data: str | None = None) -> Path:
    """A kubeconfig holding nothing but the server, a CA and the bearer token."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {
            "server": cluster.server, "certificate-authority-data": ca_data or cluster.ca_data}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }), encoding="utf-8")
    return path


def _claims(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _client(kubeconfig: Path) -> client.ApiClient:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    assert api.configuration.verify_ssl
    return api


def test_cluster_admin_token_in_fresh_kubeconfig(kube_client, kube_cluster, namespace, tmp_path,
                                                  kubectl):
    rbac = client.RbacAuthorizationV1Api(kube_client)
    binding = f"{namespace}-robot"  # cluster-scoped: unique, and removed at the end
    rbac.create_cluster_role_binding(client.V1ClusterRoleBinding(
        metadata=client.V1ObjectMeta(name=binding),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole",
                                  name="cluster-admin"),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="robot", namespace=namespace)],
    ))
    try:
        before = datetime.now(timezone.utc)
        granted = _token(kube_client, kube_cluster, namespace, "robot")

        # The requested lifetime is granted exactly, in the status and in the JWT itself.
        lifetime = (granted.status.expiration_timestamp - before).total_seconds()
        assert TOKEN_SECONDS - 30 <= lifetime <= TOKEN_SECONDS + 5
        claims = _claims(granted.status.token)
        assert claims["exp"] - claims["iat"] == TOKEN_SECONDS
        assert claims["iss"] == kube_cluster.issuer
        assert claims["sub"] == f"system:serviceaccount:{namespace}:robot"

        # TokenReview (as a webhook consumer would call it) accepts the token.
        review = client.AuthenticationV1Api(kube_client).create_token_review(
            client.V1TokenReview(spec=client.V1TokenReviewSpec(token=granted.status.token)))
        assert review.status.authenticated
        assert review.status.user.username == f"system:serviceaccount:{namespace}:robot"

        kubeconfig = _token_kubeconfig(tmp_path / "robot.kubeconfig", kube_cluster,
                                       granted.status.token)
        user = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]
        assert set(user) == {"token"}, "only the token may authenticate this client"

        # Official client, token only.
        with _client(kubeconfig) as robot:
            who = client.AuthenticationV1Api(robot).create_self_subject_review(
                client.V1SelfSubjectReview())
            assert who.status.user_info.username == f"system:serviceaccount:{namespace}:robot"
            pods = client.CoreV1Api(robot).list_pod_for_all_namespaces()
            assert pods.items == []  # no nodes, no pods; the point is the 200
            ssar = client.AuthorizationV1Api(robot).create_self_subject_access_review(
                client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=client.V1ResourceAttributes(
                        namespace="test-pods", verb="create", resource="pods"))))
            assert ssar.status.allowed

        # kubectl, token only.
        assert kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}",
                       kubeconfig=kubeconfig).stdout == f"system:serviceaccount:{namespace}:robot"
        kubectl("get", "pods", "--all-namespaces", kubeconfig=kubeconfig)
        assert kubectl("auth", "can-i", "create", "pods", "-n", "test-pods",
                       kubeconfig=kubeconfig).stdout.strip() == "yes"
    finally:
        rbac.delete_cluster_role_binding(binding)


def test_unbound_service_account_token_is_forbidden(kube_client, kube_cluster, namespace, tmp_path,
                                                    kubectl):
    token = _token(kube_client, kube_cluster, namespace, "nobody").status.token
    kubeconfig = _token_kubeconfig(tmp_path / "nobody.kubeconfig", kube_cluster, token)

    with _client(kubeconfig) as nobody, pytest.raises(ApiException) as err:
        client.CoreV1Api(nobody).list_pod_for_all_namespaces()
    assert err.value.status == 403

    result = kubectl("get", "pods", "--all-namespaces", kubeconfig=kubeconfig, check=False)
    assert result.returncode != 0 and "Forbidden" in result.stderr
    result = kubectl("auth", "can-i", "create", "pods", "-n", "test-pods",
                     kubeconfig=kubeconfig, check=False)
    assert result.stdout.strip() == "no"


def test_token_of_deleted_service_account_is_unauthorized(kube_client, kube_cluster, namespace,
                                                          tmp_path, kubectl):
    token = _token(kube_client, kube_cluster, namespace, "ghost").status.token
    kubeconfig = _token_kubeconfig(tmp_path / "ghost.kubeconfig", kube_cluster, token)
    with _client(kubeconfig) as ghost:
        auth = client.AuthenticationV1Api(ghost)
        who = auth.create_self_subject_review(client.V1SelfSubjectReview())
        assert who.status.user_info.username == f"system:serviceaccount:{namespace}:ghost"

        client.CoreV1Api(kube_client).delete_namespaced_service_account("ghost", namespace)
        # Bound tokens are checked against the live ServiceAccount, but the apiserver
        # caches successful authentications for about 10 s (measured), hence the poll.
        deadline = time.monotonic() + 30
        while True:
            try:
                auth.create_self_subject_review(client.V1SelfSubjectReview())
            except ApiException as exc:
                assert exc.status == 401
                break
            assert time.monotonic() < deadline, "token still accepted after its SA was deleted"
            time.sleep(0.2)

    result = kubectl("get", "pods", "-n", namespace, kubeconfig=kubeconfig, check=False)
    assert result.returncode != 0
    assert "Unauthorized" in result.stderr or "must be logged in" in result.stderr


def test_tls_is_verified(kube_cluster, tmp_path, kubectl):
    admin = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    cluster_entry = admin["clusters"][0]["cluster"]
    assert cluster_entry["certificate-authority-data"] == kube_cluster.ca_data
    assert "insecure-skip-tls-verify" not in cluster_entry

    # Same credentials, but a CA that did not sign the serving certificate.
    wrong_ca = base64.b64encode(pki.make_ca("not-the-cluster-ca").cert_pem).decode()
    cluster_entry["certificate-authority-data"] = wrong_ca
    wrong = tmp_path / "wrong-ca.kubeconfig"
    wrong.write_text(yaml.safe_dump(admin), encoding="utf-8")

    api = _client(wrong)
    api.configuration.retries = False
    with api, pytest.raises(MaxRetryError) as err:
        client.VersionApi(api).get_code()
    assert isinstance(err.value.reason, SSLError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value.reason)

    result = kubectl("version", kubeconfig=wrong, check=False)
    assert result.returncode != 0
    assert "certificate signed by unknown authority" in result.stderr

    # The same calls with the real CA succeed, so the failures above are about the CA.
    with _client(kube_cluster.kubeconfig) as good:
        assert client.VersionApi(good).get_code().git_version.startswith("v1.")
    kubectl("version")
