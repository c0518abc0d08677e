# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Implementation of module prow.build_cluster.workload_identity_pool_provider; plugins/modules/workload_identity_pool_provider.py holds its documentation.

``module_kwargs()`` gives the AnsibleModule arguments; ``run(module)`` does the work and ends
with ``exit_json`` or ``fail_json``.
"""

from __future__ import annotations

import json

from ansible_collections.prow.build_cluster.plugins.module_utils import _wif, k8s
from ansible_collections.prow.build_cluster.plugins.module_utils._gcp_session import GCP_AUTH_ARGSPEC, GCP_AUTH_MUTUALLY_EXCLUSIVE, GcpSession
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import first_error

DISCOVERY = "/.well-known/openid-configuration"
# A Kubernetes service-account token's subject: system:serviceaccount:NAMESPACE:NAME.
DEFAULT_MAPPING = {"google.subject": "assertion.sub"}


def module_kwargs():
    """The keyword arguments of this module's AnsibleModule."""
    return {
        "argument_spec": dict(
            GCP_AUTH_ARGSPEC,
            **k8s.K8S_AUTH_ARGSPEC,
            name={"type": "str", "required": True},
            pool={"type": "str", "required": True},
            issuer_uri={"type": "str"},
            allowed_audiences={"type": "list", "elements": "str", "default": []},
            jwks_json={"type": "str"},
            oidc_from_cluster={"type": "bool", "default": False},
            allow_pod_tokens={"type": "bool", "default": False},
            upload_jwks={"type": "str", "choices": ["auto", "always", "never"], "default": "auto"},
            attribute_mapping={"type": "dict", "default": DEFAULT_MAPPING},
            attribute_condition={"type": "str"},
            display_name={"type": "str"},
            description={"type": "str"},
            disabled={"type": "bool"},
            state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        ),
        "mutually_exclusive": GCP_AUTH_MUTUALLY_EXCLUSIVE + k8s.K8S_AUTH_MUTUALLY_EXCLUSIVE + [("jwks_json", "oidc_from_cluster")],
        "supports_check_mode": True,
    }


def issuer_is_public(issuer):
    """Whether Google could read the issuer's discovery document itself: an anonymous HTTPS GET works."""
    import requests  # pylint: disable=import-outside-toplevel  # a GcpSession dependency, imported where used

    try:
        response = requests.get(issuer.rstrip("/") + DISCOVERY, timeout=5)
        return response.status_code == 200 and response.json().get("issuer") == issuer
    except (requests.RequestException, ValueError):
        return False


def oidc_from_cluster(module):
    """(issuer, JWKS JSON or None) read from the cluster's apiserver, as an OIDC relying party reads them;
    the keys are uploaded unless the issuer is public (``upload_jwks``)."""
    client = k8s.connect(module)
    discovery = client.request("GET", DISCOVERY, resource="the cluster's OIDC discovery document")
    issuer = discovery.get("issuer") or ""
    policy = module.params["upload_jwks"]
    if policy == "never" or (policy == "auto" and issuer_is_public(issuer)):
        return issuer, None
    jwks = client.request("GET", "/openid/v1/jwks", resource="the cluster's service-account signing keys (JWKS)",
                          accept="application/jwk-set+json")
    return issuer, json.dumps(jwks, sort_keys=True)


def pod_token_audiences(gcp, project, pool, name, issuer, audiences):
    """``audiences`` and those of a pod's automounted token and of a token requested for this provider.

    The token every container of a pod has (/var/run/secrets/kubernetes.io/serviceaccount/token,
    Prow's sidecar and initupload included) carries kube-apiserver's default audiences: its issuer,
    unless --api-audiences says otherwise (then name them in allowed_audiences). A non-empty
    allowedAudiences replaces the provider's own resource name, which a projected token for this
    provider carries, so that one is listed too."""
    info = gcp.request("GET", "cloudresourcemanager", f"/v1/projects/{project}", f"project {project}")
    own = (f"//iam.googleapis.com/projects/{info.get('projectNumber', '')}/locations/global/"
           f"workloadIdentityPools/{pool}/providers/{name}")
    return list(dict.fromkeys(audiences + [issuer, own]))


def same_oidc(have, want):
    """Compare as IAM means them: an empty audience list is absent, the JWKS as data, not text."""
    def normal(oidc):
        oidc = oidc or {}
        jwks = oidc.get("jwksJson")
        return (oidc.get("issuerUri"), sorted(oidc.get("allowedAudiences") or []), json.loads(jwks) if jwks else None)
    return normal(have) == normal(want)


def run(module):
    """The module's work; ends with module.exit_json or module.fail_json."""
    params = module.params
    mapping = params["attribute_mapping"] or {}
    present = params["state"] == "present"
    error = first_error(
        _wif.id_error(params["name"], "name"), _wif.id_error(params["pool"], "pool"),
        "attribute_mapping: google.subject is required (for example assertion.sub)"
        if present and "google.subject" not in mapping else None,
    )
    if error:
        module.fail_json(msg=error)
    if params["allow_pod_tokens"] and not params["oidc_from_cluster"]:
        module.fail_json(msg="allow_pod_tokens needs oidc_from_cluster: the audience of the pods' tokens is the cluster's")
    issuer, jwks_json = params["issuer_uri"], params["jwks_json"]
    if present and params["oidc_from_cluster"]:
        found, jwks_json = oidc_from_cluster(module)
        issuer = issuer or found
    if present and not (issuer or "").startswith("https://"):
        module.fail_json(msg=f"issuer_uri {issuer!r}: an https URL is required (or oidc_from_cluster)")

    gcp = GcpSession(module)
    project = gcp.require_project()
    collection = f"{_wif.pools_path(project)}/{params['pool']}/providers"
    audiences = list(params["allowed_audiences"])
    if present and params["allow_pod_tokens"]:
        audiences = pod_token_audiences(gcp, project, params["pool"], params["name"], issuer, audiences)
    oidc = {"issuerUri": issuer, "allowedAudiences": audiences}
    if jwks_json:
        oidc["jwksJson"] = jwks_json
    wanted = {"oidc": oidc, "attributeMapping": mapping, "attributeCondition": params["attribute_condition"],
              "displayName": params["display_name"], "description": params["description"], "disabled": params["disabled"]}

    def compare(field, have, want):
        if field == "oidc":
            return same_oidc(have, want)
        return (have or type(want)()) == want

    resource = f"workload identity pool provider {params['pool']}/{params['name']}"
    changed, before, after, actual = _wif.ensure(
        module, gcp, path=f"{collection}/{params['name']}", create_path=collection,
        id_param="workloadIdentityPoolProviderId", resource_id=params["name"], wanted=wanted, resource=resource,
        compare=compare)
    result = {"changed": changed, "provider": actual if present and actual else {},
              "audience": f"//iam.googleapis.com/{(actual or {}).get('name', '')}" if present and actual else ""}
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)
