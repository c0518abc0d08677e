#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gke_admin_ksa
short_description: Ensure the ServiceAccount and ClusterRoleBinding whose tokens Prow uses in a build cluster
version_added: 0.1.0
description:
  - Ensures a Kubernetes ServiceAccount and a ClusterRoleBinding that binds it to a ClusterRole, the identity
    gencred created in every build cluster. Defaults are gencred's names and role.
  - Before creating or changing the binding, asks the API server (SelfSubjectAccessReview) whether the caller
    may C(bind) the ClusterRole, and fails with an explanation if not; RBAC's escalation prevention would
    otherwise reject the write with a less helpful message.
  - The binding is compared with the desired one. A different C(roleRef), which Kubernetes does not allow to
    change, makes the module delete and re-create the binding; different subjects are replaced by the one
    ServiceAccount.
  - O(state=absent) removes the binding and the ServiceAccount. Deleting the ServiceAccount also invalidates
    every token minted for it.
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  name:
    description: Name of the ServiceAccount.
    type: str
    default: serviceaccount-cluster-admin
  namespace:
    description: Namespace of the ServiceAccount. It must exist.
    type: str
    default: default
  binding_name:
    description: Name of the ClusterRoleBinding.
    type: str
    default: serviceaccount-cluster-admin-crb
  cluster_role:
    description:
      - ClusterRole to bind. Prow's documentation asks for C(cluster-admin); for least privilege, bind a
        ClusterRole that allows C(create), C(delete), C(list), C(watch), C(get) and C(patch) on C(pods), which is
        what Prow checks in its pod namespace.
      - The module does not create the ClusterRole; one that does not exist is an error, before any write (in check
        mode too), since a binding to it would grant nothing.
    type: str
    default: cluster-admin
  state:
    description: Whether the ServiceAccount and binding should exist.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - prow.build_cluster.attributes
  - prow.build_cluster.attributes.K8S
  - prow.build_cluster.k8s_auth
  - prow.build_cluster.gcp_auth
notes:
  - The Google credentials options are used only with O(gke).
  - In check mode the SelfSubjectAccessReview still runs (it changes nothing), so a missing C(bind) right fails
    in check mode too.
"""

EXAMPLES = r"""
- name: The cluster-admin ServiceAccount gencred created (its default names)
  prow.build_cluster.gke_admin_ksa:
    gke: projects/my-build-proj/locations/us-west1-b/clusters/my-build-proj

- name: Least privilege - a ClusterRole with only the pod rights Prow checks
  kubernetes.core.k8s:
    definition:
      apiVersion: rbac.authorization.k8s.io/v1
      kind: ClusterRole
      metadata:
        name: prow-build-pods
      rules:
        - apiGroups: [""]
          resources: [pods]
          verbs: [create, delete, list, watch, get, patch]

- name: Bind the Prow ServiceAccount to it
  prow.build_cluster.gke_admin_ksa:
    kubeconfig: ~/.kube/config
    context: my-build-cluster
    name: prow-build
    binding_name: prow-build
    cluster_role: prow-build-pods

- name: Remove both
  prow.build_cluster.gke_admin_ksa:
    gke: projects/my-build-proj/locations/us-west1-b/clusters/my-build-proj
    state: absent
"""

RETURN = r"""
service_account:
  description: The ServiceAccount as it is (or would be) after the run; null when absent.
  returned: always
  type: dict
  contains:
    name:
      description: Name.
      type: str
    namespace:
      description: Namespace.
      type: str
    username:
      description: The user name its tokens authenticate as.
      type: str
      sample: system:serviceaccount:default:serviceaccount-cluster-admin
cluster_role_binding:
  description: The ClusterRoleBinding as it is (or would be) after the run; null when absent.
  returned: always
  type: dict
  contains:
    name:
      description: Name.
      type: str
    cluster_role:
      description: The bound ClusterRole.
      type: str
    subjects:
      description: Subjects, as C(Kind namespace/name).
      type: list
      elements: str
actions:
  description: What was done (or would be, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["create serviceaccount default/serviceaccount-cluster-admin", "create clusterrolebinding serviceaccount-cluster-admin-crb"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prow.build_cluster.plugins.module_utils._runner import run_module
from ansible_collections.prow.build_cluster.plugins.module_utils.impl import gke_admin_ksa as impl


def main():
    run_module(impl, AnsibleModule)


if __name__ == "__main__":
    main()
