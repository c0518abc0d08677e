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
  - A new account can be invisible to IAM for a few seconds after it is created (IAM answers 404, or 403,
    and may do so once more after a first success). The module waits (bounded) until IAM returns it, so
    that the next task, for example M(prow.build_cluster.gcp_iam_member), finds it.
  - Fields that differ are changed in place with one PATCH naming only them (IAM's C(updateMask)).
  - If the account appears between the module's read and its create (409), it is adopted, and changed
    only where it differs.
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

from ansible_collections.prow.build_cluster.plugins.module_utils._runner import run_module
from ansible_collections.prow.build_cluster.plugins.module_utils.impl import gcp_service_account as impl


def main():
    run_module(impl, AnsibleModule)


if __name__ == "__main__":
    main()
