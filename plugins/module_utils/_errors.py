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


class TargetMissing(ApiError):
    """What a task acts on does not exist (HTTP 404), because an earlier task creates it.

    In check mode that earlier task only said it would, so this is no failure: the module
    reports what a real run would do (changed) with this message; fail_on_api_error, which
    every module's error path goes through (the runner's, for an error the module does not
    handle), turns it into that result. Outside check mode it is the plain error it always was.
    """

    def __init__(self, resource, would, message=None, method="GET"):
        super().__init__(resource, 404, message or "does not exist", method=method)
        self.would = would  # what the task would do once it exists: "grant roles/x to y"

    @property
    def check_mode_msg(self):
        return f"{self.resource} does not exist yet: a real run creates it first; would {self.would}"


def fail_on_api_error(module, err, **extra):
    """Report an ApiError through fail_json with the resource, status and server message.

    A TargetMissing is not a failure in check mode (the module ends with changed and its
    message) nor with ``state: absent`` (what the task would remove went with it: offboarding a
    build cluster whose GKE cluster is already deleted).
    """
    if isinstance(err, TargetMissing) and module.params.get("state") == "absent":
        module.exit_json(changed=False, msg=f"{err.resource} does not exist: nothing left to remove", missing=err.resource)
    if isinstance(err, TargetMissing) and module.check_mode:
        module.exit_json(changed=True, msg=err.check_mode_msg, missing=err.resource)
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
