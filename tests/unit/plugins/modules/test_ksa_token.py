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
            "dest": "/tmp/kc", "return_content": False, "force": False, **params,
        }
        self.no_log = False

    def fail_json(self, msg, **_kwargs):
        raise Failed(msg)


def test_defaults_are_gencreds():
    assert mod.validate(FakeModule()) == (48 * 3600, 24 * 3600)


@pytest.mark.parametrize(("params", "message"), [
    ({"duration": "72h", "platform": "gke"}, "duration 72h exceeds 48h"),
    ({"duration": "72h", "gke": "projects/p/locations/l/clusters/c"}, "duration 72h exceeds 48h"),
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


@pytest.mark.parametrize("alias", ["default", "build-myteam", "gke_proj_us-west1_c", "k8s-infra.prow-build"])
def test_usable_aliases(alias):
    assert mod.alias_error(alias) is None
