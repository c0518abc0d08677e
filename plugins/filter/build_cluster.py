# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that derive a build cluster's names from its settings, one definition each.

A build cluster's settings are the ``build_clusters[]`` item of vars.yml (or the ``build_cluster``
host variable of an inventory host), with ``alias`` set; ``prow`` is the Prow instance's settings.
The roles and playbooks derive from them, through these filters only: how to reach the cluster,
where its kubeconfig is stored, and the settings of every build cluster host.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.prow.build_cluster.plugins.module_utils._prow_components import (
    COMPONENT_CLUSTER_RULES,
    COMPONENT_RULES,
    component_object_name,
    component_secret_name,
)

DEFAULT_SECRET_NAME = "prow_build_cluster_kubeconfig_{alias}"
# job_identity federated: the credential configuration Secret the jobs mount (gcs_credentials_secret).
DEFAULT_GCS_CREDENTIALS_SECRET = "gcs-credentials"
# job_identity federated: the project's pool, shared by its clusters outside GKE.
DEFAULT_FEDERATION_POOL = "prow-build-clusters"
# The audience of the service-account tokens an EKS apiserver automounts (its --api-audiences).
EKS_API_AUDIENCE = "https://kubernetes.default.svc"


def _settings(value, what):
    if not isinstance(value, Mapping):
        raise AnsibleFilterError(f"{what}: expected the settings of a build cluster (a dict), got {type(value).__name__}")
    if not value.get("alias"):
        raise AnsibleFilterError(f"{what}: the build cluster's settings have no alias")
    return value


def cluster_connection(settings):
    """How modules reach the cluster: ``{'gke': projects/P/locations/L/clusters/C}`` for a GKE cluster,
    else ``{'kubeconfig': PATH[, 'context': NAME]}``: the modules' own connection options."""
    settings = _settings(settings, "cluster_connection")
    gke = settings.get("gke")
    if gke:
        return {"gke": f"projects/{settings.get('project')}/locations/{gke.get('location')}/clusters/{gke.get('name')}"}
    connection = {"kubeconfig": settings.get("kubeconfig") or ""}
    if settings.get("context"):
        connection["context"] = settings["context"]
    return connection


def cluster_secret(settings, prow):
    """The Secret Manager secret holding Prow's kubeconfig for the cluster, projects/P/secrets/S: in
    ``secret_project`` (else the Prow project), named ``secret_name`` (else after the alias)."""
    settings = _settings(settings, "cluster_secret")
    if not isinstance(prow, Mapping):
        raise AnsibleFilterError("cluster_secret: expected the Prow settings (a dict) as argument")
    project = settings.get("secret_project") or prow.get("project")
    name = settings.get("secret_name") or DEFAULT_SECRET_NAME.format(alias=settings["alias"])
    return f"projects/{project}/secrets/{name}"


def cluster_platform(settings):
    """The platform whose token cap applies (ksa_token's ``platform``): the cluster's ``platform``
    (gke, eks, aks, other), else ``gke`` for a ``gke:`` cluster, else ``auto`` (ksa_token tells a
    GKE apiserver reached by kubeconfig by its version)."""
    settings = _settings(settings, "cluster_platform")
    return settings.get("platform") or ("gke" if settings.get("gke") else "auto")


def cluster_gcs_credentials_secret(settings):
    """The credential configuration Secret of a ``job_identity: federated`` cluster (the decoration
    entry's ``gcs_credentials_secret``): the cluster's ``gcs_credentials_secret``, else
    ``gcs-credentials``; '' for any other job identity (no Secret, and the entry must say so)."""
    settings = _settings(settings, "cluster_gcs_credentials_secret")
    if settings.get("job_identity", "gsa") != "federated":
        return ""
    return settings.get("gcs_credentials_secret") or DEFAULT_GCS_CREDENTIALS_SECRET


