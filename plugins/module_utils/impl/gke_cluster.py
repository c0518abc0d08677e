# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Implementation of module prow.build_cluster.gke_cluster; plugins/modules/gke_cluster.py holds its documentation.

``module_kwargs()`` gives the AnsibleModule arguments; ``run(module)`` does the work and ends
with ``exit_json`` or ``fail_json``.
"""

from __future__ import annotations

from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError, fail_on_api_error
from ansible_collections.prow.build_cluster.plugins.module_utils._values import parse_duration
from ansible_collections.prow.build_cluster.plugins.module_utils._gcp_session import GCP_AUTH_ARGSPEC, GCP_AUTH_MUTUALLY_EXCLUSIVE, GcpSession
from ansible_collections.prow.build_cluster.plugins.module_utils._gke import gke_cluster_busy, pending_operations, wait_operation
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import at_least_error, first_error, gke_name_error, location_error

GKE_METADATA = "GKE_METADATA"
# What GKE accepts for a node pool (the pre-flight checks the same).
MIN_NODE_COUNT = 1
MIN_DISK_SIZE_GB = 10


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


class Runner:
    """Starts GKE operations and waits for them, one at a time."""

    def __init__(self, module, gcp, location_path, timeout):
        self.module, self.gcp, self.location_path, self.timeout = module, gcp, location_path, timeout
        self.operations = []

    def run(self, method, path, resource, body=None, wait=True):
        operation = self.gcp.request(method, "container", path, resource, json_body=body, retry_on=gke_cluster_busy)
        self.operations.append(operation["name"])
        if wait:
            try:
                wait_operation(self.gcp, operation, self.location_path, self.timeout)
            except TimeoutError as exc:
                self.module.fail_json(msg=f"{resource}: {exc}. The operation goes on in GKE; run again to continue.",
                                      operations=self.operations)
        return operation

    def wait_pending(self, cluster_name, resource):
        """Wait for the operations someone (an earlier, interrupted run) started on the cluster."""
        for operation in pending_operations(self.gcp, self.location_path, cluster_name):
            self.operations.append(operation["name"])
            try:
                wait_operation(self.gcp, operation, self.location_path, self.timeout)
            except TimeoutError as exc:
                self.module.fail_json(msg=f"{resource}: {exc}. The operation goes on in GKE; run again to continue.",
                                      operations=self.operations)


# A cluster in these states has an operation running: its create, an upgrade, a repair.
BUSY_STATUSES = ("PROVISIONING", "RECONCILING")


def module_kwargs():
    """The keyword arguments of this module's AnsibleModule."""
    return {
        "argument_spec": dict(
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
        "mutually_exclusive": GCP_AUTH_MUTUALLY_EXCLUSIVE,
        "supports_check_mode": True,
    }


def run(module):
    """The module's work; ends with module.exit_json or module.fail_json."""
    params = module.params
    try:
        timeout = parse_duration(params["wait_timeout"])
    except ValueError as exc:
        module.fail_json(msg=f"wait_timeout: {exc}")
    error = first_error(
        gke_name_error(params["name"]),
        location_error(params["location"]),
        gke_name_error(params["node_pool"]) and f"node_pool: {gke_name_error(params['node_pool'])}",
        at_least_error(params["node_count"], MIN_NODE_COUNT, "node_count"),
        at_least_error(params["disk_size_gb"], MIN_DISK_SIZE_GB, "disk_size_gb"),
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
            if cluster.get("status") in BUSY_STATUSES and params["wait"] and not module.check_mode:
                # An earlier run started this (and was killed, or lost the answer): finish waiting for
                # it rather than report a cluster that is not ready, or queue updates behind it.
                runner.wait_pending(params["name"], resource)
                cluster = gcp.get("container", path, resource) or cluster
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
        # 409: created concurrently, or by our own attempt whose answer was lost (a 5xx after GKE
        # started the create, then retried): wait for that create as for ours.
        if err.status != 409:
            raise
        if wait:
            runner.wait_pending(body["cluster"]["name"], resource)
    return gcp.get("container", path, resource)
