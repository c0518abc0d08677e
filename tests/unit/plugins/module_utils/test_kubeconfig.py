"""Unit tests for kubeconfig building, parsing, merging and summaries."""

from __future__ import annotations

import base64
import json
import os
import stat
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from ansible_collections.prow.build_cluster.plugins.module_utils import kubeconfig as kc

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def jwt(exp):
    """An unsigned JWT-shaped token with the given expiry (only the claims matter here)."""
    def enc(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{enc({'alg': 'RS256'})}.{enc({'exp': int(exp.timestamp()), 'sub': 'system:serviceaccount:default:x'})}.c2ln"


def member(alias, server="https://10.0.0.1", token=None):
    return kc.build(alias, server, "Q0EK", token or jwt(NOW + timedelta(hours=48)))


def test_build_names_cluster_user_and_context_after_the_alias():
    config = member("build-team-a", token="t0k")
    assert [c["name"] for c in config["clusters"]] == ["build-team-a"]
    assert config["users"] == [{"name": "build-team-a", "user": {"token": "t0k"}}]
    assert config["contexts"] == [{"name": "build-team-a", "context": {"cluster": "build-team-a", "user": "build-team-a"}}]
    assert config["current-context"] == "build-team-a"
    assert config["clusters"][0]["cluster"] == {"server": "https://10.0.0.1", "certificate-authority-data": "Q0EK"}


def test_dump_then_parse_round_trips():
    config = member("default")
    assert kc.parse(kc.dump(config), "x") == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("clusters: [", "not valid YAML"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("apiVersion: v1\nclusters: []\nusers: []\ncontexts: []\n", "no contexts"),
        ("contexts: [{context: {cluster: c}}]\n", "must be a list of entries that each have a 'name'"),
        ("contexts: [{name: a, context: {cluster: missing}}]\n", "names cluster 'missing'"),
        (
            "clusters: [{name: c, cluster: {}}]\ncontexts: [{name: a, context: {cluster: c, user: u}}]\n",
            "names user 'u'",
        ),
        (
            "clusters: [{name: c, cluster: {}}]\ncontexts: [{name: a, context: {cluster: c}}, {name: a, context: {cluster: c}}]\n",
            "contexts a defined more than once",
        ),
    ],
)
def test_parse_rejects_malformed_kubeconfigs_with_the_source_named(text, message):
    with pytest.raises(kc.KubeconfigError, match=message) as info:
        kc.parse(text, "team-a.yaml")
    assert str(info.value).startswith("team-a.yaml: ")


def test_merge_is_sorted_and_deterministic_whatever_the_input_order():
    a, b, d = member("build-a"), member("build-b"), member("default")
    merged1, owners = kc.merge([("a", a), ("b", b), ("d", d)])
    merged2 = kc.merge([("d", d), ("b", b), ("a", a)])[0]
    assert kc.dump(merged1) == kc.dump(merged2)
    assert [c["name"] for c in merged1["contexts"]] == ["build-a", "build-b", "default"]
    assert merged1["current-context"] == "default"
    assert owners == {"build-a": "a", "build-b": "b", "default": "d"}


def test_merge_refuses_duplicate_context_names_like_prow():
    with pytest.raises(kc.KubeconfigError, match="context 'build-a' occurs in both one.yaml and two.yaml"):
        kc.merge([("one.yaml", member("build-a")), ("two.yaml", member("build-a", server="https://other"))])


def test_merge_refuses_a_cluster_name_with_two_meanings():
    first = member("a")
    second = member("b")
    second["clusters"][0]["name"] = "a"
    second["contexts"][0]["context"]["cluster"] = "a"
    second["clusters"][0]["cluster"]["server"] = "https://elsewhere"
    with pytest.raises(kc.KubeconfigError, match="cluster 'a' is defined differently"):
        kc.merge([("x", first), ("y", second)])


