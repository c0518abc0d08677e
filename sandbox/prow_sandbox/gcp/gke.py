"""GKE (container.googleapis.com v1): clusters, node pools and operations.

Every created cluster is a real sandbox kube-apiserver (:func:`prow_sandbox.kube.start_cluster`)
started in a background thread while the create operation runs, so polling loops really
wait. Its ``endpoint`` (host:port, no scheme, as GKE returns it) and
``masterAuth.clusterCaCertificate``, given once the create is done (a cluster still PROVISIONING
has none), work with the kubernetes client, and it accepts Google
access tokens issued by this fake: the apiserver asks :func:`token_review` (a TokenReview
webhook) who owns a token, and, for every request RBAC does not allow,
:func:`subject_access_review` (an authorization webhook, as GKE asks IAM), which answers from
the principal's IAM roles on the cluster's project at request time.

Operations go PENDING -> RUNNING -> DONE over successive polls of ``operations.get`` (DONE
only once the work, e.g. the apiserver start, has finished); a client that never polls sees
them finish a second after the work did. ``Config.gke_operation_latency`` makes operations of
the given types last at least that long, as on GKE (a create takes minutes): the work starts at
once (the apiserver start overlaps the wait) and the operation is DONE at
max(latency, work finished). A cluster runs one operation at a time: another
mutating call meanwhile is 400 FAILED_PRECONDITION, as on GKE, worded in one of GKE's two
ways: "Operation X is currently ..." while a caller's operation runs, and "Cluster is
currently being created, deleted, updated or repaired and cannot be updated." while GKE
itself works on the cluster (auto-repair, auto-upgrade: ``Config.gke_maintenance_rejects``
makes the next mutating calls meet that).

Cluster updates apply one field per call, as GKE's ClusterUpdate requires:
``desiredWorkloadIdentityConfig`` or ``desiredReleaseChannel``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ApiError, already_exists, error_info, failed_precondition, invalid, not_found
from .state import Principal, Project, now_rfc3339
from .web import Ctx, Route

if TYPE_CHECKING:
    from prow_sandbox.kube import Cluster as KubeCluster

    from .server import FakeGCP

NAME_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,38}[a-z0-9])?$")
WORKLOAD_METADATA_MODES = {0: "MODE_UNSPECIFIED", 1: "GCE_METADATA", 2: "GKE_METADATA"}
RELEASE_CHANNELS = {0: "UNSPECIFIED", 1: "RAPID", 2: "REGULAR", 3: "STABLE", 4: "EXTENDED"}
CLUSTER_BUSY = ("Cluster is currently being created, deleted, updated or repaired and cannot "
                "be updated.")
UPDATE_FIELDS = ("desiredWorkloadIdentityConfig", "desiredReleaseChannel")
# A client that never polls still sees an operation finish this long after its work did.
SETTLE_SECONDS = 1.0
ACTIVITY = {
    "CREATE_CLUSTER": "creating cluster",
    "DELETE_CLUSTER": "deleting cluster",
    "UPDATE_CLUSTER": "updating cluster",
    "UPGRADE_NODES": "upgrading node pool in cluster",
    "CREATE_NODE_POOL": "creating node pool in cluster",
    "DELETE_NODE_POOL": "deleting node pool in cluster",
}
# What GKE's IAM integration grants inside a cluster (its authorization webhook, asked after
# RBAC): the roles a Google identity holds on the cluster's project. clusterViewer and
# clusterAdmin manage or see the cluster through the GKE API only: no Kubernetes rights.
K8S_ADMIN_ROLES = frozenset({"roles/owner", "roles/container.admin"})
K8S_DEVELOPER_ROLES = frozenset({"roles/editor", "roles/container.developer"})
K8S_VIEWER_ROLES = frozenset({"roles/viewer", "roles/container.viewer"})
READ_VERBS = frozenset({"get", "list", "watch"})
# Verbs that change who may do what; only admins get them from IAM.
PRIVILEGE_VERBS = frozenset({"bind", "escalate", "impersonate", "approve", "sign"})
RBAC_GROUP = "rbac.authorization.k8s.io"


def _kube_version() -> str:
    from prow_sandbox import build  # imported lazily: only GKE needs the launcher's version
    return build.kube_version().lstrip("v") + "-gke.100"


@dataclass
class NodePool:
    name: str
    config: dict[str, Any]
    initial_node_count: int
    management: dict[str, Any]
    status: str = "PROVISIONING"


@dataclass
class GkeCluster:
    project: Project
    location: str
    name: str
    spec: dict[str, Any]
    node_pools: dict[str, NodePool]
    workload_pool: str | None
    release_channel: str = "REGULAR"  # GKE's default for new clusters
    uid: str = field(default_factory=lambda: secrets.token_hex(16))
    status: str = "PROVISIONING"
    status_message: str = ""
    created: str = field(default_factory=now_rfc3339)
    kube: KubeCluster | None = None
    # The apiserver's service-account token issuer and keys, for STS to verify KSA tokens.
    issuer: str | None = None
    jwks: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.project.project_id, self.location, self.name)

    @property
    def path(self) -> str:
        return f"projects/{self.project.project_id}/locations/{self.location}/clusters/{self.name}"

    @property
    def kube_name(self) -> str:
        # Unique per (project, location, name) and a DNS label of at most 40 characters.
        digest = hashlib.sha1("/".join(self.key).encode()).hexdigest()[:6]
        return f"gke-{digest}-{self.name}"[:40].rstrip("-")


@dataclass
class Operation:
    name: str
    op_type: str
    cluster: GkeCluster
    target: str  # targetLink path below the location
    on_done: Callable[[], None]
    on_fail: Callable[[str], None]
    fail_message: str | None = None
    status: str = "PENDING"
    running_polls: int = 0
    work_done_at: float | None = None
    # Simulated GKE latency: not DONE before this (monotonic) time, however fast the work was.
    not_before: float = field(default_factory=time.monotonic)
    error: dict[str, Any] | None = None
    start: str = field(default_factory=now_rfc3339)
    end: str | None = None

    def work_done(self, failure: str | None = None) -> None:
        if failure and not self.fail_message:
            self.fail_message = failure
        self.work_done_at = time.monotonic()

    def observe(self, running_polls_needed: int, *, poll: bool) -> None:
        """Advance the operation as a poll (or any other look at the cluster) sees it."""
        if self.status == "DONE":
            return
        if poll and self.status == "PENDING":
            self.status = "RUNNING"
            return
        if poll:
            self.running_polls += 1
        now = time.monotonic()
        if self.work_done_at is None or now < self.not_before:
            return
        settled = now - max(self.work_done_at, self.not_before) > SETTLE_SECONDS
        if self.running_polls >= max(1, running_polls_needed) or settled:
            self.status = "DONE"
            self.end = now_rfc3339()
            if self.fail_message:
                self.error = {"code": 13, "message": self.fail_message}
                self.on_fail(self.fail_message)
            else:
                self.on_done()


# ---------------------------------------------------------------- JSON


def node_pool_json(ctx: Ctx, c: GkeCluster, np: NodePool) -> dict[str, Any]:
    version = _kube_version()
    return {
        "name": np.name,
        "config": np.config,
        "initialNodeCount": np.initial_node_count,
        "management": np.management,
        "status": np.status,
        "selfLink": f"{ctx.base_url()}/v1/{c.path}/nodePools/{np.name}",
        "version": version,
        "locations": [c.location],
        "podIpv4CidrSize": 24,
        "upgradeSettings": {"maxSurge": 1, "strategy": "SURGE"},
        "etag": hashlib.sha1(repr(np).encode()).hexdigest()[:16],
    }


def cluster_json(ctx: Ctx, c: GkeCluster) -> dict[str, Any]:
    version = _kube_version()
    pools = [node_pool_json(ctx, c, np) for np in c.node_pools.values()]
    body: dict[str, Any] = {
        "name": c.name,
        "id": c.uid,
        "nodePools": pools,
        "network": "default",
        "subnetwork": "default",
        "clusterIpv4Cidr": "10.4.0.0/14",
        "servicesIpv4Cidr": "10.8.0.0/20",
        "selfLink": f"{ctx.base_url()}/v1/{c.path}",
        "zone": c.location,
        "location": c.location,
        "locations": [c.location],
        "createTime": c.created,
        "status": c.status,
        "initialClusterVersion": version,
        "currentMasterVersion": version,
        "currentNodeVersion": version,
        "currentNodeCount": sum(np.initial_node_count for np in c.node_pools.values()),
        "masterAuth": {},
        "releaseChannel": {"channel": c.release_channel} if c.release_channel != "UNSPECIFIED" else {},
        "etag": hashlib.sha1(f"{c.uid}{c.status}{c.workload_pool}".encode()).hexdigest()[:16],
    }
    if pools:
        body["nodeConfig"] = pools[0]["config"]
    if c.status_message:
        body["statusMessage"] = c.status_message
    if c.workload_pool:
        body["workloadIdentityConfig"] = {"workloadPool": c.workload_pool}
    # No endpoint before the create is done (the apiserver may already be up meanwhile): a cluster still
    # PROVISIONING cannot be reached yet, which a client of an interrupted create must wait out.
    if c.kube is not None and c.status != "PROVISIONING":
        body["endpoint"] = c.kube.server.removeprefix("https://")
        body["masterAuth"] = {"clusterCaCertificate": c.kube.ca_data}
    for key in ("description", "resourceLabels"):
        if key in c.spec:
            body[key] = c.spec[key]
    return body


def operation_json(ctx: Ctx, op: Operation) -> dict[str, Any]:
    c = op.cluster
    base = f"{ctx.base_url()}/v1/projects/{c.project.number}/locations/{c.location}"
    body: dict[str, Any] = {
        "name": op.name,
        "zone": c.location,
        "location": c.location,
        "operationType": op.op_type,
        "status": op.status,
        "selfLink": f"{base}/operations/{op.name}",
        "targetLink": f"{base}/{op.target}",
        "startTime": op.start,
    }
    if op.end:
        body["endTime"] = op.end
    if op.error:
        body["error"] = op.error
        body["statusMessage"] = op.error["message"]
    return body


# ---------------------------------------------------------------- lookups


def _denied(permission: str, resource: str) -> ApiError:
    return ApiError(403, f'Required "{permission}" permission(s) for "{resource}".',
                    "PERMISSION_DENIED", details=[error_info(
                        "IAM_PERMISSION_DENIED", permission=permission, resource=resource)])


def _project(ctx: Ctx, ref: str, permission: str) -> Project:
    project = ctx.state.project(ref)
    if project is None or not ctx.state.allowed(ctx.caller, permission, project.policy):
        raise _denied(permission, f"projects/{ref}")
    return project


def _cluster(ctx: Ctx, project: str, location: str, cluster: str, permission: str) -> GkeCluster:
    proj = _project(ctx, project, permission)
    c = ctx.state.clusters.get((proj.project_id, location, cluster))
    if c is not None:
        _settle(ctx, c)
        c = ctx.state.clusters.get((proj.project_id, location, cluster))  # a delete may finish
    if c is None:
        raise not_found(f"Not found: projects/{project}/locations/{location}/clusters/{cluster}.")
    return c


def _settle(ctx: Ctx, c: GkeCluster) -> None:
    for op in list(ctx.state.operations.values()):
        if op.cluster is c:
            op.observe(ctx.state.config.gke_running_polls, poll=False)


def _ensure_idle(ctx: Ctx, c: GkeCluster) -> None:
    config = ctx.state.config
    if config.gke_maintenance_rejects > 0:
        # GKE is repairing or upgrading the cluster on its own: no operation to name.
        config.gke_maintenance_rejects -= 1
        raise failed_precondition(CLUSTER_BUSY)
    for op in ctx.state.operations.values():
        if op.cluster is c and op.status != "DONE":
            raise failed_precondition(
                f"Operation {op.name} is currently {ACTIVITY[op.op_type]} {c.name}. "
                "Please wait and try again once it is done.")


def _new_operation(ctx: Ctx, c: GkeCluster, op_type: str, target: str,
                   on_done: Callable[[], None],
                   on_fail: Callable[[str], None] | None = None) -> Operation:
    config = ctx.state.config
    fail = None
    if config.gke_fail_next_operations > 0:
        config.gke_fail_next_operations -= 1
        fail = "Injected failure (sandbox fault): the operation failed."
    name = f"operation-{time.time_ns() // 1_000_000}-{secrets.token_hex(4)}"
    op = Operation(name, op_type, c, target, on_done, on_fail or (lambda _msg: None), fail)
    # Taken when the call is made: changing the switch later does not shorten a running op.
    op.not_before += config.gke_operation_latency.get(op_type, 0.0)
    ctx.state.operations[name] = op
    return op


def _mode(value: Any) -> str:
    """Enum fields arrive as numbers from GAPIC REST clients (enum-encoding=int)."""
    if isinstance(value, int):
        return WORKLOAD_METADATA_MODES.get(value, str(value))
    return str(value)


def _channel(value: Any) -> str:
    """A release channel from {"channel": NAME or enum number}; 400 for anything else."""
    raw = (value or {}).get("channel", 0) if isinstance(value, dict) else value
    channel = RELEASE_CHANNELS.get(raw, str(raw)) if isinstance(raw, int) else str(raw)
    if channel not in RELEASE_CHANNELS.values():
        raise invalid(f"Invalid value at 'release_channel.channel' ({raw}): must be one of "
                      f"{', '.join(RELEASE_CHANNELS.values())}.")
    return channel


def _pool_from_spec(spec: dict[str, Any], workload_pool: str | None) -> NodePool:
    name = spec.get("name", "")
    if not NAME_RE.match(name):
        raise invalid(f"Invalid value for field 'node_pool.name': '{name}'. Must be a match of "
                      "regex '(?:[a-z](?:[-a-z0-9]{0,38}[a-z0-9])?)'")
    config = {"machineType": "e2-medium", "diskSizeGb": 100, "diskType": "pd-balanced",
              "imageType": "COS_CONTAINERD", "serviceAccount": "default",
              **(spec.get("config") or {})}
    wmc = dict(config.get("workloadMetadataConfig") or {})
    if "mode" in wmc:
        wmc["mode"] = _mode(wmc["mode"])
    elif workload_pool:
        wmc["mode"] = "GKE_METADATA"  # GKE's default for pools of a WI-enabled cluster
    if wmc.get("mode") == "GKE_METADATA" and not workload_pool:
        raise invalid("Workload Identity must be enabled on the cluster to use the "
                      "GKE_METADATA workload metadata mode.")
    if wmc:
        config["workloadMetadataConfig"] = wmc
    management = {"autoUpgrade": True, "autoRepair": True, **(spec.get("management") or {})}
    return NodePool(name, config, int(spec.get("initialNodeCount") or 3), management)


def _check_workload_pool(project: Project, config: dict[str, Any] | None) -> str | None:
    pool = (config or {}).get("workloadPool") or None
    if pool is not None and pool != f"{project.project_id}.svc.id.goog":
        raise invalid(f"Invalid value for field 'workload_identity_config.workload_pool': "
                      f"'{pool}'. The workload pool must be '{project.project_id}.svc.id.goog'.")
    return pool


# ---------------------------------------------------------------- clusters


def create_cluster(ctx: Ctx, project: str, location: str) -> dict[str, Any]:
    proj = _project(ctx, project, "container.clusters.create")
    spec = dict(ctx.body().get("cluster") or {})
    name = spec.get("name", "")
    if not NAME_RE.match(name):
        raise invalid(f"Invalid value for field 'cluster.name': '{name}'. Must be a match of "
                      "regex '(?:[a-z](?:[-a-z0-9]{0,38}[a-z0-9])?)'")
    if (proj.project_id, location, name) in ctx.state.clusters:
        raise already_exists(f"Already exists: projects/{proj.project_id}/locations/{location}/clusters/{name}.")
    workload_pool = _check_workload_pool(proj, spec.get("workloadIdentityConfig"))
    pool_specs = spec.pop("nodePools", None) or []
    if pool_specs and spec.get("initialNodeCount"):
        raise invalid("Cluster.initial_node_count cannot be specified together with node_pools.")
    if not pool_specs:
        pool_specs = [{"name": "default-pool", "initialNodeCount": spec.get("initialNodeCount") or 3,
                       "config": spec.get("nodeConfig") or {}}]
    pools = [_pool_from_spec(p, workload_pool) for p in pool_specs]
    if len({p.name for p in pools}) != len(pools):
        raise invalid("Node pool names must be unique.")
    c = GkeCluster(proj, location, name, spec, {p.name: p for p in pools}, workload_pool)
    if spec.get("releaseChannel"):
        c.release_channel = _channel(spec["releaseChannel"])
    ctx.state.clusters[c.key] = c

    def done() -> None:
        c.status = "RUNNING"
        for np in c.node_pools.values():
            np.status = "RUNNING"
        if c.workload_pool:
            # The project's identity pool comes into being with its first WI cluster.
            ctx.state.identity_pools.add(c.workload_pool)

    def failed(message: str) -> None:
        c.status = "ERROR"
        c.status_message = message
        for np in c.node_pools.values():
            np.status = "ERROR"

    op = _new_operation(ctx, c, "CREATE_CLUSTER", f"clusters/{name}", done, failed)
    if op.fail_message:
        op.work_done()
    else:
        fake = ctx.fake
        threading.Thread(target=_provision, args=(fake, c, op), name=f"gke-create-{name}",
                         daemon=True).start()
    return operation_json(ctx, op)


def _provision(fake: FakeGCP, c: GkeCluster, op: Operation) -> None:
    """Background work of a cluster create: start the apiserver, learn its token keys."""
    failure = None
    try:
        kube = fake.start_kube(c.kube_name, f"{fake.base_url}/_gke/tokenreview/{c.uid}",
                               f"{fake.base_url}/_gke/authorize/{c.uid}")
        issuer, jwks = _oidc(kube)
    except Exception as exc:  # noqa: BLE001 - any failure becomes the operation's error
        failure = f"Failed to start the cluster's kube-apiserver: {exc}"
    with fake.state.lock:
        if failure is None:
            c.kube, c.issuer, c.jwks = kube, issuer, jwks
        op.work_done(failure)


def _api_client(kube: KubeCluster):  # type: ignore[no-untyped-def]
    from kubernetes import config as kube_config  # heavy import, GKE only
    return kube_config.new_client_from_config(config_file=str(kube.kubeconfig))


def _oidc(kube: KubeCluster) -> tuple[str, dict[str, Any]]:
    """The apiserver's service-account issuer and signing keys, read the way an OIDC
    relying party (like Google's STS) reads them: discovery document, then JWKS."""
    with _api_client(kube) as api:
        discovery = api.call_api("/.well-known/openid-configuration", "GET",
                                 auth_settings=["BearerToken"], response_type="object",
                                 _return_http_data_only=True)
        jwks = api.call_api("/openid/v1/jwks", "GET", auth_settings=["BearerToken"],
                            response_type="object", _return_http_data_only=True)
    return discovery["issuer"], jwks


def get_cluster(ctx: Ctx, project: str, location: str, cluster: str) -> dict[str, Any]:
    return cluster_json(ctx, _cluster(ctx, project, location, cluster, "container.clusters.get"))


def list_clusters(ctx: Ctx, project: str, location: str) -> dict[str, Any]:
    proj = _project(ctx, project, "container.clusters.list")
    found = []
    for c in list(ctx.state.clusters.values()):
        if c.project is proj and location in ("-", c.location):
            _settle(ctx, c)
            if c.key in ctx.state.clusters:
                found.append(cluster_json(ctx, c))
    return {"clusters": found} if found else {}


def delete_cluster(ctx: Ctx, project: str, location: str, cluster: str) -> dict[str, Any]:
    c = _cluster(ctx, project, location, cluster, "container.clusters.delete")
    _ensure_idle(ctx, c)
    c.status = "STOPPING"

    def done() -> None:
        ctx.state.clusters.pop(c.key, None)

    op = _new_operation(ctx, c, "DELETE_CLUSTER", f"clusters/{c.name}", done)
    fake = ctx.fake

    def stop() -> None:
        failure = None
        try:
            if c.kube is not None:
                fake.stop_kube(c.kube_name)
        except Exception as exc:  # noqa: BLE001
            failure = f"Failed to stop the cluster's kube-apiserver: {exc}"
        with fake.state.lock:
            op.work_done(failure)

    threading.Thread(target=stop, name=f"gke-delete-{c.name}", daemon=True).start()
    return operation_json(ctx, op)


def update_cluster(ctx: Ctx, project: str, location: str, cluster: str) -> dict[str, Any]:
    c = _cluster(ctx, project, location, cluster, "container.clusters.update")
    update = {k: v for k, v in (ctx.body().get("update") or {}).items() if v not in (None, {})}
    if not update:
        raise invalid("Must specify a field to update.")
    if len(update) > 1:
        raise invalid("Exactly one update can be applied to a cluster with each request; "
                      f"got {', '.join(sorted(update))}.")
    (field_name, value), = update.items()
    if field_name not in UPDATE_FIELDS:
        raise invalid(f"Cluster update {field_name} is not implemented by the sandbox fake; "
                      f"it supports {', '.join(UPDATE_FIELDS)}.")
    if field_name == "desiredWorkloadIdentityConfig":
        pool = _check_workload_pool(c.project, value)
        channel = c.release_channel
    else:
        pool, channel = c.workload_pool, _channel(value)
    _ensure_idle(ctx, c)
    c.status = "RECONCILING"

    def done() -> None:
        c.status = "RUNNING"
        c.workload_pool = pool
        c.release_channel = channel
        if pool:
            ctx.state.identity_pools.add(pool)

    def failed(_message: str) -> None:
        c.status = "RUNNING"

    op = _new_operation(ctx, c, "UPDATE_CLUSTER", f"clusters/{c.name}", done, failed)
    op.work_done()
    return operation_json(ctx, op)


# ---------------------------------------------------------------- node pools


def _pool(c: GkeCluster, name: str) -> NodePool:
    np = c.node_pools.get(name)
    if np is None:
        raise not_found(f"Not found: {c.path}/nodePools/{name}.")
    return np


def list_pools(ctx: Ctx, project: str, location: str, cluster: str) -> dict[str, Any]:
    c = _cluster(ctx, project, location, cluster, "container.clusters.get")
    pools = [node_pool_json(ctx, c, np) for np in c.node_pools.values()]
    return {"nodePools": pools} if pools else {}


def get_pool(ctx: Ctx, project: str, location: str, cluster: str, pool: str) -> dict[str, Any]:
    c = _cluster(ctx, project, location, cluster, "container.clusters.get")
    return node_pool_json(ctx, c, _pool(c, pool))


def create_pool(ctx: Ctx, project: str, location: str, cluster: str) -> dict[str, Any]:
    c = _cluster(ctx, project, location, cluster, "container.clusters.update")
    np = _pool_from_spec(dict(ctx.body().get("nodePool") or {}), c.workload_pool)
    if np.name in c.node_pools:
        raise already_exists(f"Already exists: {c.path}/nodePools/{np.name}.")
    _ensure_idle(ctx, c)
    c.node_pools[np.name] = np

    def done() -> None:
        np.status = "RUNNING"

    def failed(_message: str) -> None:
        np.status = "ERROR"

    op = _new_operation(ctx, c, "CREATE_NODE_POOL", f"clusters/{c.name}/nodePools/{np.name}",
                        done, failed)
    op.work_done()
    return operation_json(ctx, op)


def update_pool(ctx: Ctx, project: str, location: str, cluster: str, pool: str) -> dict[str, Any]:
    """The node pool update call; the fake implements workloadMetadataConfig changes."""
    c = _cluster(ctx, project, location, cluster, "container.clusters.update")
    np = _pool(c, pool)
    body = ctx.body()
    wmc = body.get("workloadMetadataConfig")
    if not wmc:
        raise invalid("The sandbox fake implements node pool updates of "
                      "workloadMetadataConfig only.")
    mode = _mode(wmc.get("mode", 0))
    if mode not in ("GCE_METADATA", "GKE_METADATA"):
        raise invalid(f"Invalid workload metadata mode: {mode}.")
    # The cluster's running operation (e.g. enabling Workload Identity) is checked first.
    _ensure_idle(ctx, c)
    if mode == "GKE_METADATA" and not c.workload_pool:
        raise invalid("Workload Identity must be enabled on the cluster to use the "
                      "GKE_METADATA workload metadata mode.")
    np.status = "RECONCILING"

    def done() -> None:
        np.status = "RUNNING"
        np.config["workloadMetadataConfig"] = {"mode": mode}

    def failed(_message: str) -> None:
        np.status = "RUNNING"

    op = _new_operation(ctx, c, "UPGRADE_NODES", f"clusters/{c.name}/nodePools/{np.name}",
                        done, failed)
    op.work_done()
    return operation_json(ctx, op)


def delete_pool(ctx: Ctx, project: str, location: str, cluster: str, pool: str) -> dict[str, Any]:
    c = _cluster(ctx, project, location, cluster, "container.clusters.update")
    np = _pool(c, pool)
    _ensure_idle(ctx, c)
    np.status = "STOPPING"

    def done() -> None:
        c.node_pools.pop(np.name, None)

    op = _new_operation(ctx, c, "DELETE_NODE_POOL", f"clusters/{c.name}/nodePools/{np.name}",
                        done)
    op.work_done()
    return operation_json(ctx, op)


# ---------------------------------------------------------------- operations


def get_operation(ctx: Ctx, project: str, location: str, operation: str) -> dict[str, Any]:
    proj = _project(ctx, project, "container.operations.get")
    op = ctx.state.operations.get(operation)
    if op is None or op.cluster.project is not proj or location not in ("-", op.cluster.location):
        raise not_found(f"Not found: operation {operation}.")
    op.observe(ctx.state.config.gke_running_polls, poll=True)
    return operation_json(ctx, op)


def list_operations(ctx: Ctx, project: str, location: str) -> dict[str, Any]:
    proj = _project(ctx, project, "container.operations.list")
    ops = [operation_json(ctx, op) for op in ctx.state.operations.values()
           if op.cluster.project is proj and location in ("-", op.cluster.location)]
    return {"operations": ops} if ops else {}


# ---------------------------------------------------------------- token and authorization webhooks


def _cluster_by_uid(fake: FakeGCP, cluster_uid: str) -> GkeCluster | None:
    return next((c for c in fake.state.clusters.values() if c.uid == cluster_uid), None)


def token_review(fake: FakeGCP, cluster_uid: str, review: dict[str, Any]) -> dict[str, Any]:
    """TokenReview webhook of a GKE cluster's apiserver: who owns this Google token?

    Any Google identity is authenticated as its email, with no groups (the apiserver adds
    system:authenticated): what it may do comes from RBAC and from IAM
    (:func:`subject_access_review`), as on GKE.
    """
    from . import auth  # avoids an import cycle at module load

    token = ((review.get("spec") or {}).get("token")) or ""
    status: dict[str, Any] = {"authenticated": False}
    with fake.state.lock:
        cluster = _cluster_by_uid(fake, cluster_uid)
        principal: Principal | None = None
        try:
            principal, _ = auth.authenticate(fake.state, f"Bearer {token}")
        except ApiError:
            status["error"] = "invalid or expired Google access token"
        if cluster is not None and principal is not None and not principal.federated:
            status = {"authenticated": True,
                      "user": {"username": principal.email, "uid": principal.email, "groups": []}}
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status}


