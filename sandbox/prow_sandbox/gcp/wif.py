"""IAM v1 Workload Identity Federation: pools, OIDC providers and their operations.

``projects/P/locations/global/workloadIdentityPools[/POOL[/providers/PROV]]`` as
https://cloud.google.com/iam/docs/reference/rest/v1/projects.locations.workloadIdentityPools
documents them: names use the project NUMBER whatever the caller wrote; create, patch,
delete and undelete return a long-running operation (``.../operations/ID``) that is not done
in the call's answer and done on its first ``GET`` (with the resource as ``response``), as
IAM's operations finish; the change itself is visible at once. Delete is a soft delete:
the resource stays, ``state: DELETED`` with an ``expireTime`` 30 days on, is left out of
lists unless ``showDeleted=true``, can be undeleted, and its ID cannot be reused (409). A
deleted pool's providers stop exchanging tokens (STS answers ``invalid_target``).

Only OIDC providers are served: ``oidc.issuerUri`` (https), ``oidc.allowedAudiences``
(default: the provider's own resource name), ``oidc.jwksJson`` (uploaded keys, for an issuer
Google cannot reach) and ``attributeMapping`` (``google.subject`` required). The fake
evaluates the part of CEL such mappings use: ``assertion.FIELD[.FIELD...]`` (or
``assertion['FIELD']``); ``attributeCondition`` is ``true`` or ``EXPR == 'VALUE'`` clauses
joined by ``&&``. Anything else is a 400 naming what the sandbox supports.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import jwt

from .errors import already_exists, denied_on_resource, failed_precondition, invalid, not_found
from .state import Project
from .web import Ctx, Route

ID_RE = re.compile(r"^[a-z0-9-]{4,32}$")
SOFT_DELETE_DAYS = 30
POOL_FIELDS = ("displayName", "description", "disabled")
PROVIDER_FIELDS = ("displayName", "description", "disabled", "attributeMapping",
                   "attributeCondition", "oidc", "oidc.issuerUri", "oidc.allowedAudiences",
                   "oidc.jwksJson")
ATTRIBUTE_KEY_RE = re.compile(r"^(google\.(subject|groups|display_name|profile_photo)"
                              r"|attribute\.[a-z0-9_]{1,50})$")
# assertion.a.b or assertion['a']['b']: the CEL paths attribute mappings use.
PATH_RE = re.compile(r"^assertion((\.[A-Za-z_][A-Za-z0-9_]*)|(\['[^']+'\]))+$")
_PATH_PART_RE = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\['([^']+)'\]")
CLAUSE_RE = re.compile(r"^(?P<lhs>assertion\S*|attribute\.[a-z0-9_]+|google\.subject)\s*==\s*"
                       r"'(?P<value>[^']*)'$")
_op_ids = itertools.count(1)
POOL_TYPE = "type.googleapis.com/google.iam.v1.WorkloadIdentityPool"
PROVIDER_TYPE = "type.googleapis.com/google.iam.v1.WorkloadIdentityPoolProvider"
NOT_FOUND = "Requested entity was not found."
EXISTS = "Requested entity already exists"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _rfc3339(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Pool:
    number: str
    pool_id: str
    display_name: str = ""
    description: str = ""
    disabled: bool = False
    expire_time: str | None = None  # set while DELETED

    @property
    def name(self) -> str:
        return f"projects/{self.number}/locations/global/workloadIdentityPools/{self.pool_id}"

    @property
    def active(self) -> bool:
        return self.expire_time is None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "state": "ACTIVE" if self.active else "DELETED"}
        if self.display_name:
            body["displayName"] = self.display_name
        if self.description:
            body["description"] = self.description
        if self.disabled:
            body["disabled"] = True
        if self.expire_time:
            body["expireTime"] = self.expire_time
        return body


@dataclass
class Provider:
    pool: Pool
    provider_id: str
    issuer_uri: str
    attribute_mapping: dict[str, str]
    allowed_audiences: list[str] = field(default_factory=list)
    jwks_json: str = ""
    attribute_condition: str = ""
    display_name: str = ""
    description: str = ""
    disabled: bool = False
    expire_time: str | None = None

    @property
    def name(self) -> str:
        return f"{self.pool.name}/providers/{self.provider_id}"

    @property
    def active(self) -> bool:
        return self.expire_time is None

    @property
    def audiences(self) -> list[str]:
        """What a subject token's ``aud`` may be: the allowed audiences, else the provider's
        resource name with or without ``https:``, as Google documents."""
        return self.allowed_audiences or [f"//iam.googleapis.com/{self.name}",
                                          f"https://iam.googleapis.com/{self.name}"]

    def to_json(self) -> dict[str, Any]:
        oidc: dict[str, Any] = {"issuerUri": self.issuer_uri}
        if self.allowed_audiences:
            oidc["allowedAudiences"] = list(self.allowed_audiences)
        if self.jwks_json:
            oidc["jwksJson"] = self.jwks_json
        body: dict[str, Any] = {"name": self.name, "state": "ACTIVE" if self.active else "DELETED",
                                "attributeMapping": dict(self.attribute_mapping), "oidc": oidc}
        for key, value in (("displayName", self.display_name), ("description", self.description),
                           ("attributeCondition", self.attribute_condition),
                           ("expireTime", self.expire_time)):
            if value:
                body[key] = value
        if self.disabled:
            body["disabled"] = True
        return body


@dataclass
class Operation:
    name: str
    response: dict[str, Any]
    polls: int = 0

    def to_json(self, *, poll: bool) -> dict[str, Any]:
        if poll:
            self.polls += 1
        body: dict[str, Any] = {"name": self.name}
        if self.polls:
            body["done"] = True
            body["response"] = self.response
        return body


# ---------------------------------------------------------------- lookups


def _project(ctx: Ctx, ref: str, location: str, permission: str) -> Project:
    project = ctx.state.project(ref)
    if project is None or not ctx.state.allowed(ctx.caller, permission, project.policy):
        raise denied_on_resource(permission, f"projects/{ref}/locations/{location}")
    if location != "global":
        raise invalid(f"Location {location} is not supported; the only supported location is "
                      "global.")
    return project


def _pool(ctx: Ctx, ref: str, location: str, pool_id: str, permission: str) -> Pool:
    project = _project(ctx, ref, location, permission)
    pool = ctx.state.wif_pools.get((project.number, pool_id))
    if pool is None:
        raise not_found(NOT_FOUND)
    return pool


def _provider(ctx: Ctx, ref: str, location: str, pool_id: str, provider_id: str,
              permission: str) -> Provider:
    pool = _pool(ctx, ref, location, pool_id, permission)
    provider = ctx.state.wif_providers.get((pool.number, pool_id, provider_id))
    if provider is None:
        raise not_found(NOT_FOUND)
    return provider


def _operation(ctx: Ctx, resource_name: str, response: dict[str, Any], type_url: str) -> dict:
    op = Operation(f"{resource_name}/operations/op-{next(_op_ids):08d}",
                   {"@type": type_url, **response})
    ctx.state.wif_operations[op.name] = op
    return op.to_json(poll=False)


def _check_id(value: str | None, what: str, param: str) -> str:
    if not value:
        raise invalid(f"Required parameter '{param}' is missing.")
    if not ID_RE.match(value) or value.startswith("gcp-"):
        raise invalid(f"Invalid {what} ID '{value}': it must be 4 to 32 characters of "
                      "[a-z0-9-], and the prefix 'gcp-' is reserved for use by Google.")
    return value


def _check_common(body: dict[str, Any]) -> None:
    if len(body.get("displayName") or "") > 32:
        raise invalid("displayName cannot exceed 32 characters.")
    if len(body.get("description") or "") > 256:
        raise invalid("description cannot exceed 256 characters.")
    if "disabled" in body and not isinstance(body["disabled"], bool):
        raise invalid("Invalid value at 'disabled' (TYPE_BOOL).")


def _update_mask(ctx: Ctx, allowed: tuple[str, ...]) -> list[str]:
    mask = [f.strip() for f in (ctx.arg("updateMask") or "").split(",") if f.strip()]
    if not mask:
        raise invalid("Required parameter 'updateMask' is missing.")
    unknown = [f for f in mask if f not in allowed]
    if unknown:
        raise invalid(f"Invalid update mask path(s): {', '.join(unknown)}. Updatable fields: "
                      f"{', '.join(allowed)}.")
    return mask


# ---------------------------------------------------------------- pools


def create_pool(ctx: Ctx, project: str, location: str) -> dict[str, Any]:
    proj = _project(ctx, project, location, "iam.workloadIdentityPools.create")
    pool_id = _check_id(ctx.arg("workloadIdentityPoolId"), "workload identity pool",
                        "workloadIdentityPoolId")
    body = ctx.body()
    _check_common(body)
    if (proj.number, pool_id) in ctx.state.wif_pools:
        # A soft-deleted pool's ID stays taken until it is purged.
        raise already_exists(EXISTS)
    pool = Pool(proj.number, pool_id, body.get("displayName") or "",
                body.get("description") or "", bool(body.get("disabled", False)))
    ctx.state.wif_pools[(proj.number, pool_id)] = pool
    return _operation(ctx, pool.name, pool.to_json(), POOL_TYPE)


def get_pool(ctx: Ctx, project: str, location: str, pool: str) -> dict[str, Any]:
    return _pool(ctx, project, location, pool, "iam.workloadIdentityPools.get").to_json()


def list_pools(ctx: Ctx, project: str, location: str) -> dict[str, Any]:
    proj = _project(ctx, project, location, "iam.workloadIdentityPools.list")
    show_deleted = (ctx.arg("showDeleted") or "").lower() == "true"
    pools = [p.to_json() for (number, _), p in sorted(ctx.state.wif_pools.items())
             if number == proj.number and (p.active or show_deleted)]
    return {"workloadIdentityPools": pools} if pools else {}


def patch_pool(ctx: Ctx, project: str, location: str, pool: str) -> dict[str, Any]:
    p = _pool(ctx, project, location, pool, "iam.workloadIdentityPools.update")
    mask = _update_mask(ctx, POOL_FIELDS)
    body = ctx.body()
    _check_common(body)
    if not p.active:
        raise failed_precondition(f"Cannot update a deleted workload identity pool {p.name}.")
    if "displayName" in mask:
        p.display_name = body.get("displayName") or ""
    if "description" in mask:
        p.description = body.get("description") or ""
    if "disabled" in mask:
        p.disabled = bool(body.get("disabled", False))
    return _operation(ctx, p.name, p.to_json(), POOL_TYPE)


def delete_pool(ctx: Ctx, project: str, location: str, pool: str) -> dict[str, Any]:
    p = _pool(ctx, project, location, pool, "iam.workloadIdentityPools.delete")
    if not p.active:
        raise failed_precondition(f"The workload identity pool {p.name} is already deleted.")
    p.expire_time = _rfc3339(_now() + timedelta(days=SOFT_DELETE_DAYS))
    return _operation(ctx, p.name, p.to_json(), POOL_TYPE)


def undelete_pool(ctx: Ctx, project: str, location: str, pool: str) -> dict[str, Any]:
    p = _pool(ctx, project, location, pool, "iam.workloadIdentityPools.undelete")
    if p.active:
        raise failed_precondition(f"The workload identity pool {p.name} is not deleted.")
    p.expire_time = None
    return _operation(ctx, p.name, p.to_json(), POOL_TYPE)


# ---------------------------------------------------------------- providers


def _check_mapping(mapping: Any) -> dict[str, str]:
    if not isinstance(mapping, dict) or "google.subject" not in mapping:
        raise invalid("The attribute mapping must contain a mapping for 'google.subject'.")
    for key, expr in mapping.items():
        if not ATTRIBUTE_KEY_RE.match(str(key)):
            raise invalid(f"Invalid attribute mapping key '{key}': use google.subject, "
                          "google.groups, google.display_name, google.profile_photo or "
                          "attribute.NAME (NAME of [a-z0-9_]).")
        if not isinstance(expr, str) or not PATH_RE.match(expr.strip()):
            raise invalid(f"Attribute mapping '{key}={expr}' is not supported by the sandbox: "
                          "it evaluates assertion.FIELD[.FIELD...] and assertion['FIELD'] only.")
    return {str(k): v.strip() for k, v in mapping.items()}


def _check_condition(condition: Any) -> str:
    condition = (condition or "").strip()
    if condition in ("", "true"):
        return condition
    for clause in condition.split("&&"):
        match = CLAUSE_RE.match(clause.strip())
        if not match or (match.group("lhs").startswith("assertion")
                         and not PATH_RE.match(match.group("lhs"))):
            raise invalid(f"Attribute condition '{condition}' is not supported by the sandbox: "
                          "it evaluates true, or EXPR == 'VALUE' clauses joined by &&.")
    return condition


def _check_oidc(oidc: Any) -> tuple[str, list[str], str]:
    if not isinstance(oidc, dict):
        raise invalid("The sandbox serves OIDC providers only: 'oidc' is required "
                      "(aws and saml are not supported).")
    issuer = oidc.get("issuerUri") or ""
    if not issuer.startswith("https://"):
        raise invalid(f"Invalid issuer URI '{issuer}': it must be an https URL.")
    audiences = oidc.get("allowedAudiences") or []
    if (not isinstance(audiences, list) or len(audiences) > 10
            or not all(isinstance(a, str) and a for a in audiences)):
        raise invalid("allowedAudiences must be a list of at most 10 non-empty strings.")
    jwks_json = oidc.get("jwksJson") or ""
    if jwks_json:
        try:
            keys = jwt.PyJWKSet.from_dict(json.loads(jwks_json)).keys
        except (ValueError, TypeError, jwt.PyJWTError):
            keys = []
        if not keys:
            raise invalid("Input JWK is not in a valid json format.")
    return issuer, list(audiences), jwks_json


def create_provider(ctx: Ctx, project: str, location: str, pool: str) -> dict[str, Any]:
    p = _pool(ctx, project, location, pool, "iam.workloadIdentityPoolProviders.create")
    provider_id = _check_id(ctx.arg("workloadIdentityPoolProviderId"),
                            "workload identity pool provider", "workloadIdentityPoolProviderId")
    body = ctx.body()
    _check_common(body)
    if not p.active:
        raise failed_precondition(f"The workload identity pool {p.name} is deleted.")
    issuer, audiences, jwks_json = _check_oidc(body.get("oidc"))
    mapping = _check_mapping(body.get("attributeMapping"))
    condition = _check_condition(body.get("attributeCondition"))
    key = (p.number, p.pool_id, provider_id)
    if key in ctx.state.wif_providers:
        raise already_exists(EXISTS)
    provider = Provider(p, provider_id, issuer, mapping, audiences, jwks_json, condition,
                        body.get("displayName") or "", body.get("description") or "",
                        bool(body.get("disabled", False)))
    ctx.state.wif_providers[key] = provider
    return _operation(ctx, provider.name, provider.to_json(), PROVIDER_TYPE)


def get_provider(ctx: Ctx, project: str, location: str, pool: str, provider: str) -> dict:
    return _provider(ctx, project, location, pool, provider,
                     "iam.workloadIdentityPoolProviders.get").to_json()


def list_providers(ctx: Ctx, project: str, location: str, pool: str) -> dict[str, Any]:
    p = _pool(ctx, project, location, pool, "iam.workloadIdentityPoolProviders.list")
    show_deleted = (ctx.arg("showDeleted") or "").lower() == "true"
    providers = [v.to_json() for k, v in sorted(ctx.state.wif_providers.items())
                 if k[:2] == (p.number, p.pool_id) and (v.active or show_deleted)]
    return {"workloadIdentityPoolProviders": providers} if providers else {}


def patch_provider(ctx: Ctx, project: str, location: str, pool: str, provider: str) -> dict:
    pr = _provider(ctx, project, location, pool, provider,
                   "iam.workloadIdentityPoolProviders.update")
    mask = _update_mask(ctx, PROVIDER_FIELDS)
    body = ctx.body()
    _check_common(body)
    if not pr.active:
        raise failed_precondition(f"Cannot update a deleted workload identity pool provider "
                                  f"{pr.name}.")
    # Validate the provider as it would be after the update, then apply every field.
    current = pr.to_json()["oidc"]
    sent = body.get("oidc") or {}
    oidc = dict(current)
    for name in ("issuerUri", "allowedAudiences", "jwksJson"):
        if "oidc" in mask or f"oidc.{name}" in mask:
            oidc[name] = sent.get(name)
    issuer, audiences, jwks_json = _check_oidc(oidc)
    mapping = (_check_mapping(body.get("attributeMapping")) if "attributeMapping" in mask
               else pr.attribute_mapping)
    condition = (_check_condition(body.get("attributeCondition"))
                 if "attributeCondition" in mask else pr.attribute_condition)
    pr.issuer_uri, pr.allowed_audiences, pr.jwks_json = issuer, audiences, jwks_json
    pr.attribute_mapping, pr.attribute_condition = mapping, condition
    if "displayName" in mask:
        pr.display_name = body.get("displayName") or ""
    if "description" in mask:
        pr.description = body.get("description") or ""
    if "disabled" in mask:
        pr.disabled = bool(body.get("disabled", False))
    return _operation(ctx, pr.name, pr.to_json(), PROVIDER_TYPE)


def delete_provider(ctx: Ctx, project: str, location: str, pool: str, provider: str) -> dict:
    pr = _provider(ctx, project, location, pool, provider,
                   "iam.workloadIdentityPoolProviders.delete")
    if not pr.active:
        raise failed_precondition(f"The workload identity pool provider {pr.name} is already "
                                  "deleted.")
    pr.expire_time = _rfc3339(_now() + timedelta(days=SOFT_DELETE_DAYS))
    return _operation(ctx, pr.name, pr.to_json(), PROVIDER_TYPE)


def undelete_provider(ctx: Ctx, project: str, location: str, pool: str, provider: str) -> dict:
    pr = _provider(ctx, project, location, pool, provider,
                   "iam.workloadIdentityPoolProviders.undelete")
    if pr.active:
        raise failed_precondition(f"The workload identity pool provider {pr.name} is not "
                                  "deleted.")
    pr.expire_time = None
    return _operation(ctx, pr.name, pr.to_json(), PROVIDER_TYPE)


def get_operation(ctx: Ctx, project: str, location: str, pool: str, op: str,
                  provider: str | None = None) -> dict[str, Any]:
    if provider is None:
        p = _pool(ctx, project, location, pool, "iam.workloadIdentityPools.get")
        name = f"{p.name}/operations/{op}"
    else:
        name = f"{_provider(ctx, project, location, pool, provider, 'iam.workloadIdentityPoolProviders.get').name}/operations/{op}"
    operation = ctx.state.wif_operations.get(name)
    if operation is None:
        raise not_found(NOT_FOUND)
    return operation.to_json(poll=True)


# ---------------------------------------------------------------- evaluation (for STS)


def evaluate_path(expr: str, claims: dict[str, Any]) -> Any:
    """The value of ``assertion.a.b`` / ``assertion['a']`` in the token's claims (None if absent)."""
    value: Any = claims
    for dotted, quoted in _PATH_PART_RE.findall(expr[len("assertion"):]):
        if not isinstance(value, dict):
            return None
        value = value.get(dotted or quoted)
    return value


