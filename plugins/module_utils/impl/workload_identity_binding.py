# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Implementation of module prow.build_cluster.workload_identity_binding; plugins/modules/workload_identity_binding.py holds its documentation.

``module_kwargs()`` gives the AnsibleModule arguments; ``run(module)`` does the work and ends
with ``exit_json`` or ``fail_json``.
"""

from __future__ import annotations

import base64
import json
import re

from ansible_collections.prow.build_cluster.plugins.module_utils import iam
from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import dns_label_error, dns_subdomain_error
from ansible_collections.prow.build_cluster.plugins.module_utils._gcp_iam import account_not_yet_visible, PolicyTarget, read_policy, update_policy
from ansible_collections.prow.build_cluster.plugins.module_utils._gcp_session import GCP_AUTH_ARGSPEC, GCP_AUTH_MUTUALLY_EXCLUSIVE, GcpSession
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import first_error, gsa_email_error, project_id_error
from ansible_collections.prow.build_cluster.plugins.module_utils.k8s import connect, K8S_AUTH_ARGSPEC, K8S_AUTH_MUTUALLY_EXCLUSIVE
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import parse_gke_name
from ansible_collections.prow.build_cluster.plugins.module_utils._values import fingerprint
from ansible_collections.prow.build_cluster.plugins.module_utils import _wif

ANNOTATION = "iam.gke.io/gcp-service-account"
POOL_SUFFIX = ".svc.id.goog"
# The credential configuration Secret (job_identity federated).
MANAGED_BY = {"app.kubernetes.io/managed-by": "prow.build_cluster"}
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"


def secret_key_error(value, what):
    """Why ``value`` cannot be a Secret's data key, or None."""
    if isinstance(value, str) and SECRET_KEY.match(value) and value not in (".", ".."):
        return None
    return f"{what} {value!r} is not a valid Secret key ([-._a-zA-Z0-9]+)"


def token_path_error(value, what):
    """Why ``value`` cannot be the token file's path in the pod, or None."""
    if isinstance(value, str) and value.startswith("/") and ".." not in value.split("/") and not value.endswith("/"):
        return None
    return f"{what} {value!r}: an absolute file path in the pod is required"


def federated_errors(params):
    """Why the federated options are refused (None when they are fine); checked before any call."""
    return first_error(
        _wif.id_error(params["federation_pool"] or "", "federation_pool"),
        _wif.id_error(params["federation_provider"] or "", "federation_provider"),
        dns_subdomain_error(params["credential_secret"], "credential_secret"),
        secret_key_error(params["credential_secret_key"], "credential_secret_key"),
        token_path_error(params["token_path"], "token_path"),
    )


def credential_config(audience, token_url, token_path):
    """The external_account credential configuration a job's Google client libraries load: the pod's
    projected service-account token (audience: the provider's) exchanged at STS, no key."""
    return {"type": "external_account", "audience": audience, "subject_token_type": JWT_TOKEN_TYPE,
            "token_url": token_url, "credential_source": {"file": token_path}}


def resolve_pool(module):
    """The workload pool: the option, else from the gke: project, else from project; validated."""
    params = module.params
    pool = params["workload_pool"]
    if not pool:
        project = params["project"]
        if params["gke"]:
            try:
                project = parse_gke_name(params["gke"])[0]
            except ValueError as exc:
                module.fail_json(msg=str(exc))
        if not project:
            module.fail_json(msg="workload_pool: cannot tell the cluster's project; set workload_pool, gke or project")
        pool = project + POOL_SUFFIX
    if not pool.endswith(POOL_SUFFIX) or project_id_error(pool[: -len(POOL_SUFFIX)]):
        module.fail_json(msg=f"workload_pool {pool!r} is not of the form CLUSTER_PROJECT.svc.id.goog")
    return pool


def check_cluster_pool(module, client, pool):
    """With gke:, the GKE API shows the cluster: refuse a binding that could never work."""
    cluster = client.gke_cluster
    if not cluster:
        return
    actual = (cluster.get("workloadIdentityConfig") or {}).get("workloadPool")
    if actual != pool:
        module.fail_json(msg=(
            f"cluster {module.params['gke']} has workload pool {actual or 'none (Workload Identity is off)'}, not {pool}: "
            "the binding would never be used. Enable Workload Identity with gke_cluster, or fix workload_pool."))


