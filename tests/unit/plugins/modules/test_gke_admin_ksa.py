"""Unit tests for gke_admin_ksa's comparisons."""

from __future__ import annotations

import pytest

from ansible_collections.prow.build_cluster.plugins.module_utils.impl import gke_admin_ksa as mod

PARAMS = {"name": "sa", "namespace": "default", "binding_name": "crb", "cluster_role": "cluster-admin"}


def actual(role="cluster-admin", subjects=None):
    return {
        "metadata": {"name": "crb", "resourceVersion": "7"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects if subjects is not None else [{"kind": "ServiceAccount", "name": "sa", "namespace": "default"}],
    }


@pytest.mark.parametrize(("crb", "plan"), [
    (None, "create"),
    (actual(), None),
    (actual(role="edit"), "replace"),
    (actual(subjects=[]), "update"),
    (actual(subjects=[{"kind": "ServiceAccount", "name": "sa", "namespace": "other"}]), "update"),
    (actual(subjects=[{"kind": "ServiceAccount", "name": "sa", "namespace": "default"},
                      {"kind": "User", "name": "eve", "apiGroup": "rbac.authorization.k8s.io"}]), "update"),
])
def test_binding_plan(crb, plan):
    assert mod.binding_plan(crb, mod.desired_binding(PARAMS)) == plan


def test_a_roleref_to_a_role_of_the_same_name_is_a_different_roleref():
    crb = actual()
    crb["roleRef"]["kind"] = "Role"
    assert mod.binding_plan(crb, mod.desired_binding(PARAMS)) == "replace"


def test_server_defaulted_fields_do_not_count_as_drift():
    crb = actual(subjects=[{"kind": "ServiceAccount", "name": "sa", "namespace": "default", "apiGroup": ""}])
    assert mod.binding_plan(crb, mod.desired_binding(PARAMS)) is None


@pytest.mark.parametrize(("value", "ok"), [
    ("cluster-admin", True), ("system:aggregate-to-edit", True), ("a/b", False), ("", False), ("..", False), ("50%", False),
])
def test_rbac_names_are_path_segments(value, ok):
    assert (mod.path_segment_error(value, "cluster_role") is None) is ok


def test_describe_binding():
    assert mod.describe_binding(actual()) == {"name": "crb", "cluster_role": "cluster-admin", "subjects": ["ServiceAccount default/sa"]}
    assert mod.describe_binding(None) is None
