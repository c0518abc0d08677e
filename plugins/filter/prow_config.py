# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters build_cluster_files and prow_instance_files: the manifests of the prow_config role.

Each returns {file name: [YAML documents]}, built as data (no Jinja that emits YAML text), so that
the role, the credentials role (which applies the ExternalSecret) and the unit tests all see one
definition. How Prow loads the result, checked against its code: docs/prow-integration.md.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

from ansible_collections.prow.build_cluster.plugins.module_utils._prow_components import COMPONENT_RULES, component_secret_name
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import dns_label_error, dns_subdomain_error

ROTATION_KEYS = ("schedule", "cluster", "namespace", "service_account", "image", "vars_configmap")
DEPLOYMENT_KEYS = ("name", "container", "container_index", "kubeconfig")
# A build cluster as the credentials role gives it (a composite_kubeconfig member): its alias,
# its Secret Manager secret, and whether the composite may leave it out.
CLUSTER_KEYS = ("name", "secret", "optional")
CLUSTER_REQUIRED = ("name", "secret")
SECRET_SYNC = ("external_secrets", "direct")
# The volume's name inside each deployment (not the Secret's, which is configurable).
VOLUME = "prow-build-clusters"
# Secret Manager secrets, projects/PROJECT/secrets/ID.
_GSM_SECRET = re.compile(r"^projects/(?P<project>[a-z0-9][-a-z0-9.:]*)/secrets/(?P<id>[A-Za-z0-9_-]{1,255})$")
# What ESO's refreshInterval accepts: a Go duration (time.ParseDuration).
_GO_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
# Kubernetes limits CronJob names to 52 characters (it appends 11 for its Jobs), so the
# CronJob rotate-ALIAS allows an alias of at most 45.
_CRONJOB_NAME_MAX = 52


class _Check:
    """Raises AnsibleFilterError naming the filter and the offending input."""

    def __init__(self, filter_name):
        self.filter_name = filter_name

    def fail(self, what, why):
        raise AnsibleFilterError(f"{self.filter_name}: {what} {why}")

    def string(self, value, what, optional=False):
        if optional and value in (None, ""):
            return None
        if not isinstance(value, str) or not value:
            self.fail(what, f"must be a non-empty string, got {value!r}")
        return value

    def name(self, value, what, error=dns_subdomain_error):
        problem = error(self.string(value, what), what)
        if problem:
            raise AnsibleFilterError(f"{self.filter_name}: {problem}")
        return value

    def label(self, value, what):
        return self.name(value, what, dns_label_error)

    def path(self, value, what, optional=False):
        value = self.string(value, what, optional)
        if value is not None and not value.startswith("/"):
            self.fail(what, f"must be an absolute path, got {value!r}")
        return value

    def mapping(self, value, what, keys, required):
        if not isinstance(value, dict):
            self.fail(what, f"must be a dict, got {value!r}")
        unknown = sorted(set(value) - set(keys))
        if unknown:
            self.fail(what, f"has unknown keys {unknown} (known: {list(keys)})")
        missing = [k for k in required if k not in value]
        if missing:
            self.fail(what, f"lacks {missing}")
        return value

    def items(self, value, what, allow_empty):
        if not isinstance(value, list):
            self.fail(what, f"must be a list, got {value!r}")
        if not value and not allow_empty:
            self.fail(what, "must not be empty")
        return value

    def unique(self, values, what, noun):
        seen = set()
        for value in values:
            if value in seen:
                self.fail(what, f"give the {noun} {value!r} more than once")
            seen.add(value)