def ksa_patch(ksa, gsa, present, direct=False):
    """The annotation change for an existing KSA: a merge patch, or None when nothing changes.

    With direct access the KSA must carry no annotation at all: any GSA named there switches
    the pod's metadata server to impersonating it, and the direct grant would go unused.
    """
    annotations = (ksa.get("metadata") or {}).get("annotations") or {}
    current = annotations.get(ANNOTATION)
    if direct:
        return {"metadata": {"annotations": {ANNOTATION: None}}} if present and current is not None else None
    if present and current != gsa:
        return {"metadata": {"annotations": {ANNOTATION: gsa}}}
    if not present and current == gsa:  # another GSA's annotation is not ours to remove
        return {"metadata": {"annotations": {ANNOTATION: None}}}
    return None


def module_kwargs():
    """The keyword arguments of this module's AnsibleModule."""
    return {
        "argument_spec": dict(
            GCP_AUTH_ARGSPEC,
            **K8S_AUTH_ARGSPEC,
            namespace={"type": "str", "default": "test-pods"},
            service_account={"type": "str", "default": "prowjob-default-sa"},
            gcp_service_account={"type": "str"},
            workload_pool={"type": "str"},
            job_identity={"type": "str", "choices": ["gsa", "direct", "federated"], "default": "gsa"},
            federation_pool={"type": "str"},
            federation_provider={"type": "str"},
            credential_secret={"type": "str", "default": "gcs-credentials", "no_log": False},  # a name
            credential_secret_key={"type": "str", "default": "service-account.json", "no_log": False},
            token_path={"type": "str", "default": "/var/run/secrets/kubernetes.io/serviceaccount/token", "no_log": False},  # a path
            state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        ),
        "mutually_exclusive": GCP_AUTH_MUTUALLY_EXCLUSIVE + K8S_AUTH_MUTUALLY_EXCLUSIVE,
        "required_if": [("job_identity", "gsa", ("gcp_service_account",)),
                        ("job_identity", "federated", ("project", "federation_pool", "federation_provider"))],
        "supports_check_mode": True,
    }


def run(module):
    """The module's work; ends with module.exit_json or module.fail_json."""
    params = module.params
    namespace, name, gsa = params["namespace"], params["service_account"], params["gcp_service_account"]
    present = params["state"] == "present"
    direct = params["job_identity"] == "direct"
    federated = params["job_identity"] == "federated"
    error = first_error(
        dns_label_error(namespace, "namespace"),
        dns_subdomain_error(name, "service_account"),
        None if direct or federated else gsa_email_error(gsa, "gcp_service_account"),
        federated_errors(params) if federated else None,
    )
    if error:
        module.fail_json(msg=error)
    if federated:
        run_federated(module)
    pool = resolve_pool(module)
    if direct:
        run_direct(module, pool)

    client = connect(module)
    check_cluster_pool(module, client, pool)
    gcp = GcpSession(module)
    member = iam.workload_identity_member(pool, namespace, name)
    role = iam.WORKLOAD_IDENTITY_USER
    ksa_path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}"
    ksa_resource = f"ServiceAccount {namespace}/{name}"
    result = {"changed": False, "member": member, "workload_pool": pool, "ksa_created": False}

    # Read both halves before writing either, so a failure on one (a missing GSA, a missing
    # namespace) leaves the other untouched.
    ksa = client.get(ksa_path, resource=ksa_resource)
    target = PolicyTarget.service_account(gsa)
    # The GSA may have been created seconds ago: IAM may answer 404 or 403 for a while.
    # In check mode the GSA may not exist yet (an earlier task creates it): say so.
    policy = read_policy(gcp, target, retry_on=account_not_yet_visible,
                         missing_would=f"grant {role} to {member}" if module.check_mode else None)
    patch = ksa_patch(ksa, gsa, present) if ksa is not None else None
    result["ksa_created"] = present and ksa is None
    change = iam.add_member if present else iam.remove_member
    member_changed = change(policy, role, member)[1]
    ksa_changes = result["ksa_created"] or patch is not None
    result["changed"] = ksa_changes or member_changed

    before_annotation = ((ksa or {}).get("metadata") or {}).get("annotations", {}).get(ANNOTATION)
    after_annotation = gsa if present else (None if before_annotation == gsa else before_annotation)
    result["annotation"] = after_annotation
    if module._diff:
        result["diff"] = {
            "before": {"ksa": ksa_resource if ksa else None, "annotation": before_annotation,
                       "gsa_member": iam.has_member(policy, role, member)},
            "after": {"ksa": ksa_resource if (ksa or present) else None, "annotation": after_annotation,
                      "gsa_member": present},
        }
    if module.check_mode:
        module.exit_json(**result)

    write_ksa(client, result["ksa_created"], patch, namespace, name, gsa)
    if member_changed:
        # Read-modify-write again with a fresh etag; the policy read above only planned.
        update_policy(gcp, target, lambda p: change(p, role, member), retry_on=account_not_yet_visible)
    module.exit_json(**result)


