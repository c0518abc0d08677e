#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gcp_service_account
short_description: Create or delete a Google service account (GSA)
version_added: 0.1.0
description:
  - Ensures a Google service account exists with the given display name and description, or does not exist.
  - Only the fields given are compared; a field left out is neither checked nor changed.
  - A new account can be invisible to IAM for a few seconds after it is created. The module waits
    (bounded) until IAM returns it, so that the next task, for example M(prow.build_cluster.gcp_iam_member),
    finds it.
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  name:
    description:
      - The account ID, the part of the email before C(@) (for example C(prowjob-default-sa)).
      - 6 to 30 lowercase letters, digits and C(-), starting with a letter.
    type: str
    required: true
  display_name:
    description: Display name of the account.
    type: str
  description:
    description: Description of the account.
    type: str
  state:
    description: Whether the account should exist.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - prow.build_cluster.attributes
  - prow.build_cluster.attributes.GCP
  - prow.build_cluster.gcp_auth
"""

EXAMPLES = r"""
- name: The identity of the build cluster's jobs
  prow.build_cluster.gcp_service_account:
    project: my-build-project
    name: prowjob-default-sa
    display_name: ProwJob default SA
    description: Uploads job results to the build bucket
  register: gsa

- name: Remove it
  prow.build_cluster.gcp_service_account:
    project: my-build-project
    name: prowjob-default-sa
    state: absent
"""

RETURN = r"""
email:
  description: Email of the account.
  returned: always
  type: str
  sample: prowjob-default-sa@my-build-project.iam.gserviceaccount.com
member:
  description: The account as an IAM member, for M(prow.build_cluster.gcp_iam_member).
  returned: always
  type: str
  sample: serviceAccount:prowjob-default-sa@my-build-project.iam.gserviceaccount.com
service_account:
  description: The account as the IAM API returns it; empty when absent, or not yet created in check mode.
  returned: always
  type: dict
  sample: {"email": "prowjob-default-sa@my-build-project.iam.gserviceaccount.com", "uniqueId": "1234567890"}
"""

from ansible.module_utils.basic import AnsibleModule

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


def main():
    module = AnsibleModule(
        argument_spec=dict(
            GCP_AUTH_ARGSPEC,
            name={"type": "str", "required": True},
            display_name={"type": "str"},
            description={"type": "str"},
            state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        ),
        mutually_exclusive=GCP_AUTH_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
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


if __name__ == "__main__":
    main()
