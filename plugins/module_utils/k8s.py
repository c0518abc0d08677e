# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Connecting to a Kubernetes API server, and calling it with one error and retry path.

Connection options follow kubernetes.core's names and K8S_AUTH_* fallbacks (kubeconfig as
a path or a dict, context, host, api_key, ca_cert, validate_certs), plus ``gke``:
``projects/P/locations/L/clusters/C`` reads the endpoint and CA from the GKE API and
authenticates with the caller's Google access token, as gencred's GKE mode did.

Calls go through the official client's ApiClient at the REST level (paths and JSON), not
through generated models: the few resources modules touch stay readable, and the code does
not depend on the model classes that change between client majors.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib

from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError, TargetMissing, fail_on_api_error
from ansible_collections.prow.build_cluster.plugins.module_utils._retry import call_with_retry, require_tenacity
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import parse_gke_name
from ansible_collections.prow.build_cluster.plugins.module_utils.kubeconfig_source import hide_credentials

K8S_AUTH_ARGSPEC = {
    "kubeconfig": {"type": "raw", "fallback": (env_fallback, ["K8S_AUTH_KUBECONFIG"])},
    "context": {"type": "str", "fallback": (env_fallback, ["K8S_AUTH_CONTEXT"])},
    "host": {"type": "str", "fallback": (env_fallback, ["K8S_AUTH_HOST"])},
    "api_key": {"type": "str", "no_log": True, "fallback": (env_fallback, ["K8S_AUTH_API_KEY"])},
    "ca_cert": {"type": "path", "aliases": ["ssl_ca_cert"], "fallback": (env_fallback, ["K8S_AUTH_SSL_CA_CERT"])},
    "validate_certs": {"type": "bool", "aliases": ["verify_ssl"], "fallback": (env_fallback, ["K8S_AUTH_VERIFY_SSL"])},
    "gke": {"type": "str"},
}

K8S_AUTH_MUTUALLY_EXCLUSIVE = [("gke", "kubeconfig"), ("gke", "host"), ("gke", "context")]


def hide_kubeconfig_secrets(module, kubeconfig):
    """Mask credentials of a kubeconfig given as a dict wherever Ansible prints (kubernetes.core#1014)."""
    if isinstance(kubeconfig, dict):
        hide_credentials(module, kubeconfig)


