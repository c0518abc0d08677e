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
  - Policies are read as version 3 (below it Google hides conditional bindings) and written as version 3
    when the policy read or written has a condition (Google requires it for any change to such a policy,
    including removing its last condition), otherwise as version 1.
  - Cloud Storage accepts conditions only on buckets with uniform bucket-level access.
  - A service account created seconds earlier may be refused as a member (C(does not exist)) while
    IAM catches up, or, as O(resource_type=service_account), answer 404 or 403; those errors are retried
    (bounded) too.
  - In check mode, a resource that does not exist yet (404; a real run creates it in an earlier task) is no
    error and is not waited for; the module reports C(changed) with a C(msg) saying what it would grant.
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
      - Federated identities by their pool, which IAM names by project NUMBER,
        C(principal://iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/subject/SUBJECT)
        (for a GKE job KSA with direct access, POOL C(PROJECT.svc.id.goog) and SUBJECT C(ns/NAMESPACE/sa/KSA)), or
        C(principalSet://.../POOL/*), C(.../group/GROUP), C(.../attribute.NAME/VALUE), C(.../namespace/NAMESPACE);
        another form fails before any call.
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

from ansible_collections.prow.build_cluster.plugins.module_utils._runner import run_module
from ansible_collections.prow.build_cluster.plugins.module_utils.impl import gcp_iam_member as impl


def main():
    run_module(impl, AnsibleModule)


if __name__ == "__main__":
    main()
