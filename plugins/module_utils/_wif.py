# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Workload Identity Federation pools and providers (IAM v1): one lifecycle for both.

Both are ``projects/P/locations/global/workloadIdentityPools/POOL[/providers/PROV]``; every write
answers a long-running operation, polled here until done. Delete is soft (``state: DELETED``
for 30 days, the ID still taken), so "create" of a deleted one is an undelete, then a patch of
the fields that differ (IAM's ``updateMask``).
"""

from __future__ import annotations

import re
import time

from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError

ID_FORMAT = re.compile(r"^[a-z0-9-]{4,32}$")
OPERATION_TIMEOUT = 120
POLL_SECONDS = 1.0


def id_error(value, what):
    if not isinstance(value, str) or not ID_FORMAT.match(value) or value.startswith("gcp-"):
        return f"{what} {value!r} is not a valid ID: 4 to 32 of [a-z0-9-], not starting with 'gcp-' (reserved by Google)"
    return None


def pools_path(project):
    return f"/v1/projects/{project}/locations/global/workloadIdentityPools"


def wait(gcp, operation, resource):
    """The operation's ``response`` once it is done; its ``error`` as an ApiError."""
    deadline = time.monotonic() + OPERATION_TIMEOUT
    while not operation.get("done"):
        if time.monotonic() > deadline:
            raise ApiError(resource, None, f"operation {operation.get('name')} not done after {OPERATION_TIMEOUT} s")
        time.sleep(POLL_SECONDS)
        operation = gcp.request("GET", "iam", f"/v1/{operation['name']}", resource)
    if operation.get("error"):
        error = operation["error"]
        raise ApiError(resource, error.get("code"), error.get("message", "operation failed"))
    return operation.get("response") or {}


def ensure(module, gcp, *, path, create_path, id_param, resource_id, wanted, resource, compare=None):
    """Make the resource at ``path`` match ``wanted`` (API fields; None = leave as is) or be gone.

    Returns (changed, before, after, actual): ``before``/``after`` are the managed fields for
    the diff (``{}`` when absent or deleted), ``actual`` the resource as read or written.
    ``compare(field, actual_value, wanted_value)`` says whether a field is in sync (default ==).
    """
    present = module.params["state"] == "present"
    compare = compare or (lambda field, have, want: have == want)
    actual = gcp.get("iam", path, resource)
    active = bool(actual) and actual.get("state") != "DELETED"
    before = {k: actual.get(k) for k in wanted} if active else {}
    if not present:
        if active and not module.check_mode:
            wait(gcp, gcp.request("DELETE", "iam", path, resource), resource)
        return active, before, {}, actual
    fields = {k: v for k, v in wanted.items() if v is not None}
    stale = sorted(k for k, v in fields.items() if not active or not compare(k, (actual or {}).get(k), v))
    after = dict(before, **fields) if active else dict(fields)
    changed = not active or bool(stale)
    if module.check_mode or not changed:
        return changed, before, after, actual
    if actual is None:
        try:
            operation = gcp.request("POST", "iam", create_path, resource, params={id_param: resource_id}, json_body=fields)
        except ApiError as err:
            if err.status == 404:  # the parent (a provider's pool) does not exist
                raise ApiError(resource, 404, f"its parent {create_path.rsplit('/', 1)[0]} does not exist: create it first "
                               f"({err.message})", method="POST") from None
            raise
        return True, before, after, wait(gcp, operation, resource)
    if not active:
        actual = wait(gcp, gcp.request("POST", "iam", f"{path}:undelete", resource, json_body={}), resource)
        stale = sorted(k for k, v in fields.items() if not compare(k, actual.get(k), v))
    if stale:
        actual = wait(gcp, gcp.request("PATCH", "iam", path, resource, params={"updateMask": ",".join(stale)},
                                       json_body={k: fields[k] for k in stale}), resource)
    return True, before, after, actual
