# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Implementation of the ``plan`` module: many check-mode calls in one process.

A group is in sync when every one of its calls, run in check mode with the module's own
code, would change nothing. Anything else (a change, an error, a call the plan cannot
judge) makes the group stale, and the playbook runs its tasks as usual, where the error
gets its usual message. The plan may only err towards "stale".
"""

from __future__ import annotations

import json

from ansible_collections.prow.build_cluster.plugins.module_utils import gcp, k8s
from ansible_collections.prow.build_cluster.plugins.module_utils.common import ApiError, fail_on_api_error
from ansible_collections.prow.build_cluster.plugins.module_utils.impl import (
    composite_kubeconfig,
    gcp_iam_member,
    gcp_service_account,
    gcs_bucket,
    gke_admin_ksa,
    gke_cluster,
    k8s_namespace,
    ksa_token,
    secret_manager_secret,
    workload_identity_binding,
    yaml_files,
)
from ansible_collections.prow.build_cluster.plugins.module_utils.inprocess import check

IMPLEMENTATIONS = {
    "composite_kubeconfig": composite_kubeconfig,
    "gcp_iam_member": gcp_iam_member,
    "gcp_service_account": gcp_service_account,
    "gcs_bucket": gcs_bucket,
    "gke_admin_ksa": gke_admin_ksa,
    "gke_cluster": gke_cluster,
    "k8s_namespace": k8s_namespace,
    "ksa_token": ksa_token,
    "secret_manager_secret": secret_manager_secret,
    "workload_identity_binding": workload_identity_binding,
    "yaml_files": yaml_files,
}
APPLY = "kubernetes.core.k8s"
MODULES = sorted(IMPLEMENTATIONS) + [APPLY]
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

CALL_SPEC = {
    "module": {"type": "str", "required": True, "choices": MODULES},
    "args": {"type": "dict", "default": {}},
    "label": {"type": "str"},
    "enabled": {"type": "bool", "default": True},
}


def module_kwargs():
    return {
        "argument_spec": {
            **gcp.GCP_AUTH_ARGSPEC,
            "preconditions": {"type": "list", "elements": "dict", "default": [], "options": CALL_SPEC},
            "groups": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "name": {"type": "str", "required": True},
                    "calls": {"type": "list", "elements": "dict", "default": [], "options": CALL_SPEC},
                },
            },
        },
        "mutually_exclusive": gcp.GCP_AUTH_MUTUALLY_EXCLUSIVE,
        "supports_check_mode": True,
    }


class _Apply:
    """Stands in for kubernetes.core.k8s with apply=true, which cannot run in this process.

    Conservative: in sync only when every document exists, has every field the
    definition sets with that value, and carries the definition as its
    last-applied-configuration annotation (what a client-side apply compares), so that an
    apply would send an empty patch. Anything else is stale and left to kubernetes.core.
    """

    @staticmethod
    def module_kwargs():
        return {
            "argument_spec": {
                **k8s.K8S_AUTH_ARGSPEC,
                **gcp.GCP_AUTH_ARGSPEC,
                "definition": {"type": "raw", "required": True},
                "apply": {"type": "bool", "default": False},
                "state": {"type": "str", "default": "present", "choices": ["present"]},
            },
            "mutually_exclusive": k8s.K8S_AUTH_MUTUALLY_EXCLUSIVE,
        }

    @staticmethod
    def run(module):
        if not module.params["apply"]:
            module.fail_json(msg="the plan checks kubernetes.core.k8s only with apply: true")
        definition = module.params["definition"]
        documents = definition if isinstance(definition, list) else [definition]
        if not all(isinstance(doc, dict) and doc.get("kind") and doc.get("apiVersion") for doc in documents):
            module.fail_json(msg="each document needs apiVersion and kind")
        client = k8s.connect(module)
        resources, reason = {}, None
        try:
            for document in documents:
                reason = _apply_reason(client, resources, document)
                if reason:
                    break
        except ApiError as err:
            fail_on_api_error(module, err)
        module.exit_json(changed=bool(reason), reason=reason)


def _apply_reason(client, resources, document):
    """Why applying ``document`` would change something, or None."""
    api_version = document["apiVersion"]
    if api_version not in resources:
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        listing = client.get(base, resource=api_version) or {}
        resources[api_version] = (base, {r["kind"]: r for r in listing.get("resources", []) if "/" not in r["name"]})
    base, by_kind = resources[api_version]
    resource = by_kind.get(document["kind"])
    metadata = document.get("metadata") or {}
    label = f"{document['kind']} {metadata.get('name')}"
    if resource is None:
        return f"{label}: the API server does not serve {document['kind']} in {api_version}"
    if resource.get("namespaced"):
        path = f"{base}/namespaces/{metadata.get('namespace') or 'default'}/{resource['name']}/{metadata.get('name')}"
    else:
        path = f"{base}/{resource['name']}/{metadata.get('name')}"
    live = client.get(path, resource=label)
    if live is None:
        return f"{label} does not exist"
    try:
        applied = json.loads(((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED) or "null")
    except ValueError:
        applied = None
    if applied != document:
        return f"{label} was last applied from another definition"
    if not _contains(live, document):
        return f"{label} differs from its definition"
    return None


def _contains(actual, wanted):
    """Whether ``actual`` has every field of ``wanted``; lists must match item by item."""
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(key in actual and _contains(actual[key], value) for key, value in wanted.items())
    if isinstance(wanted, list):
        return isinstance(actual, list) and len(actual) == len(wanted) and all(map(_contains, actual, wanted))
    return actual == wanted


def _implementation(name):
    return _Apply if name == APPLY else IMPLEMENTATIONS[name]


def _accepts_gcp_auth(impl):
    return "auth_kind" in impl.module_kwargs()["argument_spec"]


def run_call(call, gcp_defaults, no_log_values):
    """One call in check mode: its Outcome. GCP auth options the plan was given (by
    module_defaults for group/prow.build_cluster.gcp, usually) fill what the call leaves unset,
    as module_defaults would have for the task itself."""
    impl = _implementation(call["module"])
    args = dict(call.get("args") or {})
    if _accepts_gcp_auth(impl):
        for key, value in gcp_defaults.items():
            args.setdefault(key, value)
    return check(impl, args, no_log_values)


def _enabled(calls):
    return [call for call in calls if call["enabled"]]


def label_of(call):
    return call.get("label") or call["module"]


def run(module):
    params = module.params
    gcp_defaults = {key: params[key] for key in gcp.GCP_AUTH_ARGSPEC if params.get(key) is not None}
    warnings = []

    for call in _enabled(params["preconditions"]):
        outcome = run_call(call, gcp_defaults, module.no_log_values)
        warnings.extend(outcome.warnings)
        if outcome.failed:
            module.fail_json(msg=f"pre-flight: {label_of(call)}: {outcome.msg}", failed_call=label_of(call))

    in_sync, stale, reasons = [], [], {}
    for group in params["groups"]:
        reason = None
        for call in _enabled(group["calls"]):
            outcome = run_call(call, gcp_defaults, module.no_log_values)
            warnings.extend(outcome.warnings)
            if outcome.failed:
                reason = f"{label_of(call)}: {outcome.msg}"
            elif outcome.changed:
                reason = f"{label_of(call)}: would change"
            if reason:
                break  # later calls may depend on this one
        if reason:
            stale.append(group["name"])
            reasons[group["name"]] = reason
        else:
            in_sync.append(group["name"])
    for warning in warnings:
        module.warn(warning)
    module.exit_json(changed=False, in_sync=in_sync, stale=stale, reasons=reasons)