# ---------------------------------------------------------------- per build cluster
def build_cluster_files(alias, bucket, job_service_account, rotation, gcs_credentials_secret=""):
    """decoration-config.yaml, rotation-periodic.yaml and rotation-cronjob.yaml of one build cluster.

    ``gcs_credentials_secret``: empty, or (``job_identity: federated``) the Secret in the pod namespace
    holding the jobs' external_account credential configuration (the gcs_access role's)."""
    check = _Check("build_cluster_files")
    check.label(alias, "alias")
    if len("rotate-" + alias) > _CRONJOB_NAME_MAX:
        check.fail("alias", f"{alias!r} is too long: the CronJob rotate-ALIAS may have at most {_CRONJOB_NAME_MAX} characters")
    check.string(bucket, "bucket")
    if bucket.startswith("gs://") or "/" in bucket:
        check.fail("bucket", f"must be a bucket name, without gs:// or a path, got {bucket!r}")
    check.name(job_service_account, "job_service_account")
    if gcs_credentials_secret != "":
        check.name(gcs_credentials_secret, "gcs_credentials_secret")
    check.mapping(rotation, "rotation", ROTATION_KEYS, ROTATION_KEYS)
    for key in ("schedule", "cluster", "image"):
        check.string(rotation[key], f"rotation.{key}")
    check.label(rotation["namespace"], "rotation.namespace")
    check.name(rotation["service_account"], "rotation.service_account")
    check.name(rotation["vars_configmap"], "rotation.vars_configmap")

    def rotation_pod():
        # A fresh copy per use: the two files must not share (and alias) one dict when dumped.
        return {
            "serviceAccountName": rotation["service_account"],
            "containers": [{
                "name": "rotate",
                "image": rotation["image"],
                "command": ["ansible-playbook", "prow.build_cluster.rotate", "-e", "@/etc/prow-build-cluster/vars.yml"],
                "volumeMounts": [{"name": "vars", "mountPath": "/etc/prow-build-cluster", "readOnly": True}],
            }],
            "volumes": [{"name": "vars", "configMap": {"name": rotation["vars_configmap"]}}],
        }

    decoration = {"plank": {"default_decoration_config_entries": [{
        "cluster": alias,
        "config": {
            "gcs_configuration": {"bucket": bucket},
            "default_service_account_name": job_service_account,
            # Explicitly empty: an inherited key-file secret would be mounted into every job
            # pod, and that Secret does not exist in a new cluster. A cluster outside GKE
            # (job_identity federated) names its credential configuration Secret.
            "gcs_credentials_secret": gcs_credentials_secret,
        },
    }]}}
    periodic = {"periodics": [{
        "name": f"rotate-build-cluster-credentials-{alias}",
        "cron": rotation["schedule"],
        "cluster": rotation["cluster"],
        "decorate": True,
        "annotations": {
            "description": f"Rotates the token Prow uses for build cluster {alias} (prow.build_cluster rotate.yml)",
        },
        "spec": rotation_pod(),
    }]}
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": f"rotate-{alias}", "namespace": rotation["namespace"]},
        "spec": {
            "schedule": rotation["schedule"],
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {"spec": {
                "backoffLimit": 2,
                "template": {"spec": dict(rotation_pod(), restartPolicy="Never")},
            }},
        },
    }
    return {
        "decoration-config.yaml": [decoration],
        "rotation-periodic.yaml": [periodic],
        "rotation-cronjob.yaml": [cronjob],
    }


# ---------------------------------------------------------------- once per Prow instance
def _deployments(check, deployments):
    """The deployments, checked, as (name, container name, container index, kubeconfig or None)."""
    check.items(deployments, "deployments", allow_empty=False)
    out = []
    for i, d in enumerate(deployments):
        what = f"deployments[{i}]"
        check.mapping(d, what, DEPLOYMENT_KEYS, ("name",))
        name = check.name(d["name"], f"{what}.name")
        # None counts as unset: an argument spec may fill in the options it was not given.
        container = d.get("container")
        container = name if container is None else check.label(container, f"{what}.container")
        index = d.get("container_index")
        if index is None:
            index = 0
        elif isinstance(index, bool) or not isinstance(index, int) or index < 0:
            check.fail(f"{what}.container_index", f"must be an integer >= 0, got {index!r}")
        kubeconfig = check.path(d.get("kubeconfig"), f"{what}.kubeconfig", optional=True)
        out.append((name, container, index, kubeconfig))
    # One patch file per deployment name: a repeated name would overwrite a file.
    check.unique([d[0] for d in out], "deployments", "name")
    return out


