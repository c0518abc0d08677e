# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Implementation of module prow.build_cluster.gcp_service_account; plugins/modules/gcp_service_account.py holds its documentation.

``module_kwargs()`` gives the AnsibleModule arguments; ``run(module)`` does the work and ends
with ``exit_json`` or ``fail_json``.
"""

from __future__ import annotations

from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError
from ansible_collections.prow.build_cluster.plugins.module_utils._retry import call_with_retry
from ansible_collections.prow.build_cluster.plugins.module_utils._gcp_iam import account_not_yet_visible
from ansible_collections.prow.build_cluster.plugins.module_utils._gcp_session import GCP_AUTH_ARGSPEC, GCP_AUTH_MUTUALLY_EXCLUSIVE, GcpSession
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import account_id_error

# Fields the module manages, API name -> option name.
FIELDS = {"displayName": "display_name", "description": "description"}


class NotYetVisible(Exception):
    pass


# A first read that IAM answers 403 is retried a few times only: right after creation
# (by an earlier run) IAM may say 403 for a while, but so it does to a caller without access.
FIRST_READ_ATTEMPTS = 3


def wait_until_visible(gcp, path, resource):
    """GET the account until IAM returns it: a new account is "not found" (404, or 403) for
    a few seconds, and may vanish once more after a first success."""

    def once():
        try:
            account = gcp.get("iam", path, resource)
        except ApiError as err:
            if err.status != 403:
                raise
            account = None
        if account is None:
            raise NotYetVisible()
        return account

    try:
        return call_with_retry(once, retry_on=lambda exc: isinstance(exc, NotYetVisible))
    except NotYetVisible:
        return None


def module_kwargs():
    """The keyword arguments of this module's AnsibleModule."""
    return {
        "argument_spec": dict(
            GCP_AUTH_ARGSPEC,
            name={"type": "str", "required": True},
            display_name={"type": "str"},
            description={"type": "str"},
            state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        ),
        "mutually_exclusive": GCP_AUTH_MUTUALLY_EXCLUSIVE,
        "supports_check_mode": True,
    }


def run(module):
    """The module's work; ends with module.exit_json or module.fail_json."""
    params = module.params
    error = account_id_error(params["name"])
    if error:
        module.fail_json(msg=error)
    gcp = GcpSession(module)
    project = gcp.require_project()

    email = f"{params['name']}@{project}.iam.gserviceaccount.com"
    path = f"/v1/projects/{project}/serviceAccounts/{email}"
    resource = f"service account {email}"
    wanted = {api: params[opt] for api, opt in FIELDS.items() if params[opt] is not None}
    result = {"changed": False, "email": email, "member": f"serviceAccount:{email}", "service_account": {}}

    actual = call_with_retry(gcp.get, "iam", path, resource, attempts=FIRST_READ_ATTEMPTS,
                             retry_on=lambda exc: isinstance(exc, ApiError) and exc.status == 403)
    before = {k: actual.get(k, "") for k in FIELDS} if actual else {}
    after = dict(before, **wanted)
    if params["state"] == "absent":
        after = {}
        if actual:
            result["changed"] = True
            if not module.check_mode:
                gcp.request("DELETE", "iam", path, resource, allow_404=True)
    elif actual is None:
        after = {k: wanted.get(k, "") for k in FIELDS}
        result["changed"] = True
        if not module.check_mode:
            actual, created = create(gcp, project, params["name"], wanted, path, resource)
            if not created:
                # Someone else created it meanwhile (409): ours only if it needs changes.
                before = {k: (actual or {}).get(k, "") for k in FIELDS}
                after = dict(before, **wanted)
                result["changed"] = after != before
                if result["changed"]:
                    actual = patch(gcp, path, resource, actual, after, wanted)
    elif after != before:
        result["changed"] = True
        if not module.check_mode:
            actual = patch(gcp, path, resource, actual, after, wanted)

    if params["state"] == "present" and actual:
        result["service_account"] = actual
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)


def create(gcp, project, account_id, wanted, path, resource):
    """(the account, whether this call created it)."""
    body = {"accountId": account_id, "serviceAccount": wanted}
    try:
        created = gcp.request("POST", "iam", f"/v1/projects/{project}/serviceAccounts", resource, json_body=body)
    except ApiError as err:
        if err.status != 409:
            raise
        created = None  # created concurrently by someone else: fine, it exists
    return wait_until_visible(gcp, path, resource) or created, created is not None


def patch(gcp, path, resource, actual, after, wanted):
    """PATCH the fields that differ (IAM's updateMask). IAM guarantees only the masked fields
    in its answer, so the account is that answer over what was read. A just-created account
    may still answer 404/403: retried, bounded."""
    mask = sorted(k for k in wanted if (actual or {}).get(k, "") != after[k])
    patched = gcp.request("PATCH", "iam", path, resource, retry_on=account_not_yet_visible, json_body={
        "serviceAccount": {k: after[k] for k in mask}, "updateMask": ",".join(mask),
    })
    merged = dict(actual or {}, **patched)
    for key in mask:  # IAM leaves empty fields out of an account
        if after[key]:
            merged[key] = after[key]
        else:
            merged.pop(key, None)
    return merged
