# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Pieces every module shares: API errors, the one retry helper, durations, fingerprints.

Nothing here imports a cloud client library: modules pay for those imports only on
the code paths that need them (a task is a new Python process unless it runs in the
worker, see plugin_utils/inprocess.py, whose controller has imported them once).
"""

from __future__ import annotations

import hashlib
import re
import traceback

try:
    import tenacity

    HAS_TENACITY = True
    TENACITY_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported through missing_required_lib
    HAS_TENACITY = False
    TENACITY_IMPORT_ERROR = traceback.format_exc()

from ansible.module_utils.basic import missing_required_lib

# Statuses worth retrying on every API: rate limits and server-side failures.
TRANSIENT_STATUSES = frozenset((429, 500, 502, 503, 504))

# Bounded and jittered, so that concurrent runs (several onboardings, a rotation
# job and a human) do not retry in lock step. About 30 s in the worst case.
RETRY_ATTEMPTS = 6
RETRY_MAX_WAIT = 8.0
RETRY_INITIAL_WAIT = 0.5


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


def require_tenacity(module):
    if not HAS_TENACITY:
        module.fail_json(msg=missing_required_lib("tenacity"), exception=TENACITY_IMPORT_ERROR)


def call_with_retry(func, *args, retry_on=None, attempts=RETRY_ATTEMPTS, **kwargs):
    """Call ``func`` and retry it on transient failures with jittered exponential backoff.

    ``retry_on(exc) -> bool`` decides what is transient; by default an ApiError whose
    status is 429/5xx or that never got a response. The last error is re-raised as is.
    """
    decide = retry_on or (lambda exc: isinstance(exc, ApiError) and exc.transient)
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_random_exponential(multiplier=RETRY_INITIAL_WAIT, max=RETRY_MAX_WAIT),
        retry=tenacity.retry_if_exception(decide),
        reraise=True,
    )
    return retrying(func, *args, **kwargs)


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


_DURATION_PART = re.compile(r"(\d+)(d|h|m|s)")
_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(value):
    """Seconds in a Go-style duration (``48h``, ``1h30m``, ``90s``, ``2d``) or a bare integer.

    Raises ValueError with a message that says what is accepted.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int):
        seconds = value
    else:
        text = str(value).strip().lower()
        if text.isdigit():
            seconds = int(text)
        else:
            parts = _DURATION_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(
                    f"invalid duration {value!r}: use a number of seconds or units d, h, m, s (for example 48h or 1h30m)"
                )
            seconds = sum(int(n) * _DURATION_UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"invalid duration {value!r}: it must be positive")
    return seconds


def format_duration(seconds):
    """Inverse of parse_duration for messages: 172800 -> '48h', 5400 -> '1h30m'."""
    seconds = int(seconds)
    out = []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0s"


def fingerprint(secret):
    """A short, stable, non-reversible stand-in for a secret in diffs and return values."""
    if secret is None:
        return None
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    return "sha256:" + hashlib.sha256(secret).hexdigest()[:16]


# RFC 1123 label (namespaces) and subdomain (most object names), as Kubernetes validates them.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def dns_label_error(value, what):
    """Why ``value`` is not a valid RFC 1123 label (namespace names), or None."""
    if not value or len(value) > 63 or not _DNS_LABEL.match(value):
        return (
            f"{what} {value!r} is not a valid name: use at most 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return None


def dns_subdomain_error(value, what):
    """Why ``value`` is not a valid RFC 1123 subdomain (most object names), or None."""
    if not value or len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        return (
            f"{what} {value!r} is not a valid name: use at most 253 lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit"
        )
    return None
