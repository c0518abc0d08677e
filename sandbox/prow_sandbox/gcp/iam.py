"""IAM v1 (service accounts, their keys and policies) and IAM Credentials v1.

Paths, bodies and errors follow https://cloud.google.com/iam/docs/reference/rest and
https://cloud.google.com/iam/docs/reference/credentials/rest. Google checks the caller's
permission before it reveals whether an account exists, so a missing account is 404 only
for callers who could have seen it, and 403 "(or it may not exist)" for everyone else.

Right after creation an account may not be visible yet: reads answer 404, or 403 as IAM also
does, and may flip back once after a success (``Config.iam_new_sa_visibility``). Accounts
are changed with PATCH and an ``updateMask`` (``displayName``, ``description``); the
response is only guaranteed to carry the fields in the mask, as IAM documents.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timezone
from typing import Any

from . import auth
from .errors import aborted, already_exists, denied_on_resource, invalid, not_found
from .policy import Policy
from .state import Principal, Project, ServiceAccount
from .web import Ctx, Route, policy_response, set_policy, test_permissions

ACCOUNT_ID_RE = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
MAX_TOKEN_LIFETIME = 3600


def sa_json(sa: ServiceAccount) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"projects/{sa.project_id}/serviceAccounts/{sa.email}",
        "projectId": sa.project_id,
        "uniqueId": sa.unique_id,
        "email": sa.email,
        "etag": sa.etag,
        "oauth2ClientId": sa.unique_id,
    }
    if sa.display_name:
        body["displayName"] = sa.display_name
    if sa.description:
        body["description"] = sa.description
    if sa.disabled:
        body["disabled"] = True
    return body


def _project(ctx: Ctx, ref: str, permission: str) -> Project:
    """The project ``ref`` if the caller holds ``permission`` on it; 403 otherwise (Google
    does not say whether an unknown project exists)."""
    project = ctx.state.project(ref)
    if project is None or not ctx.state.allowed(ctx.caller, permission, project.policy):
        raise denied_on_resource(permission)
    return project


def _account(ctx: Ctx, project_ref: str, ref: str, permission: str) -> ServiceAccount:
    """Resolve ``projects/{project_ref}/serviceAccounts/{ref}`` and check ``permission``."""
    sa, hidden = ctx.state.visible_account(ref)
    resource = f"projects/{project_ref}/serviceAccounts/{ref}"
    if hidden == 403:
        raise denied_on_resource(permission, resource)
    if sa is None or project_ref not in ("-", sa.project_id, _number(ctx, sa)):
        # The account's project, judged from its email, decides 403 versus 404.
        owner = ref.partition("@")[2].removesuffix(".iam.gserviceaccount.com")
        project = ctx.state.project(owner or project_ref)
        if project is None or not ctx.state.allowed(ctx.caller, permission, project.policy):
            raise denied_on_resource(permission, resource)
        raise not_found("Unknown service account")
    ctx.state.require(ctx.caller, permission, sa.policy,
                      ctx.state.projects[sa.project_id].policy)
    return sa


def _number(ctx: Ctx, sa: ServiceAccount) -> str:
    return ctx.state.projects[sa.project_id].number


# ---------------------------------------------------------------- service accounts


def create_account(ctx: Ctx, project: str) -> dict[str, Any]:
    proj = _project(ctx, project, "iam.serviceAccounts.create")
    body = ctx.body()
    account_id = body.get("accountId", "")
    if not ACCOUNT_ID_RE.match(account_id):
        raise invalid(
            f"Invalid 'accountId' field: {account_id!r}. The account ID must be between 6 and "
            "30 characters, start with a lowercase letter, and contain only lowercase "
            "letters, digits and hyphens, not ending in a hyphen.")
    email = f"{account_id}@{proj.project_id}.iam.gserviceaccount.com"
    if email in ctx.state.service_accounts:
        raise already_exists(
            f"Service account {account_id} already exists within project "
            f"projects/{proj.project_id}.")
    spec = body.get("serviceAccount") or {}
    sa = ServiceAccount(
        project_id=proj.project_id, account_id=account_id,
        unique_id=ctx.state.new_unique_id(),
        display_name=spec.get("displayName", ""), description=spec.get("description", ""),
        hidden=ctx.state.new_account_visibility(),
    )
    ctx.state.service_accounts[email] = sa
    return sa_json(sa)


def get_account(ctx: Ctx, project: str, account: str) -> dict[str, Any]:
    return sa_json(_account(ctx, project, account, "iam.serviceAccounts.get"))


PATCHABLE = ("displayName", "description")


def patch_account(ctx: Ctx, project: str, account: str) -> dict[str, Any]:
    """PATCH with ``{"serviceAccount": {...}, "updateMask": "displayName,description"}``."""
    sa = _account(ctx, project, account, "iam.serviceAccounts.update")
    body = ctx.body()
    spec = body.get("serviceAccount")
    mask = [f.strip() for f in (body.get("updateMask") or "").split(",") if f.strip()]
    if not isinstance(spec, dict) or not mask:
        raise invalid("Invalid update mask: the field mask is required "
                      "(updateMask: displayName and/or description).")
    unknown = [f for f in mask if f not in PATCHABLE]
    if unknown:
        raise invalid(f"Invalid update mask {','.join(unknown)}: only displayName and "
                      "description can be patched.")
    if spec.get("etag") and spec["etag"] != sa.etag:
        raise aborted("The service account was changed concurrently (etag mismatch); read it "
                      "again and retry.")
    if "displayName" in mask:
        value = spec.get("displayName") or ""
        if len(value) > 100:
            raise invalid("Invalid value for displayName: at most 100 characters.")
        sa.display_name = value
    if "description" in mask:
        value = spec.get("description") or ""
        if len(value) > 256:
            raise invalid("Invalid value for description: at most 256 characters.")
        sa.description = value
    # Only the fields in the mask are guaranteed in the response (IAM documents it so).
    full = sa_json(sa)
    return {k: v for k, v in full.items() if k in ("name", "etag") or k in mask}


def list_accounts(ctx: Ctx, project: str) -> dict[str, Any]:
    proj = _project(ctx, project, "iam.serviceAccounts.list")
    accounts = sorted((s for s in ctx.state.service_accounts.values()
                       if s.project_id == proj.project_id), key=lambda s: s.email)
    page, token = _page(accounts, ctx.arg("pageSize"), ctx.arg("pageToken"))
    body: dict[str, Any] = {}
    if page:
        body["accounts"] = [sa_json(s) for s in page]
    if token:
        body["nextPageToken"] = token
    return body


def delete_account(ctx: Ctx, project: str, account: str) -> dict[str, Any]:
    sa = _account(ctx, project, account, "iam.serviceAccounts.delete")
    del ctx.state.service_accounts[sa.email]
    for key_id in sa.keys:
        ctx.state.key_owner.pop(key_id, None)
    for value, token in list(ctx.state.tokens.items()):
        if token.principal.member == sa.member:
            del ctx.state.tokens[value]
    # Google keeps bindings of deleted accounts, renamed so a new account with the same
    # email does not inherit them.
    deleted = f"deleted:{sa.member}?uid={sa.unique_id}"
    for policy in _all_policies(ctx):
        for binding in policy.bindings:
            if sa.member in binding["members"]:
                binding["members"] = sorted(
                    {m for m in binding["members"] if m != sa.member} | {deleted})
    return {}


def _all_policies(ctx: Ctx) -> list[Policy]:
    s = ctx.state
    return ([p.policy for p in s.projects.values()]
            + [a.policy for a in s.service_accounts.values()]
            + [b.policy for b in s.buckets.values()]
            + [x.policy for x in s.secrets.values()])


def _page(items: list, size: str | None, token: str | None) -> tuple[list, str | None]:
    start = int(token or 0)
    limit = int(size or 0) or 100
    end = start + limit
    return items[start:end], (str(end) if end < len(items) else None)


# ---------------------------------------------------------------- keys


def key_json(sa: ServiceAccount, key_id: str) -> dict[str, Any]:
    key = sa.keys[key_id]
    return {
        "name": f"projects/{sa.project_id}/serviceAccounts/{sa.email}/keys/{key_id}",
        "validAfterTime": key.created.split(".")[0] + "Z",
        "validBeforeTime": "9999-12-31T23:59:59Z",
        "keyAlgorithm": "KEY_ALG_RSA_2048",
        "keyOrigin": "GOOGLE_PROVIDED",
        "keyType": "USER_MANAGED",
    }


def create_key(ctx: Ctx, project: str, account: str) -> dict[str, Any]:
    sa = _account(ctx, project, account, "iam.serviceAccountKeys.create")
    key_file = auth.new_key(ctx.state, sa, ctx.base_url("oauth2") + "/token")
    data = base64.b64encode(json.dumps(key_file, indent=2).encode()).decode()
    return {**key_json(sa, key_file["private_key_id"]),
            "privateKeyType": "TYPE_GOOGLE_CREDENTIALS_FILE", "privateKeyData": data}


def list_keys(ctx: Ctx, project: str, account: str) -> dict[str, Any]:
    sa = _account(ctx, project, account, "iam.serviceAccountKeys.list")
    return {"keys": [key_json(sa, k) for k in sa.keys]}


def delete_key(ctx: Ctx, project: str, account: str, key: str) -> dict[str, Any]:
    sa = _account(ctx, project, account, "iam.serviceAccountKeys.delete")
    if key not in sa.keys:
        raise not_found(f"Service account key {key} does not exist.")
    del sa.keys[key]
    ctx.state.key_owner.pop(key, None)
    return {}


# ---------------------------------------------------------------- policy


def get_policy(ctx: Ctx, project: str, account: str) -> dict[str, Any]:
    return policy_response(
        _account(ctx, project, account, "iam.serviceAccounts.getIamPolicy").policy, ctx)


def set_account_policy(ctx: Ctx, project: str, account: str) -> dict[str, Any]:
    sa = _account(ctx, project, account, "iam.serviceAccounts.setIamPolicy")
    return set_policy(ctx, sa.policy, ctx.body().get("policy"), permission_prefix="iam.")


def test_account_permissions(ctx: Ctx, project: str, account: str) -> dict[str, Any]:
    sa = _account(ctx, project, account, "iam.serviceAccounts.get")
    return test_permissions(ctx, ctx.body().get("permissions") or [], sa.policy,
                            ctx.state.projects[sa.project_id].policy)


# ---------------------------------------------------------------- IAM Credentials


def generate_access_token(ctx: Ctx, project: str, account: str) -> dict[str, Any]:
    """Act as a service account: the last hop of Workload Identity and of impersonation."""
    sa = _account(ctx, project, account, "iam.serviceAccounts.getAccessToken")
    body = ctx.body()
    scopes = tuple(body.get("scope") or ())
    if not scopes:
        raise invalid("Scope required.")
    lifetime = body.get("lifetime", "3600s")
    match = re.fullmatch(r"(\d+)(?:\.\d+)?s", lifetime)
    if not match:
        raise invalid(f"Invalid value at 'lifetime' ({lifetime}).")
    seconds = int(match.group(1))
    if seconds > MAX_TOKEN_LIFETIME:
        raise invalid("Lifetime must be less than or equal to 3600 seconds.")
    if sa.disabled:
        raise invalid(f"Service account {sa.email} is disabled.")
    token = ctx.state.issue_token(Principal(sa.member), scopes, lifetime=seconds)
    expire = datetime.fromtimestamp(token.expires, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"accessToken": token.value, "expireTime": expire}


_SA = "/v1/projects/<project>/serviceAccounts/<account>"
ROUTES = [
    Route("iam", "/v1/projects/<project>/serviceAccounts", ("POST",), create_account),
    Route("iam", "/v1/projects/<project>/serviceAccounts", ("GET",), list_accounts),
    Route("iam", _SA, ("GET",), get_account),
    Route("iam", _SA, ("PATCH",), patch_account),
    Route("iam", _SA, ("DELETE",), delete_account),
    Route("iam", _SA + ":getIamPolicy", ("POST",), get_policy, write=False),
    Route("iam", _SA + ":setIamPolicy", ("POST",), set_account_policy, policy_write=True),
    Route("iam", _SA + ":testIamPermissions", ("POST",), test_account_permissions, write=False),
    Route("iam", _SA + "/keys", ("POST",), create_key),
    Route("iam", _SA + "/keys", ("GET",), list_keys),
    Route("iam", _SA + "/keys/<key>", ("DELETE",), delete_key),
    Route("iamcredentials", _SA + ":generateAccessToken", ("POST",), generate_access_token,
          write=False),
]
