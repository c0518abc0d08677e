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
    compared and updated in place (labels given are set, others are kept). O(location) cannot change;
    a different location is an error.
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

from ansible_collections.prow.build_cluster.plugins.module_utils.common import ApiError, fail_on_api_error
from ansible_collections.prow.build_cluster.plugins.module_utils.gcp import (
    GCP_AUTH_ARGSPEC,
    GCP_AUTH_MUTUALLY_EXCLUSIVE,
    GcpSession,
    bucket_name_error,
    first_error,
    labels_error,
    normalize_bucket,
)


def summary(bucket):
    """What diffs show of a bucket: the fields this module manages."""
    if not bucket:
        return {}
    iam_config = (bucket.get("iamConfiguration") or {}).get("uniformBucketLevelAccess") or {}
    return {
        "location": bucket.get("location"),
        "storage_class": bucket.get("storageClass"),
        "uniform_bucket_level_access": bool(iam_config.get("enabled")),
        "labels": bucket.get("labels") or {},
    }


def wanted_changes(params, bucket):
    """The PATCH body that brings an owned bucket to the options ({} when it matches)."""
    actual = summary(bucket)
    patch = {}
    if actual["uniform_bucket_level_access"] != params["uniform_bucket_level_access"]:
        patch["iamConfiguration"] = {"uniformBucketLevelAccess": {"enabled": params["uniform_bucket_level_access"]}}
    if params["storage_class"] and actual["storage_class"] != params["storage_class"]:
        patch["storageClass"] = params["storage_class"]
    labels = params["labels"] or {}
    if any(actual["labels"].get(k) != v for k, v in labels.items()):
        patch["labels"] = labels  # PATCH merges labels: those not named are kept
    return patch


def project_number(gcp, project):
    info = gcp.request("GET", "cloudresourcemanager", f"/v1/projects/{project}", f"project {project}")
    return str(info.get("projectNumber", ""))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            GCP_AUTH_ARGSPEC,
            name={"type": "str", "required": True},
            location={"type": "str"},
            storage_class={"type": "str", "choices": ["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"]},
            uniform_bucket_level_access={"type": "bool", "default": True},
            labels={"type": "dict"},
            shared={"type": "bool", "default": False},
            state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        ),
        mutually_exclusive=GCP_AUTH_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    params = module.params
    name = normalize_bucket(params["name"])
    error = first_error(bucket_name_error(name), labels_error(params["labels"]),
                        "shared: a shared bucket is never deleted; drop state: absent" if params["shared"] and params["state"] == "absent" else None)
    if error:
        module.fail_json(msg=error)
    gcp = GcpSession(module)
    project = gcp.require_project()
    path = f"/storage/v1/b/{name}"
    resource = f"bucket {name}"
    result = {"changed": False, "name": name, "url": f"gs://{name}", "bucket": {}}

    try:
        bucket = read_bucket(module, gcp, path, resource)
        after = before = summary(bucket)
        if bucket:
            result["owned"] = owned = str(bucket.get("projectNumber")) == project_number(gcp, project)
            if not owned and not params["shared"]:
                module.fail_json(msg=(
                    f"bucket {name} exists but belongs to another project (number {bucket.get('projectNumber')}), "
                    f"not {project}. Bucket names are global: choose another name, or set shared: true "
                    "to use that project's bucket as it is."))
        if params["state"] == "absent":
            after = {}
            if bucket:
                result["changed"] = True
                if not module.check_mode:
                    gcp.request("DELETE", "storage", path, resource, allow_404=True)
            bucket = None
        elif bucket is None:
            if params["shared"]:
                module.fail_json(msg=f"shared bucket {name} does not exist; a shared bucket is not created")
            result["changed"] = True
            body = {
                "name": name,
                "location": params["location"] or "US",
                "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": params["uniform_bucket_level_access"]}},
            }
            if params["storage_class"]:
                body["storageClass"] = params["storage_class"]
            if params["labels"]:
                body["labels"] = params["labels"]
            after = summary(body)
            if not module.check_mode:
                bucket = create(module, gcp, project, body, resource)
        elif params["shared"]:
            if not before["uniform_bucket_level_access"] and params["uniform_bucket_level_access"]:
                module.warn(f"shared bucket {name} does not have uniform bucket-level access; it is left as it is")
        else:
            if params["location"] and before["location"].upper() != params["location"].upper():
                module.fail_json(msg=(
                    f"bucket {name} is in {before['location']}, not {params['location']}; a bucket's location "
                    "cannot change. Set location to match, or use another bucket."))
            patch = wanted_changes(params, bucket)
            if patch:
                result["changed"] = True
                after = dict(before, labels=dict(before["labels"], **(params["labels"] or {})),
                             uniform_bucket_level_access=params["uniform_bucket_level_access"],
                             storage_class=params["storage_class"] or before["storage_class"])
                if not module.check_mode:
                    # ifMetagenerationMatch: never overwrite a change made since our read.
                    bucket = gcp.request("PATCH", "storage", path, resource, json_body=patch,
                                         params={"ifMetagenerationMatch": bucket.get("metageneration")})
    except ApiError as err:
        fail_on_api_error(module, err)

    result["bucket"] = bucket or {}
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)


def read_bucket(module, gcp, path, resource):
    try:
        return gcp.get("storage", path, resource)
    except ApiError as err:
        if err.status == 403:
            # GCS answers 404 for a name nobody has, so 403 means the bucket exists.
            module.fail_json(msg=(
                f"{resource} exists, but the caller cannot read it ({err.message}). Either another project "
                "owns this name (bucket names are global: choose another), or grant the caller "
                "storage.buckets.get on it."), status=403)
        raise


def create(module, gcp, project, body, resource):
    try:
        return gcp.request("POST", "storage", "/storage/v1/b", resource, params={"project": project}, json_body=body)
    except ApiError as err:
        if err.status == 409:
            module.fail_json(msg=(
                f"{resource} cannot be created: {err.message} Bucket names are global; if another project "
                "owns it, choose another name."), status=409)
        raise


if __name__ == "__main__":
    main()
