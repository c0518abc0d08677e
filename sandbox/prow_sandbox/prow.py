"""Real Prow in the sandbox: prow-controller-manager (plank) run against the sandbox's Prow cluster.

What runs is Prow's own binary (sigs.k8s.io/prow at the pin of sandbox/prow/go.mod, built by
:func:`prow_sandbox.build.ensure_prow_binaries`). What production's kubelet and secret syncer
do for it, one supervisor process (``python -m prow_sandbox.prow --state-dir DIR``) stands in
for, each part small (docs/sandbox.md, "Prow"):

* **the secret syncer** (External Secrets Operator): every ``external-secrets.io/v1``
  ExternalSecret in the Prow cluster is copied one way from the GCP fake's Secret Manager
  (``spec.data[].remoteRef``, version ``latest`` by default) into its target Secret, as the
  ExternalSecret's ClusterSecretStore (``gcpsm.projectID``) and the ESO service account's
  credentials allow; a failing entry leaves the Secret as it was (ESO keeps the last sync) and
  sets the ``Ready`` condition False. Secrets owned by a deleted ExternalSecret are deleted
  (the garbage collector's part; the sandbox has no controller-manager).
* **the kubelet**: the pod spec's Secret and ConfigMap volumes are materialised as files with
  the kubelet's AtomicWriter layout (``..<timestamp>/`` holding the data, ``..data`` a symlink
  to it swapped by rename, one ``key -> ..data/key`` symlink per key), an optional Secret that
  is missing is an empty directory; a projected service-account token and the cluster CA are
  put where in-cluster clients read them (``/var/run/secrets/kubernetes.io/serviceaccount``,
  bind-mounted in a private mount namespace of the container process only); the container is
  restarted whenever it exits (``restartPolicy: Always``, with back-off). Prow exits when a
  kubeconfig it loaded changes: that restart is how it picks up a new or rotated cluster.
* **storage.googleapis.com** (:mod:`prow_sandbox.gcs_proxy`): plank's build-cluster status file
  goes to the fake's GCS through an HTTPS proxy the Prow process is pointed at.
* **the config repository**: Prow's ``config.yaml`` is a base plus every
  ``<out>/<alias>/decoration-config.yaml`` the prow_config role wrote; a candidate is accepted
  into the ``config`` ConfigMap only when Prow's ``checkconfig`` passes it (a presubmit's job).

The container is Prow's own prow-controller-manager Deployment (the ``prow-deployments``
asset) with the kustomize Component onboarding writes to ``<out>/prow/`` (the contract of
docs/prow-integration.md: the Secret ``prow-build-clusters`` mounted at
``/etc/prow-build-clusters``, ``--kubeconfig-dir`` and ``--kubeconfig``), rolled out again when
that Component changes. Mount paths are mapped to directories under ``<state>/prow/pod/``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from . import assets, build, gcs_proxy, kube

log = logging.getLogger("prow_sandbox.prow")

BIN = Path(sys.executable).parent
PROW_NAMESPACE = "default"  # examples/sandbox-vars.yml prow.namespace: ProwJobs live here
POD_NAMESPACE = "test-pods"
SERVICE_ACCOUNT = "prow-controller-manager"
CONTAINER = "prow-controller-manager"
TICK = 1.0
ESO_INTERVAL = 2.0  # stands in for refreshInterval (1h in production): the tests wait on it
BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET = 1.0, 30.0, 60.0  # the kubelet's: 10 s, 5 min, 10 min
START_TIMEOUT = 240.0  # install (a 3.9 MB CRD) and the first start, on a loaded machine
# plank writes it every minute. A local path would be the obvious choice, but at this pin
# plank rebuilds the location through providers.StoragePath, which drops a file:// scheme
# (it becomes gs:///...): GCS is the one backend that works, as in production.
STATUS_BUCKET, STATUS_OBJECT = "prow-sandbox-results", "build-cluster-status.json"
STATUS_FILE = f"gs://{STATUS_BUCKET}/{STATUS_OBJECT}"
STOP_GRACE = 15.0
# A placeholder registry: no image is ever pulled (there is no kubelet), plank only writes
# these names into the pod spec.
UTILITY_IMAGES = {name: f"us-docker.pkg.dev/k8s-infra-prow/images/{name}:v20240619-cfb8754e0"
                  for name in ("clonerefs", "initupload", "entrypoint", "sidecar")}
# What every Prow instance already has before onboarding: decoration defaults whose GCS
# credentials come from a key-file Secret. An onboarded cluster's entry must override that.
BASE_DECORATION = {
    "utility_images": UTILITY_IMAGES,
    "gcs_configuration": {"bucket": "prow-sandbox-results", "path_strategy": "explicit"},
    "gcs_credentials_secret": "gcs-credentials",
}

RBAC_RULES = [
    {"apiGroups": ["prow.k8s.io"], "resources": ["prowjobs", "prowjobs/status"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["pods", "pods/log"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch", "update"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
]


# ---------------------------------------------------------------- paths and files

def prow_state(state_dir: Path | None) -> Path:
    return kube._state(state_dir) / "prow"  # pylint: disable=protected-access


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _digest(payload: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for key in sorted(payload):
        digest.update(key.encode() + b"\0" + payload[key] + b"\0")
    return digest.hexdigest()


def atomic_write_volume(target: Path, payload: dict[str, bytes], mode: int = 0o644) -> bool:
    """Make ``target`` hold ``payload`` (key -> bytes) the way the kubelet's AtomicWriter does;
    return True if anything changed.

    The data goes into a fresh ``..<timestamp>`` directory, a ``..data_tmp`` symlink to it is
    renamed over ``..data`` (one atomic step: a reader sees the old set or the new one), then
    the per-key symlinks ``key -> ..data/key`` are added or removed and the old directory is
    deleted. Prow's directory loader skips every name starting with ``..``.
    """
    target.mkdir(parents=True, exist_ok=True)
    data_link = target / "..data"
    current = os.readlink(data_link) if data_link.is_symlink() else None
    if current is not None and (target / current / ".digest").exists():
        if (target / current / ".digest").read_text(encoding="utf-8") == _digest(payload):
            return False
    stamp = datetime.now(timezone.utc).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    ts_dir = target / stamp
    ts_dir.mkdir()
    for key, value in payload.items():
        _write_atomic(ts_dir / key, value, mode)
    # Bookkeeping of this stand-in (the kubelet compares against the API object instead);
    # the name starts with a dot, and Prow skips dot-dot names only, but nothing links to it.
    (ts_dir / ".digest").write_text(_digest(payload), encoding="utf-8")
    tmp_link = target / "..data_tmp"
    tmp_link.unlink(missing_ok=True)
    os.symlink(stamp, tmp_link)
    os.replace(tmp_link, data_link)
    for entry in target.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.name not in payload:
            entry.unlink()
    for key in payload:
        link = target / key
        if not link.is_symlink():
            os.symlink(f"..data/{key}", link)
    if current is not None:
        shutil.rmtree(target / current, ignore_errors=True)
    return True


# ---------------------------------------------------------------- the pod spec

def deployment(out_dir: Path) -> dict:
    """Prow's prow-controller-manager Deployment as it is deployed: Prow's own manifests (the
    ``prow-deployments`` asset) with the kustomize Component onboarding wrote to
    ``<out>/prow/`` (when it has), built with ``kubectl kustomize`` as an operator builds it."""
    sources = assets.files("prow-deployments")
    component = out_dir / "prow"
    with tempfile.TemporaryDirectory() as tmp:
        for src in sources:
            shutil.copy(src, Path(tmp, src.name))
        kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                         "resources": [src.name for src in sources]}
        if (component / "kustomization.yaml").exists():
            kustomization["components"] = [os.path.relpath(component, tmp)]
        Path(tmp, "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
        built = subprocess.run([str(BIN / "kubectl"), "kustomize", "--load-restrictor=LoadRestrictionsNone", tmp],
                               capture_output=True, text=True, check=True).stdout
    for doc in yaml.safe_load_all(built):
        if doc and doc.get("kind") == "Deployment" and doc["metadata"]["name"] == CONTAINER:
            return doc
    raise RuntimeError(f"no Deployment {CONTAINER} in Prow's manifests")


def _component_digest(out_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted((out_dir / "prow").glob("*.yaml")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _local_mounts(pod: dict, pod_dir: Path) -> dict[str, Path]:
    """mountPath -> the local directory the sandbox materialises that volume in."""
    container = pod["containers"][0]
    return {m["mountPath"]: pod_dir / "volumes" / m["name"] for m in container.get("volumeMounts", [])}


def _localise(value: str, mounts: dict[str, Path]) -> str:
    # Longest mount path first, so /etc/config-x never matches /etc/config.
    for path in sorted(mounts, key=len, reverse=True):
        if path in value:
            return value.replace(path, str(mounts[path]))
    return value


# ---------------------------------------------------------------- the Prow cluster

class ProwCluster:
    """The Prow cluster through the admin kubeconfig (kubernetes client, TLS verified)."""

    def __init__(self, state: Path):
        from kubernetes import client, config  # pylint: disable=import-outside-toplevel

        cluster = kube.get_cluster("prow", state)
        if cluster is None:
            raise RuntimeError(f"the sandbox's prow cluster is not running in {state}")
        self.cluster = cluster
        self.api = config.new_client_from_config(str(cluster.kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.rbac = client.RbacAuthorizationV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.client = client

    def ensure(self, read, create) -> None:
        """``create()`` unless ``read()`` finds the object (create-only: never overwrites)."""
        try:
            read()
        except self.client.ApiException as exc:
            if exc.status != 404:
                raise
            create()

    def read_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except self.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    def read_configmap(self, namespace: str, name: str) -> dict[str, bytes] | None:
        try:
            cm = self.core.read_namespaced_config_map(name, namespace)
        except self.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return {k: v.encode() for k, v in (cm.data or {}).items()}

    def put_configmap(self, namespace: str, name: str, data: dict[str, str]) -> None:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
                "data": data}
        try:
            self.core.replace_namespaced_config_map(name, namespace, body)
        except self.client.ApiException as exc:
            if exc.status != 404:
                raise
            self.core.create_namespaced_config_map(namespace, body)


def install(state: Path) -> ProwCluster:
    """The ProwJob CRD (from the pinned module), the namespaces, Prow's service account and
    its RBAC, and the default cluster's kubeconfig Secret (the SA's token, context ``default``)."""
    crd = assets.path("prowjob-crd")
    prow = ProwCluster(state)
    subprocess.run([str(BIN / "kubectl"), "--kubeconfig", str(prow.cluster.kubeconfig), "apply",
                    "--server-side", "--force-conflicts", "--field-manager=prow-sandbox", "-f", str(crd)],
                   check=True, capture_output=True, text=True)
    _wait_established(prow, "prowjobs.prow.k8s.io")
    # test-pods of the default cluster (the Prow cluster itself), where jobs without
    # `cluster:` run.
    prow.ensure(lambda: prow.core.read_namespace(POD_NAMESPACE),
                lambda: prow.core.create_namespace({"metadata": {"name": POD_NAMESPACE}}))
    # The `default` ServiceAccount a controller-manager would create in a new namespace.
    prow.ensure(lambda: prow.core.read_namespaced_service_account("default", POD_NAMESPACE),
                lambda: prow.core.create_namespaced_service_account(POD_NAMESPACE, {"metadata": {"name": "default"}}))
    sa = {"metadata": {"name": SERVICE_ACCOUNT, "namespace": PROW_NAMESPACE}}
    prow.ensure(lambda: prow.core.read_namespaced_service_account(SERVICE_ACCOUNT, PROW_NAMESPACE),
                lambda: prow.core.create_namespaced_service_account(PROW_NAMESPACE, sa))
    role = {"metadata": {"name": "prow-sandbox-controller-manager"}, "rules": RBAC_RULES}
    binding = {"metadata": {"name": "prow-sandbox-controller-manager"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "prow-sandbox-controller-manager"},
               "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": PROW_NAMESPACE}]}
    prow.ensure(lambda: prow.rbac.read_cluster_role(role["metadata"]["name"]),
                lambda: prow.rbac.create_cluster_role(role))
    prow.ensure(lambda: prow.rbac.read_cluster_role_binding(binding["metadata"]["name"]),
                lambda: prow.rbac.create_cluster_role_binding(binding))
    return prow


def _wait_established(prow: ProwCluster, name: str, timeout: float = 60.0) -> None:
    ext = prow.client.ApiextensionsV1Api(prow.api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conditions = ext.read_custom_resource_definition(name).status.conditions or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return
        time.sleep(0.5)
    raise TimeoutError(f"CRD {name} not Established after {timeout:.0f} s")


def service_account_token(prow: ProwCluster) -> str:
    """A bound token for Prow's service account, as the kubelet projects one (24 h here; the
    kubelet uses 1 h and refreshes it, which a sandbox's lifetime never needs)."""
    request = {"spec": {"audiences": [], "expirationSeconds": 86400}}
    answer = prow.core.create_namespaced_service_account_token(SERVICE_ACCOUNT, PROW_NAMESPACE, request)
    return answer.status.token


