"""Security Token Service v1 ``token``: GKE's Workload Identity and Workload Identity Federation.

Two audiences are served.

* GKE (the exchange the GKE metadata server makes): a pod's Kubernetes service-account token
  (a TokenRequest token with audience ``PROJECT.svc.id.goog``) with

      audience = identitynamespace:PROJECT.svc.id.goog:https://container.googleapis.com/v1/projects/P/locations/L/clusters/C

  (the format of Istio's and the GKE metadata server's public code), verified like an OIDC
  relying party against the named cluster's issuer and JWKS, read from its apiserver when it
  started. The federated token's principal is ``serviceAccount:PROJECT.svc.id.goog[NS/KSA]``
  and, for direct resource access, ``principal://iam.googleapis.com/projects/NUMBER/locations/
  global/workloadIdentityPools/PROJECT.svc.id.goog/subject/ns/NS/sa/KSA``, a member of the
  pool's ``namespace/NS`` and ``kubernetes.cluster/URL`` principal sets.
* Workload Identity Federation (wif.py): ``audience = //iam.googleapis.com/projects/NUMBER/
  locations/global/workloadIdentityPools/POOL/providers/PROV`` and any OIDC token the
  provider accepts: keys from its uploaded ``jwksJson`` (else from the issuer's discovery
  document), its issuer, an ``aud`` among its allowed audiences (default: its own resource
  name), not expired, ``google.subject`` mapped, the attribute condition true. The principal
  is ``principal://.../POOL/subject/SUBJECT``, a member of ``principalSet://.../POOL/*`` and
  of ``.../attribute.NAME/VALUE`` per mapped custom attribute (``.../group/G`` per group).

Either token may call Google APIs directly where a policy names one of those members, or
impersonate a service account (``generateAccessToken``) whose policy grants one of them
``roles/iam.workloadIdentityUser``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jwt
import requests

from . import wif
from .errors import OAuthError
from .policy import POOL_PREFIX
from .state import CLOUD_PLATFORM_SCOPE, Principal
from .web import Ctx, Route

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPES = ("urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id_token")
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
AUDIENCE_RE = re.compile(
    r"^identitynamespace:(?P<pool>[^:]+\.svc\.id\.goog):"
    r"https://container\.googleapis\.com/v1/projects/(?P<project>[^/]+)"
    r"/locations/(?P<location>[^/]+)/clusters/(?P<cluster>[^/]+)$")
PROVIDER_AUDIENCE_RE = re.compile(
    r"^//iam\.googleapis\.com/projects/(?P<project>[^/]+)/locations/global"
    r"/workloadIdentityPools/(?P<pool>[^/]+)/providers/(?P<provider>[^/]+)$")
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
    audience = p.get("audience", "")
    if AUDIENCE_RE.match(audience):
        principal = _gke_principal(ctx, AUDIENCE_RE.match(audience), p.get("subject_token", ""))
    elif PROVIDER_AUDIENCE_RE.match(audience):
        principal = _federated_principal(ctx, PROVIDER_AUDIENCE_RE.match(audience),
                                         p.get("subject_token", ""))
    else:
        raise OAuthError("invalid_target", INVALID_TARGET)
    scopes = tuple(p.get("scope", "").split()) or (CLOUD_PLATFORM_SCOPE,)
    token = ctx.state.issue_token(principal, scopes)
    return {"access_token": token.value, "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer", "expires_in": 3600}


def _gke_principal(ctx: Ctx, audience: re.Match[str], subject_token: str) -> Principal:
    pool = audience.group("pool")
    project = ctx.state.project(audience.group("project"))
    cluster = ctx.state.clusters.get(
        (project.project_id if project else "", audience.group("location"),
         audience.group("cluster")))
    if (project is None or pool not in ctx.state.identity_pools or cluster is None
            or cluster.workload_pool != pool or cluster.jwks is None):
        raise OAuthError("invalid_target", INVALID_TARGET)
    claims = _verify(subject_token, cluster.jwks, cluster.issuer or "", [pool])
    subject = KSA_SUBJECT_RE.match(claims.get("sub", ""))
    if not subject:
        raise OAuthError("invalid_grant", "The subject of the token is not a Kubernetes "
                         "service account.")
    ns, ksa = subject.group("ns"), subject.group("ksa")
    prefix = POOL_PREFIX.format(number=project.number, pool=pool)
    cluster_url = audience.group(0).split(":", 2)[2]
    return Principal(f"serviceAccount:{pool}[{ns}/{ksa}]", federated=True, also=(
        f"principal:{prefix}/subject/ns/{ns}/sa/{ksa}",
        f"principalSet:{prefix}/namespace/{ns}",
        f"principalSet:{prefix}/kubernetes.cluster/{cluster_url}"))


def _federated_principal(ctx: Ctx, audience: re.Match[str], subject_token: str) -> Principal:
    project = ctx.state.project(audience.group("project"))
    number = project.number if project else ""
    pool = ctx.state.wif_pools.get((number, audience.group("pool")))
    provider = ctx.state.wif_providers.get((number, audience.group("pool"),
                                            audience.group("provider")))
    if (pool is None or provider is None or not pool.active or pool.disabled
            or not provider.active or provider.disabled):
        raise OAuthError("invalid_target", INVALID_TARGET)
    jwks = json.loads(provider.jwks_json) if provider.jwks_json else _issuer_jwks(ctx, provider)
    claims = _verify(subject_token, jwks, provider.issuer_uri, provider.audiences)
    attributes = wif.map_attributes(provider, claims)
    subject = attributes.get("google.subject")
    if not isinstance(subject, str) or not subject:
        raise OAuthError("invalid_grant", "The mapped attribute 'google.subject' must be a "
                         "non-empty string.")
    if len(subject.encode()) > 127:
        raise OAuthError("invalid_grant", "The size of mapped attribute google.subject "
                         "exceeds the 127 bytes limit.")
    if not wif.condition_holds(provider, claims, attributes):
        raise OAuthError("unauthorized_client",
                         "The given credential is rejected by the attribute condition.")
    prefix = POOL_PREFIX.format(number=number, pool=pool.pool_id)
    sets = [f"principalSet:{prefix}/*"]
    for key, value in sorted(attributes.items()):
        if key.startswith("attribute.") and isinstance(value, str):
            sets.append(f"principalSet:{prefix}/{key}/{value}")
        if key == "google.groups" and isinstance(value, list):
            sets.extend(f"principalSet:{prefix}/group/{g}" for g in value if isinstance(g, str))
    return Principal(f"principal:{prefix}/subject/{subject}", federated=True, also=tuple(sets))


def _issuer_jwks(ctx: Ctx, provider: wif.Provider) -> dict[str, Any]:
    """The issuer's keys as STS finds them without uploaded ones: a GKE cluster of the fake
    (whose issuer it knows), else the issuer's discovery document and ``jwks_uri`` over HTTPS."""
    for cluster in ctx.state.clusters.values():
        if cluster.issuer == provider.issuer_uri and cluster.jwks is not None:
            return cluster.jwks
    try:
        discovery = requests.get(provider.issuer_uri.rstrip("/")
                                 + "/.well-known/openid-configuration", timeout=3)
        discovery.raise_for_status()
        keys = requests.get(discovery.json()["jwks_uri"], timeout=3)
        keys.raise_for_status()
        return keys.json()
    except (requests.RequestException, ValueError, KeyError, TypeError):
        raise OAuthError("invalid_grant",
                         "Error connecting to the given credential's issuer.") from None


