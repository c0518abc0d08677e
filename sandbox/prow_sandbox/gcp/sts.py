"""Security Token Service v1 ``token``: the Workload Identity exchange GKE's metadata server makes.

A pod's Kubernetes service-account token (a TokenRequest token with audience
``PROJECT.svc.id.goog``) is exchanged for a federated access token with

    audience = identitynamespace:PROJECT.svc.id.goog:https://container.googleapis.com/v1/projects/P/locations/L/clusters/C

(the format of Istio's and the GKE metadata server's public code). The fake verifies the
token like an OIDC relying party against the named cluster's issuer and JWKS, read from
its apiserver when it started. The federated token's principal is the member
``serviceAccount:PROJECT.svc.id.goog[NAMESPACE/KSA]``, which IAM Credentials
``generateAccessToken`` then checks against the GSA's ``roles/iam.workloadIdentityUser``
binding.
"""

from __future__ import annotations

import re
from typing import Any

import jwt

from .errors import OAuthError
from .state import CLOUD_PLATFORM_SCOPE, Principal
from .web import Ctx, Route

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPES = ("urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id_token")
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
AUDIENCE_RE = re.compile(
    r"^identitynamespace:(?P<pool>[^:]+\.svc\.id\.goog):"
    r"https://container\.googleapis\.com/v1/projects/(?P<project>[^/]+)"
    r"/locations/(?P<location>[^/]+)/clusters/(?P<cluster>[^/]+)$")
KSA_SUBJECT_RE = re.compile(r"^system:serviceaccount:(?P<ns>[^:]+):(?P<ksa>[^:]+)$")
INVALID_TARGET = ("The target service indicated by the \"audience\" parameters is invalid. This "
                  "might either be because the pool or provider is disabled or deleted or "
                  "because it doesn't exist.")


def _params(ctx: Ctx) -> dict[str, str]:
    """The request fields: JSON (camelCase or snake_case, as Go clients send) or a form."""
    req = ctx.request
    raw: dict[str, Any] = ctx.body() if req.mimetype == "application/json" else dict(req.form)
    snake = {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): v for k, v in raw.items()}
    return {k: str(v) for k, v in snake.items()}


def exchange_token(ctx: Ctx) -> dict[str, Any]:
    p = _params(ctx)
    if p.get("grant_type") != TOKEN_EXCHANGE:
        raise OAuthError("unsupported_grant_type",
                         f"The grant_type [{p.get('grant_type', '')}] is not supported.")
    if p.get("subject_token_type") not in JWT_TYPES:
        raise OAuthError("invalid_request", "Invalid value for \"subject_token_type\". "
                         f"Expected one of {list(JWT_TYPES)}.")
    if p.get("requested_token_type", ACCESS_TOKEN_TYPE) != ACCESS_TOKEN_TYPE:
        raise OAuthError("invalid_request", "Invalid value for \"requested_token_type\".")
    audience = AUDIENCE_RE.match(p.get("audience", ""))
    if not audience:
        raise OAuthError("invalid_target", INVALID_TARGET)
    pool = audience.group("pool")
    project = ctx.state.project(audience.group("project"))
    cluster = ctx.state.clusters.get(
        (project.project_id if project else "", audience.group("location"),
         audience.group("cluster")))
    if (pool not in ctx.state.identity_pools or cluster is None or cluster.workload_pool != pool
            or cluster.jwks is None):
        raise OAuthError("invalid_target", INVALID_TARGET)
    claims = _verify(p.get("subject_token", ""), cluster.jwks, cluster.issuer or "", pool)
    subject = KSA_SUBJECT_RE.match(claims.get("sub", ""))
    if not subject:
        raise OAuthError("invalid_grant", "The subject of the token is not a Kubernetes "
                         "service account.")
    member = f"serviceAccount:{pool}[{subject.group('ns')}/{subject.group('ksa')}]"
    scopes = tuple(p.get("scope", "").split()) or (CLOUD_PLATFORM_SCOPE,)
    token = ctx.state.issue_token(Principal(member, federated=True), scopes)
    return {"access_token": token.value, "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer", "expires_in": 3600}


def _verify(token: str, jwks: dict[str, Any], issuer: str, pool: str) -> dict[str, Any]:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        key_set = jwt.PyJWKSet.from_dict(jwks)
        key = next((k for k in key_set.keys if k.key_id == kid), None)
        if key is None:
            raise OAuthError("invalid_grant", "The ID Token's key ID is not in the issuer's JWKS.")
        return jwt.decode(token, key.key, algorithms=["RS256"], audience=pool, issuer=issuer,
                          options={"require": ["exp", "iat", "iss", "sub", "aud"]})
    except jwt.InvalidAudienceError:
        raise OAuthError("invalid_grant", "The audience in ID Token does not match the "
                         f"expected audience {pool}.") from None
    except jwt.InvalidIssuerError:
        raise OAuthError("invalid_grant", "The issuer in ID Token does not match the expected "
                         f"ones: [{issuer}].") from None
    except jwt.ExpiredSignatureError:
        raise OAuthError("invalid_grant", "The ID Token has expired.") from None
    except jwt.PyJWTError as exc:
        raise OAuthError("invalid_grant", f"Unable to parse the ID Token: {exc}.") from None


# A token exchange changes no resource: not a write in the request log.
ROUTES = [Route("sts", "/v1/token", ("POST",), exchange_token, public=True, write=False)]
