#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: k8s_apply
short_description: Apply Kubernetes documents, writing only what differs from the definition
version_added: 0.1.0
description:
  - Creates, updates or deletes the objects of O(definition), such as the External Secrets Operator
    C(ClusterSecretStore) and C(ExternalSecret) of the Prow cluster, over any of the collection's connections.
  - A document is in sync when its object exists, has every field the definition sets with the same value
    (maps may hold more fields, such as server defaults or labels set by hand; lists must match item by
    item, in order), and carries the definition as its C(kubectl.kubernetes.io/last-applied-configuration)
    annotation, so that a later C(kubectl apply) of the same definition is a no-op too. Nothing is written
    for documents in sync.
  - Exists because C(kubernetes.core.k8s) with O(ignore:apply=true) re-sends lists of custom resources (a
    PATCH on every run), and cannot connect with O(gke).
  - A missing object is created with the annotation. An object out of sync gets a JSON merge patch of the
    definition plus the annotation; lists are replaced whole (the definition's list is the desired list);
    fields that the previously applied definition set and this one no longer does are deleted, as
    C(kubectl apply) does.
  - Kinds are found through the API server's discovery, namespaced or cluster-scoped; a kind the server does
    not serve (its CustomResourceDefinition is not installed) is an error naming the kind and apiVersion.
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  definition:
    description:
      - One document or a list of documents (mappings), each with C(apiVersion), C(kind) and C(metadata.name).
      - A namespaced document without C(metadata.namespace) goes to C(default), as with C(kubectl); a
        cluster-scoped one must not have a namespace.
      - An empty list does nothing.
    type: raw
    required: true
  state:
    description:
      - V(present) creates or updates the objects; V(absent) deletes the ones that exist.
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
  - The Google credentials options are used only to connect with O(gke).
  - Values the API server normalizes (a quantity C(1000m) stored as C(1), for example) never compare equal
    and make the document change on every run; write them as the server stores them. A Secret's
    C(stringData) is compared with the C(data) the server stores.
  - The values of C(Secret) documents are masked in all output; diffs show them as fingerprints.
"""

EXAMPLES = r"""
- name: Deliver the build clusters' kubeconfigs to the Prow cluster with External Secrets
  prow.build_cluster.k8s_apply:
    kubeconfig: ~/.kube/prow-config
    definition:
      - apiVersion: external-secrets.io/v1
        kind: ExternalSecret
        metadata: {name: build-kubeconfigs, namespace: prow}
        spec:
          refreshInterval: 1h
          secretStoreRef: {kind: ClusterSecretStore, name: gcpsm}
          target: {name: kubeconfig}
          data:
            - {secretKey: build-a, remoteRef: {key: prow-build-a-kubeconfig}}
"""

RETURN = r"""
documents:
  description: One entry per document, in order, with what was (or in check mode would be) done.
  returned: success, except in check mode on a O(gke) cluster that does not exist yet
  type: list
  elements: dict
  contains:
    kind:
      description: Kind of the document.
      type: str
    name:
      description: Name of the object.
      type: str
    namespace:
      description: Namespace of the object; null for a cluster-scoped kind.
      type: str
    action:
      description: V(created), V(updated), V(unchanged) (present) or V(deleted), V(absent) (absent).
      type: str
  sample: [{kind: ExternalSecret, name: build-kubeconfigs, namespace: prow, action: unchanged}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prow.build_cluster.plugins.module_utils._runner import run_module
from ansible_collections.prow.build_cluster.plugins.module_utils.impl import k8s_apply as impl


def main():
    run_module(impl, AnsibleModule)


if __name__ == "__main__":
    main()
