# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Implementation of module prow.build_cluster.gcs_bucket; plugins/modules/gcs_bucket.py holds its documentation.

``module_kwargs()`` gives the AnsibleModule arguments; ``run(module)`` does the work and ends
with ``exit_json`` or ``fail_json``.
"""

from __future__ import annotations

from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError
from ansible_collections.prow.build_cluster.plugins.module_utils._retry import call_with_retry
from ansible_collections.prow.build_cluster.plugins.module_utils._gcp_session import GCP_AUTH_ARGSPEC, GCP_AUTH_MUTUALLY_EXCLUSIVE, GcpSession
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import bucket_name_error, first_error, labels_error, normalize_bucket


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


def module_kwargs():
    """The keyword arguments of this module's AnsibleModule."""
    return {
        "argument_spec": dict(
            GCP_AUTH_ARGSPEC,
            name={"type": "str", "required": True},
            location={"type": "str"},
            storage_class={"type": "str", "choices": ["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"]},
            uniform_bucket_level_access={"type": "bool", "default": True},
            labels={"type": "dict"},
            shared={"type": "bool", "default": False},
            state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        ),
        "mutually_exclusive": GCP_AUTH_MUTUALLY_EXCLUSIVE,
        "supports_check_mode": True,
    }


def run(module):
    """The module's work; ends with module.exit_json or module.fail_json."""
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
        if module.check_mode:
            require_create_permission(module, gcp, project, name)
        result["changed"] = True
        body = {
            "name": name,
            "location": (params["location"] or "US").upper(),  # GCS reports it upper-cased
            "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": params["uniform_bucket_level_access"]}},
        }
        if params["storage_class"]:
            body["storageClass"] = params["storage_class"]
        if params["labels"]:
            body["labels"] = params["labels"]
        after = dict(summary(body), storage_class=params["storage_class"] or "STANDARD")
        if not module.check_mode:
            bucket, raced = create(module, gcp, project, body, path, resource)
            if raced:
                # Another run created it between our read and our create (build clusters run in
                # parallel and may share a bucket they create): it is the bucket asked for, in
                # this project; from here on it is an existing bucket like any other.
                before = after = summary(bucket)
                result["changed"] = False
                bucket, after = update_existing(module, gcp, path, resource, bucket, result)
    elif params["shared"]:
        if not before["uniform_bucket_level_access"] and params["uniform_bucket_level_access"]:
            module.warn(f"shared bucket {name} does not have uniform bucket-level access; it is left as it is")
    else:
        bucket, after = update_existing(module, gcp, path, resource, bucket, result)

    result["bucket"] = bucket or {}
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)


def update_existing(module, gcp, path, resource, bucket, result):
    """An existing bucket of this project made as asked (labels, uniform access, storage class;
    the location cannot change): (bucket, the summary after)."""
    params = module.params
    before = summary(bucket)
    if params["location"] and before["location"].upper() != params["location"].upper():
        module.fail_json(msg=(
            f"{resource} is in {before['location']}, not {params['location']}; a bucket's location "
            "cannot change. Set location to match, or use another bucket."))
    if not wanted_changes(params, bucket):
        return bucket, before
    result["changed"] = True
    after = dict(before, labels=dict(before["labels"], **(params["labels"] or {})),
                 uniform_bucket_level_access=params["uniform_bucket_level_access"],
                 storage_class=params["storage_class"] or before["storage_class"])
    if not module.check_mode:
        bucket = patch_bucket(module, gcp, path, resource, bucket)
    return bucket, after


def patch_bucket(module, gcp, path, resource, bucket):
    """PATCH what differs under ifMetagenerationMatch, so a change made since our read is
    never overwritten: on 412 the bucket is read again and the patch recomputed (bounded)."""
    state = {"bucket": bucket}

    def attempt():
        current = state["bucket"]
        if current is None:
            current = read_bucket(module, gcp, path, resource)
            if current is None:
                raise ApiError(resource, 404, "the bucket was deleted while it was being updated", method="PATCH")
        changes = wanted_changes(module.params, current)
        if not changes:
            return current
        try:
            return gcp.request("PATCH", "storage", path, resource, json_body=changes,
                               params={"ifMetagenerationMatch": current.get("metageneration")})
        except ApiError as err:
            if err.status == 412:
                state["bucket"] = None  # someone wrote it since: read again
            raise

    return call_with_retry(attempt, retry_on=lambda exc: isinstance(exc, ApiError) and exc.status == 412)


CREATE_PERMISSION = "storage.buckets.create"


def require_create_permission(module, gcp, project, name):
    """Check mode's answer to what the create would answer: a caller that may not create buckets in
    the project fails now, not after a real run has changed other things (one read-only call)."""
    resource = f"project {project}"
    try:
        held = gcp.request("POST", "cloudresourcemanager", f"/v1/projects/{project}:testIamPermissions", resource,
                           json_body={"permissions": [CREATE_PERMISSION]}).get("permissions") or []
    except ApiError as err:
        if err.status not in (403, 404):
            raise
        held = []
    if CREATE_PERMISSION not in held:
        module.fail_json(msg=(
            f"bucket {name} would be created in project {project}, but the caller may not create buckets there "
            f"({CREATE_PERMISSION}). Grant it roles/storage.admin on {project}, or set the bucket's project to "
            "one of yours."), status=403)


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


def create(module, gcp, project, body, path, resource):
    """(the bucket, whether another run created it first). A 409 is that other run only when the
    bucket now reads as this project's; otherwise the name is someone else's."""
    try:
        return gcp.request("POST", "storage", "/storage/v1/b", resource, params={"project": project}, json_body=body), False
    except ApiError as err:
        if err.status != 409:
            raise
        current = read_bucket(module, gcp, path, resource)
        if current is not None and str(current.get("projectNumber")) == project_number(gcp, project):
            return current, True
        module.fail_json(msg=(
            f"{resource} cannot be created: {err.message} Bucket names are global; if another project "
            "owns it, choose another name."), status=409)
