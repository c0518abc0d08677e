"""Cloud Storage JSON API v1: buckets, bucket IAM and objects.

Paths as https://cloud.google.com/storage/docs/json_api/v1 and the google-cloud-storage
client use them: ``/storage/v1/b...`` for metadata, ``/upload/storage/v1/b/B/o`` for
uploads (``uploadType=media`` and ``multipart``), ``/download/storage/v1/...?alt=media`` for
downloads. Errors use GCS's legacy shape with ``errors[].reason``; a stale IAM etag is 412
``conditionNotMet`` (not IAM's 409). Buckets' etags (and their IAM policies' etags) are, as
on GCS, the metageneration encoded like ``CAE=``, ``CAI=``...

Buckets keep the ``location`` (upper-cased, default ``US``) and default ``storageClass``
(default ``STANDARD``) they were created with; PATCH changes labels (merged; a null value
removes a key), ``storageClass``, ``versioning`` and uniform bucket-level access, under
``ifMetagenerationMatch``/``ifMetagenerationNotMatch`` preconditions (412
``conditionNotMet`` when stale), and bumps the metageneration. As on GCS, a bucket's IAM
policy may hold conditional bindings only while uniform bucket-level access is on, and a
policy with conditions is read only with ``optionsRequestedPolicyVersion=3``.

Object writes are authorized by the bucket's IAM policy plus the project's, for the calling
principal: ``storage.objects.create`` to create, and also ``storage.objects.delete`` to
replace an existing object, which is why ``roles/storage.objectCreator`` cannot overwrite
``latest-build.txt`` and Prow needs ``roles/storage.objectAdmin``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import google_crc32c
from werkzeug.wrappers import Response

from .errors import ApiError
from .policy import Policy, requested_version
from .state import Principal, now_rfc3339
from .web import Ctx, Route, set_policy

# 3-63 characters, lowercase letters, digits, "-", "_" and "."; letter or digit at both ends.
BUCKET_NAME_RE = re.compile(r"^[a-z0-9][-a-z0-9_.]{1,61}[a-z0-9]$")
PRECONDITION_FAILED = "At least one of the pre-conditions you specified did not hold."
MULTI_REGIONS = frozenset({"US", "EU", "ASIA"})
DUAL_REGIONS = frozenset({"NAM4", "EUR4", "EUR5", "EUR7", "EUR8", "ASIA1"})
# Google Cloud regions: continent prefix, area, number (US-WEST1, EUROPE-WEST4, ME-CENTRAL2...).
REGION_RE = re.compile(r"^(US|EUROPE|ASIA|AUSTRALIA|NORTHAMERICA|SOUTHAMERICA|ME|AFRICA)"
                       r"-[A-Z]+[0-9]{1,2}$")
STORAGE_CLASSES = frozenset({"STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE",
                             # legacy classes GCS still accepts
                             "MULTI_REGIONAL", "REGIONAL", "DURABLE_REDUCED_AVAILABILITY"})
UBLA_LOCK_SECONDS = 90 * 86400  # uniform access can be turned off again for 90 days


def gcs_error(code: int, message: str, reason: str | None = None, **extra: str) -> ApiError:
    return ApiError(code, message, reason=reason, extra=extra)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@dataclass
class StoredObject:
    name: str
    data: bytes
    content_type: str
    generation: int
    metadata: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=now_rfc3339)

    @property
    def md5(self) -> str:
        return base64.b64encode(hashlib.md5(self.data).digest()).decode()

    @property
    def crc32c(self) -> str:
        return crc32c_b64(self.data)


def crc32c_b64(data: bytes) -> str:
    return base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode()


def location_type(location: str) -> str:
    if location in MULTI_REGIONS:
        return "multi-region"
    return "dual-region" if location in DUAL_REGIONS else "region"


def _location(value: Any) -> str:
    location = str(value or "US").upper()
    if location not in MULTI_REGIONS | DUAL_REGIONS and not REGION_RE.match(location):
        raise gcs_error(400, "The specified location constraint is not valid.", "invalid")
    return location


def _storage_class(value: Any) -> str:
    storage_class = str(value or "STANDARD").upper()
    if storage_class not in STORAGE_CLASSES:
        raise gcs_error(400, f"Invalid argument: storage class '{value}' is not valid.", "invalid")
    return storage_class


@dataclass
class Bucket:
    name: str
    project_id: str
    project_number: str
    uniform: bool
    labels: dict[str, str]
    location: str = "US"
    storage_class: str = "STANDARD"
    versioning: bool | None = None  # None: never set (GCS then omits the field)
    uniform_since: float = field(default_factory=time.time)
    policy: Policy = field(default_factory=Policy)
    metageneration: int = 1
    created: str = field(default_factory=now_rfc3339)
    updated: str = field(default_factory=now_rfc3339)
    objects: dict[str, StoredObject] = field(default_factory=dict)

    @property
    def etag(self) -> str:
        return base64.b64encode(b"\x08" + _varint(self.metageneration)).decode()

    def bump(self) -> str:
        """A metadata write (IAM included): new metageneration, hence new etag (the IAM
        policy's etag is the bucket's metageneration too, so any write makes it stale)."""
        self.metageneration += 1
        self.updated = now_rfc3339()
        self.policy.etag = self.etag
        return self.etag


def _denied(principal: Principal, permission: str, what: str) -> ApiError:
    return gcs_error(
        403,
        f"{principal.email} does not have {permission} access to the Google Cloud Storage "
        f"{what}. Permission '{permission}' denied on resource (or it may not exist).")


def _bucket(ctx: Ctx, name: str, permission: str) -> Bucket:
    # GCS's bucket namespace is global, so a missing bucket is 404 for everyone.
    bucket = ctx.state.buckets.get(name)
    if bucket is None:
        raise gcs_error(404, "The specified bucket does not exist.")
    _require(ctx, bucket, permission, "bucket")
    return bucket


def _require(ctx: Ctx, bucket: Bucket, permission: str, what: str) -> None:
    project = ctx.state.projects[bucket.project_id]
    if not ctx.state.allowed(ctx.caller, permission, bucket.policy, project.policy):
        raise _denied(ctx.caller, permission, what)


# ---------------------------------------------------------------- buckets


def bucket_json(ctx: Ctx, b: Bucket) -> dict[str, Any]:
    base = ctx.base_url()
    iam_config: dict[str, Any] = {"enabled": b.uniform}
    if b.uniform:
        locked = datetime.fromtimestamp(b.uniform_since + UBLA_LOCK_SECONDS, timezone.utc)
        iam_config["lockedTime"] = locked.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body: dict[str, Any] = {
        "kind": "storage#bucket",
        "selfLink": f"{base}/storage/v1/b/{b.name}",
        "id": b.name,
        "name": b.name,
        "projectNumber": b.project_number,
        "metageneration": str(b.metageneration),
        "location": b.location,
        "storageClass": b.storage_class,
        "etag": b.etag,
        "timeCreated": b.created,
        "updated": b.updated,
        "iamConfiguration": {"bucketPolicyOnly": dict(iam_config),
                             "uniformBucketLevelAccess": iam_config,
                             "publicAccessPrevention": "inherited"},
        "locationType": location_type(b.location),
        "rpo": "DEFAULT",
    }
    if b.labels:
        body["labels"] = dict(b.labels)
    if b.versioning is not None:
        body["versioning"] = {"enabled": b.versioning}
    return body


def _project_allowing(ctx: Ctx, permission: str):
    """The ?project= of a bucket insert or list, which the caller must have ``permission`` on."""
    project_ref = ctx.arg("project")
    if not project_ref:
        raise gcs_error(400, "Required parameter: project", "required",
                        locationType="parameter", location="project")
    project = ctx.state.project(project_ref)
    if project is None or not ctx.state.allowed(ctx.caller, permission, project.policy):
        raise gcs_error(
            403, f"{ctx.caller.email} does not have {permission} access to the Google Cloud "
                 f"project. Permission '{permission}' denied on resource (or it may not exist).")
    return project


def insert_bucket(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    project = _project_allowing(ctx, "storage.buckets.create")
    body = ctx.body()
    name = body.get("name", "")
    if not BUCKET_NAME_RE.match(name) or ".." in name or name.startswith("goog"):
        raise gcs_error(400, f"Invalid bucket name: '{name}'")
    existing = ctx.state.buckets.get(name)
    if existing is not None:
        if existing.project_id == project.project_id:
            raise gcs_error(409, "Your previous request to create the named bucket succeeded "
                                 "and you already own it.")
        raise gcs_error(409, "The requested bucket name is not available. The bucket namespace "
                             "is shared by all users of the system. Please select a different "
                             "name and try again.")
    iam = body.get("iamConfiguration") or {}
    uniform = bool((iam.get("uniformBucketLevelAccess") or iam.get("bucketPolicyOnly")
                    or {}).get("enabled"))
    versioning = body.get("versioning")
    bucket = Bucket(name, project.project_id, project.number, uniform, dict(body.get("labels") or {}),
                    location=_location(body.get("location")),
                    storage_class=_storage_class(body.get("storageClass")),
                    versioning=None if versioning is None else bool(versioning.get("enabled")))
    # What GCS puts in a new bucket's policy: project owners/editors own it, viewers read.
    p = project.project_id
    bucket.policy.bindings = [
        {"role": "roles/storage.legacyBucketOwner", "members": [f"projectEditor:{p}", f"projectOwner:{p}"]},
        {"role": "roles/storage.legacyBucketReader", "members": [f"projectViewer:{p}"]},
        {"role": "roles/storage.legacyObjectOwner", "members": [f"projectEditor:{p}", f"projectOwner:{p}"]},
        {"role": "roles/storage.legacyObjectReader", "members": [f"projectViewer:{p}"]},
    ]
    bucket.policy.etag = bucket.etag
    ctx.state.buckets[name] = bucket
    return 200, bucket_json(ctx, bucket)


def list_buckets(ctx: Ctx) -> dict[str, Any]:
    project = _project_allowing(ctx, "storage.buckets.list")
    prefix = ctx.arg("prefix") or ""
    items = [bucket_json(ctx, b) for b in sorted(ctx.state.buckets.values(), key=lambda b: b.name)
             if b.project_id == project.project_id and b.name.startswith(prefix)]
    body: dict[str, Any] = {"kind": "storage#buckets"}
    if items:
        body["items"] = items
    return body


def get_bucket(ctx: Ctx, bucket: str) -> dict[str, Any]:
    return bucket_json(ctx, _bucket(ctx, bucket, "storage.buckets.get"))


def _check_metageneration(ctx: Ctx, b: Bucket) -> None:
    match = ctx.arg("ifMetagenerationMatch")
    not_match = ctx.arg("ifMetagenerationNotMatch")
    if (match is not None and int(match) != b.metageneration) or (
            not_match is not None and int(not_match) == b.metageneration):
        raise gcs_error(412, PRECONDITION_FAILED, locationType="header", location="If-Match")


def patch_bucket(ctx: Ctx, bucket: str) -> dict[str, Any]:
    """buckets.patch: the fields named in the body change, the others stay."""
    b = _bucket(ctx, bucket, "storage.buckets.update")
    _check_metageneration(ctx, b)
    body = ctx.body()
    if "name" in body and body["name"] != b.name:
        raise gcs_error(400, "Bucket names cannot be changed.", "invalid")
    if "location" in body and _location(body["location"]) != b.location:
        raise gcs_error(400, "A bucket's location cannot be changed.", "invalid")
    labels = dict(b.labels)
    if "labels" in body:
        if body["labels"] is None:
            labels = {}
        else:
            for key, value in body["labels"].items():
                if value is None:
                    labels.pop(key, None)
                else:
                    labels[key] = str(value)
    storage_class = _storage_class(body["storageClass"]) if body.get("storageClass") else b.storage_class
    versioning = b.versioning
    if "versioning" in body:
        versioning = bool((body["versioning"] or {}).get("enabled"))
    uniform = b.uniform
    iam = body.get("iamConfiguration") or {}
    ubla = iam.get("uniformBucketLevelAccess") or iam.get("bucketPolicyOnly")
    if ubla is not None and "enabled" in ubla:
        uniform = bool(ubla["enabled"])
    if b.uniform and not uniform:
        if b.policy.has_conditions:
            raise gcs_error(400, "Uniform bucket-level access cannot be disabled on a bucket whose "
                                 "IAM policy has conditions; remove them first.", "invalid")
        if time.time() > b.uniform_since + UBLA_LOCK_SECONDS:
            raise gcs_error(400, "Uniform bucket-level access is locked on this bucket and cannot "
                                 "be disabled.", "invalid")
    if uniform and not b.uniform:
        b.uniform_since = time.time()
    b.labels, b.storage_class, b.versioning, b.uniform = labels, storage_class, versioning, uniform
    b.bump()
    return bucket_json(ctx, b)


def delete_bucket(ctx: Ctx, bucket: str) -> Response:
    b = _bucket(ctx, bucket, "storage.buckets.delete")
    if b.objects:
        raise gcs_error(409, "The bucket you tried to delete is not empty.")
    del ctx.state.buckets[bucket]
    return Response(status=204)


# ---------------------------------------------------------------- bucket IAM


def _policy_json(b: Bucket) -> dict[str, Any]:
    return b.policy.to_json({"kind": "storage#policy",
                             "resourceId": f"projects/_/buckets/{b.name}"})


def get_bucket_policy(ctx: Ctx, bucket: str) -> dict[str, Any]:
    b = _bucket(ctx, bucket, "storage.buckets.getIamPolicy")
    # GCS does not format a conditional policy down to version 1 as IAM does: it refuses.
    if requested_version(ctx.arg("optionsRequestedPolicyVersion")) < 3 and b.policy.has_conditions:
        raise gcs_error(400, "The bucket's IAM policy has conditions: read it with "
                             "optionsRequestedPolicyVersion=3.", "invalid",
                        locationType="parameter", location="optionsRequestedPolicyVersion")
    return _policy_json(b)


def set_bucket_policy(ctx: Ctx, bucket: str) -> dict[str, Any]:
    b = _bucket(ctx, bucket, "storage.buckets.setIamPolicy")
    incoming = ctx.body()
    if not b.uniform and any(isinstance(x, dict) and x.get("condition")
                             for x in incoming.get("bindings") or []):
        raise gcs_error(400, "IAM conditions can only be used on buckets with uniform "
                             "bucket-level access enabled.", "invalid")
    set_policy(
        ctx, b.policy, ctx.body(), permission_prefix="storage.", basic_roles=False,
        stale=lambda: gcs_error(412, PRECONDITION_FAILED, locationType="header",
                                location="If-Match"),
        etag_factory=b.bump)
    return _policy_json(b)


def test_bucket_permissions(ctx: Ctx, bucket: str) -> dict[str, Any]:
    b = ctx.state.buckets.get(bucket)
    if b is None:
        raise gcs_error(404, "The specified bucket does not exist.")
    project = ctx.state.projects[b.project_id]
    held = [p for p in ctx.request.args.getlist("permissions")
            if ctx.state.allowed(ctx.caller, p, b.policy, project.policy)]
    body: dict[str, Any] = {"kind": "storage#testIamPermissionsResponse"}
    if held:
        body["permissions"] = held
    return body


# ---------------------------------------------------------------- objects


def object_json(ctx: Ctx, b: Bucket, o: StoredObject) -> dict[str, Any]:
    base = ctx.base_url()
    quoted = quote(o.name, safe="")
    body: dict[str, Any] = {
        "kind": "storage#object",
        "id": f"{b.name}/{o.name}/{o.generation}",
        "selfLink": f"{base}/storage/v1/b/{b.name}/o/{quoted}",
        "mediaLink": f"{base}/download/storage/v1/b/{b.name}/o/{quoted}"
                     f"?generation={o.generation}&alt=media",
        "name": o.name,
        "bucket": b.name,
        "generation": str(o.generation),
        "metageneration": "1",
        "contentType": o.content_type,
        "storageClass": "STANDARD",
        "size": str(len(o.data)),
        "md5Hash": o.md5,
        "crc32c": o.crc32c,
        "etag": base64.b64encode(b"\x08" + _varint(o.generation) + b"\x10\x01").decode(),
        "timeCreated": o.created,
        "updated": o.created,
        "timeStorageClassUpdated": o.created,
    }
    if o.metadata:
        body["metadata"] = o.metadata
    return body


def _check_generation(ctx: Ctx, existing: StoredObject | None) -> None:
    """ifGenerationMatch / ifGenerationNotMatch preconditions (0 means "does not exist")."""
    current = existing.generation if existing else 0
    match = ctx.arg("ifGenerationMatch")
    not_match = ctx.arg("ifGenerationNotMatch")
    if (match is not None and int(match) != current) or (
            not_match is not None and int(not_match) == current):
        raise gcs_error(412, PRECONDITION_FAILED, locationType="header", location="If-Match")


def _split_multipart(ctx: Ctx) -> tuple[dict[str, Any], bytes, str]:
    """Metadata, media and media type of a ``multipart/related`` upload.

    The client sends exactly two parts (JSON metadata, then the media); the body is split
    on the boundary bytes so binary media comes through untouched.
    """
    boundary = ctx.request.mimetype_params.get("boundary", "")
    if ctx.request.mimetype != "multipart/related" or not boundary:
        raise gcs_error(400, "Invalid multipart request: expected multipart/related with a boundary.")
    delimiter = b"--" + boundary.encode()
    chunks = ctx.request.get_data().split(delimiter)
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # closing delimiter
        head, _, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = dict(line.split(":", 1) for line in head.decode().split("\r\n") if ":" in line)
        headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
        parts.append((headers, content.removesuffix(b"\r\n")))
    if len(parts) != 2:
        raise gcs_error(400, f"Invalid multipart request with {len(parts)} parts (expected 2).")
    try:
        metadata = json.loads(parts[0][1] or b"{}")
    except ValueError:
        raise gcs_error(400, "Metadata part is not valid JSON.") from None
    return metadata, parts[1][1], parts[1][0].get("content-type", "application/octet-stream")


def upload_object(ctx: Ctx, bucket: str) -> dict[str, Any]:
    b = ctx.state.buckets.get(bucket)
    if b is None:
        raise gcs_error(404, "The specified bucket does not exist.")
    upload_type = ctx.arg("uploadType")
    if upload_type == "media":
        metadata: dict[str, Any] = {}
        data = ctx.request.get_data()
        media_type = ctx.request.content_type or "application/octet-stream"
    elif upload_type == "multipart":
        metadata, data, media_type = _split_multipart(ctx)
    else:
        # Resumable uploads (used above 8 MiB by default) are not implemented.
        raise gcs_error(400, f"Upload type '{upload_type}' is not supported by the sandbox fake "
                             "(use media or multipart).")
    name = metadata.get("name") or ctx.arg("name")
    if not name:
        raise gcs_error(400, "Required parameter: name", "required",
                        locationType="parameter", location="name")
    existing = b.objects.get(name)
    _require(ctx, b, "storage.objects.create", "object")
    if existing is not None:
        # Replacing an object deletes the old generation.
        _require(ctx, b, "storage.objects.delete", "object")
    _check_generation(ctx, existing)
    for key, actual in (("crc32c", crc32c_b64(data)),
                        ("md5Hash", base64.b64encode(hashlib.md5(data).digest()).decode())):
        sent = metadata.get(key)
        if sent and sent != actual:
            label = "CRC32C" if key == "crc32c" else "MD5"
            raise gcs_error(400, f'Provided {label} "{sent}" doesn\'t match calculated '
                                 f'{label} "{actual}".')
    obj = StoredObject(name, data, metadata.get("contentType") or media_type,
                       generation=time.time_ns() // 1000, metadata=metadata.get("metadata") or {})
    b.objects[name] = obj
    return object_json(ctx, b, obj)


def _object(ctx: Ctx, bucket: str, name: str, permission: str) -> tuple[Bucket, StoredObject]:
    b = ctx.state.buckets.get(bucket)
    if b is None:
        raise gcs_error(404, "The specified bucket does not exist.")
    _require(ctx, b, permission, "object")
    obj = b.objects.get(name)
    generation = ctx.arg("generation")
    if obj is None or (generation is not None and int(generation) != obj.generation):
        raise gcs_error(404, f"No such object: {bucket}/{name}")
    return b, obj


def get_object(ctx: Ctx, bucket: str, name: str) -> Any:
    b, obj = _object(ctx, bucket, name, "storage.objects.get")
    if ctx.arg("alt") == "media":
        return media_response(obj)
    return object_json(ctx, b, obj)


def download_object(ctx: Ctx, bucket: str, name: str) -> Response:
    _, obj = _object(ctx, bucket, name, "storage.objects.get")
    return media_response(obj)


def media_response(obj: StoredObject) -> Response:
    # x-goog-hash lets the client verify the download, as it does against GCS.
    return Response(obj.data, content_type=obj.content_type, headers={
        "x-goog-hash": f"crc32c={obj.crc32c},md5={obj.md5}",
        "x-goog-generation": str(obj.generation),
        "x-goog-metageneration": "1",
        "x-goog-stored-content-length": str(len(obj.data)),
        "x-goog-stored-content-encoding": "identity",
    })


def list_objects(ctx: Ctx, bucket: str) -> dict[str, Any]:
    b = ctx.state.buckets.get(bucket)
    if b is None:
        raise gcs_error(404, "The specified bucket does not exist.")
    _require(ctx, b, "storage.objects.list", "bucket")
    prefix = ctx.arg("prefix") or ""
    delimiter = ctx.arg("delimiter")
    names = sorted(n for n in b.objects if n.startswith(prefix))
    items, prefixes = [], set()
    for name in names:
        rest = name[len(prefix):]
        if delimiter and delimiter in rest:
            prefixes.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
        else:
            items.append(name)
    start = int(ctx.arg("pageToken") or 0)
    limit = int(ctx.arg("maxResults") or 1000)
    page = items[start:start + limit]
    body: dict[str, Any] = {"kind": "storage#objects"}
    if page:
        body["items"] = [object_json(ctx, b, b.objects[n]) for n in page]
    if prefixes and start == 0:
        body["prefixes"] = sorted(prefixes)
    if start + limit < len(items):
        body["nextPageToken"] = str(start + limit)
    return body


def delete_object(ctx: Ctx, bucket: str, name: str) -> Response:
    b, obj = _object(ctx, bucket, name, "storage.objects.delete")
    _check_generation(ctx, obj)
    del b.objects[name]
    return Response(status=204)


_B = "/storage/v1/b/<bucket>"
ROUTES = [
    Route("storage", "/storage/v1/b", ("POST",), insert_bucket),
    Route("storage", "/storage/v1/b", ("GET",), list_buckets),
    Route("storage", _B, ("GET",), get_bucket),
    Route("storage", _B, ("PATCH",), patch_bucket),
    Route("storage", _B, ("DELETE",), delete_bucket),
    Route("storage", _B + "/iam", ("GET",), get_bucket_policy),
    Route("storage", _B + "/iam", ("PUT",), set_bucket_policy, policy_write=True),
    Route("storage", _B + "/iam/testPermissions", ("GET",), test_bucket_permissions),
    Route("storage", _B + "/o", ("GET",), list_objects),
    Route("storage", _B + "/o/<path:name>", ("GET",), get_object),
    Route("storage", _B + "/o/<path:name>", ("DELETE",), delete_object),
    Route("storage", "/upload/storage/v1/b/<bucket>/o", ("POST",), upload_object),
    Route("storage", "/download/storage/v1/b/<bucket>/o/<path:name>", ("GET",), download_object),
]
