# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Implementation of module prow.build_cluster.workload_identity_binding; plugins/modules/workload_identity_binding.py holds its documentation.

``module_kwargs()`` gives the AnsibleModule arguments; ``run(module)`` does the work and ends
with ``exit_json`` or ``fail_json``.
"""

from __future__ import annotations

from ansible_collections.prow.build_cluster.plugins.module_utils import iam
from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import dns_label_error, dns_subdomain_error
from ansible_collections.prow.build_cluster.plugins.module_utils._gcp_iam import account_not_yet_visible, PolicyTarget, read_policy, update_policy
from ansible_collections.prow.build_cluster.plugins.module_utils._gcp_session import GCP_AUTH_ARGSPEC, GCP_AUTH_MUTUALLY_EXCLUSIVE, GcpSession
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import first_error, gsa_email_error, project_id_error
from ansible_collections.prow.build_cluster.plugins.module_utils.k8s import connect, K8S_AUTH_ARGSPEC, K8S_AUTH_MUTUALLY_EXCLUSIVE
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import parse_gke_name

ANNOTATION = "iam.gke.io/gcp-service-account"
POOL_SUFFIX = ".svc.id.goog"


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
            job_identity={"type": "str", "choices": ["gsa", "direct"], "default": "gsa"},
            state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        ),
        "mutually_exclusive": GCP_AUTH_MUTUALLY_EXCLUSIVE + K8S_AUTH_MUTUALLY_EXCLUSIVE,
        "required_if": [("job_identity", "gsa", ("gcp_service_account",))],
        "supports_check_mode": True,
    }


def run(module):
    """The module's work; ends with module.exit_json or module.fail_json."""
    params = module.params
    namespace, name, gsa = params["namespace"], params["service_account"], params["gcp_service_account"]
    present = params["state"] == "present"
    direct = params["job_identity"] == "direct"
    error = first_error(
        dns_label_error(namespace, "namespace"),
        dns_subdomain_error(name, "service_account"),
        None if direct else gsa_email_error(gsa, "gcp_service_account"),
    )
    if error:
        module.fail_json(msg=error)
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

    if result["ksa_created"]:
        create_ksa(client, namespace, name, gsa, ksa_resource)
    elif patch is not None:
        client.request("PATCH", ksa_path, patch, content_type="application/merge-patch+json", resource=ksa_resource)
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
        if ksa_created:
            create_ksa(client, namespace, name, None, ksa_resource)
        elif patch is not None:
            client.request("PATCH", ksa_path, patch, content_type="application/merge-patch+json", resource=ksa_resource)
    module.exit_json(**result)


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
