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

from ansible_collections.prow.build_cluster.plugins.module_utils._runner import run_module
from ansible_collections.prow.build_cluster.plugins.module_utils.impl import k8s_namespace as impl


def main():
    run_module(impl, AnsibleModule)


if __name__ == "__main__":
    main()
