"""Credentials: service-account keys, the OAuth2 token endpoint and bearer-token checks.

The flows are Google's, so unmodified credential files work once their ``token_uri`` names
the fake:

* service-account key files: the client signs a JWT (RS256, ``kid`` = private_key_id,
  ``aud`` = token_uri, ``scope``) and trades it at ``POST /token`` with grant type
  ``urn:ietf:params:oauth:grant-type:jwt-bearer``;
* GAPIC clients may skip the exchange and send a self-signed JWT as the bearer token
  ("JWT access", google.aip.dev/auth/4111); Google accepts those, so the fake does too;
* ``authorized_user`` files (gcloud ADC of a human) trade a refresh token.

Every other API call needs ``Authorization: Bearer`` with a token from one of those flows,
from STS or from IAM Credentials; the token tells the fake who the caller is.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import ApiError, OAuthError
from .state import CLOUD_PLATFORM_SCOPE, Principal, ServiceAccount, ServiceAccountKey, State

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = 3600


def new_key(state: State, sa: ServiceAccount, token_uri: str) -> dict[str, str]:
    """Create a key for ``sa``: register its public half, return the JSON key file."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_id = secrets.token_hex(20)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    sa.keys[key_id] = ServiceAccountKey(key_id, public_pem)
    state.key_owner[key_id] = sa.email
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    # The layout of a key file as the IAM API's keys.create returns it (privateKeyData).
    return {
        "type": "service_account",
        "project_id": sa.project_id,
        "private_key_id": key_id,
        "private_key": private_pem,
        "client_email": sa.email,
        "client_id": sa.unique_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url":
            f"https://www.googleapis.com/robot/v1/metadata/x509/{sa.email.replace('@', '%40')}",
        "universe_domain": "googleapis.com",
    }


# The audiences Google accepts in a JWT-bearer assertion. google-auth always sends the
# first one (whatever token_uri says); a client built for the fake may name the fake's URL.
GOOGLE_TOKEN_AUDIENCES = ("https://oauth2.googleapis.com/token",
                          "https://www.googleapis.com/oauth2/v4/token")


def _verify_sa_jwt(state: State, token: str, *,
                   audience: list[str] | None) -> tuple[ServiceAccount, dict]:
    """Verify a JWT signed by a registered service-account key; return the account and claims.

    Raises ``jwt.InvalidTokenError`` (or KeyError for an unknown key) on any failure.
    """
    header = jwt.get_unverified_header(token)
    key_id = header.get("kid", "")
    email = state.key_owner[key_id]
    sa = state.service_accounts[email]
    key = sa.keys[key_id]
    options: dict[str, Any] = {"require": ["exp", "iat", "iss"], "verify_aud": audience is not None}
    claims = jwt.decode(token, key.public_pem, algorithms=["RS256"], audience=audience,
                        options=options, leeway=60)
    if claims["iss"] != email:
        raise jwt.InvalidIssuerError("iss is not the key's service account")
    if claims["exp"] - claims["iat"] > MAX_ASSERTION_LIFETIME:
        raise jwt.InvalidTokenError("token lifetime too long")
    return sa, claims


def token_endpoint(state: State, form: dict[str, str], token_url: str) -> dict[str, Any]:
    """``POST https://oauth2.googleapis.com/token``: both grant types the clients use."""
    grant = form.get("grant_type", "")
    if grant == JWT_BEARER:
        return _jwt_bearer_grant(state, form.get("assertion", ""), token_url)
    if grant == "refresh_token":
        return _refresh_grant(state, form)
    raise OAuthError("unsupported_grant_type", f"Invalid grant_type: {grant}")


def _jwt_bearer_grant(state: State, assertion: str, token_url: str) -> dict[str, Any]:
    try:
        sa, claims = _verify_sa_jwt(state, assertion,
                                    audience=[*GOOGLE_TOKEN_AUDIENCES, token_url])
    except KeyError as exc:
        raise OAuthError("invalid_grant", "Invalid grant: account not found") from exc
    except jwt.ExpiredSignatureError as exc:
        raise OAuthError("invalid_grant", "Invalid JWT: Token must be a short-lived token "
                         "(60 minutes) and in a reasonable timeframe. Check your iat and exp "
                         "values in the JWT claim.") from exc
    except jwt.InvalidAudienceError as exc:
        raise OAuthError("invalid_grant", "Invalid JWT: Failed audience check.") from exc
    except jwt.InvalidTokenError as exc:
        raise OAuthError("invalid_grant", "Invalid JWT Signature.") from exc
    if sa.disabled:
        raise OAuthError("invalid_grant", "Invalid grant: account disabled")
    scopes = tuple(claims.get("scope", "").split())
    if not scopes:
        # A key file used without scopes: Google refuses rather than guessing.
        raise OAuthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
    token = state.issue_token(Principal(sa.member), scopes)
    return {"access_token": token.value, "expires_in": int(token.expires - time.time()),
            "token_type": "Bearer"}


def _refresh_grant(state: State, form: dict[str, str]) -> dict[str, Any]:
    user = next((u for u in state.users.values() if u.client_id == form.get("client_id")), None)
    if user is None or user.client_secret != form.get("client_secret"):
        raise OAuthError("invalid_client", "The OAuth client was not found.", code=401)
    if form.get("refresh_token") != user.refresh_token:
        raise OAuthError("invalid_grant", "Token has been expired or revoked.")
    scopes = tuple(form.get("scope", "").split()) or (
        "openid", "https://www.googleapis.com/auth/userinfo.email", CLOUD_PLATFORM_SCOPE)
    token = state.issue_token(Principal(f"user:{user.email}"), scopes)
    return {"access_token": token.value, "expires_in": int(token.expires - time.time()),
            "scope": " ".join(scopes), "token_type": "Bearer"}


def tokeninfo(state: State, access_token: str) -> dict[str, Any]:
    """``GET https://oauth2.googleapis.com/tokeninfo?access_token=``."""
    token = state.token(access_token)
    if token is None or token.principal.federated:
        raise OAuthError("invalid_token", "Invalid Value")
    return {"azp": token.principal.email, "aud": token.principal.email,
            "scope": " ".join(token.scopes), "exp": str(int(token.expires)),
            "expires_in": str(int(token.expires - time.time())),
            "email": token.principal.email, "email_verified": "true", "access_type": "online"}


UNAUTHENTICATED = ApiError(
    401,
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project.",
    "UNAUTHENTICATED",
    headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
)
MISSING_CREDENTIAL = ApiError(
    401,
    "Request is missing required authentication credential. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project.",
    "UNAUTHENTICATED",
    headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
)


def authenticate(state: State, authorization: str | None) -> tuple[Principal, tuple[str, ...]]:
    """The caller of an API request, from its Authorization header; 401 otherwise."""
    if not authorization:
        raise MISSING_CREDENTIAL
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise UNAUTHENTICATED
    token = state.token(value)
    if token is not None:
        return token.principal, token.scopes
    if value.count(".") == 2:  # a self-signed service-account JWT
        try:
            sa, claims = _verify_sa_jwt(state, value, audience=None)
        except (KeyError, jwt.InvalidTokenError):
            raise UNAUTHENTICATED from None
        if not sa.disabled:
            scopes = tuple(claims.get("scope", "").split()) or (CLOUD_PLATFORM_SCOPE,)
            return Principal(sa.member), scopes
    raise UNAUTHENTICATED


def decode_key_file(private_key_data: str) -> dict[str, Any]:
    """The key file inside an IAM keys.create response (helper for tests and tools)."""
    return json.loads(base64.b64decode(private_key_data))
