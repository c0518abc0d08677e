"""Unit tests for the rotation decision and helpers ksa_token and composite_kubeconfig build on."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest

from ansible_collections.prow.build_cluster.plugins.module_utils import kubeconfig as kc

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
SERVER = "https://34.1.2.3"
CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()
DAY = 24 * 3600


def jwt(exp):
    def enc(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{enc({'alg': 'RS256'})}.{enc({'exp': int(exp.timestamp())})}.c2ln"


def current(token=None, server=SERVER, ca=CA, alias="build-a"):
    return kc.build(alias, server, ca, token if token is not None else jwt(NOW + timedelta(hours=40)))


def test_a_fresh_token_for_this_cluster_is_kept():
    assert kc.stale_reason(current(), "build-a", SERVER, CA, NOW, DAY) is None


@pytest.mark.parametrize(("config", "reason"), [
    (None, "no current kubeconfig"),
    (current(alias="other"), "the current kubeconfig has no context 'build-a'"),
    (current(token=""), "context 'build-a' has no token"),
    (current(server="https://10.9.9.9"), "context 'build-a' points at https://10.9.9.9, not https://34.1.2.3"),
    (current(ca=base64.b64encode(b"another CA").decode()), "context 'build-a' trusts another CA than the cluster's"),
    (current(token="opaque-legacy-token"), "the token's expiry is unknown (not a JWT)"),
    (current(token=jwt(NOW - timedelta(seconds=1))), "the token expired at 2026-11-23T11:59:59+00:00"),
    (current(token=jwt(NOW + timedelta(hours=24))), "the token expires at 2026-11-24T12:00:00+00:00, within rotate_before"),
])
def test_stale_reasons(config, reason):
    assert kc.stale_reason(config, "build-a", SERVER, CA, NOW, DAY) == reason


def test_rotate_before_boundary_is_inclusive():
    just_outside = current(token=jwt(NOW + timedelta(seconds=DAY + 1)))
    assert kc.stale_reason(just_outside, "build-a", SERVER, CA, NOW, DAY) is None
    at_boundary = current(token=jwt(NOW + timedelta(seconds=DAY)))
    assert kc.stale_reason(at_boundary, "build-a", SERVER, CA, NOW, DAY) is not None


@pytest.mark.parametrize("server", ["https://34.1.2.3:443", "https://34.1.2.3/", "HTTPS://34.1.2.3"])
def test_equivalent_server_urls_are_the_same_cluster(server):
    assert kc.stale_reason(current(server=server), "build-a", SERVER, CA, NOW, DAY) is None


def test_rewrapped_ca_is_the_same_ca():
    rewrapped = base64.b64encode(b"-----BEGIN CERTIFICATE-----\r\nMIIB\r\n-----END CERTIFICATE-----").decode()
    assert kc.stale_reason(current(ca=rewrapped), "build-a", SERVER, CA, NOW, DAY) is None


def test_normal_server_keeps_ports_and_paths_apart():
    assert kc.normal_server("https://h:6443") != kc.normal_server("https://h")
    assert kc.normal_server("https://h/proxy") != kc.normal_server("https://h")


@pytest.mark.parametrize(("status", "reason"), [
    ({"authenticated": True, "user": {"username": "system:serviceaccount:default:sa"}}, None),
    ({"authenticated": False, "error": "invalid bearer token"}, "the API server rejects the token: invalid bearer token"),
    ({}, "the API server rejects the token: not authenticated"),
    ({"authenticated": True, "user": {"username": "system:serviceaccount:x:other"}},
     "the token authenticates as system:serviceaccount:x:other, not system:serviceaccount:default:sa"),
])
def test_review_reason(status, reason):
    assert kc.review_reason(status, "system:serviceaccount:default:sa") == reason


def test_parse_timestamp_as_the_api_server_writes_it():
    assert kc.parse_timestamp("2026-11-25T12:00:00Z") == datetime(2026, 11, 25, 12, tzinfo=timezone.utc)
    assert kc.parse_timestamp("2026-11-25T12:00:00") == datetime(2026, 11, 25, 12, tzinfo=timezone.utc)


def test_credential_of_a_context():
    assert kc.credential(current(token="t"), "build-a") == (SERVER, CA, "t")
    assert kc.credential(current(), "nope") is None


def test_split_gives_one_self_contained_kubeconfig_per_context():
    merged = kc.merge([("a", current(alias="build-a", token="ta")), ("b", current(alias="default", token="tb"))])[0]
    parts = kc.split(merged)
    assert sorted(parts) == ["build-a", "default"]
    for name, part in parts.items():
        assert kc.parse(kc.dump(part), name) == part
        assert part["current-context"] == name
        assert [c["name"] for c in part["contexts"]] == [name]
        assert [u["name"] for u in part["users"]] == [name]
    assert parts["default"]["users"][0]["user"]["token"] == "tb"
