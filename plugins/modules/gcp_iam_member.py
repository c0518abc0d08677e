#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gcp_iam_member
short_description: Add or remove one member of one IAM role on a project, service account, bucket or secret
version_added: 0.1.0
description:
  - Additive IAM management, like C(gcloud ... add-iam-policy-binding) and C(remove-iam-policy-binding)
    rather than a whole-policy replace. Only the one member of the one binding (role and optional
    condition) is added or removed; every other binding and member is written back exactly as read.
  - Each change is a read-modify-write with the policy's etag. If someone else changes the policy in
    between, Google refuses the write (409 ABORTED, or 412 for Cloud Storage) and the module reads
    again and retries with a bounded, jittered backoff, so concurrent edits never lose a binding.
  - Policies are read as version 3 and written as version 3 only when some binding has a condition.
  - A service account created seconds earlier may be refused as a member (C(does not exist)) while
    IAM catches up; that error is retried (bounded) too.
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  resource_type:
    description: The kind of resource whose policy is changed.
    type: str
    choices: [project, service_account, bucket, secret]
    required: true
  resource:
    description:
      - The resource, by kind. C(project) is a project ID and defaults to O(project).
        C(service_account) is the account's email. C(bucket) is a bucket name (a C(gs://) prefix is removed).
        C(secret) is a secret ID in O(project), or C(projects/PROJECT/secrets/SECRET).
    type: str
  role:
    description:
      - The role, C(roles/NAME) or a custom role C(projects/PROJECT/roles/NAME) or C(organizations/ID/roles/NAME).
    type: str
    required: true
  member:
    description:
      - The principal, for example C(serviceAccount:EMAIL), C(user:EMAIL), C(group:EMAIL), C(domain:DOMAIN),
        or C(serviceAccount:PROJECT.svc.id.goog[NAMESPACE/KSA]) for a Kubernetes service account.
      - Exactly one of O(member) and O(members) is required.
    type: str
  members:
    description:
      - Several principals for the same role, added or removed in one read-modify-write of the policy
        (one module run and one policy read instead of one per member).
      - Exactly one of O(member) and O(members) is required.
    type: list
    elements: str
  condition:
    description:
      - An IAM condition; the binding is then the one of O(role) with exactly this condition.
    type: dict
    suboptions:
      title:
        description: Title of the condition.
        type: str
        required: true
      expression:
        description: CEL expression.
        type: str
        required: true
      description:
        description: Description of the condition.
        type: str
  state:
    description: Whether the member should hold the role.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - prow.build_cluster.attributes
  - prow.build_cluster.attributes.GCP
  - prow.build_cluster.gcp_auth
"""

EXAMPLES = r"""
- name: Let the jobs' GSA write results into the bucket
  prow.build_cluster.gcp_iam_member:
    resource_type: bucket
    resource: my-build-project
    role: roles/storage.objectAdmin
    member: serviceAccount:prowjob-default-sa@my-build-project.iam.gserviceaccount.com

- name: Let the jobs' GSA and Prow's crier and deck write results, in one policy update
  prow.build_cluster.gcp_iam_member:
    resource_type: bucket
    resource: my-prow-results
    role: roles/storage.objectAdmin
    members:
      - serviceAccount:prowjob-default-sa@my-build-project.iam.gserviceaccount.com
      - serviceAccount:prow-crier@my-prow-project.iam.gserviceaccount.com
      - serviceAccount:prow-deck@my-prow-project.iam.gserviceaccount.com

- name: Let the rotation job admin the cluster's project
  prow.build_cluster.gcp_iam_member:
    resource_type: project
    project: my-build-project
    role: roles/container.admin
    member: serviceAccount:gencred-refresher@k8s-prow.iam.gserviceaccount.com

- name: Let Prow's External Secrets read the kubeconfig secret
  prow.build_cluster.gcp_iam_member:
    resource_type: secret
    project: k8s-prow
    resource: prow_build_cluster_kubeconfig_build-team
    role: roles/secretmanager.secretAccessor
    member: serviceAccount:external-secrets@k8s-prow.iam.gserviceaccount.com
"""

RETURN = r"""
resource:
  description: The resource whose policy was read, for example C(bucket my-build-project).
  returned: always
  type: str
members:
  description: Members of the binding (role and condition) after the change, or as it would be in check mode.
  returned: always
  type: list
  elements: str
etag:
  description: Etag of the policy as read.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prow.build_cluster.plugins.module_utils import iam
from ansible_collections.prow.build_cluster.plugins.module_utils.common import ApiError, fail_on_api_error
from ansible_collections.prow.build_cluster.plugins.module_utils.gcp import (
    GCP_AUTH_ARGSPEC,
    GCP_AUTH_MUTUALLY_EXCLUSIVE,
    GcpSession,
    PolicyTarget,
    bucket_name_error,
    first_error,
    gsa_email_error,
    member_not_yet_visible,
    normalize_bucket,
    project_id_error,
    secret_id_error,
    update_policy,
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


def main():
    module = AnsibleModule(
        argument_spec=dict(
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
        mutually_exclusive=GCP_AUTH_MUTUALLY_EXCLUSIVE + [("member", "members")],
        required_one_of=[("member", "members")],
        supports_check_mode=True,
    )
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

    try:
        before, after, changed = update_policy(
            gcp, target, change_all,
            check_mode=module.check_mode, retry_on=member_not_yet_visible,
        )
    except ApiError as err:
        fail_on_api_error(module, err)

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


if __name__ == "__main__":
    main()