def _verify(token: str, jwks: dict[str, Any], issuer: str, audiences: list[str]) -> dict[str, Any]:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        key_set = jwt.PyJWKSet.from_dict(jwks)
        key = next((k for k in key_set.keys if k.key_id == kid), None)
        if key is None:
            raise OAuthError("invalid_grant", "The ID Token's key ID is not in the issuer's JWKS.")
        return jwt.decode(token, key.key, algorithms=["RS256", "ES256"], audience=audiences,
                          issuer=issuer, options={"require": ["exp", "iat", "iss", "sub", "aud"]})
    except jwt.InvalidAudienceError:
        raise OAuthError("invalid_grant", "The audience in ID Token does not match the "
                         f"expected audience {' or '.join(audiences)}.") from None
    except jwt.InvalidIssuerError:
        raise OAuthError("invalid_grant", "The issuer in ID Token does not match the expected "
                         f"ones: [{issuer}].") from None
    except jwt.ExpiredSignatureError:
        raise OAuthError("invalid_grant", "The ID Token has expired.") from None
    except jwt.PyJWTError as exc:
        raise OAuthError("invalid_grant", f"Unable to parse the ID Token: {exc}.") from None


# A token exchange changes no resource: not a write in the request log.
ROUTES = [Route("sts", "/v1/token", ("POST",), exchange_token, public=True, write=False)]
