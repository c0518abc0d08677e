"""A stand-in for ``gke-gcloud-auth-plugin``, the client-go credential plugin of GKE.

The real binary is in no registry this project may use. Like the real plugin run with
``--use_application_default_credentials`` (the mode for images without gcloud, such as
Prow's), it prints an ExecCredential whose token is a Google access token of the
Application Default Credentials (google-auth's ``google.auth.default``; in the sandbox
``GOOGLE_APPLICATION_CREDENTIALS`` is a key file whose ``token_uri`` is the fake's), which the
cluster's apiserver authenticates through GKE's token webhook.

Protocol (client.authentication.k8s.io): the client sets ``KUBERNETES_EXEC_INFO`` to an
ExecCredential naming the apiVersion it expects (and, with ``provideClusterInfo: true``,
the cluster in ``spec.cluster``); the plugin answers on stdout with the same apiVersion and
``status.token`` / ``status.expirationTimestamp``. Errors go to stderr with exit status 1,
as client-go expects.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timezone
from typing import Any

API_VERSIONS = ("client.authentication.k8s.io/v1beta1", "client.authentication.k8s.io/v1")
SCOPES = ["https://www.googleapis.com/auth/cloud-platform",
          "https://www.googleapis.com/auth/userinfo.email"]


class PluginError(Exception):
    pass


def exec_info(environ: dict[str, str]) -> dict[str, Any]:
    """The client's KUBERNETES_EXEC_INFO, checked; v1beta1 when the client sent none."""
    raw = environ.get("KUBERNETES_EXEC_INFO")
    if not raw:
        return {"apiVersion": API_VERSIONS[0], "kind": "ExecCredential", "spec": {}}
    try:
        info = json.loads(raw)
    except ValueError as exc:
        raise PluginError(f"KUBERNETES_EXEC_INFO is not JSON: {exc}") from exc
    if not isinstance(info, dict) or info.get("kind") != "ExecCredential":
        raise PluginError("KUBERNETES_EXEC_INFO is not an ExecCredential")
    if info.get("apiVersion") not in API_VERSIONS:
        raise PluginError(f"unsupported ExecCredential apiVersion {info.get('apiVersion')!r}; "
                          f"this plugin speaks {', '.join(API_VERSIONS)}")
    return info


def access_token() -> tuple[str, str]:
    """(token, expiry as RFC 3339) of the Application Default Credentials."""
    import google.auth
    import google.auth.exceptions
    import google.auth.transport.requests

    try:
        credentials, _project = google.auth.default(scopes=SCOPES)
        credentials.refresh(google.auth.transport.requests.Request())
    except google.auth.exceptions.GoogleAuthError as exc:
        raise PluginError(f"Application Default Credentials: {exc}") from exc
    # google-auth keeps expiry as a naive UTC datetime.
    expiry = credentials.expiry.replace(tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return credentials.token, expiry


def exec_credential(api_version: str, token: str, expiry: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": "ExecCredential",
            "status": {"token": token, "expirationTimestamp": expiry}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gke-gcloud-auth-plugin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--use_application_default_credentials", action="store_true",
                        help="take the token from Application Default Credentials, not gcloud")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    args = parser.parse_args(argv)
    if args.version:
        print("prow-sandbox stand-in for gke-gcloud-auth-plugin")
        return 0
    try:
        if not args.use_application_default_credentials:
            # The real plugin would run gcloud; no image this project targets has it.
            raise PluginError("gcloud is not available: run with --use_application_default_credentials")
        info = exec_info(dict(os.environ))
        token, expiry = access_token()
    except PluginError as exc:
        print(f"gke-gcloud-auth-plugin: {exc}", file=sys.stderr)
        return 1
    json.dump(exec_credential(info["apiVersion"], token, expiry), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
