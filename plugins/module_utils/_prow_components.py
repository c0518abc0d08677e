# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What each Prow component needs in a build cluster (issue #14): one definition, for the RBAC the
credentials role applies (filter component_rbac) and for what verify proves (verify_build_cluster)."""

from __future__ import annotations

# Exactly the verbs Prow's components check in a build cluster's pod namespace; crier's nodes get
# is cluster-scoped (a ClusterRole and ClusterRoleBinding).
COMPONENT_RULES = {
    "prow-controller-manager": [{"apiGroups": [""], "resources": ["pods"],
                                 "verbs": ["create", "delete", "list", "watch", "get", "patch"]}],
    "sinker": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete", "list", "watch", "get", "patch"]}],
    "crier": [{"apiGroups": [""], "resources": ["pods", "events"], "verbs": ["get", "list"]},
              {"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}],
    "deck": [{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}],
}
COMPONENT_CLUSTER_RULES = {"crier": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]}


def component_access(component):
    """[(resource, subresource, verb, namespaced)] that ``component`` must be allowed, in rule order."""
    wanted = []
    for rules, namespaced in ((COMPONENT_RULES.get(component, []), True), (COMPONENT_CLUSTER_RULES.get(component, []), False)):
        for rule in rules:
            for resource in rule["resources"]:
                name, _sep, sub = resource.partition("/")
                wanted.extend((name, sub, verb, namespaced) for verb in rule["verbs"])
    return wanted


def component_object_name(component):
    """The name of a component's objects in a build cluster (its ServiceAccount in the token model, its
    Role and bindings): ``prow-COMPONENT``; the controller manager keeps its own name."""
    return component if component.startswith("prow-") else "prow-" + component


def component_secret_name(secret, component):
    """The name, in the Prow cluster, of the Secret that only ``component`` mounts, beside the build
    clusters' ``secret`` (and of the Secret Manager secret of its kubeconfig, beside the cluster's):
    ``SECRET-COMPONENT`` without the ``prow-`` of the controller manager."""
    return f"{secret}-{component[len('prow-'):] if component.startswith('prow-') else component}"