def cluster_federation(settings):
    """``job_identity: federated``: where the cluster's OIDC provider lives, from its ``federation``
    key: ``{project, pool, provider, audiences}``, defaults the cluster's ``project``, the shared pool
    ``prow-build-clusters``, the alias, and the audiences of the pod tokens besides the issuer
    (``[https://kubernetes.default.svc]`` on ``platform: eks``, else none)."""
    settings = _settings(settings, "cluster_federation")
    federation = settings.get("federation") or {}
    if not isinstance(federation, Mapping):
        raise AnsibleFilterError(f"build_clusters[{settings['alias']}].federation: expected a dict, got {type(federation).__name__}")
    audiences = federation.get("audiences")
    if audiences is None:
        audiences = [EKS_API_AUDIENCE] if settings.get("platform") == "eks" else []
    return {
        "project": federation.get("project") or settings.get("project") or "",
        "pool": federation.get("pool") or DEFAULT_FEDERATION_POOL,
        "provider": federation.get("provider") or settings["alias"],
        "audiences": audiences,
    }


def _keyless(settings):
    return settings.get("credential_model", "token") == "gke_exec"


def _token_per_component(settings):
    """The token model with per-component access: a ServiceAccount, token and kubeconfig per Prow component."""
    return not _keyless(settings) and settings.get("access", "cluster-admin") == "per-component"


def component_secrets(settings, prow):
    """``{component: projects/P/secrets/S-COMPONENT}``: where the token model with per-component access
    stores each Prow component's kubeconfig, beside the cluster's own secret (``cluster_secret``)."""
    secret = cluster_secret(settings, prow)
    return {component: component_secret_name(secret, component) for component in COMPONENT_RULES}


def cluster_members(clusters, prow, component=None):
    """Each cluster's stored kubeconfig as a composite_kubeconfig member: ``{name: alias, secret,
    optional}`` (optional when the cluster's settings say so: its first onboarding may not have
    stored one yet). Keyless clusters (``credential_model: gke_exec``) store none: see
    ``exec_cluster_members``. Clusters of the token model with per-component access store one per
    Prow component: they are members only with ``component``, and then only they (its kubeconfig)."""
    if not isinstance(clusters, list):
        raise AnsibleFilterError("cluster_members: expected a list of build clusters' settings")
    if component is not None and component not in COMPONENT_RULES:
        raise AnsibleFilterError(f"cluster_members: unknown component {component!r} (known: {', '.join(sorted(COMPONENT_RULES))})")
    members = []
    for cluster in (_settings(item, "cluster_members") for item in clusters):
        if _keyless(cluster) or _token_per_component(cluster) != (component is not None):
            continue
        secret = component_secrets(cluster, prow)[component] if component else cluster_secret(cluster, prow)
        members.append({"name": cluster["alias"], "secret": secret, "optional": bool(cluster.get("optional"))})
    return members


def component_cluster_members(clusters, prow, left_out=()):
    """``{component: cluster_members(clusters, prow, component)}`` for every Prow component: what each
    component's own Secret in the Prow cluster holds, but the clusters named in ``left_out`` (those
    whose kubeconfig composite_kubeconfig found missing)."""
    return {component: [m for m in cluster_members(clusters, prow, component) if m["name"] not in left_out]
            for component in COMPONENT_RULES}


def exec_cluster_members(clusters):
    """The keyless clusters (``credential_model: gke_exec``) as gke_exec_kubeconfig takes them:
    ``{name: alias, gke: projects/P/locations/L/clusters/C, optional}``."""
    if not isinstance(clusters, list):
        raise AnsibleFilterError("exec_cluster_members: expected a list of build clusters' settings")
    members = []
    for cluster in (_settings(item, "exec_cluster_members") for item in clusters):
        if not _keyless(cluster):
            continue
        connection = cluster_connection(cluster)
        if "gke" not in connection:
            raise AnsibleFilterError(f"build cluster {cluster['alias']}: credential_model gke_exec needs a GKE cluster (gke)")
        members.append({"name": cluster["alias"], "gke": connection["gke"], "optional": bool(cluster.get("optional"))})
    return members