def test_merge_accepts_identical_shared_entries():
    first = member("a")
    second = member("b")
    second["clusters"] = first["clusters"]
    second["contexts"][0]["context"]["cluster"] = "a"
    merged = kc.merge([("x", first), ("y", second)])[0]
    assert len(merged["clusters"]) == 1 and len(merged["contexts"]) == 2


def test_merge_can_require_a_default_context():
    with pytest.raises(kc.KubeconfigError, match="no context named 'default'"):
        kc.merge([("x", member("build-a"))], require_default=True)
    merged = kc.merge([("x", member("default"))], require_default=True)[0]
    assert merged["current-context"] == "default"


def test_token_expiry_reads_jwt_exp_and_ignores_non_jwts():
    exp = NOW + timedelta(hours=3)
    assert kc.token_expiry(jwt(exp)) == exp.replace(microsecond=0)
    assert kc.token_expiry("static-token") is None
    assert kc.token_expiry("a.!!!.c") is None
    assert kc.token_expiry(None) is None


def test_token_claims_are_read_unverified_and_none_for_non_jwts():
    exp = NOW + timedelta(hours=3)
    assert kc.token_claims(jwt(exp))["exp"] == int(exp.timestamp())
    assert kc.token_claims("static-token") is None
    assert kc.token_claims("a.!!!.c") is None
    assert kc.token_claims("a.WzFd.c") is None  # a JSON array, not claims
    assert kc.token_expiry("a.e30.c") is None  # claims without exp


def test_summarize_classifies_tokens_and_never_returns_them():
    members = [
        ("a", member("valid", token=jwt(NOW + timedelta(hours=40)))),
        ("b", member("soon", token=jwt(NOW + timedelta(hours=2)))),
        ("c", member("gone", token=jwt(NOW - timedelta(minutes=1)))),
        ("d", member("static", token="plain")),
    ]
    merged, owners = kc.merge(members)
    summary = {s["context"]: s for s in kc.summarize(merged, owners, now=NOW, warn_within=12 * 3600)}
    assert summary["valid"]["status"] == "valid"
    assert summary["valid"]["expires_in_seconds"] == 40 * 3600
    assert summary["soon"]["status"] == "expiring"
    assert summary["gone"]["status"] == "expired"
    assert summary["static"]["status"] == "unknown-expiry"
    assert summary["soon"]["source"] == "b"
    dumped = yaml.safe_dump(list(summary.values()))
    for _source, config in members:
        assert config["users"][0]["user"]["token"] not in dumped


def test_write_atomic_creates_0600_and_replaces_content(tmp_path):
    path = tmp_path / "kubeconfig"
    kc.write_atomic(str(path), "one")
    assert path.read_text() == "one"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    path.chmod(0o644)
    kc.write_atomic(str(path), "two")
    assert path.read_text() == "two"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["kubeconfig"]


def test_read_file_reports_missing_files(tmp_path):
    assert kc.read_file(str(tmp_path / "nope")) == (None, None)


def test_build_exec_names_the_plugin_and_holds_no_token():
    config = kc.parse(kc.dump(kc.build_exec("build-k", "https://10.0.0.1", "Q0E=")), "exec")
    user = config["users"][0]
    assert user["name"] == "build-k" and "token" not in user["user"]
    assert user["user"]["exec"] == {
        "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "gke-gcloud-auth-plugin",
        "args": ["--use_application_default_credentials"], "provideClusterInfo": True, "interactiveMode": "Never"}
    assert config["contexts"] == [{"name": "build-k", "context": {"cluster": "build-k", "user": "build-k"}}]
    assert kc.dump(kc.build_exec("build-k", "https://10.0.0.1", "Q0E=")) == kc.dump(config)  # deterministic
    other = kc.build_exec("build-k", "https://10.0.0.1", "Q0E=", {"apiVersion": "v", "command": "x"})
    assert other["users"][0]["user"] == {"exec": {"apiVersion": "v", "command": "x"}}
