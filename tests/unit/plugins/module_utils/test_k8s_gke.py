"""Unit tests for K8sClient.is_gke: connected with gke:, or a GKE server version."""

from __future__ import annotations

import pytest

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