def rbac_users(emails):
    """RBAC subjects naming Google identities as GKE authenticates them: ``kind: User``, the email."""
    if not isinstance(emails, list) or not all(isinstance(e, str) and "@" in e for e in emails):
        raise AnsibleFilterError(f"rbac_users: expected a list of emails, got {emails!r}")
    return [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": email} for email in emails]


def component_service_accounts_errors(accounts):
    """Why a ``{component: GSA email}`` mapping is refused: unknown components, values not emails."""
    if not isinstance(accounts, Mapping):
        return [f"expected a mapping of component to Google service account email, got {type(accounts).__name__}"]
    errors = []
    for component, email in accounts.items():
        if component not in COMPONENT_RULES:
            errors.append(f"unknown component {component!r} (known: {', '.join(sorted(COMPONENT_RULES))})")
        if not isinstance(email, str) or not re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.-]+\.iam\.gserviceaccount\.com",
                                                          email):
            errors.append(f"{component}: {email!r} is not a Google service account email (NAME@PROJECT.iam.gserviceaccount.com)")
    return errors


def component_rbac(accounts, namespace, absent=False, service_account_namespace=None):
    """The RBAC objects of per-component access, in apply order: for each component of ``accounts``
    (``{component: GSA email}``) a Role in ``namespace`` with exactly its verbs and a RoleBinding to
    ``kind: User`` its email; crier's cluster-scoped rights as a ClusterRole and ClusterRoleBinding.
    Named ``prow-COMPONENT`` (the controller manager keeps its name). With ``absent``, the objects of
    the known components NOT in ``accounts`` (all of them for ``{}``): what to remove.

    With ``service_account_namespace`` (the token model), ``accounts`` is a list of components, and
    each is bound as its ServiceAccount of that name in that namespace, created first."""
    if not isinstance(namespace, str) or not namespace:
        raise AnsibleFilterError(f"component_rbac: expected the pod namespace, got {namespace!r}")
    if service_account_namespace is not None:
        return _token_component_rbac(accounts, namespace, absent, service_account_namespace)
    errors = component_service_accounts_errors(accounts)
    if errors:
        raise AnsibleFilterError("component_rbac: " + "; ".join(errors))
    return _rbac_documents({component: rbac_users([email]) for component, email in accounts.items()}, namespace, absent)


def _token_component_rbac(components, namespace, absent, service_account_namespace):
    unknown = [c for c in components if c not in COMPONENT_RULES] if isinstance(components, list) else [components]
    if unknown or not isinstance(service_account_namespace, str) or not service_account_namespace:
        raise AnsibleFilterError(f"component_rbac: expected a list of components (known: {', '.join(sorted(COMPONENT_RULES))}) "
                                 f"and the ServiceAccounts' namespace, got {components!r}, {service_account_namespace!r}")
    subjects = {component: [{"kind": "ServiceAccount", "name": component_object_name(component),
                             "namespace": service_account_namespace}] for component in components}
    documents = _rbac_documents(subjects, namespace, absent)
    accounts = [{"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": component_object_name(component), "namespace": service_account_namespace}}
                for component in COMPONENT_RULES if (component in components) != bool(absent)]
    # Applied: the ServiceAccounts before what binds them; removed: after it.
    return documents + accounts if absent else accounts + documents


def _rbac_documents(subjects_of, namespace, absent):
    """The Roles and bindings of the components in ``subjects_of`` (``{component: subjects}``), or, with
    ``absent``, of the known components not in it."""
    rbac = "rbac.authorization.k8s.io"
    documents = []
    for component in COMPONENT_RULES:
        if (component in subjects_of) == bool(absent):
            continue
        name = component_object_name(component)
        subjects = [] if absent else subjects_of[component]
        documents.append({"apiVersion": f"{rbac}/v1", "kind": "Role", "metadata": {"name": name, "namespace": namespace},
                          "rules": COMPONENT_RULES[component]})
        documents.append({"apiVersion": f"{rbac}/v1", "kind": "RoleBinding",
                          "metadata": {"name": name, "namespace": namespace},
                          "roleRef": {"apiGroup": rbac, "kind": "Role", "name": name}, "subjects": subjects})
        if component in COMPONENT_CLUSTER_RULES:
            documents.append({"apiVersion": f"{rbac}/v1", "kind": "ClusterRole", "metadata": {"name": name},
                              "rules": COMPONENT_CLUSTER_RULES[component]})
            documents.append({"apiVersion": f"{rbac}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
                              "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": name}, "subjects": subjects})
    return documents


