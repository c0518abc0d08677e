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

from ansible_collections.prow.build_cluster.plugins.module_utils.common import ApiError, fail_on_api_error, parse_duration
from ansible_collections.prow.build_cluster.plugins.module_utils.gcp import (
    GCP_AUTH_ARGSPEC,
    GCP_AUTH_MUTUALLY_EXCLUSIVE,
    GcpSession,
    first_error,
    gke_name_error,
    location_error,
)

GKE_METADATA = "GKE_METADATA"


def metadata_mode(pool):
    return ((pool.get("config") or {}).get("workloadMetadataConfig") or {}).get("mode") or "UNSET"


def summary(cluster):
    """What diffs show: the fields this module manages."""
    if not cluster:
        return {}
    return {
        "workload_pool": (cluster.get("workloadIdentityConfig") or {}).get("workloadPool"),
        "release_channel": (cluster.get("releaseChannel") or {}).get("channel"),
        "node_pools": {p["name"]: metadata_mode(p) for p in cluster.get("nodePools") or []},
    }


def create_body(params, pool):
    cluster = {
        "name": params["name"],
        "workloadIdentityConfig": {"workloadPool": pool},
        "nodePools": [{
            "name": params["node_pool"],
            "initialNodeCount": params["node_count"],
            "config": {
                "machineType": params["machine_type"],
                "diskSizeGb": params["disk_size_gb"],
                "diskType": params["disk_type"],
                "workloadMetadataConfig": {"mode": GKE_METADATA},
            },
            "management": {"autoUpgrade": True, "autoRepair": True},
        }],
    }
    if params["release_channel"]:
        cluster["releaseChannel"] = {"channel": params["release_channel"]}
    return {"cluster": cluster}


def immutable_differences(params, cluster):
    """Differences this module cannot fix in place, as messages."""
    pools = {p["name"]: p for p in cluster.get("nodePools") or []}
    pool = pools.get(params["node_pool"])
    if pool is None:
        return [f"node pool {params['node_pool']!r} does not exist (it has {sorted(pools)}); "
                "set node_pool to one of them"]
    config = pool.get("config") or {}
    out = []
    for option, field in (("machine_type", "machineType"), ("disk_size_gb", "diskSizeGb"), ("disk_type", "diskType")):
        if config.get(field) is not None and str(config[field]) != str(params[option]):
            out.append(f"{option}: the cluster has {config[field]!r}, not {params[option]!r}")
    return out


def plan_updates(params, cluster, pool):
    """In-place updates, in the order GKE needs (the pool before GKE_METADATA): [(what, method, path suffix, body)]."""
    updates = []
    if (cluster.get("workloadIdentityConfig") or {}).get("workloadPool") != pool:
        updates.append(("enable Workload Identity", "", {"update": {"desiredWorkloadIdentityConfig": {"workloadPool": pool}}}))
    channel = (cluster.get("releaseChannel") or {}).get("channel")
    if params["release_channel"] and channel != params["release_channel"]:
        updates.append(("change the release channel", "", {"update": {"desiredReleaseChannel": {"channel": params["release_channel"]}}}))
    for node_pool in cluster.get("nodePools") or []:
        if metadata_mode(node_pool) != GKE_METADATA:
            updates.append((f"move node pool {node_pool['name']} to GKE_METADATA", f"/nodePools/{node_pool['name']}",
                            {"workloadMetadataConfig": {"mode": GKE_METADATA}}))
    return updates


def operation_in_progress(exc):
    """GKE refuses a change while another operation runs on the cluster (400 FAILED_PRECONDITION)."""
    return getattr(exc, "status", None) in (400, 409) and "operation" in (getattr(exc, "message", "") or "").lower() \
        and getattr(exc, "reason", None) in ("FAILED_PRECONDITION", "ABORTED")


class Runner:
    """Starts GKE operations and waits for them, one at a time."""

    def __init__(self, module, gcp, location_path, timeout):
        self.module, self.gcp, self.location_path, self.timeout = module, gcp, location_path, timeout
        self.operations = []

    def run(self, method, path, resource, body=None, wait=True):
        operation = self.gcp.request(method, "container", path, resource, json_body=body, retry_on=operation_in_progress)
        self.operations.append(operation["name"])
        if wait:
            try:
                self.gcp.wait_gke_operation(operation, self.location_path, self.timeout)
            except TimeoutError as exc:
                self.module.fail_json(msg=f"{resource}: {exc}. The operation goes on in GKE; run again to continue.",
                                      operations=self.operations)
        return operation