def default_kubeconfig(prow: ProwCluster, token: str) -> str:
    cluster = prow.cluster
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "default",
        "clusters": [{"name": "default", "cluster": {"server": cluster.server,
                                                     "certificate-authority-data": cluster.ca_data}}],
        "users": [{"name": "default", "user": {"token": token}}],
        "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
    })


# ---------------------------------------------------------------- Prow's configuration

def decoration_entries(out_dir: Path) -> list[dict]:
    """The ``plank.default_decoration_config_entries`` of every generated decoration-config.yaml."""
    entries = []
    for path in sorted(out_dir.glob("*/decoration-config.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            for item in doc if isinstance(doc, list) else [doc]:
                entries += ((item or {}).get("plank") or {}).get("default_decoration_config_entries") or []
    return entries


def render_config(entries: list[dict], status_file: str) -> tuple[str, str]:
    """Prow's config.yaml (base + the generated entries) and a job config with one decorated
    periodic per cluster named in the entries, plus one for ``default``."""
    config = {
        "prowjob_namespace": PROW_NAMESPACE,
        "pod_namespace": POD_NAMESPACE,
        "plank": {
            "build_cluster_status_file": status_file,
            "default_decoration_config_entries": [{"config": BASE_DECORATION}, *entries],
        },
    }
    clusters = ["default"] + sorted({e["cluster"] for e in entries if e.get("cluster")})
    jobs = {"periodics": [{
        "name": job_name(cluster), "interval": "24h", "cluster": cluster, "decorate": True,
        "spec": {"containers": [{"image": "busybox:1.36", "command": ["echo", f"hello from {cluster}"]}]},
    } for cluster in clusters]}
    return yaml.safe_dump(config, sort_keys=False), yaml.safe_dump(jobs, sort_keys=False)


def job_name(cluster: str) -> str:
    return f"sandbox-echo-{cluster}"


def checkconfig(config_path: Path, job_config_path: Path | None = None) -> subprocess.CompletedProcess:
    """Prow's checkconfig on a config (and job config); returncode 0 when accepted."""
    cmd = [str(build.ensure_prow_binaries() / "checkconfig"), f"--config-path={config_path}"]
    if job_config_path is not None:
        cmd.append(f"--job-config-path={job_config_path}")
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)


# ---------------------------------------------------------------- the secret syncer (ESO)

class SecretSyncer:
    """ExternalSecret (external-secrets.io/v1) -> Secret, one way, from the GCP fake."""

    GROUP, VERSION = "external-secrets.io", "v1"

    def __init__(self, state: Path, prow: ProwCluster):
        self.state, self.prow = state, prow
        self._session = None

    def _gsm(self):
        if self._session is None:
            from google.auth.transport.requests import AuthorizedSession  # pylint: disable=import-outside-toplevel
            from google.oauth2 import service_account  # pylint: disable=import-outside-toplevel

            keys = sorted((self.state / "gcp" / "credentials").glob("external-secrets@*.json"))
            if not keys:
                return None, None
            creds = service_account.Credentials.from_service_account_file(
                str(keys[0]), scopes=["https://www.googleapis.com/auth/cloud-platform"])
            self._session = AuthorizedSession(creds)
        endpoints = json.loads((self.state / "endpoints.json").read_text(encoding="utf-8"))
        return self._session, endpoints["secretmanager"]

    def _list(self, plural: str) -> list[dict] | None:
        try:
            return self.prow.custom.list_cluster_custom_object(self.GROUP, self.VERSION, plural)["items"]
        except self.prow.client.ApiException as exc:
            if exc.status == 404:  # ESO's CRDs are not installed
                return None
            raise

    def sync(self) -> None:
        externals = self._list("externalsecrets")
        if externals is None:
            return
        stores = {("ClusterSecretStore", s["metadata"]["name"]): s for s in self._list("clustersecretstores") or []}
        for store in self._list("secretstores") or []:
            stores[("SecretStore", store["metadata"]["namespace"], store["metadata"]["name"])] = store
        live = {es["metadata"]["uid"] for es in externals}
        for es in externals:
            self._sync_one(es, stores)
        self._collect_orphans(live)

    def _sync_one(self, es: dict, stores: dict) -> None:
        meta, spec = es["metadata"], es["spec"]
        ref = spec.get("secretStoreRef") or {}
        kind = ref.get("kind", "SecretStore")
        key = (kind, ref.get("name")) if kind == "ClusterSecretStore" else (kind, meta["namespace"], ref.get("name"))
        store = stores.get(key)
        project = (((store or {}).get("spec") or {}).get("provider") or {}).get("gcpsm", {}).get("projectID")
        if not project:
            self._status(es, False, "SecretSyncedError", f"could not get store {ref}: no gcpsm provider")
            return
        session, base = self._gsm()
        if session is None:
            self._status(es, False, "SecretSyncedError", "no credentials for the ESO service account")
            return
        data: dict[str, str] = {}
        for entry in spec.get("data") or []:
            remote = entry["remoteRef"]
            version = remote.get("version") or "latest"
            url = f"{base}/v1/projects/{project}/secrets/{remote['key']}/versions/{version}:access"
            answer = session.get(url, timeout=30)
            if answer.status_code != 200:
                self._status(es, False, "SecretSyncedError",
                             f"error processing spec.data[{entry['secretKey']}] (key: {remote['key']}), "
                             f"err: {answer.status_code} {answer.text[:300]}")
                return  # ESO keeps the Secret of the last successful sync
            data[entry["secretKey"]] = answer.json()["payload"]["data"]
        target = (spec.get("target") or {}).get("name") or meta["name"]
        body = {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": target, "namespace": meta["namespace"],
                         "labels": {"reconcile.external-secrets.io/managed": "true"},
                         "ownerReferences": [{"apiVersion": f"{self.GROUP}/{self.VERSION}", "kind": "ExternalSecret",
                                              "name": meta["name"], "uid": meta["uid"], "controller": True,
                                              "blockOwnerDeletion": True}]},
            "data": data,
        }
        c = self.prow.client
        try:
            current = self.prow.core.read_namespaced_secret(target, meta["namespace"])
            if (current.data or {}) != data:
                self.prow.core.replace_namespaced_secret(target, meta["namespace"], body)
                log.info("ESO: updated Secret %s/%s (%s)", meta["namespace"], target, ", ".join(sorted(data)))
        except c.ApiException as exc:
            if exc.status != 404:
                raise
            self.prow.core.create_namespaced_secret(meta["namespace"], body)
            log.info("ESO: created Secret %s/%s (%s)", meta["namespace"], target, ", ".join(sorted(data)))
        self._status(es, True, "SecretSynced", "secret synced")

    def _status(self, es: dict, ok: bool, reason: str, message: str) -> None:
        conditions = (es.get("status") or {}).get("conditions") or []
        want = {"type": "Ready", "status": "True" if ok else "False", "reason": reason, "message": message}
        if any(all(c.get(k) == v for k, v in want.items()) for c in conditions):
            return
        if not ok:
            log.warning("ESO: %s/%s: %s", es["metadata"]["namespace"], es["metadata"]["name"], message)
        want["lastTransitionTime"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            self.prow.custom.patch_namespaced_custom_object_status(
                self.GROUP, self.VERSION, es["metadata"]["namespace"], "externalsecrets", es["metadata"]["name"],
                {"status": {"conditions": [want], "refreshTime": want["lastTransitionTime"]}})
        except self.prow.client.ApiException as exc:
            if exc.status != 404:
                raise

    def _collect_orphans(self, live: set[str]) -> None:
        secrets = self.prow.core.list_secret_for_all_namespaces(
            label_selector="reconcile.external-secrets.io/managed=true").items
        for secret in secrets:
            owners = [o for o in secret.metadata.owner_references or [] if o.kind == "ExternalSecret"]
            if owners and not any(o.uid in live for o in owners):
                log.info("GC: deleting Secret %s/%s (its ExternalSecret is gone)",
                         secret.metadata.namespace, secret.metadata.name)
                try:
                    self.prow.core.delete_namespaced_secret(secret.metadata.name, secret.metadata.namespace)
                except self.prow.client.ApiException as exc:
                    if exc.status != 404:
                        raise


# ---------------------------------------------------------------- the kubelet

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Kubelet:
    """Runs the one container of Prow's pod: volumes, in-cluster credentials, restarts."""

    def __init__(self, state: Path, prow: ProwCluster, pod: dict, extra_env: dict[str, str] | None = None):
        self.state, self.prow, self.pod = state, prow, pod
        self.extra_env = extra_env or {}
        self.dir = prow_state(state)
        self.pod_dir = self.dir / "pod"
        self.mounts = _local_mounts(pod, self.pod_dir)
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.backoff = BACKOFF_START
        self.next_start = 0.0
        self.started_at = 0.0
        self.last_exit: int | None = None
        self.ports = {"health": _free_port(), "metrics": _free_port(), "pprof": _free_port()}
        self.run_dir = self.pod_dir / "run"

    # volumes
    def sync_volumes(self) -> bool:
        """Materialise every volume; False while a required one is missing."""
        ready = True
        for vol in self.pod["volumes"]:
            target = self.pod_dir / "volumes" / vol["name"]
            if "projected" in vol:
                payload, missing = self._projected(vol["projected"]["sources"])
                # A Secret among the sources: written 0600 as a Secret volume is.
                mode = 0o600
                if missing:
                    ready = False
                    continue
            elif "secret" in vol:
                payload = self.prow.read_secret(PROW_NAMESPACE, vol["secret"]["secretName"])
                optional = vol["secret"].get("optional", False)
                # Not defaultMode (0644 in Prow's manifests): the project writes secrets 0600.
                mode = 0o600
            else:
                payload = self.prow.read_configmap(PROW_NAMESPACE, vol["configMap"]["name"])
                optional = vol["configMap"].get("optional", False)
                mode = 420
            if "projected" not in vol and payload is None and not optional:
                ready = False
                continue
            if atomic_write_volume(target, payload or {}, mode):
                log.info("kubelet: volume %s now has %s", vol["name"], ", ".join(sorted(payload or {})) or "no keys")
        return ready

    def _projected(self, sources: list[dict]) -> tuple[dict[str, bytes], bool]:
        """A projected volume's files (Secret and ConfigMap sources, later ones win on a
        shared key, as the kubelet merges them) and whether a required source is missing."""
        payload: dict[str, bytes] = {}
        missing = False
        for source in sources:
            kind = "secret" if "secret" in source else "configMap"
            ref = source[kind]
            read = self.prow.read_secret if kind == "secret" else self.prow.read_configmap
            data = read(PROW_NAMESPACE, ref["name"])
            missing = missing or (data is None and not ref.get("optional", False))
            payload.update(data or {})
        return payload, missing

    def write_service_account(self, token: str) -> None:
        sa = self.run_dir / "secrets" / "kubernetes.io" / "serviceaccount"
        atomic_write_volume(sa, {"token": token.encode(), "ca.crt": self.prow.cluster.ca_pem.encode(),
                                 "namespace": PROW_NAMESPACE.encode()}, 0o600)

    # the container
    def argv(self) -> list[str]:
        container = self.pod["containers"][0]
        binary = build.ensure_prow_binaries() / CONTAINER
        args = [_localise(a, self.mounts) for a in container.get("args", [])]
        # One network namespace for every sandbox process: ports must be free ones.
        args += [f"--health-port={self.ports['health']}", f"--metrics-port={self.ports['metrics']}",
                 f"--pprof-port={self.ports['pprof']}"]
        # The kubelet mounts the service-account token at the in-cluster path; only this
        # process's private mount namespace sees it (util-linux unshare, root or a user ns).
        script = 'mount --bind "$1" /var/run && shift && exec "$@"'
        unshare = ["unshare", "--mount", "--propagation", "private"]
        if os.geteuid() != 0:
            unshare[1:1] = ["--user", "--map-root-user"]
        return [*unshare, "sh", "-c", script, "sh", str(self.run_dir), str(binary), *args]

    def env(self) -> dict[str, str]:
        port = self.prow.cluster.server.rsplit(":", 1)[1]
        # The image's PATH has gke-gcloud-auth-plugin (keyless clusters' kubeconfigs run it):
        # here the sandbox's stand-in, a console script next to this Python.
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])
        env = {"PATH": path, "HOME": str(self.pod_dir),
               "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port, **self.extra_env}
        for var in self.pod["containers"][0].get("env", []):
            env[var["name"]] = _localise(var.get("value", ""), self.mounts)
        return env

    def tick(self) -> None:
        now = time.monotonic()
        if self.proc is not None:
            code = self.proc.poll()
            if code is None:
                if now - self.started_at > BACKOFF_RESET:
                    self.backoff = BACKOFF_START
                return
            self.last_exit, self.proc = code, None
            self.next_start = now + self.backoff
            log.info("kubelet: %s exited with %s; restart in %.0f s", CONTAINER, code, self.backoff)
            self.backoff = min(self.backoff * 2, BACKOFF_MAX)
            self.write_status("waiting")
            return
        if now < self.next_start or not self.sync_volumes():
            return
        if self.started_at:
            self.restarts += 1
        logfile = open(self.dir / "controller-manager.log", "ab")  # pylint: disable=consider-using-with
        logfile.write(f"--- start {self.restarts} at {datetime.now(timezone.utc).isoformat()}\n".encode())
        logfile.flush()
        self.proc = subprocess.Popen(self.argv(), env=self.env(), cwd=self.pod_dir, stdin=subprocess.DEVNULL,
                                     stdout=logfile, stderr=subprocess.STDOUT)
        logfile.close()
        self.started_at = now
        log.info("kubelet: started %s pid %d (restarts %d)", CONTAINER, self.proc.pid, self.restarts)
        self.write_status("running")

    def write_status(self, phase: str) -> None:
        status = {"state": phase, "pid": self.proc.pid if self.proc else None, "restarts": self.restarts,
                  "last_exit": self.last_exit, "health_url": f"http://127.0.0.1:{self.ports['health']}",
                  "argv": self.argv(), "time": datetime.now(timezone.utc).isoformat()}
        _write_atomic(self.dir / "pod.json", json.dumps(status, indent=2).encode())

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


# ---------------------------------------------------------------- the supervisor

class Supervisor:
    def __init__(self, state: Path, out_dir: Path, status_file: str):
        self.state, self.out_dir, self.status_file = state, out_dir, status_file
        self.dir = prow_state(state)
        started = time.monotonic()
        self.prow = install(state)
        log.info("installed the ProwJob CRD, Prow's service account and RBAC in %.1f s", time.monotonic() - started)
        token = self.token = service_account_token(self.prow)
        # The default cluster's kubeconfig Secret (Prow's --kubeconfig), rewritten on every
        # supervisor start: its token is this start's.
        secret = {"metadata": {"name": "kubeconfig", "namespace": PROW_NAMESPACE},
                  "stringData": {"config": default_kubeconfig(self.prow, token)}}
        try:
            self.prow.core.replace_namespaced_secret("kubeconfig", PROW_NAMESPACE, secret)
        except self.prow.client.ApiException as exc:
            if exc.status != 404:
                raise
            self.prow.core.create_namespaced_secret(PROW_NAMESPACE, secret)
        self.component = _component_digest(out_dir)
        self.pod = deployment(out_dir)["spec"]["template"]["spec"]
        # Prow writes the status file with the Cloud Storage Go client: storage.googleapis.com
        # is the GCP fake through a proxy, and the process has prow-controller-manager's GSA
        # credentials (its Workload Identity in production).
        endpoints = json.loads((state / "endpoints.json").read_text(encoding="utf-8"))
        self.proxy = gcs_proxy.StorageProxy(endpoints["storage"], self.dir / "pod").start()
        keys = sorted((state / "gcp" / "credentials").glob(f"{SERVICE_ACCOUNT}@*.json"))
        env = {"HTTPS_PROXY": self.proxy.url, "SSL_CERT_FILE": str(self.proxy.ca_file)}
        if keys:
            env["GOOGLE_APPLICATION_CREDENTIALS"] = str(keys[0])
        self.env = env
        self.kubelet = Kubelet(state, self.prow, self.pod, env)
        self.kubelet.write_service_account(token)
        self.eso = SecretSyncer(state, self.prow)
        self.last_eso = 0.0
        self.accepted: tuple[str, str] | None = None
        self.refused: str | None = None
        self.stopping = False

    def sync_config(self) -> None:
        candidate = render_config(decoration_entries(self.out_dir), self.status_file)
        if candidate == self.accepted or candidate[0] == self.refused:
            return
        check_dir = self.dir / "checkconfig"
        check_dir.mkdir(parents=True, exist_ok=True)
        (check_dir / "config.yaml").write_text(candidate[0], encoding="utf-8")
        (check_dir / "jobs.yaml").write_text(candidate[1], encoding="utf-8")
        result = checkconfig(check_dir / "config.yaml", check_dir / "jobs.yaml")
        if result.returncode != 0:
            log.error("checkconfig refused the new config; Prow keeps the last one:\n%s", result.stderr[-2000:])
            self.refused = candidate[0]
            return
        self.prow.put_configmap(PROW_NAMESPACE, "config", {"config.yaml": candidate[0]})
        self.prow.put_configmap(PROW_NAMESPACE, "job-config", {"jobs.yaml": candidate[1]})
        self.accepted, self.refused = candidate, None
        log.info("config: accepted (%d generated decoration entries)", len(decoration_entries(self.out_dir)))

    def sync_deployment(self) -> None:
        """A changed Component is a changed Deployment: roll it out (stop the container, start
        the new pod spec; the start counter carries on so callers can wait past it)."""
        digest = _component_digest(self.out_dir)
        if digest == self.component:
            return
        pod = deployment(self.out_dir)["spec"]["template"]["spec"]
        self.component = digest
        if pod == self.pod:
            return
        log.info("deployment changed (%s/prow); rolling out", self.out_dir)
        old = self.kubelet
        old.stop()
        self.pod = pod
        self.kubelet = Kubelet(self.state, self.prow, pod, self.env)
        self.kubelet.ports, self.kubelet.restarts = old.ports, old.restarts
        self.kubelet.started_at = old.started_at  # the next start counts as a restart
        self.kubelet.write_service_account(self.token)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "stopping", True))
        try:
            while not self.stopping:
                try:
                    if time.monotonic() - self.last_eso >= ESO_INTERVAL:
                        self.eso.sync()
                        self.last_eso = time.monotonic()
                    self.sync_config()
                    self.sync_deployment()
                    if self.kubelet.proc is not None:
                        self.kubelet.sync_volumes()
                    self.kubelet.tick()
                except Exception:  # noqa: BLE001 - an API hiccup must not end the sandbox's Prow
                    log.exception("supervisor tick failed; retrying")
                time.sleep(TICK)
        finally:
            self.kubelet.stop()
            self.kubelet.write_status("stopped")
            self.proxy.stop()


