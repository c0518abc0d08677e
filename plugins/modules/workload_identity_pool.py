#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: workload_identity_pool
short_description: Create, update or delete a Workload Identity Federation pool
version_added: 0.1.0
description:
  - Ensures the workload identity pool C(projects/PROJECT/locations/global/workloadIdentityPools/NAME) (IAM v1),
    the home of the providers that let a non-GKE build cluster's service-account tokens be exchanged for Google
    credentials (M(prow.build_cluster.workload_identity_pool_provider)).
  - Only the fields given are compared; fields that differ are changed with one PATCH naming only them (IAM's
    C(updateMask)). Every write is a long-running operation, waited for.
  - Deletion is soft on Google's side (state C(DELETED) for 30 days, the ID still taken), so a deleted pool is
    undeleted rather than created again; O(state=absent) on a deleted pool changes nothing.
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  name:
    description: The pool ID, 4 to 32 of C([a-z0-9-]), not starting with C(gcp-).
    type: str
    required: true
  display_name:
    description: Display name, at most 32 characters.
    type: str
  description:
    description: Description, at most 256 characters.
    type: str
  disabled:
    description: Whether the pool is disabled (no token exchange; tokens already issued stay valid).
    type: bool
  state:
    description: Whether the pool should exist.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - prow.build_cluster.attributes
  - prow.build_cluster.attributes.GCP
  - prow.build_cluster.gcp_auth
"""

EXAMPLES = r"""
- name: The pool of the build clusters that are not on GKE
  prow.build_cluster.workload_identity_pool:
    project: my-prow-project
    name: prow-build-clusters
    display_name: Prow build clusters
"""

RETURN = r"""
pool:
  description: The pool as IAM returns it (its name with the project number); empty when absent, or not yet created in check mode.
  returned: always
  type: dict
  sample: {"name": "projects/123456789/locations/global/workloadIdentityPools/prow-build-clusters", "state": "ACTIVE"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prow.build_cluster.plugins.module_utils._runner import run_module
from ansible_collections.prow.build_cluster.plugins.module_utils.impl import workload_identity_pool as impl


def main():
    run_module(impl, AnsibleModule)


if __name__ == "__main__":
    main()
