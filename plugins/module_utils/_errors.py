# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""API errors: ``ApiError``, the one shape of every failed call, and how a module reports one."""

from __future__ import annotations

# Statuses worth retrying on every API: rate limits and server-side failures.
TRANSIENT_STATUSES = frozenset((429, 500, 502, 503, 504))


class ApiError(Exception):
    """An API call failed: which resource, the HTTP status and the server's own message."""

    def __init__(self, resource, status, message, method=None, url=None, reason=None, body=None):
        super().__init__(message)
        self.resource = resource
        self.status = status
        self.message = message
        self.method = method
        self.url = url
        self.reason = reason
        self.body = body

    def __str__(self):
        what = f"{self.method} {self.resource}" if self.method else self.resource
        status = f"HTTP {self.status}" if self.status else "no response"
        reason = f" {self.reason}" if self.reason else ""
        return f"{what}: {status}{reason}: {self.message}"

    @property
    def transient(self):
        return self.status in TRANSIENT_STATUSES or self.status is None

    @property
    def error_info(self):
        """The google.rpc.ErrorInfo of a Google error body (reason, domain, metadata), or {}."""
        err = self.body.get("error") if isinstance(self.body, dict) else None
        details = err.get("details") if isinstance(err, dict) else None
        for detail in details if isinstance(details, list) else []:
            if isinstance(detail, dict) and detail.get("@type") == "type.googleapis.com/google.rpc.ErrorInfo":
                return detail
        return {}


def fail_on_api_error(module, err, **extra):
    """Report an ApiError through fail_json with the resource, status and server message."""
    details = {"status": err.status, "resource": err.resource}
    if err.reason:
        details["reason"] = err.reason
    if err.error_info:
        details["error_info"] = err.error_info
    if err.method and err.url:
        details["request"] = {"method": err.method, "url": err.url}
    if isinstance(err.body, dict):
        details["error"] = err.body
    details.update(extra)
    module.fail_json(msg=str(err), **details)