# ---------------------------------------------------------------- daemon API

def _pid(state: Path) -> int | None:
    try:
        pid = int((prow_state(state) / "pid").read_text(encoding="utf-8").strip())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if b"prow_sandbox.prow" in argv and str(state).encode() in argv else None


def pod_status(state_dir: Path | None = None) -> dict | None:
    try:
        return json.loads((prow_state(state_dir) / "pod.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def ready(status: dict | None) -> bool:
    if not status or status.get("state") != "running":
        return False
    try:
        with urllib.request.urlopen(status["health_url"] + "/healthz/ready", timeout=2) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def wait_ready(state_dir: Path | None = None, *, restarts_above: int = -1, timeout: float = START_TIMEOUT,
               proc: subprocess.Popen | None = None) -> dict:
    """Wait until Prow's container runs, answers /healthz/ready and has restarted more than
    ``restarts_above`` times; return its status. ``proc``: the supervisor just started, whose
    own exit status says whether it is gone (right after the start its /proc/PID/cmdline can
    read empty for a moment, seen from pytest, which the pid-file check takes for gone)."""
    deadline = time.monotonic() + timeout
    state = kube._state(state_dir)  # pylint: disable=protected-access

    def running() -> bool:
        return proc.poll() is None if proc is not None else _pid(state) is not None

    while time.monotonic() < deadline:
        if not running():
            break  # the supervisor is gone: no point waiting
        status = pod_status(state_dir)
        if status and status["restarts"] > restarts_above and ready(status):
            return status
        time.sleep(0.5)
    logs = [prow_state(state_dir) / name for name in ("supervisor.log", "controller-manager.log")]
    tails = "".join(f"\n--- {p.name}:\n{p.read_text(encoding='utf-8', errors='replace')[-2000:]}" for p in logs if p.exists())
    raise RuntimeError(f"Prow not ready (supervisor {'running' if running() else 'gone'}): {pod_status(state_dir)}{tails}")


def start(state_dir: Path | None = None, *, out_dir: Path | None = None, status_file: str | None = None) -> dict:
    """Start the supervisor for the sandbox of ``state_dir`` (or find it running) and wait until
    Prow is ready; return the pod status."""
    state = kube._state(state_dir)  # pylint: disable=protected-access
    pdir = prow_state(state)
    if _pid(state) is not None:
        return wait_ready(state)
    build.ensure_prow_binaries()
    pdir.mkdir(parents=True, exist_ok=True)
    (pdir / "pod.json").unlink(missing_ok=True)
    out = out_dir or state / "out"
    status = status_file or STATUS_FILE
    with open(pdir / "supervisor.log", "ab") as logf:
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-m", "prow_sandbox.prow", "--state-dir", str(state), "--out-dir", str(out),
             "--status-file", status],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    (pdir / "pid").write_text(f"{proc.pid}\n", encoding="utf-8")
    return wait_ready(state, proc=proc)


def stop(state_dir: Path | None = None) -> bool:
    """Stop the supervisor (it stops Prow first); True if one was running."""
    state = kube._state(state_dir)  # pylint: disable=protected-access
    pid = _pid(state)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE + 10
    while time.monotonic() < deadline and _pid(state) is not None:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    if _pid(state) is not None:
        os.kill(pid, signal.SIGKILL)
    (prow_state(state) / "pid").unlink(missing_ok=True)
    return True


def create_prowjob(state_dir: Path | None, job_cluster: str, *, cluster: str | None = None) -> str:
    """Make the ProwJob of the sandbox's periodic for ``job_cluster`` from Prow's accepted
    config with Prow's mkpj (decoration defaults resolved as Prow resolves them), create it in
    the Prow cluster and return its name. ``cluster`` overrides ``spec.cluster`` afterwards (a
    job for a cluster Prow does not know)."""
    state = kube._state(state_dir)  # pylint: disable=protected-access
    prow = ProwCluster(state)
    config = prow.read_configmap(PROW_NAMESPACE, "config")
    jobs = prow.read_configmap(PROW_NAMESPACE, "job-config")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "config.yaml").write_bytes(config["config.yaml"])
        Path(tmp, "jobs.yaml").write_bytes(jobs["jobs.yaml"])
        made = subprocess.run([str(build.ensure_prow_binaries() / "mkpj"), f"--config-path={tmp}/config.yaml",
                               f"--job-config-path={tmp}/jobs.yaml", f"--job={job_name(job_cluster)}"],
                              capture_output=True, text=True, check=True)
    job = yaml.safe_load(made.stdout)
    job["metadata"]["name"] = str(uuid.uuid4())
    if cluster is not None:
        job["spec"]["cluster"] = cluster
    created = prow.custom.create_namespaced_custom_object("prow.k8s.io", "v1", PROW_NAMESPACE, "prowjobs", job)
    return created["metadata"]["name"]


