"""The audit log records writes, which tests use to count what a run changed."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from kubernetes import client

from prow_sandbox.kube import ADMIN_USER, AUDIT_SENTINEL_PREFIX, audit_events, settled_audit_events


def _wait_for(cluster, count: int, **filters) -> list[dict]:
    # The log backend writes an event after the response has gone out: poll briefly.
    deadline = time.monotonic() + 10
    while True:
        events = audit_events(cluster, **filters)
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.1)


def test_writes_are_audited_reads_are_not(kube_cluster, kube_client, namespace):
    since = datetime.now(timezone.utc)
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="settings"), data={"a": "1"}))
    core.read_namespaced_config_map("settings", namespace)
    core.patch_namespaced_config_map("settings", namespace, {"data": {"a": "2"}})
    core.delete_namespaced_config_map("settings", namespace)

    events = _wait_for(kube_cluster, 3, since=since, namespace=namespace)
    writes = [(e["verb"], e["objectRef"]["resource"], e["objectRef"].get("name")) for e in events]
    assert writes == [("create", "configmaps", "settings"),
                      ("patch", "configmaps", "settings"),
                      ("delete", "configmaps", "settings")]
    created = events[0]
    assert created["user"]["username"] == ADMIN_USER
    assert created["level"] == "Metadata" and "requestObject" not in created
    assert created["responseStatus"]["code"] == 201

    assert audit_events(kube_cluster, verbs={"get", "list"}, since=since, namespace=namespace) == []


def test_settled_events_include_a_write_made_just_before_and_no_sentinel(kube_cluster, kube_client, namespace):
    since = datetime.now(timezone.utc)
    client.CoreV1Api(kube_client).create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="just-now")))
    events = settled_audit_events(kube_cluster, since=since)  # no polling of our own
    names = [(e["verb"], (e.get("objectRef") or {}).get("name")) for e in events]
    assert ("create", "just-now") in names
    assert not [n for _, n in names if n and n.startswith(AUDIT_SENTINEL_PREFIX)]
    # Nor in a later answer, though the sentinel's delete came after ``since`` too.
    assert not [e for e in settled_audit_events(kube_cluster, since=since)
                if (e.get("objectRef") or {}).get("name", "").startswith(AUDIT_SENTINEL_PREFIX)]
