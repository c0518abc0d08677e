"""The Prow sandbox's stand-ins on their own: the kubelet's atomic volume layout and the
storage.googleapis.com proxy onto the GCP fake (through a real TLS client, against the fake's
real GCS API). The whole of Prow is tests/integration/test_prow.py."""

from __future__ import annotations

import functools
import os
import ssl
from http.client import HTTPSConnection

import pytest
import requests

from prow_sandbox import gcs_proxy, prow
from prow_sandbox.gcp.testing import gcp, gcp_fake  # noqa: F401  pylint: disable=unused-import


def test_volume_is_written_the_way_the_kubelet_writes_it(tmp_path):
    volume = tmp_path / "prow-build-clusters"
    assert prow.atomic_write_volume(volume, {"build-a": b"one", "build-b": b"two"})
    first = os.readlink(volume / "..data")
    assert first.startswith("..") and (volume / first).is_dir()
    assert os.readlink(volume / "build-a") == "..data/build-a"
    assert (volume / "build-a").read_bytes() == b"one"

    assert not prow.atomic_write_volume(volume, {"build-a": b"one", "build-b": b"two"})  # same data
    assert os.readlink(volume / "..data") == first

    assert prow.atomic_write_volume(volume, {"build-b": b"rotated"})
    second = os.readlink(volume / "..data")
    assert second != first and not (volume / first).exists()  # the old set is gone
    assert sorted(p.name for p in volume.iterdir() if not p.name.startswith("..")) == ["build-b"]
    assert (volume / "build-b").read_bytes() == b"rotated"

    assert prow.atomic_write_volume(volume, {})  # an optional Secret that went away
    assert [p.name for p in volume.iterdir() if not p.name.startswith("..")] == []


@pytest.fixture(name="proxy")
def fixture_proxy(gcp, tmp_path):  # noqa: F811
    started = gcs_proxy.StorageProxy(gcp.endpoints["storage"], tmp_path).start()
    yield started
    started.stop()


def test_the_proxy_serves_storage_googleapis_com_from_the_fake(gcp, proxy):  # noqa: F811
    bucket = gcp.unique("proxied")
    gcp.storage().create_bucket(bucket, project=gcp.build_project)
    token = gcp.credentials()
    token.refresh(google_request())
    # Per request: requests lets REQUESTS_CA_BUNDLE override a session's verify.
    session = requests.Session()
    session.proxies = {"https": proxy.url}
    session.request = functools.partial(session.request, verify=str(proxy.ca_file))
    headers = {"Authorization": f"Bearer {token.token}"}
    put = session.post(f"https://{gcs_proxy.HOST}/upload/storage/v1/b/{bucket}/o",
                       params={"uploadType": "media", "name": "status.json"}, data=b'{"a": "Reachable"}',
                       headers=dict(headers, **{"Content-Type": "application/json"}), timeout=30)
    assert put.status_code == 200, put.text
    got = session.get(f"https://{gcs_proxy.HOST}/storage/v1/b/{bucket}/o/status.json", params={"alt": "media"},
                      headers=headers, timeout=30)
    assert got.json() == {"a": "Reachable"}
    # The fake's checks apply: no token, no object.
    anonymous = session.get(f"https://{gcs_proxy.HOST}/storage/v1/b/{bucket}/o/status.json", timeout=30)
    assert anonymous.status_code == 401


def test_the_proxy_tunnels_nothing_else(proxy):
    host, port = proxy.url.removeprefix("http://").split(":")
    tunnel = HTTPSConnection(host, int(port), timeout=10, context=ssl.create_default_context(cafile=str(proxy.ca_file)))
    tunnel.set_tunnel("oauth2.googleapis.com", 443)
    with pytest.raises(OSError, match="403"):
        tunnel.request("GET", "/")


def google_request():
    from google.auth.transport.requests import Request  # pylint: disable=import-outside-toplevel
    return Request()