def _google_principal(fake: FakeGCP, username: str) -> Principal | None:
    """The IAM principal a GKE username (an email) stands for, if Google knows it."""
    if username in fake.state.service_accounts:
        return Principal(f"serviceAccount:{username}")
    if username in fake.state.users:
        return Principal(f"user:{username}")
    return None


def iam_allows(roles: set[str], attributes: dict[str, Any], *, resource: bool) -> bool:
    """Whether IAM roles on the cluster's project allow one Kubernetes request.

    admin: everything; developer: reads, and writes of namespaced objects and namespaces,
    but not of RBAC objects nor the verbs that hand out rights; viewer: reads, except
    Secrets. Non-resource requests (/version, /healthz...): reads for any of the three.
    """
    if roles & K8S_ADMIN_ROLES:
        return True
    developer, viewer = bool(roles & K8S_DEVELOPER_ROLES), bool(roles & K8S_VIEWER_ROLES)
    verb = attributes.get("verb", "")
    if not resource:
        return (developer or viewer) and verb == "get"
    if verb in READ_VERBS:
        return developer or (viewer and attributes.get("resource") != "secrets")
    if not developer or verb in PRIVILEGE_VERBS or attributes.get("group") == RBAC_GROUP:
        return False
    return bool(attributes.get("namespace")) or attributes.get("resource") == "namespaces"


