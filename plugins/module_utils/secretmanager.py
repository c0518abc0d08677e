# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Secret Manager through google-cloud-secret-manager (REST transport), the collection's way.

Every Secret Manager call of the collection goes through ``SecretManager``:

* the client is the official ``SecretManagerServiceClient`` on its REST transport, built on the
  very credentials object of ``_gcp_session.GcpSession`` (so the same ADC / key / token / impersonation,
  one token refresh for every API), with its host from ``api_endpoints`` (the sandbox's fake);
  one client per module run and auth settings, kept in ``GcpSession.shared`` like the sessions
  (a module reading several secrets builds it once);
* the library's own retries are off (``retry=None``): ``_retry.call_with_retry`` is the one
  retry policy, and every ``google.api_core`` exception becomes a ``_errors.ApiError`` with the
  HTTP status, Google's own message, the status name (``FAILED_PRECONDITION``) and the body;
* payload integrity: ``addVersion`` sends ``data_crc32c`` computed with google-crc32c, which
  Secret Manager checks before storing; ``:access`` responses are checked against theirs.

The library is imported here only: modules that never read a secret do not pay for it.
"""

from __future__ import annotations

import hmac
import re
import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError
from ansible_collections.prow.build_cluster.plugins.module_utils._retry import call_with_retry

try:
    import google_crc32c
    import requests
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions
    from google.cloud.secretmanager_v1 import SecretManagerServiceClient
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports.rest import SecretManagerServiceRestTransport
    from google.iam.v1 import iam_policy_pb2, options_pb2, policy_pb2
    from google.protobuf import field_mask_pb2, json_format

    HAS_SECRET_MANAGER = True
    SECRET_MANAGER_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported through missing_required_lib
    HAS_SECRET_MANAGER = False
    SECRET_MANAGER_IMPORT_ERROR = traceback.format_exc()

HTTP_TIMEOUT = 60

# Google's wording for a version that cannot be read: "Secret Version [projects/N/secrets/S/versions/3]
# is in DISABLED state." (400 FAILED_PRECONDITION), also when it was reached as versions/latest.
_STATE_IN_MESSAGE = re.compile(r"Secret Version \[(?P<name>[^\]]+)\] is in (?P<state>[A-Z_]+) state")


class SecretVersionUnreadable(ApiError):
    """A version (often ``latest``, the newest created one) is DISABLED or DESTROYED: Google answers
    400 FAILED_PRECONDITION and nothing that reads it (External Secrets, Prow's Secret) gets a payload.

    ``version`` is the version Google resolved (``projects/N/secrets/S/versions/3``), ``state``
    its state, ``fix`` what brings it back.
    """

    def __init__(self, resource, message, version, state, **kwargs):
        super().__init__(resource, 400, message, reason="FAILED_PRECONDITION", **kwargs)
        self.version = version
        self.state = state
        self.fix = (
            "run the onboarding (or prow.build_cluster.rotate) again: it mints a new token and stores it as a new "
            "version, which readers of latest then get; or enable the version if it was disabled by mistake"
        )

    def __str__(self):
        meaning = ""
        if str(self.resource).endswith("/versions/latest"):
            meaning = (" versions/latest is the newest created version whatever its state, and does not fall back "
                       "to an older one: whoever reads latest (External Secrets, Prow's Secret) gets this error.")
        return f"{super().__str__()}{meaning} Fix: {self.fix}"


def require_secret_manager(module):
    if not HAS_SECRET_MANAGER:
        module.fail_json(msg=missing_required_lib("google-cloud-secret-manager and google-crc32c"),
                         exception=SECRET_MANAGER_IMPORT_ERROR)


def crc32c(data):
    """CRC32C (Castagnoli) of ``data``, as Secret Manager's ``data_crc32c`` carries it."""
    return google_crc32c.value(data)


def api_error(exc, resource, method):
    """A _errors.ApiError from what a Secret Manager call raised (google.api_core, google.auth, requests)."""
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        response = getattr(exc, "response", None)
        body, reason, message = None, None, None
        if response is not None:
            try:
                body = response.json()
            except ValueError:
                body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            message = body["error"].get("message")
            reason = body["error"].get("status")
        message = message or exc.message
        url = getattr(getattr(response, "request", None), "url", None)
        state = _STATE_IN_MESSAGE.search(message or "")
        if exc.code == 400 and state:
            return SecretVersionUnreadable(resource, message, state["name"], state["state"], method=method, url=url, body=body)
        return ApiError(resource, exc.code, message, method=method, url=url, reason=reason or getattr(exc, "reason", None), body=body)
    if isinstance(exc, auth_exceptions.RefreshError):
        return ApiError(resource, 401, f"cannot get an access token: {exc}", method=method)
    if isinstance(exc, (auth_exceptions.TransportError, requests.RequestException)):
        return ApiError(resource, None, f"request failed: {exc}", method=method)
    return None


def _call_errors():
    """What a client call may raise that api_error maps (anything else is a bug, raised as is)."""
    return (api_exceptions.GoogleAPICallError, auth_exceptions.RefreshError, auth_exceptions.TransportError,
            requests.RequestException)


def _state(version):
    return version.state.name if hasattr(version.state, "name") else str(version.state)


def version_dict(version):
    """A SecretVersion as the REST API spells it (what modules return and compare)."""
    return {"name": version.name, "state": _state(version), "etag": version.etag,
            "createTime": version.create_time.isoformat() if version.create_time else None}


def secret_dict(secret):
    """A Secret as the REST API spells it (camelCase JSON), without anything secret: it has no payload."""
    return type(secret).to_dict(secret, use_integers_for_enums=False, preserving_proto_field_name=False)


class SecretManager:
    """Secret Manager calls for one module run, on the process's shared client."""

    def __init__(self, gcp):
        require_secret_manager(gcp.module)
        self.gcp = gcp
        self.shared = gcp.shared("secretmanager")

    @property
    def client(self):
        if "client" not in self.shared:
            # The transport is built here rather than by transport="rest" so that it keeps the session's
            # credentials object as is: the client would swap a service-account key for self-signed JWTs.
            transport = SecretManagerServiceRestTransport(host=self.gcp.endpoints["secretmanager"], credentials=self.gcp.credentials)
            self.shared["client"] = SecretManagerServiceClient(transport=transport)
        return self.shared["client"]

    def call(self, method, resource, func, request, *, allow_404=False, retry_on=None):
        """``func(request=request, retry=None, timeout=...)`` with the collection's retries and errors.

        ``method`` (GET, POST...) is only for messages. Returns None for a 404 with ``allow_404``.
        """

        def once():
            try:
                return func(request=request, retry=None, timeout=HTTP_TIMEOUT)
            except _call_errors() as exc:
                error = api_error(exc, resource, method)
                if allow_404 and error.status == 404:
                    return None
                raise error from None

        def transient(exc):
            return isinstance(exc, ApiError) and (exc.transient or bool(retry_on and retry_on(exc)))

        return call_with_retry(once, retry_on=transient)

    # -- secrets -----------------------------------------------------------------
    # Secrets come back as REST JSON dicts (secret_dict), or None when absent.
    def get_secret(self, name, resource):
        secret = self.call("GET", resource, self.client.get_secret, {"name": name}, allow_404=True)
        return secret_dict(secret) if secret is not None else None

    def create_secret(self, parent, secret_id, secret, resource):
        return secret_dict(self.call("POST", resource, self.client.create_secret,
                                     {"parent": parent, "secret_id": secret_id, "secret": secret}))

    def update_labels(self, name, labels, resource):
        return secret_dict(self.call("PATCH", resource, self.client.update_secret,
                                     {"secret": {"name": name, "labels": labels},
                                      "update_mask": field_mask_pb2.FieldMask(paths=["labels"])}))

    def delete_secret(self, name, resource):
        return self.call("DELETE", resource, self.client.delete_secret, {"name": name}, allow_404=True)

    # -- versions ----------------------------------------------------------------
    def list_versions(self, name, resource):
        """Every version of the secret, as dicts, newest first (every page; one request up to 100)."""

        def listing(request, retry, timeout):
            pager = self.client.list_secret_versions(request=request, retry=retry, timeout=timeout)
            return [version_dict(v) for v in pager]

        return self.call("GET", resource, listing, {"parent": name, "page_size": 100})

    def access(self, name, resource, allow_404=False):
        """The payload bytes of version ``name`` (a number or latest), checked against its data_crc32c.

        Raises SecretVersionUnreadable when the version is DISABLED or DESTROYED.
        """

        def read(request, retry, timeout):
            response = self.client.access_secret_version(request=request, retry=retry, timeout=timeout)
            data = response.payload.data
            if "data_crc32c" in response.payload and response.payload.data_crc32c != crc32c(data):
                # Corrupted between Secret Manager and us: worth reading again (status None retries).
                raise ApiError(resource, None, f"{response.name}: the payload does not match its data_crc32c (corrupted in transit)",
                               method="GET", reason="DATA_LOSS")
            return response.name, data

        return self.call("GET", resource, read, {"name": name}, allow_404=allow_404)

    def add_version(self, parent, payload, resource):
        """Add a version; Secret Manager refuses it (400) unless ``payload`` matches its CRC32C.

        addVersion is not idempotent and takes no request ID: when an attempt fails without an
        answer we can trust (a 5xx or a lost connection may come after the version was stored),
        a blind retry would store the payload twice. So every retry first reads the newest
        version: if it is enabled and holds ``payload``, the earlier attempt did land and that
        version is the result.
        """
        attempts = []

        def add(request, retry, timeout):
            if attempts:
                landed = self._newest_holding(parent, payload, timeout)
                if landed is not None:
                    return landed
            attempts.append(request)
            return self.client.add_secret_version(request=request, retry=retry, timeout=timeout)

        version = self.call("POST", resource, add, {"parent": parent, "payload": {"data": payload, "data_crc32c": crc32c(payload)}})
        return version_dict(version)

    def _newest_holding(self, parent, payload, timeout):
        """The newest version of ``parent`` if it is enabled and its payload is ``payload``, else None.

        Raw client calls: a failure here fails the attempt it belongs to, which the one retry of
        add_version then repeats.
        """
        versions = list(self.client.list_secret_versions(request={"parent": parent, "page_size": 100}, retry=None, timeout=timeout))
        if not versions:
            return None
        newest = max(versions, key=lambda v: int(v.name.rsplit("/", 1)[1]))
        if _state(newest) != "ENABLED":
            return None
        response = self.client.access_secret_version(request={"name": newest.name}, retry=None, timeout=timeout)
        stored = response.payload.data
        if "data_crc32c" in response.payload and response.payload.data_crc32c != crc32c(stored):
            return None  # corrupted in transit: not proof of anything; add it again
        return newest if hmac.compare_digest(stored, payload) else None

    def set_version_state(self, name, action, etag, resource):
        """``action`` is disable, enable or destroy; the version's etag guards against a concurrent change."""
        func = {"disable": self.client.disable_secret_version, "enable": self.client.enable_secret_version,
                "destroy": self.client.destroy_secret_version}[action]
        request = {"name": name}
        if etag:
            request["etag"] = etag
        return version_dict(self.call("POST", resource, func, request))

    # -- IAM (gcp.update_policy's reader and writer for a secret) --------------
    def get_policy(self, name, resource):
        """The secret's IAM policy as REST JSON (bindings, etag in base64, version), conditions included."""
        request = iam_policy_pb2.GetIamPolicyRequest(resource=name, options=options_pb2.GetPolicyOptions(requested_policy_version=3))
        policy = self.call("GET", resource, self.client.get_iam_policy, request)
        return json_format.MessageToDict(policy)

    def set_policy(self, name, policy, resource):
        message = json_format.ParseDict(policy, policy_pb2.Policy(), ignore_unknown_fields=False)
        request = iam_policy_pb2.SetIamPolicyRequest(resource=name, policy=message)
        written = self.call("POST", resource, self.client.set_iam_policy, request)
        return json_format.MessageToDict(written)