def main():
    module = AnsibleModule(
        argument_spec=dict(
            GCP_AUTH_ARGSPEC,
            name={"type": "str", "required": True},
            location={"type": "str", "required": True},
            node_pool={"type": "str", "default": "default-pool"},
            machine_type={"type": "str", "default": "n1-standard-8"},
            node_count={"type": "int", "default": 5},
            disk_size_gb={"type": "int", "default": 100},
            disk_type={"type": "str", "default": "pd-ssd"},
            release_channel={"type": "str", "choices": ["RAPID", "REGULAR", "STABLE", "EXTENDED"]},
            wait={"type": "bool", "default": True},
            wait_timeout={"type": "str", "default": "30m"},
            state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        ),
        mutually_exclusive=GCP_AUTH_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    params = module.params
    try:
        timeout = parse_duration(params["wait_timeout"])
    except ValueError as exc:
        module.fail_json(msg=f"wait_timeout: {exc}")
    error = first_error(
        gke_name_error(params["name"]),
        location_error(params["location"]),
        gke_name_error(params["node_pool"]) and f"node_pool: {gke_name_error(params['node_pool'])}",
        "node_count: must be at least 1" if params["node_count"] < 1 else None,
        "disk_size_gb: must be at least 10" if params["disk_size_gb"] < 10 else None,
    )
    if error:
        module.fail_json(msg=error)
    gcp = GcpSession(module)
    project = gcp.require_project()
    location_path = f"projects/{project}/locations/{params['location']}"
    name = f"{location_path}/clusters/{params['name']}"
    path = f"/v1/{name}"
    resource = f"GKE cluster {name}"
    pool = f"{project}.svc.id.goog"
    runner = Runner(module, gcp, location_path, timeout)
    result = {"changed": False, "gke": name, "workload_pool": pool, "status": "", "operations": runner.operations}

    try:
        cluster = gcp.get("container", path, resource)
        before = after = summary(cluster)
        if params["state"] == "absent":
            after = {}
            if cluster and cluster.get("status") != "STOPPING":
                result["changed"] = True
                if not module.check_mode:
                    runner.run("DELETE", path, resource, wait=params["wait"])
            cluster = None
        elif cluster is None:
            body = create_body(params, pool)
            after = summary(body["cluster"])
            result["changed"] = True
            if not module.check_mode:
                cluster = create(runner, gcp, location_path, path, resource, body, params["wait"])
        else:
            differences = immutable_differences(params, cluster)
            if differences:
                module.fail_json(msg=(f"{resource} differs in fields that cannot change in place: " + "; ".join(differences)
                                      + ". Change the options to match, or recreate the cluster."),
                                 differences=differences)
            updates = plan_updates(params, cluster, pool)
            if updates:
                result["changed"] = True
                result["updates"] = [what for what, _suffix, _body in updates]
                after = expected_after(before, params, pool)
                if not module.check_mode:
                    for index, (what, suffix, body) in enumerate(updates):
                        last = index == len(updates) - 1
                        runner.run("PUT", path + suffix, f"{resource}: {what}", body, wait=params["wait"] or not last)
                    cluster = gcp.get("container", path, resource) or cluster
    except ApiError as err:
        fail_on_api_error(module, err, operations=runner.operations)

    if cluster:
        result["status"] = cluster.get("status", "")
        result["workload_pool"] = (cluster.get("workloadIdentityConfig") or {}).get("workloadPool") or pool
        if cluster.get("endpoint"):
            result["endpoint"] = cluster["endpoint"]
            result["ca_certificate"] = (cluster.get("masterAuth") or {}).get("clusterCaCertificate")
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)


def expected_after(before, params, pool):
    return {
        "workload_pool": pool,
        "release_channel": params["release_channel"] or before["release_channel"],
        "node_pools": {name: GKE_METADATA for name in before["node_pools"]},
    }


def create(runner, gcp, location_path, path, resource, body, wait):
    try:
        runner.run("POST", f"/v1/{location_path}/clusters", resource, body, wait=wait)
    except ApiError as err:
        if err.status != 409:  # 409: created concurrently; what exists is read below
            raise
    return gcp.get("container", path, resource)


if __name__ == "__main__":
    main()