def subject_access_review(fake: FakeGCP, cluster_uid: str, review: dict[str, Any]) -> dict[str, Any]:
    """Authorization webhook of a GKE cluster's apiserver (SubjectAccessReview v1), asked for
    every request RBAC did not allow: the principal's IAM roles on the cluster's project,
    read now, so that a revoked role is refused once the apiserver's cache entry expires."""
    spec = review.get("spec") or {}
    username = spec.get("user") or ""
    attributes = spec.get("resourceAttributes")
    resource = attributes is not None
    attributes = attributes if resource else (spec.get("nonResourceAttributes") or {})
    allowed, reason = False, "no IAM role on the cluster's project grants this"
    with fake.state.lock:
        cluster = _cluster_by_uid(fake, cluster_uid)
        principal = _google_principal(fake, username) if cluster is not None else None
        if principal is None:
            reason = "not a Google identity of this cluster's IAM"
        else:
            roles = fake.state.project_roles(principal, cluster.project)
            if iam_allows(roles, attributes, resource=resource):
                allowed, reason = True, f"IAM roles on project {cluster.project.project_id}"
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "status": {"allowed": allowed, "reason": reason}}


_L = "/v1/projects/<project>/locations/<location>"
_C = _L + "/clusters/<cluster>"
_Z = "/v1/projects/<project>/zones/<location>"  # legacy zonal paths, reads only
ROUTES = [
    Route("container", _L + "/clusters", ("POST",), create_cluster),
    Route("container", _L + "/clusters", ("GET",), list_clusters),
    Route("container", _C, ("GET",), get_cluster),
    Route("container", _C, ("PUT",), update_cluster),
    Route("container", _C, ("DELETE",), delete_cluster),
    Route("container", _C + "/nodePools", ("GET",), list_pools),
    Route("container", _C + "/nodePools", ("POST",), create_pool),
    Route("container", _C + "/nodePools/<pool>", ("GET",), get_pool),
    Route("container", _C + "/nodePools/<pool>", ("PUT",), update_pool),
    Route("container", _C + "/nodePools/<pool>", ("DELETE",), delete_pool),
    Route("container", _L + "/operations/<operation>", ("GET",), get_operation),
    Route("container", _L + "/operations", ("GET",), list_operations),
    Route("container", _Z + "/clusters", ("GET",), list_clusters),
    Route("container", _Z + "/clusters/<cluster>", ("GET",), get_cluster),
    Route("container", _Z + "/operations/<operation>", ("GET",), get_operation),
]
