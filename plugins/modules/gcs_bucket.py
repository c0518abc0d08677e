#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gcs_bucket
short_description: Create a Cloud Storage bucket for job results, or check an existing (shared) one
version_added: 0.1.0
description:
  - Creates the bucket in O(project) with uniform bucket-level access (per-object ACLs off, as Prow's
    scripts create it), or checks an existing one.
  - Bucket names are global. A name that exists in another project is an error that says so, unless
    O(shared=true) declares that using another project's bucket is intended; a shared bucket is only
    checked, never modified.
  - On a bucket of O(project), O(uniform_bucket_level_access), O(storage_class) and O(labels) are
    compared and updated in place (labels given are set, others are kept), with one PATCH under
    C(ifMetagenerationMatch). If the bucket changed since it was read, it is read again and the patch
    recomputed, so no one's change is overwritten. O(location) cannot change; a different location is
    an error (compared without case, as Cloud Storage reports locations upper-cased).
  - Access for the jobs is granted separately, with M(prow.build_cluster.gcp_iam_member)
    (C(roles/storage.objectAdmin), which can overwrite C(latest-build.txt)).
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  name:
    description: Bucket name, without or with the C(gs://) prefix.
    type: str
    required: true
  location:
    description: Location for a new bucket; compared with an existing one when given. Defaults to C(US) on creation.
    type: str
  storage_class:
    description: Default storage class.
    type: str
    choices: [STANDARD, NEARLINE, COLDLINE, ARCHIVE]
  uniform_bucket_level_access:
    description: Uniform bucket-level access (IAM only, no object ACLs).
    type: bool
    default: true
  labels:
    description: Labels to set on the bucket; labels not listed are kept.
    type: dict
  shared:
    description:
      - The bucket belongs to another project and is shared between build clusters. It must exist;
        it is checked but never created, changed or deleted.
    type: bool
    default: false
  state:
    description: Whether the bucket should exist. C(absent) deletes only an empty bucket of O(project).
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - prow.build_cluster.attributes
  - prow.build_cluster.attributes.GCP
  - prow.build_cluster.gcp_auth
"""

EXAMPLES = r"""
- name: The build cluster's results bucket
  prow.build_cluster.gcs_bucket:
    project: my-build-project
    name: my-build-project
    location: US
    labels:
      team: myteam

- name: Use the shared results bucket of another project
  prow.build_cluster.gcs_bucket:
    project: my-build-project
    name: shared-prow-results
    shared: true
"""

RETURN = r"""
name:
  description: Bucket name.
  returned: always
  type: str
url:
  description: The bucket as C(gs://NAME).
  returned: always
  type: str
owned:
  description: Whether the bucket belongs to O(project).
  returned: when the bucket exists
  type: bool
bucket:
  description: The bucket resource as the Cloud Storage API returns it; empty when absent, or not yet created in check mode.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prow.build_cluster.plugins.module_utils._runner import run_module
from ansible_collections.prow.build_cluster.plugins.module_utils.impl import gcs_bucket as impl


def main():
    run_module(impl, AnsibleModule)


if __name__ == "__main__":
    main()
