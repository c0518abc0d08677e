# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Implementation of module prow.build_cluster.k8s_namespace; plugins/modules/k8s_namespace.py holds its documentation.

``module_kwargs()`` gives the AnsibleModule arguments; ``run(module)`` does the work and ends
with ``exit_json`` or ``fail_json``.
"""

from __future__ import annotations

from ansible_collections.prow.build_cluster.plugins.module_utils import _gcp_session, k8s
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import dns_label_error


def describe(obj):
    return {
        "name": obj["metadata"]["name"],
        "labels": obj["metadata"].get("labels") or {},
        "phase": (obj.get("status") or {}).get("phase"),
    }


def module_kwargs():
    """The keyword arguments of this module's AnsibleModule."""
    return {
        "argument_spec": {
            **k8s.K8S_AUTH_ARGSPEC,
            **_gcp_session.GCP_AUTH_ARGSPEC,
            "name": {"type": "str", "default": "test-pods"},
            "labels": {"type": "dict", "default": {}},
        },
        "mutually_exclusive": k8s.K8S_AUTH_MUTUALLY_EXCLUSIVE + _gcp_session.GCP_AUTH_MUTUALLY_EXCLUSIVE,
        "supports_check_mode": True,
    }


def run(module):
    """The module's work; ends with module.exit_json or module.fail_json."""
    name = module.params["name"]
    error = dns_label_error(name, "namespace")
    if error:
        module.fail_json(msg=error)
    labels = {str(k): str(v) for k, v in module.params["labels"].items()}

    client = k8s.connect(module)
    path = f"/api/v1/namespaces/{name}"
    current = client.get(path, resource=f"namespace {name}")
    if current is None:
        after = {"name": name, "labels": labels, "phase": None}
        if not module.check_mode:
            desired = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
            after = describe(client.request("POST", "/api/v1/namespaces", desired, resource=f"namespace {name}"))
        module.exit_json(changed=True, namespace=after, diff={"before": {}, "after": after})
    if (current.get("status") or {}).get("phase") == "Terminating":
        module.fail_json(msg=f"namespace {name} is being deleted; wait for it to go, or pick another name")
    before = describe(current)
    missing = {k: v for k, v in labels.items() if before["labels"].get(k) != v}
    if not missing:
        module.exit_json(changed=False, namespace=before)
    after = dict(before, labels=dict(before["labels"], **missing))
    if not module.check_mode:
        patched = client.request("PATCH", path, {"metadata": {"labels": missing}},
                                 content_type="application/merge-patch+json", resource=f"namespace {name}")
        after = describe(patched)
    module.exit_json(changed=True, namespace=after, diff={"before": before, "after": after})
