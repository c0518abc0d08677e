"""Secret Manager v1: secrets, versions, their states and secret-level IAM.

As https://cloud.google.com/secret-manager/docs/reference/rest/v1 documents and the REST
transport of google-cloud-secret-manager calls it. Details code tends to trip over:

* resource names carry the project NUMBER even when the call used the project ID;
* etags are quoted strings; a mismatching etag is 400 FAILED_PRECONDITION
  (https://cloud.google.com/secret-manager/docs/etags), each resource has its own;
* ``latest`` is the most recently CREATED version, whatever its state: when that one is
  DISABLED or DESTROYED, accessing ``latest`` is 400 FAILED_PRECONDITION ("Secret Version
  [.../versions/N] is in DISABLED state."), even if an older version is enabled (Google's
  AccessSecretVersion reference: "versions/latest is an alias to the most recently created
  SecretVersion"); accessing any DISABLED or DESTROYED version is the same error; destroy
  is final and wipes the payload;
* ``dataCrc32c`` (an int64 sent as a JSON string) is checked when given.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from dataclasses import dataclass, field
from typing import Any

import google_crc32c

from .errors import already_exists, failed_precondition, invalid, not_found, permission_denied
from .policy import Policy
from .state import Project, now_rfc3339
from .web import Ctx, Route, policy_response, set_policy, test_permissions

SECRET_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,255}$")
LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
MAX_PAYLOAD = 64 * 1024
UPDATABLE = {"labels", "annotations", "versionAliases"}


def _etag() -> str:
    # Quoted, like the API's: '"16173b7a8c1e5e"'.
    return f'"{time.time_ns() // 1000:x}"'


@dataclass
class Version:
    number: int
    data: bytes | None
    checksum_given: bool
    state: str = "ENABLED"
    created: str = field(default_factory=now_rfc3339)
    destroyed: str | None = None
    etag: str = field(default_factory=_etag)


@dataclass
class Secret:
    project_number: str
    secret_id: str
    replication: dict[str, Any]
    labels: dict[str, str]
    annotations: dict[str, str]
    created: str = field(default_factory=now_rfc3339)
    etag: str = field(default_factory=_etag)
    policy: Policy = field(default_factory=Policy)
    versions: list[Version] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"projects/{self.project_number}/secrets/{self.secret_id}"


def secret_json(s: Secret) -> dict[str, Any]:
    body: dict[str, Any] = {"name": s.name, "replication": s.replication,
                            "createTime": s.created, "etag": s.etag}
    if s.labels:
        body["labels"] = s.labels
    if s.annotations:
        body["annotations"] = s.annotations
    return body


def version_json(s: Secret, v: Version) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"{s.name}/versions/{v.number}",
        "createTime": v.created,
        "state": v.state,
        "replicationStatus": {"automatic": {}},
        "etag": v.etag,
        "clientSpecifiedPayloadChecksum": v.checksum_given,
    }
    if v.destroyed:
        body["destroyTime"] = v.destroyed
    return body


# ---------------------------------------------------------------- lookups and checks


def _project(ctx: Ctx, ref: str, permission: str) -> Project:
    project = ctx.state.project(ref)
    if project is None or not ctx.state.allowed(ctx.caller, permission, project.policy):
        raise permission_denied(
            f"Permission '{permission}' denied for resource 'projects/{ref}' "
            "(or it may not exist).")
    return project


def _secret(ctx: Ctx, project_ref: str, secret_id: str, permission: str) -> Secret:
    project = ctx.state.project(project_ref)
    secret = ctx.state.secrets.get((project.number, secret_id)) if project else None
    resource = f"projects/{project_ref}/secrets/{secret_id}"
    if project is None or not ctx.state.allowed(
            ctx.caller, permission, *([secret.policy] if secret else []), project.policy):
        raise permission_denied(
            f"Permission '{permission}' denied for resource '{resource}' (or it may not exist).")
    if secret is None:
        raise not_found(f"Secret [projects/{project.number}/secrets/{secret_id}] not found.")
    return secret


def _version(secret: Secret, ref: str, *, allow_latest: bool) -> Version:
    if ref == "latest" and allow_latest:
        # The newest created version, whatever its state (not the newest ENABLED one).
        if not secret.versions:
            raise not_found(f"Secret [{secret.name}] not found or has no versions.")
        return secret.versions[-1]
    if not ref.isdigit():
        raise invalid(f"Invalid secret version id: {ref!r}.")
    number = int(ref)
    if not 1 <= number <= len(secret.versions):
        raise not_found(f"Secret Version [{secret.name}/versions/{ref}] not found.")
    return secret.versions[number - 1]


def _check_etag(sent: str | None, current: str) -> None:
    if sent and sent != current:
        raise failed_precondition(
            "The etag provided in the request does not match the current etag of the resource.")


def _check_labels(labels: Any) -> dict[str, str]:
    if not isinstance(labels, dict) or len(labels) > 64:
        raise invalid("Secret.labels must be a map of at most 64 entries.")
    for key, value in labels.items():
        if not LABEL_KEY_RE.match(str(key)) or not LABEL_VALUE_RE.match(str(value)):
            raise invalid(f"Invalid label {key!r}: {value!r}. Label keys must start with a "
                          "lowercase letter; keys and values may contain lowercase letters, "
                          "digits, '_' and '-', at most 63 characters.")
    return dict(labels)


# ---------------------------------------------------------------- secrets


def create_secret(ctx: Ctx, project: str) -> dict[str, Any]:
    proj = _project(ctx, project, "secretmanager.secrets.create")
    secret_id = ctx.arg("secretId") or ""
    if not SECRET_ID_RE.match(secret_id):
        raise invalid("Secret ID must be 1-255 characters of letters, digits, '_' and '-'.")
    body = ctx.body()
    replication = body.get("replication") or {}
    if not (replication.get("automatic") is not None or replication.get("userManaged")):
        raise invalid("Secret.replication must be set (automatic or userManaged).")
    if (proj.number, secret_id) in ctx.state.secrets:
        raise already_exists(f"Secret [projects/{proj.number}/secrets/{secret_id}] already exists.")
    secret = Secret(proj.number, secret_id, replication, _check_labels(body.get("labels") or {}),
                    dict(body.get("annotations") or {}))
    ctx.state.secrets[(proj.number, secret_id)] = secret
    return secret_json(secret)


def get_secret(ctx: Ctx, project: str, secret: str) -> dict[str, Any]:
    return secret_json(_secret(ctx, project, secret, "secretmanager.secrets.get"))


def _matches_filter(s: Secret, expression: str) -> bool:
    """The filter forms onboarding uses: ``labels.KEY=VALUE``, ``labels.KEY:*``, ``name:TEXT``."""
    for term in expression.split():
        if m := re.fullmatch(r"labels\.([\w-]+)[=:](.+)", term):
            key, value = m.groups()
            if key not in s.labels or (value != "*" and s.labels[key] != value):
                return False
        elif m := re.fullmatch(r"name[=:](.+)", term):
            if m.group(1) not in s.secret_id:
                return False
        else:
            raise invalid(f"Invalid filter: {expression}")
    return True


def list_secrets(ctx: Ctx, project: str) -> dict[str, Any]:
    proj = _project(ctx, project, "secretmanager.secrets.list")
    found = sorted((s for (num, _), s in ctx.state.secrets.items() if num == proj.number),
                   key=lambda s: s.secret_id)
    if ctx.arg("filter"):
        found = [s for s in found if _matches_filter(s, ctx.arg("filter") or "")]
    page, token = _page(found, ctx.arg("pageSize"), ctx.arg("pageToken"))
    body: dict[str, Any] = {"totalSize": len(found)} if found else {}
    if page:
        body["secrets"] = [secret_json(s) for s in page]
    if token:
        body["nextPageToken"] = token
    return body


def _page(items: list, size: str | None, token: str | None) -> tuple[list, str | None]:
    start = int(token or 0)
    end = start + (int(size or 0) or 25000)
    return items[start:end], (str(end) if end < len(items) else None)


def update_secret(ctx: Ctx, project: str, secret: str) -> dict[str, Any]:
    s = _secret(ctx, project, secret, "secretmanager.secrets.update")
    body = ctx.body()
    mask = [f for f in (ctx.arg("updateMask") or "").split(",") if f]
    if not mask:
        raise invalid("updateMask must be set.")
    unknown = set(mask) - UPDATABLE
    if unknown:
        raise invalid(f"Field(s) {sorted(unknown)} cannot be updated.")
    _check_etag(body.get("etag"), s.etag)
    if "labels" in mask:
        s.labels = _check_labels(body.get("labels") or {})
    if "annotations" in mask:
        s.annotations = dict(body.get("annotations") or {})
    s.etag = _etag()
    return secret_json(s)


def delete_secret(ctx: Ctx, project: str, secret: str) -> dict[str, Any]:
    s = _secret(ctx, project, secret, "secretmanager.secrets.delete")
    _check_etag(ctx.arg("etag"), s.etag)
    del ctx.state.secrets[(s.project_number, s.secret_id)]
    return {}


# ---------------------------------------------------------------- versions


def add_version(ctx: Ctx, project: str, secret: str) -> dict[str, Any]:
    s = _secret(ctx, project, secret, "secretmanager.versions.add")
    payload = ctx.body().get("payload") or {}
    try:
        data = base64.b64decode(payload.get("data") or "", validate=True)
    except (binascii.Error, ValueError):
        raise invalid("Invalid value at 'payload.data' (TYPE_BYTES): not base64.") from None
    if not data:
        raise invalid("Secret Payload cannot be empty.")
    if len(data) > MAX_PAYLOAD:
        raise invalid(f"Secret payload size must be at most {MAX_PAYLOAD} bytes.")
    checksum = payload.get("dataCrc32c")
    if checksum is not None and int(checksum) != google_crc32c.value(data):
        raise invalid("Data corruption detected.")
    version = Version(len(s.versions) + 1, data, checksum is not None)
    s.versions.append(version)
    return version_json(s, version)


def list_versions(ctx: Ctx, project: str, secret: str) -> dict[str, Any]:
    s = _secret(ctx, project, secret, "secretmanager.versions.list")
    versions = list(reversed(s.versions))  # newest first, as the API lists them
    flt = ctx.arg("filter") or ""
    if m := re.fullmatch(r"state[=:](ENABLED|DISABLED|DESTROYED)", flt):
        versions = [v for v in versions if v.state == m.group(1)]
    elif flt:
        raise invalid(f"Invalid filter: {flt}")
    page, token = _page(versions, ctx.arg("pageSize"), ctx.arg("pageToken"))
    body: dict[str, Any] = {"totalSize": len(versions)} if versions else {}
    if page:
        body["versions"] = [version_json(s, v) for v in page]
    if token:
        body["nextPageToken"] = token
    return body


def get_version(ctx: Ctx, project: str, secret: str, version: str) -> dict[str, Any]:
    s = _secret(ctx, project, secret, "secretmanager.versions.get")
    return version_json(s, _version(s, version, allow_latest=True))


def access_version(ctx: Ctx, project: str, secret: str, version: str) -> dict[str, Any]:
    s = _secret(ctx, project, secret, "secretmanager.versions.access")
    v = _version(s, version, allow_latest=True)
    if v.state != "ENABLED" or v.data is None:
        raise failed_precondition(
            f"Secret Version [{s.name}/versions/{v.number}] is in {v.state} state.")
    data = v.data
    if ctx.state.config.secretmanager_corrupt_next_access > 0:
        ctx.state.config.secretmanager_corrupt_next_access -= 1
        data = bytes([data[0] ^ 0x01]) + data[1:]  # the checksum below stays the stored data's
    return {"name": f"{s.name}/versions/{v.number}",
            "payload": {"data": base64.b64encode(data).decode(),
                        "dataCrc32c": str(google_crc32c.value(v.data))}}


def _transition(ctx: Ctx, project: str, secret: str, version: str, target: str) -> dict[str, Any]:
    verb = {"ENABLED": "enable", "DISABLED": "disable", "DESTROYED": "destroy"}[target]
    s = _secret(ctx, project, secret, f"secretmanager.versions.{verb}")
    v = _version(s, version, allow_latest=False)
    _check_etag(ctx.body().get("etag"), v.etag)
    if v.state == "DESTROYED":
        # Destroy is final: nothing brings the payload back.
        raise failed_precondition(
            f"Secret Version [{s.name}/versions/{v.number}] is in DESTROYED state.")
    v.state = target
    if target == "DESTROYED":
        v.data = None
        v.destroyed = now_rfc3339()
    v.etag = _etag()
    return version_json(s, v)


def enable_version(ctx: Ctx, project: str, secret: str, version: str) -> dict[str, Any]:
    return _transition(ctx, project, secret, version, "ENABLED")


def disable_version(ctx: Ctx, project: str, secret: str, version: str) -> dict[str, Any]:
    return _transition(ctx, project, secret, version, "DISABLED")


def destroy_version(ctx: Ctx, project: str, secret: str, version: str) -> dict[str, Any]:
    return _transition(ctx, project, secret, version, "DESTROYED")


# ---------------------------------------------------------------- IAM


def get_secret_policy(ctx: Ctx, project: str, secret: str) -> dict[str, Any]:
    return policy_response(_secret(ctx, project, secret, "secretmanager.secrets.getIamPolicy").policy, ctx)


def set_secret_policy(ctx: Ctx, project: str, secret: str) -> dict[str, Any]:
    s = _secret(ctx, project, secret, "secretmanager.secrets.setIamPolicy")
    return set_policy(ctx, s.policy, ctx.body().get("policy"), permission_prefix="secretmanager.")


def test_secret_permissions(ctx: Ctx, project: str, secret: str) -> dict[str, Any]:
    s = _secret(ctx, project, secret, "secretmanager.secrets.get")
    proj = ctx.state.project(project)
    assert proj is not None
    return test_permissions(ctx, ctx.body().get("permissions") or [], s.policy, proj.policy)


_S = "/v1/projects/<project>/secrets/<secret>"
_V = _S + "/versions/<version>"
ROUTES = [
    Route("secretmanager", "/v1/projects/<project>/secrets", ("POST",), create_secret),
    Route("secretmanager", "/v1/projects/<project>/secrets", ("GET",), list_secrets),
    Route("secretmanager", _S, ("GET",), get_secret),
    Route("secretmanager", _S, ("PATCH",), update_secret),
    Route("secretmanager", _S, ("DELETE",), delete_secret),
    Route("secretmanager", _S + ":addVersion", ("POST",), add_version),
    Route("secretmanager", _S + ":getIamPolicy", ("GET",), get_secret_policy),
    Route("secretmanager", _S + ":setIamPolicy", ("POST",), set_secret_policy, policy_write=True),
    Route("secretmanager", _S + ":testIamPermissions", ("POST",), test_secret_permissions,
          write=False),
    Route("secretmanager", _S + "/versions", ("GET",), list_versions),
    Route("secretmanager", _V, ("GET",), get_version),
    Route("secretmanager", _V + ":access", ("GET",), access_version),
    Route("secretmanager", _V + ":enable", ("POST",), enable_version),
    Route("secretmanager", _V + ":disable", ("POST",), disable_version),
    Route("secretmanager", _V + ":destroy", ("POST",), destroy_version),
]