def run_direct(module, pool):
    """Direct resource access: the KSA without annotation, and its principal:// member (by the pool
    project's number, from Resource Manager) for the caller to grant; no GSA is read or written.

    The member is known before the cluster is reached, and with ``state: absent`` the cluster is
    not reached at all: offboarding a cluster that is gone still learns which grant to revoke.
    """
    params = module.params
    namespace, name = params["namespace"], params["service_account"]
    present = params["state"] == "present"
    project = pool[: -len(POOL_SUFFIX)]
    gcp = GcpSession(module)
    info = gcp.request("GET", "cloudresourcemanager", f"/v1/projects/{project}", f"project {project}")
    member = iam.direct_member(info.get("projectNumber", ""), pool, namespace, name)
    if not present:
        module.exit_json(changed=False, member=member, workload_pool=pool, ksa_created=False, annotation=None)
    client = connect(module)
    check_cluster_pool(module, client, pool)
    ksa_path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}"
    ksa_resource = f"ServiceAccount {namespace}/{name}"
    ksa = client.get(ksa_path, resource=ksa_resource)
    patch = ksa_patch(ksa, None, present, direct=True) if ksa is not None else None
    before_annotation = ((ksa or {}).get("metadata") or {}).get("annotations", {}).get(ANNOTATION)
    ksa_created = present and ksa is None
    result = {"changed": ksa_created or patch is not None, "member": member, "workload_pool": pool,
              "ksa_created": ksa_created, "annotation": None if present else before_annotation}
    if module._diff:
        result["diff"] = {
            "before": {"ksa": ksa_resource if ksa else None, "annotation": before_annotation},
            "after": {"ksa": ksa_resource if (ksa or present) else None, "annotation": result["annotation"]},
        }
    if not module.check_mode:
        write_ksa(client, ksa_created, patch, namespace, name, None)
    module.exit_json(**result)


def write_ksa(client, create, patch, namespace, name, gsa):
    """Create the KSA (annotated with ``gsa`` when given), or apply ``patch`` to it; nothing when neither."""
    resource = f"ServiceAccount {namespace}/{name}"
    if create:
        create_ksa(client, namespace, name, gsa, resource)
    elif patch is not None:
        client.request("PATCH", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}", patch,
                       content_type="application/merge-patch+json", resource=resource)


def create_ksa(client, namespace, name, gsa, resource):
    """The KSA, annotated with ``gsa`` (None: no annotation, for direct access)."""
    metadata = {"name": name, "namespace": namespace}
    if gsa:
        metadata["annotations"] = {ANNOTATION: gsa}
    body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata}
    try:
        client.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", body, resource=resource)
    except ApiError as err:
        if err.status == 404:
            raise ApiError(resource, 404, f"namespace {namespace} does not exist; create it first ({err.message})",
                           method="POST", reason=err.reason) from None
        raise