class K8sClient:
    """A connected API server: ``request`` plus the server URL and CA a kubeconfig needs."""

    def __init__(self, module, api_client, gke_cluster=None):
        self.module = module
        self.api_client = api_client
        self.configuration = api_client.configuration
        self.gke_cluster = gke_cluster  # the GKE API's cluster resource, when connected with gke:
        self._version = None

    @property
    def server(self):
        return self.configuration.host

    @property
    def ca_data(self):
        """Base64 CA bundle the server's certificate chains to (kubeconfig certificate-authority-data)."""
        if self.gke_cluster:
            return self.gke_cluster["masterAuth"]["clusterCaCertificate"]
        path = self.configuration.ssl_ca_cert
        if not path:
            return None
        with open(path, "rb") as handle:
            return base64.b64encode(handle.read()).decode("ascii")

    def request(self, method, path, body=None, *, query=None, content_type=None, resource=None, allow_404=False, retry_on=None,
                accept="application/json"):
        """Call the API server; return parsed JSON, or None for a 404 when ``allow_404``.

        ``accept`` is for endpoints that serve another JSON type (the JWKS: application/jwk-set+json).

        Raises ApiError with the resource, HTTP status and the server's Status message.
        """
        from kubernetes.client.rest import ApiException  # pylint: disable=import-outside-toplevel
        import urllib3  # pylint: disable=import-outside-toplevel

        resource = resource or path
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"

        def once():
            try:
                response = self.api_client.call_api(
                    path, method, query_params=list((query or {}).items()), header_params=headers,
                    body=body, auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
                )
            except ApiException as exc:
                if allow_404 and exc.status == 404:
                    return None
                raise error_from_exception(exc, method, resource) from None
            except urllib3.exceptions.HTTPError as exc:
                raise ApiError(resource, None, f"cannot reach {self.server}: {exc}", method=method) from None
            data = response.data
            return json.loads(data) if data else {}

        def transient(exc):
            return isinstance(exc, ApiError) and (exc.transient or bool(retry_on and retry_on(exc)))

        return call_with_retry(once, retry_on=transient)

    def get(self, path, **kwargs):
        return self.request("GET", path, allow_404=True, **kwargs)

    def can_i(self, verb, resource, *, group="", namespace=None, name=None, subresource=None):
        """SelfSubjectAccessReview for the caller: (allowed, reason)."""
        attrs = {"verb": verb, "resource": resource, "group": group}
        if subresource:
            attrs["subresource"] = subresource
        if namespace:
            attrs["namespace"] = namespace
        if name:
            attrs["name"] = name
        review = self.request(
            "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": attrs}},
            resource="selfsubjectaccessreviews",
        )
        status = review.get("status") or {}
        return bool(status.get("allowed")), status.get("reason") or status.get("evaluationError") or ""

    def token_review(self, token):
        """Ask this API server whether ``token`` authenticates: the TokenReview ``status``.

        The server is the authority on its own tokens: a token of another cluster (another
        issuer or signing key), a revoked one (its ServiceAccount was deleted) or an expired
        one comes back ``authenticated: false`` with an ``error``. TokenReviews are not
        persisted, so this is a read in effect.
        """
        review = self.request(
            "POST", "/apis/authentication.k8s.io/v1/tokenreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
            resource="tokenreviews",
        )
        return review.get("status") or {}

    def merge_patch(self, path, body, **kwargs):
        """JSON merge patch (RFC 7386): maps merge, lists and scalars are replaced whole."""
        return self.request("PATCH", path, body, content_type="application/merge-patch+json", **kwargs)

    def is_gke(self):
        """Whether the server is a GKE control plane: connected with gke:, or a ``-gke.`` version."""
        if self.gke_cluster:
            return True
        if self._version is None:
            self._version = self.request("GET", "/version", resource="version")
        return "-gke." in (self._version.get("gitVersion") or "")


def error_from_exception(exc, method, resource):
    message, reason, body = exc.reason or "error", exc.reason, None
    try:
        body = json.loads(exc.body) if exc.body else None
    except (ValueError, TypeError):
        body = None
    if isinstance(body, dict):
        message = body.get("message") or message
        reason = body.get("reason") or reason
    return ApiError(resource, exc.status, message, method=method, reason=reason, body=body)


def connect(module, would="make this task's changes in it"):
    """A K8sClient for the module's connection options; fails the module with a clear message.

    With ``gke:`` naming a cluster that does not exist, check mode ends the module with
    changed and a message saying what it ``would`` do (an earlier task creates the cluster
    in a real run); a real run fails.
    """
    require_tenacity(module)
    try:
        from kubernetes import client as k8s_client  # pylint: disable=import-outside-toplevel
        from kubernetes import config as k8s_config  # pylint: disable=import-outside-toplevel
        from kubernetes.config.config_exception import ConfigException  # pylint: disable=import-outside-toplevel
    except ImportError:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=traceback.format_exc())

    params = module.params
    hide_kubeconfig_secrets(module, params.get("kubeconfig"))
    if params.get("gke"):
        return _connect_gke(module, k8s_client, would)

    configuration = k8s_client.Configuration()
    try:
        if params.get("host"):
            configuration.host = params["host"]
            if params.get("api_key"):
                configuration.api_key = {"authorization": params["api_key"]}
                configuration.api_key_prefix = {"authorization": "Bearer"}
            if params.get("ca_cert"):
                configuration.ssl_ca_cert = params["ca_cert"]
        else:
            kubeconfig = params.get("kubeconfig")
            if isinstance(kubeconfig, dict):
                k8s_config.load_kube_config_from_dict(kubeconfig, context=params.get("context"),
                                                      client_configuration=configuration, persist_config=False)
            else:
                path = os.path.expanduser(kubeconfig or os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0])
                if not os.path.exists(path):
                    module.fail_json(msg=f"kubeconfig {path} does not exist; set kubeconfig, host or gke")
                k8s_config.load_kube_config(config_file=path, context=params.get("context"),
                                            client_configuration=configuration, persist_config=False)
    except (ConfigException, ValueError, TypeError) as exc:
        module.fail_json(msg=f"invalid cluster connection: {exc}")
    if params.get("validate_certs") is not None:
        configuration.verify_ssl = params["validate_certs"]
    return K8sClient(module, k8s_client.ApiClient(configuration))


