# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Implementation of module prow.build_cluster.gke_admin_ksa; plugins/modules/gke_admin_ksa.py holds its documentation.

``module_kwargs()`` gives the AnsibleModule arguments; ``run(module)`` does the work and ends
with ``exit_json`` or ``fail_json``.
"""

from __future__ import annotations

import copy

from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError, fail_on_api_error
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import dns_label_error, dns_subdomain_error
from ansible_collections.prow.build_cluster.plugins.module_utils._gcp_session import GCP_AUTH_ARGSPEC, GCP_AUTH_MUTUALLY_EXCLUSIVE
from ansible_collections.prow.build_cluster.plugins.module_utils.k8s import (
    K8S_AUTH_ARGSPEC,
    K8S_AUTH_MUTUALLY_EXCLUSIVE,
    connect,
)

RBAC = "rbac.authorization.k8s.io"
CRB_PATH = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"


def argument_spec():
    spec = copy.deepcopy(K8S_AUTH_ARGSPEC)
    spec.update(copy.deepcopy(GCP_AUTH_ARGSPEC))
    spec.update(
        name={"type": "str", "default": "serviceaccount-cluster-admin"},
        namespace={"type": "str", "default": "default"},
        binding_name={"type": "str", "default": "serviceaccount-cluster-admin-crb"},
        cluster_role={"type": "str", "default": "cluster-admin"},
        state={"type": "str", "default": "present", "choices": ["present", "absent"]},
    )
    return spec


def path_segment_error(value, what):
    # RBAC object names are path segments, not DNS names: "system:aggregate-to-edit" is valid.
    if not value or value in (".", "..") or any(c in value for c in "/%") or len(value) > 253:
        return f"{what} {value!r} is not a valid RBAC name: it must be non-empty, at most 253 characters, without '/' or '%'"
    return None


def desired_binding(params):
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": params["binding_name"]},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": params["cluster_role"]},
        "subjects": [{"kind": "ServiceAccount", "name": params["name"], "namespace": params["namespace"]}],
    }


def normal_subjects(subjects):
    """Subjects without defaulted fields (apiGroup), sorted, for comparison."""
    return sorted((s.get("kind"), s.get("namespace") or "", s.get("name")) for s in subjects or [])


def binding_plan(actual, desired):
    """'create', 'replace' (roleRef differs: immutable), 'update' (subjects differ) or None."""
    if actual is None:
        return "create"
    if actual.get("roleRef") != desired["roleRef"]:
        return "replace"
    if normal_subjects(actual.get("subjects")) != normal_subjects(desired["subjects"]):
        return "update"
    return None


def describe_sa(sa):
    if not sa:
        return None
    meta = sa["metadata"]
    return {"name": meta["name"], "namespace": meta["namespace"], "username": f"system:serviceaccount:{meta['namespace']}:{meta['name']}"}


def describe_binding(crb):
    if not crb:
        return None
    return {
        "name": crb["metadata"]["name"],
        "cluster_role": (crb.get("roleRef") or {}).get("name"),
        "subjects": [f"{s.get('kind')} {s['namespace'] + '/' if s.get('namespace') else ''}{s.get('name')}" for s in crb.get("subjects") or []],
    }


class Reconciler:
    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params
        self.actions = []
        namespace, name = self.params["namespace"], self.params["name"]
        self.sa_path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}"
        self.sa_label = f"serviceaccount {namespace}/{name}"
        self.crb_path = f"{CRB_PATH}/{self.params['binding_name']}"
        self.crb_label = f"clusterrolebinding {self.params['binding_name']}"

    def write(self, action, method, path, body=None, resource=None):
        """Record an action and, outside check mode, perform it."""
        self.actions.append(action)
        if self.module.check_mode:
            return
        if method == "PATCH":
            self.client.merge_patch(path, body, resource=resource)
        else:
            self.client.request(method, path, body, resource=resource)

    def present(self, sa, crb):
        params = self.params
        desired = desired_binding(params)
        plan = binding_plan(crb, desired)
        if plan:
            # Before any write, the ServiceAccount's too: a binding that cannot be made, or that
            # would grant nothing, must not leave half of the change behind.
            self.require_bind()
        if sa is None:
            body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": params["name"], "namespace": params["namespace"]}}
            self.write(f"create {self.sa_label}", "POST", f"/api/v1/namespaces/{params['namespace']}/serviceaccounts", body, self.sa_label)
            sa = body
        if plan == "create":
            self.write(f"create {self.crb_label}", "POST", CRB_PATH, desired, self.crb_label)
        elif plan == "replace":
            # roleRef is immutable: the only way to change it is delete and create.
            old = crb["roleRef"].get("name")
            self.write(f"delete {self.crb_label} (roleRef {old} cannot change)", "DELETE", self.crb_path, resource=self.crb_label)
            self.write(f"create {self.crb_label} bound to {params['cluster_role']}", "POST", CRB_PATH, desired, self.crb_label)
        elif plan == "update":
            # A merge patch replaces the whole list: exactly the one ServiceAccount remains.
            self.write(f"set subjects of {self.crb_label}", "PATCH", self.crb_path, {"subjects": desired["subjects"]}, self.crb_label)
        return sa, (desired if plan else crb)

    def absent(self, sa, crb):
        if crb is not None:
            self.write(f"delete {self.crb_label}", "DELETE", self.crb_path, resource=self.crb_label)
        if sa is not None:
            self.write(f"delete {self.sa_label}", "DELETE", self.sa_path, resource=self.sa_label)
        return None, None

    def require_bind(self):
        role = self.params["cluster_role"]
        allowed, reason = self.client.can_i("bind", "clusterroles", group=RBAC, name=role)
        if not allowed:
            self.module.fail_json(
                msg=f"the caller may not bind ClusterRole {role} (SelfSubjectAccessReview: {reason or 'denied'}); "
                "Kubernetes' escalation prevention would reject the binding. Run as a cluster admin, "
                "or grant the caller 'bind' on this ClusterRole",
                actions=self.actions,
            )
        if self.client.get(f"/apis/{RBAC}/v1/clusterroles/{role}", resource=f"clusterrole {role}") is None:
            # Kubernetes accepts a binding to a missing role, which then grants nothing: Prow would
            # get a credential that is refused everywhere.
            self.module.fail_json(
                msg=f"cluster_role: ClusterRole {role} does not exist in the cluster; create it first, or bind one "
                "that exists (the default is cluster-admin)",
                actions=self.actions,
            )


def module_kwargs():
    """The keyword arguments of this module's AnsibleModule."""
    return {
        "argument_spec": argument_spec(),
        "mutually_exclusive": K8S_AUTH_MUTUALLY_EXCLUSIVE + GCP_AUTH_MUTUALLY_EXCLUSIVE,
        "supports_check_mode": True,
    }


def run(module):
    """The module's work; ends with module.exit_json or module.fail_json."""
    params = module.params
    for error in (
        dns_subdomain_error(params["name"], "name"),
        dns_label_error(params["namespace"], "namespace"),
        path_segment_error(params["binding_name"], "binding_name"),
        path_segment_error(params["cluster_role"], "cluster_role"),
    ):
        if error:
            module.fail_json(msg=error)

    client = connect(module)
    reconciler = Reconciler(module, client)
    try:
        sa = client.get(reconciler.sa_path, resource=reconciler.sa_label)
        crb = client.get(reconciler.crb_path, resource=reconciler.crb_label)
        if params["state"] == "present":
            new_sa, new_crb = reconciler.present(sa, crb)
        else:
            new_sa, new_crb = reconciler.absent(sa, crb)
    except ApiError as exc:
        fail_on_api_error(module, exc, actions=reconciler.actions)

    before = {"service_account": describe_sa(sa), "cluster_role_binding": describe_binding(crb)}
    after = {"service_account": describe_sa(new_sa), "cluster_role_binding": describe_binding(new_crb)}
    module.exit_json(
        changed=bool(reconciler.actions),
        actions=reconciler.actions,
        diff={"before": before, "after": after},
        **after,
    )
