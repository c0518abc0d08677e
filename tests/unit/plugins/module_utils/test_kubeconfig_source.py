"""Unit tests for kubeconfig sources: Secret Manager names, spec validation, payload decoding."""

from __future__ import annotations


import pytest

from ansible_collections.prow.build_cluster.plugins.module_utils import kubeconfig as kc
from ansible_collections.prow.build_cluster.plugins.module_utils import kubeconfig_source as sources


@pytest.mark.parametrize(("value", "name"), [
    ("projects/p-1/secrets/prow_build_cluster_kubeconfig_build-a", "projects/p-1/secrets/prow_build_cluster_kubeconfig_build-a/versions/latest"),
    ("projects/123456/secrets/s/versions/7", "projects/123456/secrets/s/versions/7"),
    ("projects/example.com:proj/secrets/s/versions/latest", "projects/example.com:proj/secrets/s/versions/latest"),
])
def test_secret_version_name(value, name):
    assert sources.secret_version_name(value) == name


@pytest.mark.parametrize("value", [
    "my-secret", "projects/p/secrets/", "projects/p/secrets/a b", "projects/p/secrets/s/versions/", "projects/P/secrets/s",
    "projects/p/secrets/s/versions/1/extra", "", None,
])
def test_bad_secret_names_are_refused_with_the_expected_form(value):
    with pytest.raises(ValueError, match=r"projects/PROJECT/secrets/SECRET\[/versions/VERSION\]"):
        sources.secret_version_name(value)


@pytest.mark.parametrize(("item", "error"), [
    ({"path": "/x"}, None),
    ({"content": "apiVersion: v1"}, None),
    ({"secret": "projects/p/secrets/s"}, None),
    ({}, "m: give exactly one of path, content or secret (got none)"),
    ({"path": "/x", "secret": "projects/p/secrets/s"}, "m: give exactly one of path, content or secret (got path, secret)"),
    ({"secret": "s"}, "m: secret 's' is not of the form projects/PROJECT/secrets/SECRET[/versions/VERSION]"),
])
def test_validate(item, error):
    assert sources.validate(item, "m") == error


def test_decode_payload():
    assert sources.decode_payload("apiVersion: v1\n".encode(), "s") == "apiVersion: v1\n"
    with pytest.raises(kc.KubeconfigError, match="s: the secret's payload is not UTF-8 text"):
        sources.decode_payload(b"\xff\xfe", "s")


def test_unreadable_version_is_told_by_its_state():
    from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError
    from ansible_collections.prow.build_cluster.plugins.module_utils.secretmanager import SecretVersionUnreadable

    assert sources.unreadable_version(SecretVersionUnreadable("r", "m", "projects/1/secrets/s/versions/2", "DESTROYED"))
    assert not sources.unreadable_version(ApiError("r", 400, "Invalid secret version id"))


class FakeModule:
    def __init__(self, no_log):
        self.no_log = no_log
        self.no_log_values = set()


def test_hide_credentials_then_return_in_clear_only_for_no_log_tasks():
    module = FakeModule(no_log=True)
    config = kc.build("a", "https://h", "Q0EK", "secret-token")
    config["users"][0]["user"]["client-key-data"] = "a2V5"
    sources.hide_credentials(module, config)
    module.no_log_values.add("unrelated-password")
    assert module.no_log_values == {"secret-token", "a2V5", "unrelated-password"}
    text = kc.dump(config)
    assert sources.return_in_clear(module, text) == text
    assert module.no_log_values == {"unrelated-password"}
    with pytest.raises(RuntimeError):
        sources.return_in_clear(FakeModule(no_log=False), text)
