"""Unit tests for K8sClient.is_gke (connected with gke:, or a GKE server version) and the gke: connection."""

from __future__ import annotations

import base64
import json
import os

import pytest
import requests

from ansible_collections.prow.build_cluster.plugins.module_utils import _gcp_session, k8s
from ansible_collections.prow.build_cluster.plugins.module_utils.k8s import K8sClient


class Api:
    configuration = None


class Client(K8sClient):
    def __init__(self, version, gke_cluster=None):
        super().__init__(module=None, api_client=Api(), gke_cluster=gke_cluster)
        self.version = version
        self.calls = 0

    def request(self, method, path, body=None, **kwargs):
        self.calls += 1
        assert (method, path) == ("GET", "/version")
        return {"gitVersion": self.version}


@pytest.mark.parametrize(("version", "gke"), [
    ("v1.33.5-gke.1308000", True), ("v1.35.0", False), ("v1.30.1-eks-1", False), ("", False),
])
def test_is_gke_by_version(version, gke):
    client = Client(version)
    assert client.is_gke() is gke
    assert client.is_gke() is gke
    assert client.calls == 1, "the version is read once"


def test_gke_connection_needs_no_call():
    client = Client("v1.35.0", gke_cluster={"endpoint": "1.2.3.4"})
    assert client.is_gke() is True
    assert client.calls == 0


class GkeModule:
    """What k8s.connect uses of a module, connecting with gke: and an access token."""

    def __init__(self):
        self.params = dict({k: None for k in {**k8s.K8S_AUTH_ARGSPEC, **_gcp_session.GCP_AUTH_ARGSPEC}},
                           gke="projects/p/locations/us-central1/clusters/build", auth_kind="accesstoken",
                           access_token="token-a")
        self.no_log_values = set()
        self.cleanup_files = []

    def add_cleanup_file(self, path):
        self.cleanup_files.append(path)

    def fail_json(self, **kwargs):
        raise AssertionError(kwargs["msg"])


class OneCluster:
    """Stands in for the HTTP session: answers GETs of the GKE cluster and counts them."""

    def __init__(self):
        self.gets = 0

    def request(self, method, url, **_kwargs):
        assert method == "GET" and url.endswith("/v1/projects/p/locations/us-central1/clusters/build"), url
        self.gets += 1
        answer = requests.Response()
        answer.status_code = 200
        answer._content = json.dumps({"endpoint": "10.0.0.1", "status": "RUNNING",
                                      "masterAuth": {"clusterCaCertificate": base64.b64encode(b"ca").decode()}}).encode()
        return answer


def test_connections_to_the_same_gke_cluster_in_one_process_look_it_up_once(monkeypatch):
    monkeypatch.setattr(_gcp_session, "_SHARED", {})
    http = OneCluster()
    _gcp_session.GcpSession(GkeModule())._shared["session"] = http
    first, second = GkeModule(), GkeModule()
    clients = [k8s.connect(first), k8s.connect(second)]
    assert http.gets == 1
    assert [c.server for c in clients] == ["https://10.0.0.1", "https://10.0.0.1"]
    assert clients[1].gke_cluster["status"] == "RUNNING"
    for path in first.cleanup_files + second.cleanup_files:
        os.unlink(path)
