# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Implementation of module prow.build_cluster.gcp_service_account; plugins/modules/gcp_service_account.py holds its documentation.

``module_kwargs()`` gives the AnsibleModule arguments; ``run(module)`` does the work and ends
with ``exit_json`` or ``fail_json``.
"""

from __future__ import annotations

from ansible_collections.prow.build_cluster.plugins.module_utils.common import ApiError, call_with_retry, fail_on_api_error
from ansible_collections.prow.build_cluster.plugins.module_utils.gcp import (
    GCP_AUTH_ARGSPEC,
    GCP_AUTH_MUTUALLY_EXCLUSIVE,
    GcpSession,
    account_id_error,
)

# Fields the module manages, API name -> option name.
FIELDS = {"displayName": "display_name", "description": "description"}


class NotYetVisible(Exception):
    pass


def wait_until_visible(gcp, path, resource):
    """GET the account until IAM returns it: a new account is "not found" for a few seconds."""

    def once():
        account = gcp.get("iam", path, resource)
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

    try:
        actual = gcp.get("iam", path, resource)
        before = {k: actual.get(k, "") for k in FIELDS} if actual else {}
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
                actual = create(gcp, project, params["name"], wanted, path, resource)
        else:
            after = dict(before, **wanted)
            if after != before:
                result["changed"] = True
                if not module.check_mode:
                    actual = gcp.request("PATCH", "iam", path, resource, json_body={
                        "serviceAccount": {k: after[k] for k in FIELDS}, "updateMask": ",".join(sorted(wanted)),
                    })
    except ApiError as err:
        fail_on_api_error(module, err)

    if params["state"] == "present" and actual:
        result["service_account"] = actual
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)


def create(gcp, project, account_id, wanted, path, resource):
    body = {"accountId": account_id, "serviceAccount": wanted}
    try:
        created = gcp.request("POST", "iam", f"/v1/projects/{project}/serviceAccounts", resource, json_body=body)
    except ApiError as err:
        if err.status != 409:
            raise
        created = None  # created concurrently by someone else: fine, it exists
    return wait_until_visible(gcp, path, resource) or created