def loaded_clusters(state_dir: Path | None = None) -> list[str]:
    """The contexts Prow's current run parsed from its kubeconfigs (its own log lines)."""
    path = prow_state(state_dir) / "controller-manager.log"
    if not path.exists():
        return []
    last_run = path.read_text(encoding="utf-8", errors="replace").rsplit("--- start", 1)[-1]
    marker = "Parsed kubeconfig context: "
    return sorted({line.split(marker, 1)[1].split('"', 1)[0] for line in last_run.splitlines() if marker in line})


def wait_loaded(state_dir: Path | None, alias: str, *, present: bool = True, timeout: float = 120.0) -> dict:
    """Wait until Prow runs (ready) with ``alias`` among its clusters (or, ``present=False``,
    without it); return the pod status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = pod_status(state_dir)
        if ready(status) and (alias in loaded_clusters(state_dir)) == present:
            return status
        time.sleep(0.5)
    raise RuntimeError(f"Prow did not {'load' if present else 'drop'} {alias} within {timeout:.0f} s: "
                       f"{loaded_clusters(state_dir)} {pod_status(state_dir)}")


def job_pod(state_dir: Path | None, name: str, timeout: float = 60.0) -> tuple[dict, dict | None]:
    """Wait for plank's verdict on ProwJob ``name``: (ProwJob, its pod) once it is pending with a
    pod, or (ProwJob, None) once it is in error. The pod is read with the kubeconfig Prow
    itself loaded for the job's cluster (the Prow cluster's for ``default``)."""
    state = kube._state(state_dir)  # pylint: disable=protected-access
    deadline = time.monotonic() + timeout
    while True:
        job = get_prowjob(state, name)
        status = job.get("status") or {}
        if status.get("state") == "error":
            return job, None
        if status.get("pod_name"):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"ProwJob {name}: no verdict after {timeout:.0f} s: {status}")
        time.sleep(0.5)
    from kubernetes import client, config  # pylint: disable=import-outside-toplevel

    alias = job["spec"].get("cluster") or "default"
    volumes = prow_state(state) / "pod" / "volumes"
    kubeconfig = volumes / ("kubeconfig/config" if alias == "default" else f"prow-build-clusters/{alias}")
    api = config.new_client_from_config(str(kubeconfig), context=alias)
    pod = client.CoreV1Api(api).read_namespaced_pod(status["pod_name"], job["spec"]["namespace"])
    return job, api.sanitize_for_serialization(pod)


_SESSIONS: dict[Path, Any] = {}


def cluster_status(state_dir: Path | None = None) -> dict | None:
    """plank's build-cluster status file (alias -> Reachable, No-Manager, ...) as stored in the
    GCP fake's bucket, read as the sandbox operator; None while plank has not written it."""
    from google.auth.transport.requests import AuthorizedSession  # pylint: disable=import-outside-toplevel
    from google.oauth2 import service_account  # pylint: disable=import-outside-toplevel

    state = kube._state(state_dir)  # pylint: disable=protected-access
    endpoints = json.loads((state / "endpoints.json").read_text(encoding="utf-8"))
    key = state / "gcp" / "operator-credentials.json"
    if key not in _SESSIONS:  # one token for a caller's polls
        _SESSIONS[key] = AuthorizedSession(service_account.Credentials.from_service_account_file(
            str(key), scopes=["https://www.googleapis.com/auth/cloud-platform"]))
    answer = _SESSIONS[key].get(
        f"{endpoints['storage']}/storage/v1/b/{STATUS_BUCKET}/o/{STATUS_OBJECT}", params={"alt": "media"}, timeout=30)
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    return answer.json()


def get_prowjob(state_dir: Path | None, name: str) -> dict:
    prow = ProwCluster(kube._state(state_dir))  # pylint: disable=protected-access
    return prow.custom.get_namespaced_custom_object("prow.k8s.io", "v1", PROW_NAMESPACE, "prowjobs", name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prow_sandbox.prow")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--status-file", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # google-auth's regional-access-boundary lookup cannot reach Google offline; it only warns.
    # (google-auth sets the levels of its own loggers, so filter at the handler.)
    for handler in logging.getLogger().handlers:
        handler.addFilter(lambda record: record.levelno >= logging.ERROR
                          or not record.name.startswith(("urllib3", "google.")))
    Supervisor(args.state_dir.resolve(), args.out_dir.resolve(), args.status_file).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
