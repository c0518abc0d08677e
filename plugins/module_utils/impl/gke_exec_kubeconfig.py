# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Implementation of module prow.build_cluster.gke_exec_kubeconfig; plugins/modules/gke_exec_kubeconfig.py holds its documentation.

``module_kwargs()`` gives the AnsibleModule arguments; ``run(module)`` does the work and ends
with ``exit_json`` or ``fail_json``.

The keyless (``gke_exec``) credential model: each build cluster's kubeconfig names GKE's exec
credential plugin instead of holding a token, so it is no secret. Its server and CA come from
the GKE API on every run, and the ConfigMap that holds every such cluster (a key per alias, as
the build clusters' Secret) is applied through k8s_apply's apply path, so it is written only
when it differs: a changed endpoint or CA, or a hand edit, is repaired; a run with nothing to
repair writes nothing.
"""

from __future__ import annotations

import copy

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.prow.build_cluster.plugins.module_utils import kubeconfig as kc
from ansible_collections.prow.build_cluster.plugins.module_utils._errors import ApiError, TargetMissing, fail_on_api_error
from ansible_collections.prow.build_cluster.plugins.module_utils.impl import k8s_apply
from ansible_collections.prow.build_cluster.plugins.module_utils._gcp_session import (
    GCP_AUTH_ARGSPEC,
    GCP_AUTH_MUTUALLY_EXCLUSIVE,
    GcpSession,
)
from ansible_collections.prow.build_cluster.plugins.module_utils._validate import (
    dns_label_error,
    dns_subdomain_error,
    first_error,
    parse_gke_name,
)
from ansible_collections.prow.build_cluster.plugins.module_utils.k8s import (
    K8S_AUTH_ARGSPEC,
    K8S_AUTH_MUTUALLY_EXCLUSIVE,
    connect,
)

MANAGED_BY = {"app.kubernetes.io/managed-by": "prow.build_cluster.gke_exec_kubeconfig"}


def module_kwargs():
    """The keyword arguments of this module's AnsibleModule."""
    return {
        "argument_spec": {
            **copy.deepcopy(K8S_AUTH_ARGSPEC),
            **GCP_AUTH_ARGSPEC,
            "clusters": {"type": "list", "elements": "dict", "default": [], "options": {
                "name": {"type": "str", "required": True},
                "gke": {"type": "str", "required": True},
                "optional": {"type": "bool", "default": False},
            }},
            "name": {"type": "str", "default": "prow-build-clusters-exec"},
            "namespace": {"type": "str", "default": "default"},
            "plugin_command": {"type": "str", "default": kc.GKE_EXEC_PLUGIN["command"]},
            "plugin_args": {"type": "list", "elements": "str", "default": list(kc.GKE_EXEC_PLUGIN["args"])},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        },
        "mutually_exclusive": K8S_AUTH_MUTUALLY_EXCLUSIVE + GCP_AUTH_MUTUALLY_EXCLUSIVE,
        "supports_check_mode": True,
    }


def validate(module):
    """Every input checked before any call."""
    params = module.params
    error = first_error(dns_subdomain_error(params["name"], "name"), dns_label_error(params["namespace"], "namespace"))
    seen = set()
    for cluster in params["clusters"]:
        error = error or dns_subdomain_error(cluster["name"], "clusters[].name")
        if not error and cluster["name"] in seen:
            error = f"clusters: the name {cluster['name']} appears twice; each cluster is one key of the ConfigMap"
        seen.add(cluster["name"])
        try:
            parse_gke_name(cluster["gke"])
        except ValueError as exc:
            error = error or f"clusters[{cluster['name']}].{exc}"
    if error:
        module.fail_json(msg=error)


def plugin(module):
    return dict(kc.GKE_EXEC_PLUGIN, command=module.params["plugin_command"], args=list(module.params["plugin_args"]))


def read_cluster(module, gcp, gke):
    """The GKE cluster ``gke`` (projects/P/locations/L/clusters/C) as the GKE API returns it, or None if it does not exist."""
    project, location, name = parse_gke_name(gke)
    return gcp.get("container", f"/v1/projects/{project}/locations/{location}/clusters/{name}", f"GKE cluster {gke}")


def exec_kubeconfig(module, alias, gke, found, plugin_spec):
    """The keyless kubeconfig of context ``alias`` for the GKE cluster ``found`` (read_cluster): no secret in it."""
    ca_data = (found.get("masterAuth") or {}).get("clusterCaCertificate")
    if not found.get("endpoint") or not ca_data:
        module.fail_json(msg=f"GKE cluster {gke} has no endpoint or CA yet (status {found.get('status')})")
    return kc.dump(kc.build_exec(alias, f"https://{found['endpoint']}", ca_data, plugin_spec))


def desired_data(module):
    """{alias: kubeconfig text} for every cluster GKE knows, and the optional ones it does not."""
    gcp = GcpSession(module)
    data, missing = {}, []
    for cluster in module.params["clusters"]:
        what = f"GKE cluster {cluster['gke']}"
        found = read_cluster(module, gcp, cluster["gke"])
        if found is None and cluster["optional"]:
            module.warn(f"{what} ({cluster['name']}) does not exist: left out of ConfigMap {module.params['name']}")
            missing.append(cluster["name"])
            continue
        if found is None:
            raise TargetMissing(what, f"write its exec kubeconfig into ConfigMap {module.params['name']}",
                                message="does not exist; create it first (gke_cluster) or fix gke")
        data[cluster["name"]] = exec_kubeconfig(module, cluster["name"], cluster["gke"], found, plugin(module))
    return data, missing


def document(module, desired):
    """The ConfigMap as k8s_apply applies it: a key per alias, and the managed-by label. No
    ``data`` when there is no cluster: the API server stores an empty map as none, and a
    definition asking for ``{}`` would never be in sync."""
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": module.params["name"], "namespace": module.params["namespace"], "labels": dict(MANAGED_BY)}}
    if desired:
        configmap["data"] = desired
    return configmap


def reconcile(module, client, desired):
    """Apply the ConfigMap (None: delete it) through k8s_apply's one apply path: in sync when the
    live object holds every key with the same kubeconfig and carries the last-applied annotation;
    else one merge patch, which also drops the keys of clusters no longer listed. Returns
    (changed, data before, data after)."""
    step = k8s_apply.apply_one if desired is not None else k8s_apply.delete_one
    summary, before, after = step(module, client, k8s_apply.Resources(client), document(module, desired or {}))
    changed = summary["action"] not in ("unchanged", "absent")
    return changed, (before or {}).get("data"), (after or {}).get("data")


def run(module):
    """The module's work; ends with module.exit_json or module.fail_json."""
    if not kc.HAS_YAML:
        module.fail_json(msg=missing_required_lib("PyYAML"))
    validate(module)
    params = module.params
    present = params["state"] == "present"
    try:
        desired, missing = desired_data(module) if present else ({}, [])
    except ApiError as exc:
        fail_on_api_error(module, exc)
    client = connect(module, would=f"write ConfigMap {params['namespace']}/{params['name']}")
    changed, before, after = reconcile(module, client, desired if present else None)
    result = {
        "changed": changed,
        "configmap": {"name": params["name"], "namespace": params["namespace"], "keys": sorted(desired)},
        "kubeconfigs": desired,
        "missing": missing,
    }
    if module._diff and changed:  # pylint: disable=protected-access
        result["diff"] = {"before": before or {}, "after": after or {}}
    module.exit_json(**result)
