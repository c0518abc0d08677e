# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""GKE operations: waiting for one, and telling a busy cluster from a real refusal."""

from __future__ import annotations

import time

from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError


def wait_operation(session, operation, location_path, timeout, poll=2.0):
    """Poll a GKE operation until DONE; raise ApiError on its error, TimeoutError on timeout."""
    deadline = time.monotonic() + timeout
    name = operation["name"]
    while operation.get("status") != "DONE":
        if time.monotonic() >= deadline:
            raise TimeoutError(f"GKE operation {name} not done after {timeout}s (last status {operation.get('status')})")
        time.sleep(poll)
        operation = session.request("GET", "container", f"/v1/{location_path}/operations/{name}", f"operation {name}")
    if operation.get("error"):
        err = operation["error"]
        raise ApiError(f"operation {name}", err.get("code"), err.get("message", "operation failed"), reason="OPERATION_FAILED")
    return operation


def pending_operations(session, location_path, cluster_name):
    """The cluster's operations that are not DONE (its create, an update, a node pool's), oldest first.

    How a run finds the work an earlier one started: a create whose answer was lost (the retry
    is then 409 ALREADY_EXISTS), or a run killed while it waited.
    """
    listed = session.request("GET", "container", f"/v1/{location_path}/operations", f"operations of {location_path}")
    target = f"/clusters/{cluster_name}"
    return [op for op in listed.get("operations") or []
            if op.get("status") != "DONE" and (op.get("targetLink", "").endswith(target) or f"{target}/" in op.get("targetLink", ""))]


def gke_cluster_busy(exc):
    """GKE refuses a change while the cluster is busy, with 400 FAILED_PRECONDITION worded
    "Operation X is currently ..." (another caller's operation) or "Cluster is currently
    being created, deleted, updated or repaired and cannot be updated." (GKE's own repair or
    upgrade); older answers were 409 ABORTED. Retried (bounded) until it is free."""
    message = (getattr(exc, "message", "") or "").lower()
    busy = "operation" in message or "cluster is currently being" in message
    return getattr(exc, "status", None) in (400, 409) and busy and getattr(exc, "reason", None) in ("FAILED_PRECONDITION", "ABORTED")
