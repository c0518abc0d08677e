"""Unit tests for the shared helpers: durations, fingerprints, names, the retry helper."""

from __future__ import annotations

import pytest

from ansible_collections.prow.build_cluster.plugins.module_utils import _errors, _retry, _validate, _values
from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("48h", 172800), ("1h30m", 5400), ("90s", 90), ("2d", 172800), ("600", 600), (600, 600), ("10m", 600)],
)
def test_parse_duration_accepts_go_style_and_seconds(text, seconds):
    assert _values.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "48hours", "1.5h", "-1h", "0s", "0", "1h 30m", "30m1h2", True])
def test_parse_duration_rejects_everything_else(text):
    with pytest.raises(ValueError, match="duration"):
        _values.parse_duration(text)


def test_parse_duration_forgives_surrounding_blanks_and_case():
    assert _values.parse_duration(" 48H ") == 172800


@pytest.mark.parametrize(("seconds", "text"), [(172800, "48h"), (5400, "1h30m"), (61, "1m1s"), (0, "0s")])
def test_format_duration_round_trips(seconds, text):
    assert _values.format_duration(seconds) == text
    if seconds:
        assert _values.parse_duration(text) == seconds


def test_fingerprint_is_stable_short_and_does_not_contain_the_secret():
    secret = "eyJhbGciOiJSUzI1NiJ9.payload.signature"
    fp = _values.fingerprint(secret)
    assert fp == _values.fingerprint(secret.encode())
    assert fp.startswith("sha256:") and len(fp) == len("sha256:") + 16
    assert "payload" not in fp
    assert _values.fingerprint(secret + "x") != fp
    assert _values.fingerprint(None) is None


@pytest.mark.parametrize("name", ["test-pods", "a", "a1", "x" * 63])
def test_valid_namespace_names(name):
    assert _validate.dns_label_error(name, "namespace") is None


@pytest.mark.parametrize("name", ["", "Test-Pods", "-a", "a-", "a_b", "a.b", "x" * 64])
def test_invalid_namespace_names_say_what_is_wrong(name):
    message = _validate.dns_label_error(name, "namespace")
    assert message and "namespace" in message and "lowercase" in message


def test_subdomain_names_allow_dots():
    assert _validate.dns_subdomain_error("serviceaccount-cluster-admin-crb", "name") is None
    assert _validate.dns_subdomain_error("a.b-c", "name") is None
    assert "not a valid name" in _validate.dns_subdomain_error("A.b", "name")


def test_api_error_message_names_resource_status_and_server_message():
    err = ApiError("serviceaccounts/default/x", 403, "forbidden: cannot get", method="GET", reason="Forbidden")
    assert str(err) == "GET serviceaccounts/default/x: HTTP 403 Forbidden: forbidden: cannot get"
    assert not err.transient
    assert ApiError("r", 503, "m").transient
    assert ApiError("r", None, "connection refused").transient


@pytest.fixture(name="no_sleep")
def fixture_no_sleep(monkeypatch):
    monkeypatch.setattr(_retry, "RETRY_INITIAL_WAIT", 0)
    monkeypatch.setattr(_retry, "RETRY_MAX_WAIT", 0)


@pytest.mark.usefixtures("no_sleep")
def test_retry_retries_transient_errors_then_succeeds():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ApiError("r", 503, "unavailable")
        return "ok"

    assert _retry.call_with_retry(flaky) == "ok"
    assert len(calls) == 3


@pytest.mark.usefixtures("no_sleep")
def test_retry_does_not_retry_permanent_errors():
    calls = []

    def forbidden():
        calls.append(1)
        raise ApiError("r", 403, "no")

    with pytest.raises(ApiError) as info:
        _retry.call_with_retry(forbidden)
    assert info.value.status == 403 and len(calls) == 1


@pytest.mark.usefixtures("no_sleep")
def test_retry_is_bounded_and_reraises_the_last_error():
    calls = []

    def down():
        calls.append(1)
        raise ApiError("r", 500, f"attempt {len(calls)}")

    with pytest.raises(ApiError, match="attempt 3"):
        _retry.call_with_retry(down, attempts=3)
    assert len(calls) == 3


@pytest.mark.usefixtures("no_sleep")
def test_retry_accepts_a_custom_decision():
    calls = []

    def conflict():
        calls.append(1)
        if len(calls) == 1:
            raise ApiError("policy", 409, "ABORTED")
        return len(calls)

    assert _retry.call_with_retry(conflict, retry_on=lambda e: e.status == 409) == 2


class Ended(Exception):
    pass


class Module:
    """exit_json / fail_json record how the module ended."""

    def __init__(self, check_mode, state="present"):
        self.check_mode = check_mode
        self.params = {"state": state}
        self.ended = None

    def exit_json(self, **result):
        self.ended = ("exit", result)
        raise Ended

    def fail_json(self, **result):
        self.ended = ("fail", result)
        raise Ended


def test_a_missing_target_in_check_mode_is_what_a_run_would_do():
    module = Module(check_mode=True)
    with pytest.raises(Ended):
        _errors.fail_on_api_error(module, _errors.TargetMissing("bucket b", "grant roles/x to user:u once it exists"))
    assert module.ended == ("exit", {
        "changed": True, "missing": "bucket b",
        "msg": "bucket b does not exist yet: a real run creates it first; would grant roles/x to user:u once it exists"})


def test_a_missing_target_in_a_real_run_fails():
    module = Module(check_mode=False)
    with pytest.raises(Ended):
        _errors.fail_on_api_error(module, _errors.TargetMissing("bucket b", "grant", message="does not exist"))
    kind, result = module.ended
    assert kind == "fail" and result["msg"] == "GET bucket b: HTTP 404: does not exist" and result["status"] == 404


@pytest.mark.parametrize("check_mode", [False, True])
def test_a_missing_target_is_nothing_left_to_remove_with_state_absent(check_mode):
    module = Module(check_mode=check_mode, state="absent")
    with pytest.raises(Ended):
        _errors.fail_on_api_error(module, _errors.TargetMissing("cluster c", "remove", message="does not exist"))
    assert module.ended == ("exit", {"changed": False, "msg": "cluster c does not exist: nothing left to remove",
                                     "missing": "cluster c"})


def test_a_plain_404_in_check_mode_still_fails():
    module = Module(check_mode=True)
    with pytest.raises(Ended):
        _errors.fail_on_api_error(module, ApiError("bucket b", 404, "not found"))
    assert module.ended[0] == "fail"
