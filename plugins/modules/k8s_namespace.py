#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: k8s_namespace
short_description: Ensure a namespace exists in a build cluster, over any of the collection's connections
version_added: 0.1.0
description:
  - Ensures the namespace where Prow runs job pods (C(test-pods) by default) exists, with the given labels.
  - Exists because C(kubernetes.core.k8s) cannot connect through the GKE API with Google credentials
    (O(gke)), which is how the collection reaches a cluster it has just created; with a kubeconfig,
    C(kubernetes.core.k8s) does the same job.
  - Labels are additive; labels not named here are left alone. The module never deletes a namespace.
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  name:
    description: Name of the namespace.
    type: str
    default: test-pods
  labels:
    description: Labels the namespace must carry.
    type: dict
    default: {}
extends_documentation_fragment:
  - prow.build_cluster.attributes
  - prow.build_cluster.attributes.K8S
  - prow.build_cluster.attributes.GCP
  - prow.build_cluster.k8s_auth
  - prow.build_cluster.gcp_auth
notes:
  - The Google credentials options are used only to connect with O(gke).
"""

EXAMPLES = r"""
- name: Ensure the job namespace in a GKE cluster created by this collection
  prow.build_cluster.k8s_namespace:
    gke: projects/team-a-build/locations/us-central1/clusters/prow-build
    name: test-pods
"""

RETURN = r"""
namespace:
  description: Name, labels and phase of the namespace.
  returned: success
  type: dict
  sample: {name: test-pods, labels: {kubernetes.io/metadata.name: test-pods}, phase: Active}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prow.build_cluster.plugins.module_utils import gcp, k8s
from ansible_collections.prow.build_cluster.plugins.module_utils.common import ApiError, dns_label_error, fail_on_api_error


def describe(obj):
    return {
        "name": obj["metadata"]["name"],
        "labels": obj["metadata"].get("labels") or {},
        "phase": (obj.get("status") or {}).get("phase"),
    }


def main():
    module = AnsibleModule(
        argument_spec={
            **k8s.K8S_AUTH_ARGSPEC,
            **gcp.GCP_AUTH_ARGSPEC,
            "name": {"type": "str", "default": "test-pods"},
            "labels": {"type": "dict", "default": {}},
        },
        mutually_exclusive=k8s.K8S_AUTH_MUTUALLY_EXCLUSIVE + gcp.GCP_AUTH_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    name = module.params["name"]
    error = dns_label_error(name, "namespace")
    if error:
        module.fail_json(msg=error)
    labels = {str(k): str(v) for k, v in module.params["labels"].items()}

    client = k8s.connect(module)
    path = f"/api/v1/namespaces/{name}"
    try:
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
    except ApiError as err:
        fail_on_api_error(module, err)


if __name__ == "__main__":
    main()