def _volume(secret, exec_configmap, component_secret=None):
    """The build clusters' volume: the Secret, with ``component_secret`` the Secret that only this
    deployment's component mounts (the kubeconfigs of its own ServiceAccount in the clusters of
    per-component access), and with ``exec_configmap`` the ConfigMap of the keyless (gke_exec)
    clusters' kubeconfigs, projected into one directory (a cluster is in one of them only, by its
    alias, so their keys never collide). All optional: Prow starts before the first cluster (an
    empty dir is no candidate), and an instance may have clusters of one kind only."""
    if not exec_configmap and not component_secret:
        return {"name": VOLUME, "secret": {"secretName": secret, "defaultMode": 420, "optional": True}}
    sources = [{"secret": {"name": secret, "optional": True}}]
    if component_secret:
        sources.append({"secret": {"name": component_secret, "optional": True}})
    if exec_configmap:
        sources.append({"configMap": {"name": exec_configmap, "optional": True}})
    return {"name": VOLUME, "projected": {"defaultMode": 420, "sources": sources}}


def _patch(name, container_name, index, kubeconfig, secret, mount, exec_configmap=None, component_secret=None):
    """The JSON 6902 patch of one deployment (see prow_instance_files)."""
    container = f"/spec/template/spec/containers/{index}"
    ops = [
        # Fails the kustomize build on a deployment whose container is not where Prow's
        # manifests put it, instead of patching another container.
        {"op": "test", "path": f"{container}/name", "value": container_name},
        {"op": "add", "path": "/spec/template/spec/volumes/-", "value": _volume(secret, exec_configmap, component_secret)},
        # A directory mount, no subPath: a subPath mount never sees an updated Secret.
        {"op": "add", "path": f"{container}/volumeMounts/-",
         "value": {"name": VOLUME, "mountPath": mount, "readOnly": True}},
        {"op": "add", "path": f"{container}/args/-", "value": f"--kubeconfig-dir={mount}"},
    ]
    if kubeconfig:
        # Any file from --kubeconfig or --kubeconfig-dir makes Prow ignore KUBECONFIG
        # (sigs.k8s.io/prow pkg/kube/config.go): the file it loaded through KUBECONFIG is
        # passed as --kubeconfig, so the default cluster and the existing build clusters stay.
        ops.append({"op": "add", "path": f"{container}/args/-", "value": f"--kubeconfig={kubeconfig}"})
    return ops


def _clusters(check, clusters, what_all="clusters"):
    """[(alias, project, secret ID)], sorted by alias."""
    check.items(clusters, what_all, allow_empty=True)
    checked = []
    for i, c in enumerate(clusters):
        what = f"{what_all}[{i}]"
        check.mapping(c, what, CLUSTER_KEYS, CLUSTER_REQUIRED)
        check.label(c["name"], f"{what}.name")
        match = _GSM_SECRET.match(c["secret"]) if isinstance(c["secret"], str) else None
        if not match:
            check.fail(f"{what}.secret", f"must be a Secret Manager secret, projects/PROJECT/secrets/ID, got {c['secret']!r}")
        checked.append((c["name"], match["project"], match["id"]))
    # The alias is the key in the one Secret: a repeated one would drop a cluster.
    check.unique([alias for alias, _project, _secret in checked], what_all, "alias")
    return sorted(checked)


def _external_secrets(check, clusters, secret, prow_namespace, secret_store, refresh_interval, component_clusters=None):
    """The ClusterSecretStore and the ONE ExternalSecret with an entry per build cluster; with
    ``component_clusters`` (``{component: clusters}``) also an ExternalSecret per component that has
    clusters, of that component's own Secret."""
    component_clusters = {component: members for component, members in (component_clusters or {}).items() if members}
    every = clusters + [member for members in component_clusters.values() for member in members]
    projects = sorted({project for _alias, project, _secret in every})
    if len(projects) > 1:
        check.fail("clusters", (
            f"are in the projects {projects}: delivery external_secrets reads every build cluster's secret through one "
            "ClusterSecretStore, whose project is that of the secrets; keep every cluster's secret_project the same "
            "(it is prow.project by default)"))
    check.name(secret_store, "secret_store")
    if not isinstance(refresh_interval, str) or not _GO_DURATION.match(refresh_interval):
        check.fail("refresh_interval", f"must be a Go duration such as 10m, got {refresh_interval!r}")
    store = {
        "apiVersion": "external-secrets.io/v1",
        "kind": "ClusterSecretStore",
        "metadata": {"name": secret_store},
        "spec": {"provider": {"gcpsm": {
            # No auth block: the ESO controller's own Workload Identity reads the secret.
            "projectID": projects[0],
            # ESO's default, spelled out: read versions/latest (the newest created version) or
            # fail, never fall back to an older version (LatestOrFetch would, and would need
            # secretmanager.versions.list). secret_manager_secret keeps latest enabled; a latest
            # disabled by hand (a retired token) must not bring an older token back.
            "secretVersionSelectionPolicy": "LatestOrFail",
        }}},
    }

    def external_secret(name, members):
        return {
            "apiVersion": "external-secrets.io/v1",
            "kind": "ExternalSecret",
            "metadata": {"name": name, "namespace": prow_namespace},
            "spec": {
                "refreshInterval": refresh_interval,
                "secretStoreRef": {"kind": "ClusterSecretStore", "name": secret_store},
                "target": {"name": name, "creationPolicy": "Owner"},
                # One key per build cluster: its alias, read by Prow's --kubeconfig-dir. Sorted, so
                # the document does not change with the order clusters are listed in.
                "data": [{"secretKey": alias, "remoteRef": {"key": secret_id, "version": "latest"}}
                         for alias, _project, secret_id in members],
            },
        }

    documents = [store] + ([external_secret(secret, clusters)] if clusters else [])
    return documents + [external_secret(component_secret_name(secret, component), members)
                        for component, members in sorted(component_clusters.items())]