def map_attributes(provider: Provider, claims: dict[str, Any]) -> dict[str, Any]:
    return {key: evaluate_path(expr, claims) for key, expr in provider.attribute_mapping.items()}


def condition_holds(provider: Provider, claims: dict[str, Any], attributes: dict[str, Any]) -> bool:
    if provider.attribute_condition in ("", "true"):
        return True
    for clause in provider.attribute_condition.split("&&"):
        match = CLAUSE_RE.match(clause.strip())
        assert match is not None  # validated when the provider was written
        lhs = match.group("lhs")
        actual = evaluate_path(lhs, claims) if lhs.startswith("assertion") else attributes.get(lhs)
        if actual != match.group("value"):
            return False
    return True


_P = "/v1/projects/<project>/locations/<location>/workloadIdentityPools"
_POOL = _P + "/<pool>"
_PROV = _POOL + "/providers/<provider>"
ROUTES = [
    Route("iam", _P, ("POST",), create_pool),
    Route("iam", _P, ("GET",), list_pools),
    Route("iam", _POOL, ("GET",), get_pool),
    Route("iam", _POOL, ("PATCH",), patch_pool),
    Route("iam", _POOL, ("DELETE",), delete_pool),
    Route("iam", _POOL + ":undelete", ("POST",), undelete_pool),
    Route("iam", _POOL + "/operations/<op>", ("GET",), get_operation),
    Route("iam", _POOL + "/providers", ("POST",), create_provider),
    Route("iam", _POOL + "/providers", ("GET",), list_providers),
    Route("iam", _PROV, ("GET",), get_provider),
    Route("iam", _PROV, ("PATCH",), patch_provider),
    Route("iam", _PROV, ("DELETE",), delete_provider),
    Route("iam", _PROV + ":undelete", ("POST",), undelete_provider),
    Route("iam", _PROV + "/operations/<op>", ("GET",), get_operation),
]
