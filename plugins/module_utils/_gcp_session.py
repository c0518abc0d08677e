# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one way the collection talks to Google APIs: credentials, endpoints, requests, errors.

Every GCP module goes through ``GcpSession``: one credentials path (Application Default
Credentials, a service-account file or its contents, an access token, optionally
impersonating a service account), one authorised HTTP session, base URLs that a single
option (``api_endpoints`` / ``GCP_API_ENDPOINTS``) can redirect (the sandbox uses this),
and one error shape (``_errors.ApiError``) with retries from ``_retry.call_with_retry``.

The REST APIs are called directly rather than through the generated client libraries:
the calls are few, the import cost per task is much lower, and the same code path serves
every service. Secret Manager is the exception: it goes through google-cloud-secret-manager
(``module_utils/secretmanager.py``), for the payload integrity checks (CRC32C) that library
and google-crc32c do, on this session's credentials, endpoints, errors and retries.
"""

from __future__ import annotations

import hashlib
import json
import os
import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib

from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError
from ansible_collections.prow.build_cluster.plugins.module_utils._retry import call_with_retry, require_tenacity
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import project_id_error

try:
    import google.auth
    import google.auth.exceptions
    from google.auth import crypt, impersonated_credentials
    from google.auth.transport.requests import AuthorizedSession, Request
    from google.oauth2 import credentials as oauth2_credentials
    from google.oauth2 import service_account

    HAS_GOOGLE_AUTH = True
    GOOGLE_AUTH_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported through missing_required_lib
    HAS_GOOGLE_AUTH = False
    GOOGLE_AUTH_IMPORT_ERROR = traceback.format_exc()

try:
    import requests

    HAS_REQUESTS = True
except ImportError:  # pragma: no cover
    HAS_REQUESTS = False

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"

# Production base URLs; api_endpoints overrides any of them.
DEFAULT_ENDPOINTS = {
    "iam": "https://iam.googleapis.com",
    "iamcredentials": "https://iamcredentials.googleapis.com",
    "sts": "https://sts.googleapis.com",
    "storage": "https://storage.googleapis.com",
    "secretmanager": "https://secretmanager.googleapis.com",
    "container": "https://container.googleapis.com",
    "cloudresourcemanager": "https://cloudresourcemanager.googleapis.com",
    "oauth2": "https://oauth2.googleapis.com",
}

HTTP_TIMEOUT = 60

# GcpSession.request(as_bearer=ANONYMOUS): a call that carries no credentials at all.
ANONYMOUS = ""

GCP_AUTH_ARGSPEC = {
    "project": {"type": "str", "fallback": (env_fallback, ["GCP_PROJECT"])},
    "auth_kind": {
        "type": "str",
        "default": "application",
        "choices": ["application", "serviceaccount", "accesstoken"],
        "fallback": (env_fallback, ["GCP_AUTH_KIND"]),
    },
    "service_account_file": {"type": "path", "fallback": (env_fallback, ["GCP_SERVICE_ACCOUNT_FILE"])},
    "service_account_contents": {
        "type": "jsonarg",
        "no_log": True,
        "fallback": (env_fallback, ["GCP_SERVICE_ACCOUNT_CONTENTS"]),
    },
    "access_token": {"type": "str", "no_log": True, "fallback": (env_fallback, ["GCP_ACCESS_TOKEN"])},
    "impersonate_service_account": {"type": "str", "fallback": (env_fallback, ["GCP_IMPERSONATE_SERVICE_ACCOUNT"])},
    "scopes": {
        "type": "list",
        "elements": "str",
        "default": [CLOUD_PLATFORM_SCOPE],
        "fallback": (env_fallback, ["GCP_SCOPES"]),
    },
    "api_endpoints": {"type": "raw", "fallback": (env_fallback, ["GCP_API_ENDPOINTS"])},
}

GCP_AUTH_MUTUALLY_EXCLUSIVE = [("service_account_file", "service_account_contents", "access_token")]


def resolve_endpoints(value):
    """Base URLs per service: the defaults, overridden by a dict, a JSON object or a JSON file path."""
    endpoints = dict(DEFAULT_ENDPOINTS)
    if not value:
        return endpoints
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("{"):
            try:
                with open(os.path.expanduser(text), encoding="utf-8") as handle:
                    text = handle.read()
            except OSError as exc:
                raise ValueError(f"api_endpoints: cannot read {value}: {exc.strerror}") from None
        try:
            value = json.loads(text)
        except ValueError:
            raise ValueError("api_endpoints: not a JSON object, nor the path of a file holding one") from None
    if not isinstance(value, dict):
        raise ValueError("api_endpoints: expected a mapping of service name to base URL")
    unknown = sorted(set(value) - set(DEFAULT_ENDPOINTS))
    if unknown:
        raise ValueError(f"api_endpoints: unknown services {', '.join(unknown)}; known: {', '.join(sorted(DEFAULT_ENDPOINTS))}")
    for service, url in value.items():
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"api_endpoints: {service}: {url!r} is not an http(s) URL")
        endpoints[service] = url.rstrip("/")
    return endpoints


def error_from_response(response, resource):
    """An ApiError from a Google error response (the modern shape and GCS's legacy one)."""
    message, reason, body = response.text.strip()[:500] or response.reason, None, None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        message = err.get("message") or message
        reason = err.get("status")
        if not reason and err.get("errors"):
            reason = err["errors"][0].get("reason")
    return ApiError(resource, response.status_code, message, method=response.request.method,
                    url=response.request.url, reason=reason, body=body)


# Credentials and HTTP sessions by auth settings, for this process: every GcpSession of a
# module run (its own, the one behind a gke: connection, Secret Manager's) loads the key and
# fetches a token once. A process runs one module: a module process, or the Ansible worker
# forked for the task (plugin_utils/inprocess.py), whose parent never fills this dict.
_SHARED = {}


def _auth_key(params, endpoints):
    contents = params.get("service_account_contents")
    return json.dumps([
        params.get("auth_kind"), params.get("access_token"), params.get("service_account_file"),
        contents if isinstance(contents, str) else json.dumps(contents, sort_keys=True),
        params.get("impersonate_service_account"), params.get("scopes"), sorted(endpoints.items()),
    ])


class GcpSession:
    """Authorised access to Google REST APIs for one module run."""

    def __init__(self, module):
        self.module = module
        if not HAS_GOOGLE_AUTH:
            module.fail_json(msg=missing_required_lib("google-auth"), exception=GOOGLE_AUTH_IMPORT_ERROR)
        if not HAS_REQUESTS:
            module.fail_json(msg=missing_required_lib("requests"))
        require_tenacity(module)
        params = module.params
        try:
            self.endpoints = resolve_endpoints(params.get("api_endpoints"))
        except ValueError as exc:
            module.fail_json(msg=str(exc))
        self.project = params.get("project")
        self._shared = _SHARED.setdefault(_auth_key(params, self.endpoints), {})

    def shared(self, name):
        """A dict kept for the rest of this process, shared by sessions with these auth settings."""
        return self._shared.setdefault(name, {})

    # -- credentials -------------------------------------------------------------
    @property
    def credentials(self):
        if "credentials" not in self._shared:
            self._shared["credentials"] = self._load_credentials()
        creds, default_project = self._shared["credentials"]
        self.project = self.project or default_project
        return creds

    def _load_credentials(self):
        """(credentials, the default project of application default credentials or None)."""
        params = self.module.params
        default_project = None
        scopes = params.get("scopes") or [CLOUD_PLATFORM_SCOPE]
        kind = params.get("auth_kind") or "application"
        try:
            if params.get("access_token") or kind == "accesstoken":
                if not params.get("access_token"):
                    self.module.fail_json(msg="auth_kind=accesstoken needs access_token (or GCP_ACCESS_TOKEN)")
                creds = oauth2_credentials.Credentials(token=params["access_token"])
            elif params.get("service_account_file") or params.get("service_account_contents") or kind == "serviceaccount":
                if params.get("service_account_contents"):
                    info = params["service_account_contents"]
                    info = json.loads(info) if isinstance(info, str) else info
                elif params.get("service_account_file"):
                    info = _read_json(params["service_account_file"])
                else:
                    self.module.fail_json(msg="auth_kind=serviceaccount needs service_account_file or service_account_contents")
                creds = service_account_credentials(info, scopes)
            else:
                adc = application_default_key()
                if adc:
                    # What google.auth.default does for a key file, with the key parsed once.
                    creds, default_project = service_account_credentials(adc, scopes), adc.get("project_id")
                else:
                    creds, default_project = google.auth.default(scopes=scopes)
        except (google.auth.exceptions.DefaultCredentialsError, ValueError, OSError) as exc:
            self.module.fail_json(msg=f"Google credentials: {exc}")
        target = params.get("impersonate_service_account")
        if target:
            creds = impersonated_credentials.Credentials(
                source_credentials=creds,
                target_principal=target,
                target_scopes=scopes,
                iam_endpoint_override=(
                    f"{self.endpoints['iamcredentials']}/v1/projects/-/serviceAccounts/{target}:generateAccessToken"
                ),
            )
        return creds, default_project

    def access_token(self):
        """A valid bearer token of the caller (refreshed if needed), e.g. for a GKE apiserver."""
        creds = self.credentials
        if not creds.valid:
            try:
                creds.refresh(Request())
            except google.auth.exceptions.RefreshError as exc:
                self.module.fail_json(msg=f"Google credentials: cannot get an access token: {exc}")
        return creds.token

    @property
    def session(self):
        if "session" not in self._shared:
            self._shared["session"] = AuthorizedSession(self.credentials)
        return self._shared["session"]

    @property
    def plain_session(self):
        """An HTTP session without the caller's credentials, for calls made as someone else."""
        if "plain_session" not in self._shared:
            self._shared["plain_session"] = requests.Session()
        return self._shared["plain_session"]

    # -- requests ----------------------------------------------------------------
    def url(self, service, path):
        return self.endpoints[service] + path

    def request(self, method, service, path, resource=None, *, json_body=None, params=None, data=None,
                headers=None, retry_on=None, allow_404=False, as_bearer=None):
        """Call one API and return its parsed JSON (``{}`` for an empty body).

        Raises ApiError; transient failures are retried first. With ``allow_404`` a missing
        resource returns None instead, which is how modules read "actual state".

        ``as_bearer`` makes the call as someone else: with that access token (``ANONYMOUS``:
        with none, as STS wants) on a plain HTTP session. The caller's AuthorizedSession would
        put the caller's own token in place of any Authorization header given.
        """
        resource = resource or path
        url = self.url(service, path)
        http = self.session if as_bearer is None else self.plain_session
        if as_bearer is not None:
            headers = {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"}
            if as_bearer:
                headers["Authorization"] = f"Bearer {as_bearer}"

        def once():
            try:
                response = http.request(method, url, json=json_body, params=params, data=data,
                                        headers=headers, timeout=HTTP_TIMEOUT)
            except google.auth.exceptions.RefreshError as exc:
                raise ApiError(resource, 401, f"cannot get an access token: {exc}", method=method, url=url) from None
            except requests.RequestException as exc:
                raise ApiError(resource, None, f"request failed: {exc}", method=method, url=url) from None
            if allow_404 and response.status_code == 404:
                return None
            if response.status_code >= 400:
                raise error_from_response(response, resource)
            if not response.content:
                return {}
            try:
                return response.json()
            except ValueError:
                return {"_raw": response.content}

        def transient(exc):
            return isinstance(exc, ApiError) and (exc.transient or bool(retry_on and retry_on(exc)))

        return call_with_retry(once, retry_on=transient)

    def get(self, service, path, resource=None, **kwargs):
        return self.request("GET", service, path, resource, allow_404=True, **kwargs)

    def require_project(self, what="project"):
        """The project ID (option, GCP_PROJECT, or the ADC default), validated; fails clearly if none."""
        if not self.project:
            self.credentials  # pylint: disable=pointless-statement  # ADC may name a default project
        if not self.project:
            self.module.fail_json(msg=f"{what}: no project given; set project (or GCP_PROJECT)")
        error = project_id_error(self.project, what)
        if error:
            self.module.fail_json(msg=error)
        return self.project


# Parsing an RSA private key costs about 50 ms (cryptography checks the key), once per module
# run, and a run of the playbooks is dozens of them per cluster. The signer of each key is kept
# here; plugin_utils/inprocess.py fills it with the application default key before Ansible forks
# its workers, which inherit it. A signer holds the key the module would load anyway.
_SIGNERS = {}


def _read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def application_default_key():
    """The service account key that GOOGLE_APPLICATION_CREDENTIALS names, or None (no such
    variable, or another kind of credentials: google.auth.default handles those)."""
    path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not path or not os.path.isfile(path):
        return None
    try:
        info = _read_json(path)
    except (OSError, ValueError):
        return None  # google.auth.default gives the error
    return info if isinstance(info, dict) and info.get("type") == "service_account" else None


def service_account_credentials(info, scopes):
    """service_account.Credentials from a key's info, as from_service_account_info makes them,
    with the signer of a key already parsed in this process."""
    if not isinstance(info, dict) or not all(info.get(k) for k in ("client_email", "token_uri", "private_key")):
        raise ValueError("service account info is not in the expected format: client_email, token_uri and private_key")
    digest = hashlib.sha256(f"{info.get('private_key_id')}\0{info['private_key']}".encode()).hexdigest()
    signer = _SIGNERS.get(digest)
    if signer is None:
        signer = _SIGNERS[digest] = crypt.RSASigner.from_service_account_info(info)
    return service_account.Credentials(
        signer, info["client_email"], info["token_uri"], scopes=scopes, project_id=info.get("project_id"),
        universe_domain=info.get("universe_domain", "googleapis.com"), trust_boundary=info.get("trust_boundary"),
    )


def warm_application_default_key():
    """Parse the application default key now (before Ansible forks its workers)."""
    info = application_default_key()
    if info and HAS_GOOGLE_AUTH:
        try:
            service_account_credentials(info, [CLOUD_PLATFORM_SCOPE])
        except ValueError:
            pass  # the task reports it
