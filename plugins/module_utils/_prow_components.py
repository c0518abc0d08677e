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
