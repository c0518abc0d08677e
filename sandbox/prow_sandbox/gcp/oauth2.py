"""OAuth2 endpoints (``oauth2.googleapis.com``): ``/token`` and ``/tokeninfo``.

Credential files written by the fake set ``token_uri`` to ``{oauth2 base}/token``, which is
all google-auth needs to refresh them here instead of at Google.
"""

from __future__ import annotations

from typing import Any

from . import auth
from .errors import OAuthError
from .web import Ctx, Route


def token(ctx: Ctx) -> dict[str, Any]:
    if ctx.request.mimetype != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "Content-Type must be "
                         "application/x-www-form-urlencoded.")
    return auth.token_endpoint(ctx.state, dict(ctx.request.form), ctx.base_url() + "/token")


def tokeninfo(ctx: Ctx) -> dict[str, Any]:
    value = ctx.arg("access_token") or ctx.request.form.get("access_token", "")
    return auth.tokeninfo(ctx.state, value)


ROUTES = [
    # Issuing a token changes no resource: not a write in the request log.
    Route("oauth2", "/token", ("POST",), token, public=True, write=False),
    Route("oauth2", "/tokeninfo", ("GET", "POST"), tokeninfo, public=True, write=False),
]