def prow_instance_files(deployments, clusters, secret, mount, prow_namespace, secret_sync,
                        secret_store=None, refresh_interval=None, exec_configmap=None, component_clusters=None):
    """kustomization.yaml, DEPLOYMENT-patch.yaml for each deployment and external-secret.yaml.

    The change to Prow's deployments is made once and is the same for any number of clusters:
    the Secret with a key per cluster, mounted as a directory and read with --kubeconfig-dir.
    Only external-secret.yaml depends on the clusters; it is an empty list (no file) with
    direct delivery or without clusters. With ``exec_configmap`` the volume also projects that
    ConfigMap (the keyless clusters' kubeconfigs) into the same directory. With ``component_clusters``
    (``{component: clusters}``, the clusters of per-component access), each Prow component's deployment
    also projects its own Secret, which external-secret.yaml fills with those clusters' kubeconfigs of
    that component's ServiceAccount, and no other deployment mounts. JSON 6902 patches, because a
    strategic-merge patch would replace the args list instead of appending to it.
    """
    check = _Check("prow_instance_files")
    checked = _deployments(check, deployments)
    clusters = _clusters(check, clusters)
    if component_clusters is not None:
        if not isinstance(component_clusters, dict) or set(component_clusters) - set(COMPONENT_RULES):
            check.fail("component_clusters", f"must map Prow components ({', '.join(sorted(COMPONENT_RULES))}) to clusters, "
                       f"got {component_clusters!r}")
        component_clusters = {component: _clusters(check, members, f"component_clusters.{component}")
                              for component, members in component_clusters.items()}
    check.name(secret, "secret")
    check.path(mount, "mount")
    check.label(prow_namespace, "prow_namespace")
    if exec_configmap:
        check.name(exec_configmap, "exec_configmap")
    if secret_sync not in SECRET_SYNC:
        check.fail("secret_sync", f"must be one of {list(SECRET_SYNC)}, got {secret_sync!r}")

    component = {
        "apiVersion": "kustomize.config.k8s.io/v1alpha1",
        "kind": "Component",
        "patches": [
            {"path": f"{name}-patch.yaml",
             "target": {"group": "apps", "version": "v1", "kind": "Deployment", "name": name, "namespace": prow_namespace}}
            for name, _container, _index, _kubeconfig in checked
        ],
    }
    files = {"kustomization.yaml": [component]}
    for name, container, index, kubeconfig in checked:
        # Each patch file is one YAML document, the list of operations.
        component_secret = component_secret_name(secret, name) if component_clusters is not None and name in COMPONENT_RULES else None
        files[f"{name}-patch.yaml"] = [_patch(name, container, index, kubeconfig, secret, mount, exec_configmap, component_secret)]
    delivered = clusters or any((component_clusters or {}).values())
    files["external-secret.yaml"] = (
        _external_secrets(check, clusters, secret, prow_namespace, secret_store, refresh_interval, component_clusters)
        if secret_sync == "external_secrets" and delivered else []
    )
    return files


class FilterModule:
    def filters(self):
        return {"build_cluster_files": build_cluster_files, "prow_instance_files": prow_instance_files}
