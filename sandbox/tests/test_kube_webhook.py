"""A cluster started with ``authn_webhook_url`` accepts tokens the webhook vouches for.

This is the hook the GCP fake's GKE API uses so that "GKE" clusters accept Google access
tokens. The webhook here is a minimal TokenReview v1 endpoint on loopback.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from prow_sandbox import kube

GOOD_TOKEN = "ya29.sandbox-test-token"
USER = "robot@prow-sandbox.iam.gserviceaccount.com"


class _TokenReviewHandler(BaseHTTPRequestHandler):
    reviews: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.reviews.append(review)
        authenticated = review["spec"]["token"] == GOOD_TOKEN
        review["status"] = {"authenticated": authenticated}
        if authenticated:
            review["status"]["user"] = {"username": USER, "groups": ["system:authenticated"]}
        body = json.dumps(review).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def webhook_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenReviewHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/tokenreview"
    server.shutdown()
    server.server_close()


def _client_with_token(cluster: kube.Cluster, token: str) -> client.ApiClient:
    conf = client.Configuration(host=cluster.server)
    conf.ssl_ca_cert = str(cluster.dir / "pki" / "ca.crt")
    conf.api_key = {"authorization": token}
    conf.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(conf)


def test_webhook_authenticates_foreign_tokens(tmp_path, webhook_url):
    cluster = kube.start_cluster("gke-webhook", tmp_path, authn_webhook_url=webhook_url)
    try:
        with pytest.raises(ValueError, match="authn_webhook_url"):
            kube.start_cluster("gke-webhook", tmp_path)  # same name, different settings

        with _client_with_token(cluster, GOOD_TOKEN) as api:
            who = client.AuthenticationV1Api(api).create_self_subject_review(
                client.V1SelfSubjectReview())
            assert who.status.user_info.username == USER
            # Authenticated is not authorized: RBAC still applies to webhook users.
            with pytest.raises(ApiException) as err:
                client.CoreV1Api(api).list_namespace()
            assert err.value.status == 403
        assert _TokenReviewHandler.reviews[-1]["apiVersion"] == "authentication.k8s.io/v1"

        with _client_with_token(cluster, "ya29.revoked") as api, pytest.raises(ApiException) as err:
            client.AuthenticationV1Api(api).create_self_subject_review(client.V1SelfSubjectReview())
        assert err.value.status == 401
    finally:
        kube.stop_cluster("gke-webhook", tmp_path)
