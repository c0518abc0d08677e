"""Unit tests for ksa_token's input checks."""

from __future__ import annotations

import pytest

from ansible_collections.prow.build_cluster.plugins.module_utils.impl import ksa_token as mod


class Failed(Exception):
    pass


class FakeModule:
    """Just enough of AnsibleModule for validate(): params, no_log, fail_json."""

    def __init__(self, **params):
        self.params = {
            "service_account": "serviceaccount-cluster-admin", "namespace": "default", "alias": "default",
            "duration": "48h", "rotate_before": "24h", "platform": "auto", "gke": None, "current": None,
            "dest": "/tmp/kc", "return_content": False, "force": False, "state": "present", "revoke_after": "0", **params,
        }
        self.no_log = False

    def fail_json(self, msg, **_kwargs):
        raise Failed(msg)


def test_defaults_are_gencreds():
    assert mod.validate(FakeModule()) == (48 * 3600, 24 * 3600)


@pytest.mark.parametrize(("params", "message"), [
    ({"duration": "72h", "platform": "gke"}, "duration 72h exceeds 48h"),
    ({"duration": "72h", "gke": "projects/p/locations/l/clusters/c"}, "duration 72h exceeds 48h"),
    ({"duration": "48h", "platform": "eks"}, "duration 48h exceeds 24h, the longest token EKS grants (platform eks)"),
    ({"duration": "25h", "platform": "aks"}, "duration 25h exceeds 24h, the longest token AKS grants (platform aks)"),
    ({"duration": "9m"}, "shorter than 10m"),
    ({"rotate_before": "2d"}, "rotate_before (2d) must be shorter than duration (48h)"),
    ({"namespace": "Bad"}, "namespace 'Bad' is not a valid name"),
    ({"alias": "..hidden"}, "alias '..hidden' is not usable"),
    ({"alias": "gke_p_z_c:x"}, "is not usable"),
    ({"dest": None}, "set dest, or return_content: true"),
    ({"dest": None, "return_content": True}, "set no_log: true on this task"),
    ({"dest": "/nonexistent-dir/kc"}, "directory of /nonexistent-dir/kc does not exist"),
    ({"current": {"path": "/a", "content": "b"}}, "current: give exactly one of path, content or secret"),
])
def test_bad_input(params, message):
    with pytest.raises(Failed, match=None) as err:
        mod.validate(FakeModule(**params))
    assert message in str(err.value)


@pytest.mark.parametrize(("params", "expected"), [
    ({"duration": "72h", "platform": "other", "gke": "projects/p/locations/l/clusters/c"}, 72 * 3600),
    ({"duration": "72h"}, 72 * 3600),  # auto, not connected with gke: decided after connecting (server version)
])
def test_long_durations_allowed_off_gke(params, expected):
    assert mod.validate(FakeModule(**params))[0] == expected


def test_the_caps_table_has_a_cap_and_a_name_for_each_capped_platform_and_the_choices_match():
    assert mod.PLATFORM_MAX_SECONDS == {"gke": 48 * 3600, "eks": 24 * 3600, "aks": 24 * 3600}
    assert set(mod.PLATFORM_LABELS) == set(mod.PLATFORM_MAX_SECONDS)
    assert mod.argument_spec()["platform"]["choices"] == ["auto", "gke", "eks", "aks", "other"]
    assert set(mod.PLATFORM_MAX_SECONDS) | {"auto", "other"} == set(mod.PLATFORMS)


@pytest.mark.parametrize(("platform", "duration"), [("gke", "48h"), ("eks", "24h"), ("aks", "24h"), ("other", "720h")])
def test_a_duration_at_the_platforms_cap_is_accepted(platform, duration):
    assert mod.validate(FakeModule(platform=platform, duration=duration, rotate_before="1h"))[0] == mod.parse_duration(duration)


@pytest.mark.parametrize("alias", ["default", "build-myteam", "gke_proj_us-west1_c", "k8s-infra.prow-build"])
def test_usable_aliases(alias):
    assert mod.alias_error(alias) is None


def jwt(claims):
    import base64  # pylint: disable=import-outside-toplevel
    import json  # pylint: disable=import-outside-toplevel
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"e30.{body}.sig"


def test_the_bound_secret_is_read_from_the_tokens_claims():
    bound = {"kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "sa", "uid": "1"},
                               "secret": {"name": "sa-token-abcde", "uid": "2"}}}
    assert mod.bound_secret_of(jwt(bound)) == ("sa-token-abcde", "2")
    assert mod.bound_secret_of(jwt({"kubernetes.io": {"namespace": "default"}})) is None  # TokenRequest without boundObjectRef
    assert mod.bound_secret_of("not-a-jwt") is None


@pytest.mark.parametrize(("value", "seconds"), [("0", 0), ("0s", 0), (None, 0), ("15m", 900), ("1h", 3600)])
def test_revoke_after(value, seconds):
    assert mod.revoke_seconds(value) == seconds


@pytest.mark.parametrize(("params", "message"), [
    ({"state": "revoke_others", "alias": None}, "alias is required with state revoke_others"),
    ({"state": "revoke_others", "dest": None}, "needs the published kubeconfig: set current (or dest)"),
    ({"state": "revoke_others", "revoke_after": "-1m"}, "revoke_after: invalid duration"),
])
def test_bad_input_of_revocation(params, message):
    with pytest.raises(Failed) as err:
        mod.validate(FakeModule(**params))
    assert message in str(err.value)


def test_absent_needs_neither_alias_nor_dest():
    assert mod.validate(FakeModule(state="absent", alias=None, dest=None)) == (None, None)