def build_clusters_of(hosts, hostvars):
    """The settings of each of ``hosts`` (``build_cluster``, with ``alias`` the host's name), from
    ``hostvars``: how a play that runs once (the Prow instance's) sees every build cluster, also
    those outside ``--limit``."""
    clusters = []
    for host in hosts:
        host_vars = hostvars[host]
        if "build_cluster" not in host_vars:
            raise AnsibleFilterError(f"host {host} of the build clusters' group has no build_cluster variable")
        settings = dict(host_vars["build_cluster"] or {})
        settings["alias"] = host
        clusters.append(settings)
    return clusters


def instance_clusters(hosts, hostvars, removed=(), confirmed=()):
    """The build clusters the Prow instance keeps, from every host of the group (also outside
    ``--limit``): not those whose ``state`` is absent nor those ``removed`` by this run. Those not
    ``confirmed`` by this run (onboarded or rotated just now) are ``optional``: a cluster outside
    ``--limit`` or one that failed may not have a stored kubeconfig yet, and must not keep the
    others out of what Prow loads."""
    clusters = []
    for settings in build_clusters_of(hosts, hostvars):
        if settings.get("state", "present") == "absent" or settings["alias"] in removed:
            continue
        settings["optional"] = settings["alias"] not in confirmed
        clusters.append(settings)
    return clusters


def job_identity_conflicts(clusters):
    """Why the build clusters' job identities cannot all hold, one message per conflict (empty if they can).

    Workload Identity's pool is the project's (``PROJECT.svc.id.goog``), not the cluster's: the job KSA of
    every cluster of a project with the same pod namespace and name is ONE identity, and the job GSA of the
    same name one account. ``job_identity: direct`` deletes that GSA, so clusters of one project that share
    the KSA must agree on ``job_identity``. ``job_identity: federated`` (a cluster outside GKE) is an identity
    of its own pool and provider, and touches no GSA: it shares nothing with them.
    """
    identities = {}
    for settings in clusters:
        settings = _settings(settings, "job_identity_conflicts")
        if settings.get("job_identity") == "federated":
            continue
        shared = (settings.get("project", ""), settings.get("pod_namespace", "test-pods"),
                  settings.get("job_service_account", "prowjob-default-sa"))
        identities.setdefault(shared, {}).setdefault(settings.get("job_identity", "gsa"), []).append(settings.get("alias", "?"))
    conflicts = []
    for (project, namespace, ksa), by_identity in sorted(identities.items()):
        if len(by_identity) > 1:
            said = "; ".join(f"{', '.join(aliases)}: {identity}" for identity, aliases in sorted(by_identity.items()))
            conflicts.append(
                f"build clusters of project {project} share the job identity {namespace}/{ksa} (Workload Identity is"
                f" per project) but not its job_identity ({said}): give them the same job_identity, or another"
                f" job_service_account")
    return conflicts


class FilterModule:
    def filters(self):
        return {
            "cluster_connection": cluster_connection,
            "cluster_secret": cluster_secret,
            "cluster_platform": cluster_platform,
            "cluster_gcs_credentials_secret": cluster_gcs_credentials_secret,
            "cluster_federation": cluster_federation,
            "cluster_members": cluster_members,
            "component_cluster_members": component_cluster_members,
            "component_secrets": component_secrets,
            "component_object_name": component_object_name,
            "component_secret_name": component_secret_name,
            "exec_cluster_members": exec_cluster_members,
            "rbac_users": rbac_users,
            "component_rbac": component_rbac,
            "build_clusters_of": build_clusters_of,
            "instance_clusters": instance_clusters,
            "job_identity_conflicts": job_identity_conflicts,
        }
