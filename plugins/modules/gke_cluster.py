#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gke_cluster
short_description: Create a GKE build cluster with Workload Identity, or bring an existing one onto it
version_added: 0.1.0
description:
  - Creates a zonal or regional GKE cluster with the Workload Identity pool C(PROJECT.svc.id.goog) and one
    node pool on C(GKE_METADATA), with the machine type, node count, disk size and type, and release
    channel given (defaults are those of Prow's C(create-build-cluster.sh)), and waits for the operation.
  - On an existing cluster, enables Workload Identity if it is off or uses another pool, changes the release
    channel if O(release_channel) differs, and moves every node pool that is not on C(GKE_METADATA) to it.
    GKE runs one operation per cluster at a time, so these run one after the other, each waited for.
  - While the cluster is busy (another caller's operation, or GKE's own repair or upgrade, which GKE words
    as C(Cluster is currently being created, deleted, updated or repaired)), GKE refuses changes; they are
    retried (bounded).
    Changing a node pool's metadata mode recreates its nodes, which disrupts running jobs.
  - Fields that cannot change in place (the node pool's machine type, disk size and disk type, a missing
    node pool) are compared too. If they differ the module fails before changing anything and lists them,
    rather than ignoring them. O(node_count) is the initial count and is not compared (autoscaling and
    resizes change it).
  - Returns the endpoint and CA certificate, and the C(gke) name the Kubernetes-side modules connect with.
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  name:
    description: Cluster name (1 to 40 lowercase letters, digits and C(-), starting with a letter).
    type: str
    required: true
  location:
    description: Zone (C(us-west1-b)) for a zonal cluster, or region (C(us-west1)) for a regional one.
    type: str
    required: true
  node_pool:
    description: Name of the node pool created with the cluster, and compared on an existing one.
    type: str
    default: default-pool
  machine_type:
    description: Machine type of the nodes.
    type: str
    default: n1-standard-8
  node_count:
    description: Initial number of nodes (per zone, for a regional cluster). Used at creation only.
    type: int
    default: 5
  disk_size_gb:
    description: Boot disk size of the nodes in GB.
    type: int
    default: 100
  disk_type:
    description: Boot disk type of the nodes.
    type: str
    default: pd-ssd
  release_channel:
    description: Release channel. Without it, GKE's default applies and an existing cluster's channel is not compared.
    type: str
    choices: [RAPID, REGULAR, STABLE, EXTENDED]
  wait:
    description:
      - Wait for the create or delete operation, or the last update operation, to finish.
      - Updates before the last one are always waited for, as GKE refuses a second operation meanwhile.
    type: bool
    default: true
  wait_timeout:
    description: How long to wait for each operation, as seconds or a duration such as C(30m).
    type: str
    default: 30m
  state:
    description: Whether the cluster should exist.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - prow.build_cluster.attributes
  - prow.build_cluster.attributes.GCP
  - prow.build_cluster.gcp_auth
"""

EXAMPLES = r"""
- name: The build cluster
  prow.build_cluster.gke_cluster:
    project: my-build-project
    location: us-west1-b
    name: my-build-project
    machine_type: n1-standard-8
    node_count: 5
    release_channel: REGULAR
    wait_timeout: 40m
  register: cluster

- name: Use it from the Kubernetes-side modules
  prow.build_cluster.gke_admin_ksa:
    gke: "{{ cluster.gke }}"
"""

RETURN = r"""
gke:
  description: The cluster's name for the C(gke) connection option, C(projects/P/locations/L/clusters/C).
  returned: always
  type: str
endpoint:
  description: API server address (host, no scheme), once the cluster has one.
  returned: when the cluster exists and has an endpoint
  type: str
ca_certificate:
  description: Base64 PEM CA certificate of the API server (kubeconfig C(certificate-authority-data)).
  returned: when the cluster exists and has an endpoint
  type: str
workload_pool:
  description: The cluster's Workload Identity pool.
  returned: always
  type: str
  sample: my-build-project.svc.id.goog
status:
  description: Cluster status (C(RUNNING), C(PROVISIONING)...); empty when absent.
  returned: always
  type: str
operations:
  description: Names of the GKE operations started, in order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prow.build_cluster.plugins.module_utils._runner import run_module
from ansible_collections.prow.build_cluster.plugins.module_utils.impl import gke_cluster as impl


def main():
    run_module(impl, AnsibleModule)


if __name__ == "__main__":
    main()
