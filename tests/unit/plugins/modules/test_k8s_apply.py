"""Unit tests for k8s_apply's pure functions: the comparison, the annotation, the patch."""

from __future__ import annotations

import base64
import json

import pytest

from ansible_collections.prow.build_cluster.plugins.module_utils.impl import k8s_apply as mod

ES = {
    "apiVersion": "external-secrets.io/v1",
    "kind": "ExternalSecret",
    "metadata": {"name": "kubeconfigs", "namespace": "prow"},
    "spec": {"data": [{"secretKey": "a", "remoteRef": {"key": "ka"}}, {"secretKey": "b", "remoteRef": {"key": "kb"}}]},
}


def live_of(document, **extra):
    """What the server returns: the document with defaults filled in, the annotation set."""
    live = json.loads(json.dumps(document))
    live["metadata"].update(resourceVersion="7", annotations={mod.LAST_APPLIED: mod.last_applied(document)})
    for item in live["spec"]["data"]:
        item["remoteRef"].update(conversionStrategy="Default", decodingStrategy="None")
    live.update(extra)
    return live


def test_defaults_inside_list_items_are_in_sync():
    assert mod.in_sync(live_of(ES), ES)


def test_lists_compare_item_by_item_not_as_sets():
    # The same items in another order, or an item repeated in place of another: a set
    # comparison would call both equal, a kubectl apply would change both.
    swapped = live_of(ES)
    swapped["spec"]["data"].reverse()
    assert not mod.contains(swapped, ES)
    doubled = live_of(ES)
    doubled["spec"]["data"] = [doubled["spec"]["data"][0]] * 2
    assert not mod.contains(doubled, ES)
    longer = live_of(ES)
    longer["spec"]["data"].append({"secretKey": "c", "remoteRef": {"key": "kc"}})
    assert not mod.contains(longer, ES)


def test_a_changed_nested_value_is_a_difference():
    live = live_of(ES)
    live["spec"]["data"][1]["remoteRef"]["key"] = "other"
    assert not mod.in_sync(live, ES)


@pytest.mark.parametrize(("actual", "wanted", "same"), [
    (1, True, False), (True, 1, False), (0, False, False), (True, True, True), (1, 1.0, True), ("1", 1, False),
    ({"a": 1, "b": 2}, {"a": 1}, True), ({"b": 2}, {"a": None}, False), ([], {}, False), ({}, [], False),
])
def test_contains_on_scalars_and_shapes(actual, wanted, same):
    assert mod.contains(actual, wanted) is same


def test_the_annotation_must_be_the_definition():
    live = live_of(ES)
    del live["metadata"]["annotations"]
    assert not mod.in_sync(live, ES), "a live object without the annotation"
    other = dict(ES, spec={"data": ES["spec"]["data"][:1]})
    live["metadata"]["annotations"] = {mod.LAST_APPLIED: mod.last_applied(other)}
    # Every field the definition sets is there, but it was applied from another definition.
    live["spec"]["data"] = ES["spec"]["data"]
    assert not mod.in_sync(live, ES)
    live["metadata"]["annotations"] = {mod.LAST_APPLIED: "{not json"}
    assert not mod.in_sync(live, ES)
    assert not mod.in_sync(None, ES)


def test_annotation_is_kubectls_format():
    text = mod.last_applied({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c"}, "data": {"b": "2", "a": "1"}})
    # Sorted keys, compact, annotations {} present, final newline: what kubectl apply stores.
    assert text == '{"apiVersion":"v1","data":{"a":"1","b":"2"},"kind":"ConfigMap","metadata":{"annotations":{},"name":"c"}}\n'
    # An annotation written by kubectl (with "annotations": {}) is in sync with the same definition.
    live = live_of(ES)
    assert json.loads(live["metadata"]["annotations"][mod.LAST_APPLIED])["metadata"]["annotations"] == {}
    assert mod.in_sync(live, ES)


def test_string_data_compares_with_the_stored_data():
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d"}, "stringData": {"token": "t0k"}}
    live = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "s", "namespace": "d", "annotations": {mod.LAST_APPLIED: mod.last_applied(secret)}},
            "data": {"token": base64.b64encode(b"t0k").decode()}}
    assert mod.in_sync(live, secret)
    live["data"]["token"] = base64.b64encode(b"other").decode()
    assert not mod.in_sync(live, secret)


def test_removals_delete_what_the_last_definition_set_and_this_one_dropped():
    previous = {"metadata": {"labels": {"a": "1", "b": "2"}, "name": "x"}, "spec": {"old": 1, "keep": [1]}}
    wanted = {"metadata": {"labels": {"a": "1"}, "name": "x"}, "spec": {"keep": [2]}}
    assert mod.removals(previous, wanted) == {"metadata": {"labels": {"b": None}}, "spec": {"old": None}}
    assert mod.removals(None, wanted) == {}


def test_merge_is_rfc7386():
    target = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert mod.merge(target, {"a": {"c": [3], "b": None}, "e": {"f": 1}}) == {"a": {"c": [3]}, "d": 1, "e": {"f": 1}}
    assert target == {"a": {"b": 1, "c": [1, 2]}, "d": 1}, "the target is not modified"


def test_shown_hides_secret_values_and_bookkeeping():
    live = {"apiVersion": "v1", "kind": "Secret", "data": {"token": "c2VjcmV0"}, "stringData": {"x": "plain"},
            "metadata": {"name": "s", "managedFields": [{}], "resourceVersion": "1",
                         "annotations": {mod.LAST_APPLIED: '{"data":{"token":"c2VjcmV0"}}'}}}
    out = mod.shown(live)
    assert out["data"]["token"].startswith("sha256:") and out["stringData"]["x"].startswith("sha256:")
    assert "c2VjcmV0" not in json.dumps(out) and "plain" not in json.dumps(out)
    assert out["metadata"] == {"name": "s"}
    assert mod.shown(None) == {}


def test_secret_values_are_masked_in_both_forms():
    secret = {"kind": "Secret", "data": {"a": base64.b64encode(b"decoded-value").decode()}, "stringData": {"b": "plain-value"}}
    assert mod.secret_values(secret) == {base64.b64encode(b"decoded-value").decode(), "decoded-value", "plain-value"}
    assert mod.secret_values({"kind": "ConfigMap", "data": {"a": "b"}}) == set()


@pytest.mark.parametrize(("documents", "error"), [
    ([ES], None),
    ([], None),
    ([ES, ES], "definition[1]: ExternalSecret kubeconfigs appears twice"),
    ([{"kind": "X", "metadata": {"name": "n"}}], "definition[0]: missing apiVersion"),
    ([{"apiVersion": "v1", "kind": "X", "metadata": {"name": ""}}], "definition[0]: missing metadata.name"),
    ([{"apiVersion": "v1", "kind": "X"}], "definition[0]: missing metadata.name"),
    ([None], "definition[0]: each document must be a mapping, not NoneType"),
])
def test_validation(documents, error):
    assert mod.validation_error(documents) == error