def run_federated(module):
    """A cluster outside GKE (Workload Identity Federation): the KSA without annotation, its principal://
    member of the federation pool for the caller to grant, and the credential configuration Secret that
    Prow's decoration mounts (gcs_credentials_secret); with ``state: absent`` the Secret is deleted (one
    this module made, by its label) and the member returned for the caller to revoke; the KSA stays."""
    params = module.params
    namespace, name = params["namespace"], params["service_account"]
    pool, provider = params["federation_pool"], params["federation_provider"]
    secret_name, key = params["credential_secret"], params["credential_secret_key"]
    present = params["state"] == "present"
    gcp = GcpSession(module)
    project = gcp.require_project()
    info = gcp.request("GET", "cloudresourcemanager", f"/v1/projects/{project}", f"project {project}")
    number = info.get("projectNumber", "")
    member = iam.federated_member(number, pool, namespace, name)
    audience = iam.federated_audience(number, pool, provider)
    config = credential_config(audience, gcp.url("sts", "/v1/token"), params["token_path"])
    payload = json.dumps(config, indent=2, sort_keys=True) + "\n"
    wanted = base64.b64encode(payload.encode()).decode()

    client = connect(module)
    ksa_path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}"
    ksa_resource = f"ServiceAccount {namespace}/{name}"
    secret_path = f"/api/v1/namespaces/{namespace}/secrets/{secret_name}"
    secret_resource = f"Secret {namespace}/{secret_name}"
    secret = client.get(secret_path, resource=secret_resource)
    data = (secret or {}).get("data") or {}
    labels = ((secret or {}).get("metadata") or {}).get("labels") or {}
    ours = all(labels.get(k) == v for k, v in MANAGED_BY.items())
    result = {"member": member, "audience": audience, "workload_pool": pool, "credential_secret": secret_name,
              "ksa_created": False, "annotation": None}

    def secret_state(obj, values):
        if obj is None:
            return None
        return {"secret": secret_resource, "keys": sorted(values),
                key: fingerprint(base64.b64decode(values[key]).decode()) if values.get(key) else None}

    if not present:
        delete = secret is not None and ours
        result["changed"] = delete
        if secret is not None and not ours:
            module.warn(f"{secret_resource} was not made by this collection (no label "
                        f"app.kubernetes.io/managed-by=prow.build_cluster): left as it is")
        if module._diff:
            result["diff"] = {"before": secret_state(secret, data), "after": None if delete else secret_state(secret, data)}
        if delete and not module.check_mode:
            client.request("DELETE", secret_path, resource=secret_resource, allow_404=True)
        module.exit_json(**result)

    ksa = client.get(ksa_path, resource=ksa_resource)
    patch = ksa_patch(ksa, None, True, direct=True) if ksa is not None else None
    before_annotation = ((ksa or {}).get("metadata") or {}).get("annotations", {}).get(ANNOTATION)
    result["ksa_created"] = ksa is None
    secret_create = secret is None
    secret_patch = None
    if secret is not None:
        patch_body = {}
        if data != {key: wanted}:
            patch_body["data"] = dict({k: None for k in data if k != key}, **{key: wanted})
        if not ours:
            patch_body["metadata"] = {"labels": dict(MANAGED_BY)}
        if secret.get("type", "Opaque") != "Opaque":
            module.fail_json(msg=f"{secret_resource} has type {secret['type']}, not Opaque: delete it, or choose "
                                 "another credential_secret")
        secret_patch = patch_body or None
    result["changed"] = result["ksa_created"] or patch is not None or secret_create or secret_patch is not None
    if module._diff:
        result["diff"] = {
            "before": {"ksa": ksa_resource if ksa else None, "annotation": before_annotation,
                       "credential_config": secret_state(secret, data)},
            "after": {"ksa": ksa_resource, "annotation": None,
                      "credential_config": secret_state(True, {key: wanted})},
        }
    if module.check_mode:
        module.exit_json(**result)
    write_ksa(client, result["ksa_created"], patch, namespace, name, None)
    if secret_create:
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": secret_name, "namespace": namespace, "labels": dict(MANAGED_BY)},
                "data": {key: wanted}}
        client.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body, resource=secret_resource)
    elif secret_patch is not None:
        client.request("PATCH", secret_path, secret_patch, content_type="application/merge-patch+json",
                       resource=secret_resource)
    module.exit_json(**result)
