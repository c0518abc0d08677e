"""Unit tests for composite_kubeconfig's keyless (gke) members: their input check and their kubeconfig."""

from __future__ import annotations

import pytest

from ansible_collections.prow.build_cluster.plugins.module_utils import kubeconfig as kc
from ansible_collections.prow.build_cluster.plugins.module_utils.impl import composite_kubeconfig as mod

GKE = "projects/team-c/locations/europe-west4/clusters/prow-build"


def test_a_gke_member_is_an_option_of_the_members():
    assert mod.argument_spec()["members"]["options"]["gke"] == {"type": "str"}


@pytest.mark.parametrize(("item", "message"), [
    ({"name": "build-c", "gke": GKE}, None),
    ({"name": "build-c", "gke": GKE, "secret": "projects/p/secrets/s"}, "give exactly one of path, content, secret or gke"),
    ({"gke": GKE}, "a gke member needs name"),
    ({"name": "build-c", "gke": "team-c/prow-build"}, "members[0].gke: 'team-c/prow-build' is not of the form"),
])
def test_a_gke_member_needs_a_name_a_cluster_name_and_nothing_else(item, message):
    error = mod.gke_member_error(item, 0)
    assert error is None if message is None else message in error, error


class Reader:
    def gcp(self):
        return "session"


class Module:
    def fail_json(self, msg, **_kwargs):
        raise AssertionError(msg)


def test_a_gke_members_kubeconfig_is_the_exec_one_of_the_configmap_and_none_if_gke_does_not_know_it(monkeypatch):
    from ansible_collections.prow.build_cluster.plugins.module_utils.impl import gke_exec_kubeconfig as exec_impl

    clusters = {GKE: {"endpoint": "10.0.0.1", "masterAuth": {"clusterCaCertificate": "Q0E="}}}
    monkeypatch.setattr(exec_impl, "read_cluster", lambda _module, gcp, gke: clusters.get(gke) if gcp == "session" else None)
    text = mod.read_gke_member(Module(), Reader(), {"name": "build-c", "gke": GKE})
    config = kc.parse(text, "t")
    assert config["contexts"][0]["name"] == "build-c"
    assert config["clusters"][0]["cluster"]["server"] == "https://10.0.0.1"
    assert set(config["users"][0]["user"]) == {"exec"}
    assert text == exec_impl.exec_kubeconfig(Module(), "build-c", GKE, clusters[GKE], dict(kc.GKE_EXEC_PLUGIN))
    assert mod.read_gke_member(Module(), Reader(), {"name": "build-d", "gke": GKE.replace("prow-build", "gone")}) is None
