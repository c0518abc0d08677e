# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Implementation of module prow.build_cluster.gcp_iam_member; plugins/modules/gcp_iam_member.py holds its documentation.

``module_kwargs()`` gives the AnsibleModule arguments; ``run(module)`` does the work and ends
with ``exit_json`` or ``fail_json``.
"""

from __future__ import annotations

from ansible_collections.prow.build_cluster.plugins.module_utils import iam
from ansible_collections.prow.build_cluster.plugins.module_utils._gcp_iam import (
    account_not_yet_visible,
    member_not_yet_visible,
    PolicyTarget,
    update_policy,
)
from ansible_collections.prow.build_cluster.plugins.module_utils._gcp_session import GCP_AUTH_ARGSPEC, GCP_AUTH_MUTUALLY_EXCLUSIVE, GcpSession
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import (
    bucket_name_error,
    first_error,
    gsa_email_error,
    normalize_bucket,
    project_id_error,
    secret_id_error,
)


def target_for(module, gcp):
    """The PolicyTarget of resource_type/resource, validated; fails the module before any call."""
    kind, resource = module.params["resource_type"], module.params["resource"]
    if kind != "project" and not resource:
        module.fail_json(msg=f"resource: required for resource_type {kind}")
    if kind == "project":
        project = resource or gcp.require_project()
        error, target = project_id_error(project), PolicyTarget.project(project)
    elif kind == "service_account":
        error, target = gsa_email_error(resource, "resource"), PolicyTarget.service_account(resource)
    elif kind == "bucket":
        bucket = normalize_bucket(resource)
        error, target = bucket_name_error(bucket), PolicyTarget.bucket(bucket)
    else:
        parts = resource.split("/")
        if len(parts) == 4 and parts[0] == "projects" and parts[2] == "secrets":
            project, secret = parts[1], parts[3]
        else:
            project, secret = gcp.require_project(), resource
        error = first_error(project_id_error(project), secret_id_error(secret))
        target = PolicyTarget.secret(project, secret)
    if error:
        module.fail_json(msg=error)
    return target


def module_kwargs():
    """The keyword arguments of this module's AnsibleModule."""
    return {
        "argument_spec": dict(
            GCP_AUTH_ARGSPEC,
            resource_type={"type": "str", "required": True, "choices": ["project", "service_account", "bucket", "secret"]},
            resource={"type": "str"},
            role={"type": "str", "required": True},
            member={"type": "str"},
            members={"type": "list", "elements": "str"},
            condition={"type": "dict", "options": {
                "title": {"type": "str", "required": True},
                "expression": {"type": "str", "required": True},
                "description": {"type": "str"},
            }},
            state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        ),
        "mutually_exclusive": GCP_AUTH_MUTUALLY_EXCLUSIVE + [("member", "members")],
        "required_one_of": [("member", "members")],
        "supports_check_mode": True,
    }


def run(module):
    """The module's work; ends with module.exit_json or module.fail_json."""
    params = module.params
    role, condition = params["role"], params["condition"]
    members = [params["member"]] if params["member"] is not None else params["members"]
    if not members:
        module.fail_json(msg="members: give at least one principal")
    error = first_error(iam.role_error(role), *(iam.member_error(m) for m in members), iam.condition_error(condition))
    if error:
        module.fail_json(msg=error)
    gcp = GcpSession(module)
    target = target_for(module, gcp)

    change = iam.add_member if params["state"] == "present" else iam.remove_member

    def change_all(policy):
        changed = False
        for member in members:
            policy, changed_one = change(policy, role, member, condition)
            changed = changed or changed_one
        return policy, changed

    # A service account created seconds ago may answer 404 or 403 for a while (as the
    # resource), or be refused as a member ("does not exist"): both retried, bounded.
    not_yet_visible = account_not_yet_visible if params["resource_type"] == "service_account" else member_not_yet_visible
    # In check mode the resource may not exist yet (an earlier task creates it): say so.
    would = (f"grant {role} to " if params["state"] == "present" else f"revoke {role} from ") + ", ".join(members)
    before, after, changed = update_policy(
        gcp, target, change_all,
        check_mode=module.check_mode, retry_on=not_yet_visible, missing_would=would,
    )

    result = {
        "changed": changed,
        "resource": target.resource,
        "members": iam.members_of(after, role, condition),
        "etag": before.get("etag", ""),
    }
    if module._diff:
        binding = {"role": role, "condition": condition} if condition else {"role": role}
        result["diff"] = {
            "before": dict(binding, members=iam.members_of(before, role, condition)),
            "after": dict(binding, members=result["members"]),
        }
    module.exit_json(**result)
