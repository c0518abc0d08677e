#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gke_exec_kubeconfig
short_description: Keyless kubeconfigs of GKE build clusters (exec plugin), in one ConfigMap of the Prow cluster
version_added: 0.1.0
description:
  - "The O(clusters) of the keyless C(gke_exec) credential model: for each, a kubeconfig with ONE context named
    after it whose user runs GKE's exec credential plugin (C(gke-gcloud-auth-plugin
    --use_application_default_credentials), C(provideClusterInfo), API version
    C(client.authentication.k8s.io/v1beta1)), so Prow authenticates as its own Google service account. The
    kubeconfig holds no token: it is kept in a ConfigMap, not in Secret Manager, and nothing is rotated."
  - The server and CA are read from the GKE API on every run; the ConfigMap (a key per cluster, as the build
    clusters' Secret) is applied as M(prow.build_cluster.k8s_apply) applies objects (the last-applied annotation,
    one merge patch), so a changed endpoint or CA, a hand edit of a cluster's key or a removed cluster is repaired
    and a run with nothing to repair writes nothing. A key added by hand for a cluster not listed stays, as with
    C(kubectl apply).
  - What the Google service accounts may do in the cluster comes from IAM and RBAC (the credentials role grants
    them); this module only says how to reach the cluster.
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  clusters:
    description: The build clusters of the model; none with O(state=present) writes a ConfigMap without data.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The cluster's alias, its key in the ConfigMap and its context name.
        type: str
        required: true
      gke:
        description: The GKE cluster, C(projects/PROJECT/locations/LOCATION/clusters/CLUSTER).
        type: str
        required: true
      optional:
        description: Leave the cluster out, with a warning, when GKE does not know it (yet), instead of failing.
        type: bool
        default: false
  name:
    description: Name of the ConfigMap.
    type: str
    default: prow-build-clusters-exec
  namespace:
    description: Namespace of the ConfigMap, Prow's.
    type: str
    default: default
  plugin_command:
    description: The exec plugin's command, found on the C(PATH) of Prow's containers.
    type: str
    default: gke-gcloud-auth-plugin
  plugin_args:
    description: The exec plugin's arguments. Prow's images have no gcloud, hence Application Default Credentials.
    type: list
    elements: str
    default: [--use_application_default_credentials]
  state:
    description: C(present) writes the ConfigMap, C(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - prow.build_cluster.attributes
  - prow.build_cluster.attributes.K8S
  - prow.build_cluster.attributes.GCP
  - prow.build_cluster.k8s_auth
  - prow.build_cluster.gcp_auth
notes:
  - The Kubernetes connection options reach the Prow cluster; the Google credentials options read the GKE API.
"""

EXAMPLES = r"""
- name: Keyless kubeconfigs of two GKE build clusters for Prow
  prow.build_cluster.gke_exec_kubeconfig:
    kubeconfig: ~/.kube/prow-cluster
    namespace: default
    clusters:
      - name: build-a
        gke: projects/team-a-build/locations/us-central1/clusters/prow-build
      - name: build-b
        gke: projects/team-b-build/locations/europe-west4/clusters/prow-build
"""

RETURN = r"""
configmap:
  description: The ConfigMap and its keys (the clusters' aliases).
  returned: success
  type: dict
  sample: {name: prow-build-clusters-exec, namespace: default, keys: [build-a]}
kubeconfigs:
  description: Each cluster's kubeconfig (no secret in it), by alias.
  returned: success
  type: dict
missing:
  description: Optional clusters GKE does not know, left out.
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prow.build_cluster.plugins.module_utils._runner import run_module
from ansible_collections.prow.build_cluster.plugins.module_utils.impl import gke_exec_kubeconfig as impl


def main():
    run_module(impl, AnsibleModule)


if __name__ == "__main__":
    main()
