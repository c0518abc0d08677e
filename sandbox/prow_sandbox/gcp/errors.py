"""Errors as Google's APIs return them.

Three wire shapes exist and clients depend on each:

* most JSON APIs (IAM, CRM, Secret Manager, GKE, IAM Credentials) use google.rpc.Status:
  ``{"error": {"code": 409, "message": "...", "status": "ALREADY_EXISTS", "details": [...]}}``,
  where ``details`` holds typed google.rpc messages; Google's front end puts a
  ``google.rpc.ErrorInfo`` (``reason``, ``domain``, ``metadata``) there for permission
  denials (``IAM_PERMISSION_DENIED``), quota errors (``RATE_LIMIT_EXCEEDED``) and the like,
  and ``google.api_core.exceptions`` exposes it as ``.reason``/``.domain``/``.metadata``;
* Cloud Storage JSON v1 keeps its legacy shape with an ``errors[]`` list carrying a
  ``reason`` (``conflict``, ``notFound``, ``conditionNotMet``...);
* the OAuth2 and STS token endpoints answer RFC 6749 errors:
  ``{"error": "invalid_grant", "error_description": "..."}``.

Handlers raise :class:`ApiError` (or :class:`OAuthError`); the app renders it in the shape
of the service that was called. The REST clients map exceptions by HTTP status only
(``google.api_core.exceptions.from_http_status``), so the status codes must be exact.
"""

from __future__ import annotations

from typing import Any

# Canonical google.rpc.Code names for the HTTP statuses the fake produces.
STATUS_BY_CODE = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}

# Cloud Storage's ``errors[].reason`` for each status.
GCS_REASON_BY_CODE = {
    400: "invalid",
    401: "required",
    403: "forbidden",
    404: "notFound",
    409: "conflict",
    412: "conditionNotMet",
    429: "rateLimitExceeded",
    500: "backendError",
    503: "backendError",
}


class ApiError(Exception):
    """An error response of a Google JSON API."""

    def __init__(
        self,
        code: int,
        message: str,
        status: str | None = None,
        *,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_BY_CODE.get(code, "UNKNOWN")
        self.reason = reason  # GCS only; defaults from the code
        self.headers = headers or {}
        self.extra = extra or {}  # GCS: locationType/location of the offending parameter
        self.details = details or []  # google.rpc detail messages, "@type" first

    def google_body(self, service: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            # An ErrorInfo without a domain takes the called service's, as Google's front end does.
            body["details"] = [
                dict(d, domain=f"{service}.googleapis.com")
                if d.get("@type") == ERROR_INFO and not d.get("domain") and service else d
                for d in self.details]
        return {"error": body}

    def gcs_body(self) -> dict[str, Any]:
        item = {
            "message": self.message,
            "domain": "global",
            "reason": self.reason or GCS_REASON_BY_CODE.get(self.code, "backendError"),
            **self.extra,
        }
        return {"error": {"code": self.code, "message": self.message, "errors": [item]}}


ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


def error_info(reason: str, domain: str | None = None, **metadata: str) -> dict[str, Any]:
    """A google.rpc.ErrorInfo detail (domain None: the called service's)."""
    info: dict[str, Any] = {"@type": ERROR_INFO, "reason": reason}
    if domain:
        info["domain"] = domain
    if metadata:
        info["metadata"] = metadata
    return info


class OAuthError(Exception):
    """An RFC 6749 error of the OAuth2 or STS token endpoint."""

    def __init__(self, error: str, description: str, code: int = 400) -> None:
        super().__init__(description)
        self.code = code
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


# Short constructors for the cases every service produces.


def invalid(message: str) -> ApiError:
    return ApiError(400, message, "INVALID_ARGUMENT")


def failed_precondition(message: str) -> ApiError:
    # FAILED_PRECONDITION is HTTP 400 in google.rpc's mapping (not 412).
    return ApiError(400, message, "FAILED_PRECONDITION")


def not_found(message: str) -> ApiError:
    return ApiError(404, message, "NOT_FOUND")


def already_exists(message: str) -> ApiError:
    return ApiError(409, message, "ALREADY_EXISTS")


def aborted(message: str) -> ApiError:
    return ApiError(409, message, "ABORTED")


def permission_denied(message: str, permission: str | None = None,
                      resource: str | None = None) -> ApiError:
    """403 PERMISSION_DENIED; naming the permission adds the ErrorInfo IAM sends with it
    (reason IAM_PERMISSION_DENIED, the permission and resource in its metadata)."""
    details = None
    if permission:
        metadata = {"permission": permission}
        if resource:
            metadata["resource"] = resource
        details = [error_info("IAM_PERMISSION_DENIED", **metadata)]
    return ApiError(403, message, "PERMISSION_DENIED", details=details)


# Wording Google uses when the caller lacks a permission; it deliberately does not reveal
# whether the resource exists.
def denied_on_resource(permission: str, resource: str | None = None) -> ApiError:
    return permission_denied(
        f"Permission '{permission}' denied on resource (or it may not exist).",
        permission, resource)


CONCURRENT_POLICY_CHANGE = (
    "There were concurrent policy changes. Please retry the whole read-modify-write "
    "with exponential backoff."
)
