#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: prow.build_cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: plan
short_description: Run many of the collection's module calls in check mode, in one process, and say which groups are in sync
version_added: 0.1.0
description:
  - Each module task is a new Python process that imports its client libraries again; on a run that changes
    nothing, that is nearly all of the time. This module runs many calls of the collection's modules in
    check mode, with the modules' own code, in a single process, and reports which groups of calls would
    change nothing (O(groups)), so that a playbook can skip the tasks of those groups.
  - A group is in sync only when every one of its calls, in order, reports no change. The first call that
    would change something or fails makes its group stale and ends the group (later calls may depend on
    it). A stale group is not an error; the playbook runs its tasks, where errors get their usual message.
  - O(preconditions) are calls that must not fail (pre-flight checks such as "the bucket exists" or "the
    cluster answers"); the first failure fails this module with its message. Whether they would change
    anything is ignored.
  - The module itself never changes anything and always reports C(changed=false).
  - C(kubernetes.core.k8s) calls (with C(apply=true)) cannot run in this process; the plan judges them
    conservatively itself, see O(groups[].calls[].module).
  - The collection's C(onboard) and C(rotate) playbooks use it to skip build clusters that are already in
    place (C(onboard_skip_in_sync), C(rotate_skip_in_sync)); the roles' C(plan) entry points render the module
    calls of their tasks as data (C(<role>_plan_calls)), so that the plan checks exactly what their tasks run.
author:
  - Prow build-cluster maintainers (@prow-build-cluster)
options:
  preconditions:
    description: Calls that must succeed in check mode before anything else is looked at.
    type: list
    elements: dict
    default: []
    suboptions: &call
      module:
        description:
          - Short name of one of the collection's modules, or C(kubernetes.core.k8s).
          - A C(kubernetes.core.k8s) call (C(apply=true), C(state=present), with
            C(definition) holding one or more documents) is in sync only when every document exists, has
            every field of its definition with the same value (lists item by item), and carries the
            definition as its C(kubectl.kubernetes.io/last-applied-configuration) annotation, so that an
            apply would send an empty patch.
        type: str
        required: true
        choices:
          - composite_kubeconfig
          - gcp_iam_member
          - gcp_service_account
          - gcs_bucket
          - gke_admin_ksa
          - gke_cluster
          - k8s_namespace
          - ksa_token
          - kubernetes.core.k8s
          - secret_manager_secret
          - workload_identity_binding
          - yaml_files
      args:
        description:
          - The module's arguments, as its task would pass them. They are validated against the module's
            argument spec; invalid arguments count as a failure of the call.
          - Google credentials options given to this module (for instance through C(module_defaults) for
            C(group/prow.build_cluster.gcp)) fill those the call leaves unset, for modules that take them.
        type: dict
        default: {}
      label:
        description: Name of the call in messages; defaults to the module name.
        type: str
      enabled:
        description: A disabled call is left out (the condition of its task, as data).
        type: bool
        default: true
  groups:
    description: Groups of calls, each judged in sync or stale as a whole.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name of the group, as returned in RV(in_sync) or RV(stale).
        type: str
        required: true
      calls:
        description: The group's calls, in the order its tasks run them.
        type: list
        elements: dict
        default: []
        suboptions: *call
extends_documentation_fragment:
  - prow.build_cluster.attributes
  - prow.build_cluster.attributes.GCP
  - prow.build_cluster.gcp_auth
notes:
  - Results of the calls are never returned (a C(ksa_token) result holds a kubeconfig); values of their
    C(no_log) options are masked in messages.
  - Reads only. Each call makes the reads its module makes in check mode.
"""

EXAMPLES = r"""
- name: Find which build clusters are already onboarded
  prow.build_cluster.plan:
    preconditions:
      - label: the results bucket exists
        module: gcs_bucket
        args: {project: prow-project, name: prow-results, shared: true}
    groups:
      - name: build-team-a
        calls:
          - module: k8s_namespace
            args: {gke: projects/team-a/locations/us-central1/clusters/build, name: test-pods}
          - module: gcp_service_account
            args: {project: team-a, name: prowjob-default-sa}
  register: plan

- name: Onboard the clusters that need it
  ansible.builtin.include_tasks: onboard_cluster.yml
  loop: "{{ build_clusters | selectattr('alias', 'in', plan.stale) }}"
"""

RETURN = r"""
in_sync:
  description: Names of the groups whose calls would all change nothing.
  returned: success
  type: list
  elements: str
stale:
  description: Names of the other groups.
  returned: success
  type: list
  elements: str
reasons:
  description: For each stale group, the first call that would change or failed, and why.
  returned: success
  type: dict
  sample: {build-team-a: "ksa_token: would change"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prow.build_cluster.plugins.module_utils.impl import plan as impl


def main():
    impl.run(AnsibleModule(**impl.module_kwargs()))


if __name__ == "__main__":
    main()