def connect_kubeconfig(module, config, context):
    """A K8sClient that authenticates with the credentials of ``config`` (a parsed kubeconfig), as its owner would.

    Used to act as Prow does with a stored kubeconfig, independently of the module's own connection.
    """
    from kubernetes import client as k8s_client  # pylint: disable=import-outside-toplevel
    from kubernetes import config as k8s_config  # pylint: disable=import-outside-toplevel
    from kubernetes.config.config_exception import ConfigException  # pylint: disable=import-outside-toplevel

    hide_kubeconfig_secrets(module, config)
    configuration = k8s_client.Configuration()
    try:
        k8s_config.load_kube_config_from_dict(config, context=context, client_configuration=configuration, persist_config=False)
    except (ConfigException, ValueError, TypeError) as exc:
        module.fail_json(msg=f"invalid kubeconfig for context {context}: {exc}")
    return K8sClient(module, k8s_client.ApiClient(configuration))


def _connect_gke(module, k8s_client, would):
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.prow.build_cluster.plugins.module_utils._gcp_session import GcpSession

    try:
        project, location, name = parse_gke_name(module.params["gke"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    gcp = GcpSession(module)
    path = f"/v1/projects/{project}/locations/{location}/clusters/{name}"
    # Several connections of one module run to the same cluster: one lookup serves them.
    known = gcp.shared("gke clusters")
    cluster = known.get(path)
    if cluster is None:
        try:
            cluster = gcp.get("container", path, f"GKE cluster {module.params['gke']}")
        except ApiError as exc:
            module.fail_json(msg=f"gke: {exc}")
        if cluster is None:
            fail_on_api_error(module, TargetMissing(f"GKE cluster {module.params['gke']}", would,
                                                    message="does not exist; create it first (gke_cluster) or fix gke"))
        if not cluster.get("endpoint") or not (cluster.get("masterAuth") or {}).get("clusterCaCertificate"):
            if module.check_mode and cluster.get("status") == "PROVISIONING":
                # Still being created (by a run that was interrupted): as for a cluster not created yet,
                # a real run's gke_cluster task waits for it before this task.
                fail_on_api_error(module, TargetMissing(f"GKE cluster {module.params['gke']}", would,
                                                        message="is still being created (PROVISIONING)"))
            module.fail_json(msg=f"gke: cluster {module.params['gke']} has no endpoint yet (status {cluster.get('status')})")
        known[path] = cluster

    configuration = k8s_client.Configuration()
    configuration.host = f"https://{cluster['endpoint']}"
    ca_file = tempfile.NamedTemporaryFile(prefix="gke-ca-", suffix=".crt", delete=False)  # pylint: disable=consider-using-with
    with ca_file:
        ca_file.write(base64.b64decode(cluster["masterAuth"]["clusterCaCertificate"]))
    module.add_cleanup_file(ca_file.name)
    configuration.ssl_ca_cert = ca_file.name
    configuration.api_key = {"authorization": gcp.access_token()}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return K8sClient(module, k8s_client.ApiClient(configuration), gke_cluster=cluster)
